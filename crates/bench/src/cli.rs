//! The command line, turned into [`Options`].

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::floor::FloorOptions;
use crate::options::{DbProcesses, Options};
use crate::scenarios::{Layout, Scenario};
use crate::target::Target;

/// Load simulator for Nebula.
///
/// Registers users, creates and joins rooms over REST, opens one WebSocket per user, sends
/// `message.send` at the given rate and checks every delivery by seq. Run the server with
/// `RATE_LIMIT_AUTH_PER_MINUTE=0 RATE_LIMIT_MESSAGES_PER_SECOND=0`, or the limits are what
/// gets measured. Flags left out take the scenario's defaults (see the README).
#[derive(Debug, Clone, Parser)]
#[command(name = "nebula-bench", version)]
pub struct Cli {
    /// `floor` measures only the write() floor and exits.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:3838")]
    pub url: String,
    /// Base URLs of every node of a cluster, comma-separated: users connect round-robin over
    /// them (user i to the (i mod N)-th); setup goes to the first. Replaces --url.
    #[arg(long, value_delimiter = ',', conflicts_with = "url")]
    pub urls: Vec<String>,
    /// Which server listens at --url: Nebula, or the Socket.IO + PostgreSQL peer.
    #[arg(long, value_enum, default_value_t = Target::Nebula)]
    pub target: Target,
    /// Traffic shape.
    #[arg(long, value_enum, default_value_t = Scenario::Chat)]
    pub scenario: Scenario,
    /// Users to register; each opens one WebSocket [default: per scenario].
    #[arg(long)]
    pub users: Option<usize>,
    /// Rooms; user i joins room i % rooms [default: per scenario].
    #[arg(long, conflicts_with = "members_per_room")]
    pub rooms: Option<usize>,
    /// Members per room instead of --rooms: rooms = users / N (at least 1).
    #[arg(long)]
    pub members_per_room: Option<usize>,
    /// How many users send [default: per scenario].
    #[arg(long)]
    pub senders: Option<usize>,
    /// Messages (edits: changes) per second PER SENDER; 0 = as fast as --in-flight allows
    /// [default: per scenario].
    #[arg(long, conflicts_with = "deliveries_per_second")]
    pub rate: Option<f64>,
    /// Offered deliveries per second: sets --rate to this divided by the deliveries one
    /// message from every sender makes (each reaches every subscriber of its room)
    /// [default: 40000 for large-room, 20000 for rooms].
    #[arg(long)]
    pub deliveries_per_second: Option<f64>,
    /// Seconds of sending (or of holding idle connections).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,
    /// Most unacknowledged sends per connection (edits: changes per sender) [default: per
    /// scenario].
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Messages each sender posts over REST during setup, before the sockets open (edits:
    /// the messages it changes; at least --in-flight) [default: 16 for edits, else 0].
    #[arg(long)]
    pub base_messages: Option<usize>,
    /// edits: share of changes that are reaction toggles (PUT / DELETE of the sender's
    /// reaction), in percent; the rest are edits (PATCH).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub reaction_percent: u8,
    /// Registrations at once (each is an argon2 hash on the server).
    #[arg(long, default_value_t = 8)]
    pub register_concurrency: usize,
    /// WebSocket handshakes at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Seconds to wait for outstanding acks and deliveries after sending stops.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// PID of a local server: report its RSS (VmRSS), CPU time, CPU per delivery and RSS per
    /// connection from /proc. With --urls, every node's PID, comma-separated: the figures
    /// are their sums, and each node's CPU is listed.
    #[arg(long, value_delimiter = ',', alias = "server-pids")]
    pub server_pid: Vec<u32>,
    /// PIDs of database processes (e.g. PostgreSQL backends) whose CPU to report beside the
    /// server's, per 1k messages.
    #[arg(long, value_delimiter = ',')]
    pub db_pids: Vec<u32>,
    /// Count the CPU of every process named `postgres` as database CPU (all databases on
    /// this machine: run on a quiet one).
    #[arg(long)]
    pub pg: bool,
    /// Measure the write() floor just before and just after the measured window.
    #[arg(long)]
    pub measure_floor: bool,
    #[command(flatten)]
    pub floor: FloorArgs,
    /// presence: how many times the extra socket subscribes (one latency sample each).
    #[arg(long, default_value_t = 20)]
    pub probes: usize,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Runtime worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Measure only the write() floor: CPU per write() of a small frame to a loopback TCP
    /// socket (see the README), then exit.
    Floor(FloorArgs),
}

/// How the write() floor is measured.
#[derive(Debug, Clone, Args)]
pub struct FloorArgs {
    /// Loopback TCP connections written to in turn.
    #[arg(long, default_value_t = FloorOptions::default().pairs)]
    pub floor_pairs: usize,
    /// Measured writes (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = FloorOptions::default().writes)]
    pub floor_writes: u64,
    /// Bytes per write.
    #[arg(long, default_value_t = FloorOptions::default().frame_bytes)]
    pub floor_frame_bytes: usize,
    /// CPU to pin the floor's writer and reader threads to [default: the current one].
    #[arg(long)]
    pub floor_cpu: Option<usize>,
}

impl FloorArgs {
    pub fn options(&self) -> FloorOptions {
        FloorOptions {
            pairs: self.floor_pairs,
            writes: self.floor_writes,
            frame_bytes: self.floor_frame_bytes,
            cpu: self.floor_cpu,
        }
    }
}

impl Cli {
    /// Options with the scenario's defaults under the flags that were given.
    pub fn options(&self) -> anyhow::Result<Options> {
        let users = self.users.unwrap_or(self.scenario.default_users());
        let rooms = match (self.rooms, self.members_per_room) {
            (Some(rooms), _) => Some(rooms),
            (None, Some(0)) => bail!("--members-per-room must be at least 1"),
            (None, Some(members)) => Some((users / members).max(1)),
            (None, None) => None,
        };
        let defaults = self.scenario.defaults(Some(users), rooms);
        let url = self.urls.first().unwrap_or(&self.url).clone();
        let mut options = Options::new(url, self.scenario);
        options.urls = self.urls.clone();
        options.target = self.target;
        options.users = defaults.users;
        options.rooms = defaults.rooms;
        options.senders = self.senders.unwrap_or(defaults.senders);
        // An explicit --rooms larger than --users is an error, not something to clamp.
        if let Some(rooms) = rooms {
            options.rooms = rooms;
        }
        let layout = Layout {
            users: options.users,
            rooms: options.rooms.max(1),
            senders: options.senders,
        };
        (options.rate, options.deliveries_per_second) = match (
            self.rate,
            self.deliveries_per_second
                .or(defaults.deliveries_per_second),
        ) {
            (Some(rate), _) => (rate, None),
            (None, Some(target)) => match layout.rate_for(target) {
                Some(rate) if target > 0.0 && rate.is_finite() => (rate, Some(target)),
                _ => {
                    bail!("--deliveries-per-second needs a positive number and at least one sender")
                }
            },
            (None, None) => (defaults.rate, None),
        };
        options.in_flight = self.in_flight.unwrap_or(defaults.in_flight);
        options.base_messages = self.base_messages.unwrap_or(defaults.base_messages);
        options.reaction_percent = self.reaction_percent;
        options.duration = seconds("--duration", self.duration)?;
        options.drain_timeout = seconds("--drain-timeout", self.drain_timeout)?;
        options.message_size = self.message_size;
        options.register_concurrency = self.register_concurrency;
        options.connect_concurrency = self.connect_concurrency;
        options.server_pids = self.server_pid.clone();
        options.db = DbProcesses {
            pids: self.db_pids.clone(),
            all_postgres: self.pg,
        };
        options.floor = self.measure_floor.then(|| self.floor.options());
        options.probes = self.probes;
        options.progress = !self.quiet;
        options.validate()?;
        Ok(options)
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("{flag} must be ≥ 0 seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_command_line_still_parses() {
        let cli = Cli::parse_from([
            "nebula-bench",
            "--users",
            "50",
            "--rooms",
            "5",
            "--duration",
            "120",
        ]);
        let options = cli.options().unwrap();
        assert_eq!(options.scenario, Scenario::Chat);
        assert_eq!((options.users, options.rooms, options.senders), (50, 5, 10));
        assert_eq!(options.duration, Duration::from_secs(120));
    }

    #[test]
    fn explicit_flags_beat_scenario_defaults() {
        let cli = Cli::parse_from([
            "nebula-bench",
            "--scenario",
            "ingest",
            "--users",
            "4",
            "--rate",
            "50",
            "--in-flight",
            "3",
        ]);
        let options = cli.options().unwrap();
        assert_eq!((options.senders, options.in_flight), (4, 3));
        assert_eq!(options.rate, 50.0);
        let bad = Cli::parse_from(["nebula-bench", "--users", "2", "--rooms", "3"]);
        assert!(bad.options().is_err());
    }

    #[test]
    fn members_per_room_sets_the_rooms() {
        let cli = Cli::parse_from([
            "nebula-bench",
            "--scenario",
            "idle",
            "--users",
            "10000",
            "--members-per-room",
            "100",
        ]);
        assert_eq!(cli.options().unwrap().rooms, 100);
        let both =
            Cli::try_parse_from(["nebula-bench", "--rooms", "3", "--members-per-room", "100"]);
        assert!(both.is_err(), "--rooms and --members-per-room conflict");
    }

    #[test]
    fn deliveries_per_second_derives_the_rate() {
        let cli = Cli::parse_from([
            "nebula-bench",
            "--scenario",
            "large-room",
            "--deliveries-per-second",
            "70000",
        ]);
        let options = cli.options().unwrap();
        assert_eq!(
            (options.users, options.rooms, options.senders),
            (1000, 1, 10)
        );
        assert_eq!(options.rate, 7.0);
        let rooms = Cli::parse_from(["nebula-bench", "--scenario", "rooms"])
            .options()
            .unwrap();
        assert_eq!((rooms.rooms, rooms.senders, rooms.rate), (10, 20, 10.0));
        // An explicit --rate wins over the scenario's deliveries/s.
        let paced = Cli::parse_from(["nebula-bench", "--scenario", "rooms", "--rate", "3"])
            .options()
            .unwrap();
        assert_eq!((paced.rate, paced.deliveries_per_second), (3.0, None));
        let silent = Cli::parse_from([
            "nebula-bench",
            "--scenario",
            "idle",
            "--deliveries-per-second",
            "10",
        ]);
        assert!(silent.options().is_err(), "no senders to carry the load");
    }

    #[test]
    fn edits_flags() {
        let options = Cli::parse_from([
            "nebula-bench",
            "--scenario",
            "edits",
            "--rate",
            "0",
            "--in-flight",
            "8",
            "--reaction-percent",
            "100",
        ])
        .options()
        .unwrap();
        assert_eq!(
            (
                options.senders,
                options.base_messages,
                options.reaction_percent
            ),
            (20, 16, 100)
        );
        assert_eq!((options.rate, options.in_flight), (0.0, 8));
        let socketio = Cli::parse_from([
            "nebula-bench",
            "--scenario",
            "edits",
            "--target",
            "socketio",
        ]);
        assert!(socketio.options().is_err());
        let over = Cli::try_parse_from(["nebula-bench", "--reaction-percent", "101"]);
        assert!(over.is_err());
    }

    #[test]
    fn target_db_and_floor_flags() {
        let cli = Cli::parse_from([
            "nebula-bench",
            "--target",
            "socketio",
            "--url",
            "http://127.0.0.1:4100",
            "--scenario",
            "small-window-ingest",
            "--db-pids",
            "10,11",
            "--pg",
            "--measure-floor",
            "--floor-pairs",
            "20",
        ]);
        let options = cli.options().unwrap();
        assert_eq!(options.target, Target::Socketio);
        assert_eq!(options.db.pids, [10, 11]);
        assert!(options.db.all_postgres);
        assert_eq!(options.floor.map(|floor| floor.pairs), Some(20));
        assert_eq!(
            (options.senders, options.in_flight, options.rate),
            (50, 8, 0.0)
        );
        let floor = Cli::parse_from(["nebula-bench", "floor", "--floor-writes", "5000"]);
        let Some(Command::Floor(args)) = floor.command else {
            panic!("floor is a subcommand");
        };
        assert_eq!(args.options().writes, 5000);
    }
}
