//! `nebula-bench`: a load simulator for Nebula.
//!
//! It plays many users at once against a running server: registers them, creates and joins
//! rooms over REST, opens one WebSocket per user, sends `message.send` at a chosen rate, and
//! accounts for every delivery by `seq`, so a run measures throughput and latency *and*
//! checks the contract's ordering guarantees under load.
//!
//! It drives Nebula or, with [`Target::Socketio`], the Socket.IO + PostgreSQL peer the
//! project's performance targets are compared with, through the same scenarios and the same
//! accounting; given the server's PID it reports server CPU per delivery and RSS per
//! connection, and it can measure the machine's loopback `write()` floor in the same run
//! ([`floor`]).
//!
//! The binary is a thin wrapper around [`run`]; tests call it directly with [`Options`]:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use nebula_bench::{Options, Scenario};
//! let mut options = Options::new("http://127.0.0.1:3838", Scenario::Chat);
//! options.duration = std::time::Duration::from_secs(10);
//! let report = nebula_bench::run(options, std::future::pending()).await?;
//! assert!(report.delivery.is_clean());
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

pub mod accounting;
pub mod cli;
mod client;
mod editor;
pub mod floor;
pub mod frames;
pub mod latency;
mod live;
pub mod options;
pub mod presence;
pub mod progress;
mod reader;
pub mod report;
mod runner;
pub mod scenarios;
mod sender;
pub mod setup;
pub mod system;
pub mod target;

pub use options::Options;
pub use report::Report;
pub use runner::run;
pub use scenarios::Scenario;
pub use target::Target;
