//! Which server the simulator drives, and the little that differs between them: how the
//! world is set up, how a socket opens and subscribes, what a send looks like and how an
//! incoming frame reads. Everything else (pacing, windows, seq accounting, latency, the
//! report) is shared, so both servers are measured by the same code.

pub mod nebula;
pub mod socketio;

use anyhow::bail;
use serde::Serialize;

use crate::client::{ConnectSpec, Socket, SubscribedAt};
use crate::frames::{Incoming, SendTemplate};
use crate::options::Options;
use crate::progress::Progress;
use crate::setup::{self, Api, SetupTimes, World};

/// A server the simulator can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Nebula: REST setup (register, rooms, join), then `/ws` with the contract's events.
    #[default]
    Nebula,
    /// The Socket.IO + PostgreSQL peer (`shared/peer-socketio`): no setup, Socket.IO v4
    /// over the websocket transport.
    Socketio,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Nebula => "nebula",
            Target::Socketio => "socketio",
        }
    }

    /// The WebSocket URL for the server at `base` (`http://host:port`).
    pub fn endpoint(self, base: &str) -> anyhow::Result<String> {
        match self {
            Target::Nebula => nebula::endpoint(base),
            Target::Socketio => socketio::endpoint(base),
        }
    }

    /// Nebula's REST client (one pool for setup and the `edits` scenario's changes); the
    /// Socket.IO peer has no REST API.
    pub fn api(self, options: &Options) -> anyhow::Result<Option<Api>> {
        match self {
            Target::Nebula => Ok(Some(Api::for_nodes(&options.nodes())?)),
            Target::Socketio => Ok(None),
        }
    }

    /// Users, tokens and rooms, ready to connect.
    pub async fn prepare(
        self,
        api: Option<&Api>,
        options: &Options,
        progress: &Progress,
    ) -> anyhow::Result<(World, SetupTimes)> {
        match (self, api) {
            (Target::Nebula, Some(api)) => setup::prepare(api, options, progress).await,
            (Target::Nebula, None) => bail!("Nebula is set up over its REST API: no client"),
            (Target::Socketio, _) => setup::name_only(options).await,
        }
    }

    /// Connects as `spec`'s user and subscribes to its room; returns the socket and the
    /// room's last seq and rev at that point (everything above them must be delivered).
    pub(crate) async fn open(
        self,
        endpoint: &str,
        api: Option<&Api>,
        spec: &ConnectSpec,
    ) -> anyhow::Result<(Socket, SubscribedAt)> {
        match (self, api) {
            (Target::Nebula, Some(api)) => nebula::open(api, spec).await,
            (Target::Nebula, None) => bail!("Nebula sockets open through its client: none"),
            (Target::Socketio, _) => socketio::open(endpoint, spec).await,
        }
    }

    /// The send frames of one connection into one room.
    pub fn send_template(
        self,
        room_id: &str,
        content: &str,
        connection: usize,
    ) -> serde_json::Result<SendTemplate> {
        match self {
            Target::Nebula => nebula::send_template(room_id, content, connection),
            Target::Socketio => socketio::send_template(room_id, content, connection),
        }
    }

    /// Reads one incoming text frame.
    pub fn parse(self, text: &str) -> Result<Incoming<'_>, serde_json::Error> {
        match self {
            Target::Nebula => nebula::parse(text),
            Target::Socketio => socketio::parse(text),
        }
    }
}

/// `ws://host:port` for `http://host:port`.
fn ws_base(base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    match base.split_once("://") {
        Some(("http", rest)) => Ok(format!("ws://{rest}")),
        Some(("https", _)) => bail!("https is not supported: the simulator speaks plain ws"),
        _ => bail!("--url must look like http://host:port, not {base:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_each_targets_endpoint() {
        assert_eq!(
            Target::Nebula.endpoint("http://127.0.0.1:3838/").unwrap(),
            "ws://127.0.0.1:3838/ws"
        );
        assert_eq!(
            Target::Socketio.endpoint("http://127.0.0.1:4100").unwrap(),
            "ws://127.0.0.1:4100/socket.io/?EIO=4&transport=websocket"
        );
        assert!(Target::Nebula.endpoint("https://example.test").is_err());
        assert!(Target::Socketio.endpoint("127.0.0.1:4100").is_err());
    }
}
