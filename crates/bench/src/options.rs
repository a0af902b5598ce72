//! What one run does: the library's input, filled from the command line or by tests.

use std::time::Duration;

use anyhow::bail;

use crate::floor::FloorOptions;
use crate::scenarios::{Layout, Scenario};
use crate::target::Target;

/// Settings of one run. [`Options::new`] gives a scenario's defaults; change fields freely,
/// then [`crate::run`] checks them with [`Options::validate`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Base HTTP URL of the server; the WebSocket URL is derived from it. Setup and the
    /// `edits` scenario's REST changes go here.
    pub url: String,
    /// Every node's base URL when the run spreads over a cluster (`--urls`): user `i`
    /// connects to `urls[i % urls.len()]`. Empty: every user connects to `url`.
    pub urls: Vec<String>,
    /// Which server speaks at `url`.
    pub target: Target,
    pub scenario: Scenario,
    /// Registered users; each opens exactly one WebSocket.
    pub users: usize,
    pub rooms: usize,
    /// How many of the users send (the first `senders`, spread round-robin over rooms).
    pub senders: usize,
    /// Messages per second **per sender**; `0` means as fast as the in-flight window allows.
    pub rate: f64,
    /// The deliveries/s `rate` was derived from, if it was (for the report).
    pub deliveries_per_second: Option<f64>,
    /// How long senders send (and idle connections are held).
    pub duration: Duration,
    /// Content length of each message in bytes (ASCII, so also in characters).
    pub message_size: usize,
    /// Most unacknowledged `message.send`s per connection (`edits`: changes in flight per
    /// sender).
    pub in_flight: usize,
    /// Messages each sender posts over REST during setup (`edits` changes them).
    pub base_messages: usize,
    /// `edits`: the share of changes that are reaction toggles rather than edits, in percent.
    pub reaction_percent: u8,
    /// Registrations at once: each costs the server an argon2 hash.
    pub register_concurrency: usize,
    /// WebSocket handshakes at once.
    pub connect_concurrency: usize,
    /// How long to wait after sending stops for missing acks and deliveries.
    pub drain_timeout: Duration,
    /// Server processes to read memory and CPU use from (`/proc/<pid>`): one, or every node
    /// of a cluster (their sum is "the server"; each one's CPU is reported too).
    pub server_pids: Vec<u32>,
    /// Database processes whose CPU time is reported beside the server's.
    pub db: DbProcesses,
    /// Measure the `write()` floor before and after the measured window.
    pub floor: Option<FloorOptions>,
    /// `presence`: how many times the probe socket subscribes (one latency sample each).
    pub probes: usize,
    /// Draw progress on stderr.
    pub progress: bool,
    /// Prefix of this run's usernames and room names, so runs never collide.
    pub run_id: String,
}

/// Which database processes to charge CPU to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbProcesses {
    /// Explicit PIDs (`--db-pids`).
    pub pids: Vec<u32>,
    /// Every process whose name is `postgres` (`--pg`), found in `/proc` at each reading.
    pub all_postgres: bool,
}

impl DbProcesses {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && !self.all_postgres
    }
}

/// Longest username the contract allows.
const MAX_USERNAME: usize = 32;

