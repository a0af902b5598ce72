//! A WebSocket test client speaking the contract's events: a thin layer over
//! `nebula_client::Connection` that panics with context instead of returning errors and
//! waits at most [`PATIENCE`] for anything.

use std::time::Duration;

use nebula_client::{Connection, Error};
use nebula_wire::{ClientEvent, Message, ServerEvent};
use tokio_tungstenite::tungstenite::{self, http};
use uuid::Uuid;

use crate::helpers::Session;

/// How long a test waits for an event that should come.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct WsClient {
    /// The connection; also a `Sink` and `Stream` of raw frames for floods and malformed input.
    pub stream: Connection,
}

/// How a socket ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<u16>),
    /// The TCP connection went away without a close frame.
    Dropped,
}

impl Session {
    /// Opens `/ws` (or another WebSocket path) with this session's token.
    pub async fn ws(&self, path: &str) -> WsClient {
        self.try_ws(path)
            .await
            .unwrap_or_else(|err| panic!("websocket {path}: {err}"))
    }

    /// Opens a WebSocket; a refused upgrade is `tungstenite::Error::Http` with its status.
    pub async fn try_ws(&self, path: &str) -> Result<WsClient, tungstenite::Error> {
        match self.client().connect(path).await {
            Ok(stream) => Ok(WsClient { stream }),
            Err(err) => Err(as_tungstenite(err)),
        }
    }

    /// Opens `path` with a small kernel receive buffer (64 KiB), so that a client that stops
    /// reading is felt after megabytes, not the tens of MiB Linux would otherwise queue.
    pub async fn ws_with_small_buffer(&self, path: &str) -> WsClient {
        let addr: std::net::SocketAddr = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("test servers listen on an address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("connect");
        let stream = self
            .client()
            .connect_over(path, tcp)
            .await
            .expect("websocket");
        WsClient { stream }
    }

    /// A `/ws` socket subscribed to `room` (waits for `subscribed`).
    pub async fn subscribed(&self, room: Uuid) -> WsClient {
        let mut ws = self.ws("/ws").await;
        within(ws.stream.subscribe(room, None))
            .await
            .unwrap_or_else(|err| panic!("subscribe {room}: {err}"));
        ws
    }
}

/// The crate's error for a refused handshake back in tungstenite's terms, as the tests
/// that check the status of a refusal expect it.
fn as_tungstenite(err: Error) -> tungstenite::Error {
    match err {
        Error::Socket(err) => *err,
        Error::Api { status, problem } => {
            let body = serde_json::to_vec(&problem).ok();
            let response = http::Response::builder()
                .status(status)
                .body(body)
                .expect("a valid status");
            tungstenite::Error::Http(Box::new(response))
        }
        other => tungstenite::Error::Io(std::io::Error::other(other.to_string())),
    }
}

/// `future`, or a panic after [`PATIENCE`].
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .expect("an event within the patience window")
}

impl WsClient {
    pub async fn send(&mut self, event: ClientEvent) {
        self.stream.send_event(&event).await.expect("send frame");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.stream.send_text(text).await.expect("send frame");
    }

    /// The next event, skipping transport pings.
    pub async fn next_event(&mut self) -> ServerEvent {
        within(self.stream.next_event())
            .await
            .unwrap_or_else(|err| panic!("expected an event: {err}"))
    }

    /// The next event matching `wanted`, skipping others (e.g. presence noise).
    pub async fn expect(&mut self, wanted: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
        loop {
            let event = self.next_event().await;
            if wanted(&event) {
                return event;
            }
        }
    }

    /// The next `message.new`, skipping other events.
    pub async fn next_message(&mut self) -> Message {
        match self
            .expect(|e| matches!(e, ServerEvent::MessageNew { .. }))
            .await
        {
            ServerEvent::MessageNew { message } => message,
            _ => unreachable!(),
        }
    }

    /// The next `message.updated`, skipping other events.
    pub async fn next_updated(&mut self) -> Message {
        match self
            .expect(|e| matches!(e, ServerEvent::MessageUpdated { .. }))
            .await
        {
            ServerEvent::MessageUpdated { message } => message,
            _ => unreachable!(),
        }
    }

    /// Sends `count` messages whose content and `client_msg_id` are `"{tag}-{i}"`.
    pub async fn send_numbered(
        &mut self,
        room_id: Uuid,
        tag: impl std::fmt::Display,
        count: usize,
    ) {
        for i in 0..count {
            let id = format!("{tag}-{i}");
            self.send(ClientEvent::MessageSend {
                room_id,
                content: id.clone(),
                client_msg_id: Some(id),
                reply_to: None,
                attachments: None,
            })
            .await;
        }
    }

    /// Reads until the socket ends, returning how; events seen on the way are returned too.
    pub async fn until_closed(&mut self) -> (Ended, Vec<ServerEvent>) {
        let mut seen = Vec::new();
        loop {
            let next = tokio::time::timeout(PATIENCE, self.stream.next_event())
                .await
                .expect("socket ends in time");
            match next {
                Ok(event) => seen.push(event),
                Err(Error::ClosedByServer { code, .. }) => return (Ended::Closed(code), seen),
                Err(err @ Error::Unreadable { .. }) => panic!("{err}"),
                Err(_) => return (Ended::Dropped, seen),
            }
        }
    }
}
