//! What one run does: the library's input, filled from the command line or by tests.

use std::time::Duration;

use anyhow::bail;

use crate::scenarios::{Layout, Scenario};

/// Settings of one run. [`Options::new`] gives a scenario's defaults; change fields freely,
/// then [`crate::run`] checks them with [`Options::validate`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Base HTTP URL of the server; the WebSocket URL is derived from it.
    pub url: String,
    pub scenario: Scenario,
    /// Registered users; each opens exactly one WebSocket.
    pub users: usize,
    pub rooms: usize,
    /// How many of the users send (the first `senders`, spread round-robin over rooms).
    pub senders: usize,
    /// Messages per second **per sender**; `0` means as fast as the in-flight window allows.
    pub rate: f64,
    /// How long senders send (and idle connections are held).
    pub duration: Duration,
    /// Content length of each message in bytes (ASCII, so also in characters).
    pub message_size: usize,
    /// Most unacknowledged `message.send`s per connection.
    pub in_flight: usize,
    /// Registrations at once: each costs the server an argon2 hash.
    pub register_concurrency: usize,
    /// WebSocket handshakes at once.
    pub connect_concurrency: usize,
    /// How long to wait after sending stops for missing acks and deliveries.
    pub drain_timeout: Duration,
    /// A server process to read memory and CPU use from (`/proc/<pid>`).
    pub server_pid: Option<u32>,
    /// Draw progress on stderr.
    pub progress: bool,
    /// Prefix of this run's usernames and room names, so runs never collide.
    pub run_id: String,
}

/// Longest username the contract allows.
const MAX_USERNAME: usize = 32;

impl Options {
    /// The scenario's defaults against `url`, with a fresh run id.
    pub fn new(url: impl Into<String>, scenario: Scenario) -> Options {
        let defaults = scenario.defaults(None, None);
        let run_id = format!("nb{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        Options {
            url: url.into(),
            scenario,
            users: defaults.users,
            rooms: defaults.rooms,
            senders: defaults.senders,
            rate: defaults.rate,
            duration: Duration::from_secs(30),
            message_size: 100,
            in_flight: defaults.in_flight,
            register_concurrency: 8,
            connect_concurrency: 64,
            drain_timeout: Duration::from_secs(10),
            server_pid: None,
            progress: false,
            run_id,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout {
            users: self.users,
            rooms: self.rooms,
            senders: self.senders,
        }
    }

    /// `ws://host:port/ws` for `http://host:port`.
    pub fn ws_endpoint(&self) -> anyhow::Result<String> {
        let base = self.url.trim_end_matches('/');
        match base.split_once("://") {
            Some(("http", rest)) => Ok(format!("ws://{rest}/ws")),
            Some(("https", _)) => bail!("https is not supported: the simulator speaks plain ws"),
            _ => bail!("--url must look like http://host:port, not {:?}", self.url),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.ws_endpoint()?;
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        if self.rooms == 0 || self.rooms > self.users {
            bail!("--rooms must be between 1 and --users ({})", self.users);
        }
        if self.senders > self.users {
            bail!(
                "--senders ({}) cannot exceed --users ({})",
                self.senders,
                self.users
            );
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!("--rate must be a number ≥ 0 (0 = unlimited)");
        }
        if self.message_size == 0 || self.message_size > 60_000 {
            bail!("--message-size must be 1–60000 bytes (the server's default limit is 4000)");
        }
        if self.in_flight == 0 {
            bail!("--in-flight must be at least 1");
        }
        if self.register_concurrency == 0 || self.connect_concurrency == 0 {
            bail!("concurrency limits must be at least 1");
        }
        let longest = self.username(self.users - 1);
        if longest.len() > MAX_USERNAME
            || !self
                .run_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            bail!("run id {:?} makes invalid usernames", self.run_id);
        }
        Ok(())
    }

    /// The username of user `index` in this run.
    pub fn username(&self, index: usize) -> String {
        format!("{}_{index}", self.run_id)
    }

    /// Per-sender interval between sends, `None` when unlimited.
    pub fn send_interval(&self) -> Option<Duration> {
        (self.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / self.rate))
    }

    /// Sockets plus the HTTP pool plus slack: what the file-descriptor limit must allow.
    pub fn descriptors_needed(&self) -> u64 {
        let sockets = self.users + self.register_concurrency.max(self.connect_concurrency);
        u64::try_from(sockets)
            .unwrap_or(u64::MAX)
            .saturating_add(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_websocket_endpoint() {
        let mut options = Options::new("http://127.0.0.1:3838/", Scenario::Chat);
        assert_eq!(options.ws_endpoint().unwrap(), "ws://127.0.0.1:3838/ws");
        options.url = "https://example.test".into();
        assert!(options.ws_endpoint().is_err());
    }

    #[test]
    fn rejects_impossible_layouts() {
        let mut options = Options::new("http://localhost:3838", Scenario::Chat);
        options.validate().unwrap();
        options.rooms = options.users + 1;
        assert!(options.validate().is_err());
        options.rooms = 1;
        options.senders = options.users + 1;
        assert!(options.validate().is_err());
    }
}
