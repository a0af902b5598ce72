//! The command line, turned into [`Options`].

use std::time::Duration;

use clap::Parser;

use crate::options::Options;
use crate::scenarios::Scenario;

/// Load simulator for Nebula.
///
/// Registers users, creates and joins rooms over REST, opens one WebSocket per user, sends
/// `message.send` at the given rate and checks every delivery by seq. Run the server with
/// `RATE_LIMIT_AUTH_PER_MINUTE=0 RATE_LIMIT_MESSAGES_PER_SECOND=0`, or the limits are what
/// gets measured. Flags left out take the scenario's defaults (see the README).
#[derive(Debug, Clone, Parser)]
#[command(name = "nebula-bench", version)]
pub struct Cli {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:3838")]
    pub url: String,
    /// Traffic shape.
    #[arg(long, value_enum, default_value_t = Scenario::Chat)]
    pub scenario: Scenario,
    /// Users to register; each opens one WebSocket [default: per scenario].
    #[arg(long)]
    pub users: Option<usize>,
    /// Rooms; user i joins room i % rooms [default: per scenario].
    #[arg(long)]
    pub rooms: Option<usize>,
    /// How many users send [default: per scenario].
    #[arg(long)]
    pub senders: Option<usize>,
    /// Messages per second PER SENDER; 0 = as fast as --in-flight allows [default: per scenario].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of sending (or of holding idle connections).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Message content length in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,
    /// Most unacknowledged sends per connection [default: per scenario].
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Registrations at once (each is an argon2 hash on the server).
    #[arg(long, default_value_t = 8)]
    pub register_concurrency: usize,
    /// WebSocket handshakes at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// Seconds to wait for outstanding acks and deliveries after sending stops.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout: f64,
    /// PID of a local server: report its RSS (VmRSS) and CPU time from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
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

impl Cli {
    /// Options with the scenario's defaults under the flags that were given.
    pub fn options(&self) -> anyhow::Result<Options> {
        let defaults = self.scenario.defaults(self.users, self.rooms);
        let mut options = Options::new(self.url.clone(), self.scenario);
        options.users = defaults.users;
        options.rooms = defaults.rooms;
        options.senders = self.senders.unwrap_or(defaults.senders);
        options.rate = self.rate.unwrap_or(defaults.rate);
        options.in_flight = self.in_flight.unwrap_or(defaults.in_flight);
        options.duration = seconds("--duration", self.duration)?;
        options.drain_timeout = seconds("--drain-timeout", self.drain_timeout)?;
        options.message_size = self.message_size;
        options.register_concurrency = self.register_concurrency;
        options.connect_concurrency = self.connect_concurrency;
        options.server_pid = self.server_pid;
        options.progress = !self.quiet;
        // An explicit --rooms larger than --users is an error, not something to clamp.
        if let Some(rooms) = self.rooms {
            options.rooms = rooms;
        }
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
}