impl Options {
    /// The scenario's defaults against `url`, with a fresh run id.
    pub fn new(url: impl Into<String>, scenario: Scenario) -> Options {
        let defaults = scenario.defaults(None, None);
        let run_id = format!("nb{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let layout = Layout {
            users: defaults.users,
            rooms: defaults.rooms,
            senders: defaults.senders,
        };
        let rate = defaults
            .deliveries_per_second
            .and_then(|target| layout.rate_for(target))
            .unwrap_or(defaults.rate);
        Options {
            url: url.into(),
            urls: Vec::new(),
            target: Target::Nebula,
            scenario,
            users: defaults.users,
            rooms: defaults.rooms,
            senders: defaults.senders,
            rate,
            deliveries_per_second: defaults.deliveries_per_second,
            duration: Duration::from_secs(30),
            message_size: 100,
            in_flight: defaults.in_flight,
            base_messages: defaults.base_messages,
            reaction_percent: 50,
            register_concurrency: 8,
            connect_concurrency: 64,
            drain_timeout: Duration::from_secs(10),
            server_pids: Vec::new(),
            db: DbProcesses::default(),
            floor: None,
            probes: 20,
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

    /// The target's WebSocket URL (`ws://host:port/ws` for Nebula).
    pub fn ws_endpoint(&self) -> anyhow::Result<String> {
        self.target.endpoint(&self.url)
    }

    /// The nodes users connect to, in round-robin order: `urls`, or just `url`.
    pub fn nodes(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }

    /// Each node's WebSocket URL, in the order of [`Options::nodes`].
    pub fn ws_endpoints(&self) -> anyhow::Result<Vec<String>> {
        self.nodes()
            .iter()
            .map(|base| self.target.endpoint(base))
            .collect()
    }

    /// Users to set up: the connected ones, plus the presence probe's user.
    pub fn accounts(&self) -> usize {
        self.users + usize::from(self.scenario == Scenario::Presence)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.ws_endpoint()?;
        self.ws_endpoints()?;
        if self.scenario == Scenario::Presence {
            if self.target != Target::Nebula {
                bail!(
                    "--scenario presence needs --target nebula: the Socket.IO peer has no presence"
                );
            }
            if self.probes == 0 {
                bail!("--probes must be at least 1");
            }
        }
        if self.scenario.makes_changes() {
            if self.target != Target::Nebula {
                bail!(
                    "--scenario edits needs --target nebula: the Socket.IO peer has no edits or reactions"
                );
            }
            if self.base_messages < self.in_flight {
                bail!(
                    "--base-messages ({}) must be at least --in-flight ({}): a sender never has \
                     two changes to one message in flight",
                    self.base_messages,
                    self.in_flight
                );
            }
            if self.reaction_percent > 100 {
                bail!("--reaction-percent must be 0–100");
            }
        }
        if self.base_messages > 0 && self.target != Target::Nebula {
            bail!("--base-messages needs --target nebula: the Socket.IO peer has no REST posting");
        }
        if let Some(floor) = &self.floor {
            floor.validate()?;
        }
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
        let longest = self.username(self.accounts() - 1);
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
        let floor = self.floor.as_ref().map_or(0, |floor| floor.pairs * 2);
        let changes = if self.scenario.makes_changes() {
            self.senders * self.in_flight
        } else {
            0
        };
        let sockets = self.accounts()
            + self.register_concurrency.max(self.connect_concurrency)
            + floor
            + changes;
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
    fn large_room_defaults_to_forty_thousand_deliveries_per_second() {
        let options = Options::new("http://localhost:3838", Scenario::LargeRoom);
        assert_eq!(options.rate, 4.0, "10 senders × 4/s × 1000 subscribers");
        assert_eq!(options.deliveries_per_second, Some(40_000.0));
    }

    #[test]
    fn presence_is_nebula_only_and_adds_a_probe_user() {
        let mut options = Options::new("http://localhost:3838", Scenario::Presence);
        options.users = 10;
        assert_eq!(options.accounts(), 11);
        options.validate().unwrap();
        options.target = Target::Socketio;
        assert!(options.validate().is_err());
    }

    #[test]
    fn edits_is_nebula_only_and_needs_a_message_per_change_in_flight() {
        let mut options = Options::new("http://localhost:3838", Scenario::Edits);
        options.validate().unwrap();
        options.in_flight = options.base_messages + 1;
        assert!(options.validate().is_err());
        options.in_flight = 1;
        options.reaction_percent = 101;
        assert!(options.validate().is_err());
        options.reaction_percent = 100;
        options.target = Target::Socketio;
        let refused = options.validate().unwrap_err().to_string();
        assert!(refused.contains("--target nebula"), "{refused}");
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
