//! The final report: one struct, printed for people or as JSON for machines.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::accounting::Delivery;
use crate::latency::LatencySummary;
use crate::scenarios::Scenario;

/// Everything one run measured. Field names are the JSON keys (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub run_id: String,
    pub url: String,
    pub users: usize,
    pub rooms: usize,
    pub senders: usize,
    /// Target messages per second per sender; 0 = unlimited.
    pub rate_per_sender: f64,
    pub message_size: usize,
    pub in_flight: usize,
    /// Sockets that opened and subscribed.
    pub connections: usize,
    /// Sockets that failed to open or subscribe, by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Ctrl-C ended the run before `--duration`.
    pub interrupted: bool,
    pub timings: Timings,
    pub sent: u64,
    pub acked: u64,
    /// Sends answered with an `error` event.
    pub failed: u64,
    /// Sends with neither an ack nor an error when the run ended.
    pub unanswered: u64,
    pub duplicate_acks: u64,
    pub delivery: Delivery,
    pub throughput: Throughput,
    /// `message.send` written → its `message.ack` read, by the sender.
    pub ack_latency: LatencySummary,
    /// `message.send` written → `message.new` read, by every subscriber (sender included).
    pub e2e_latency: LatencySummary,
    /// `error` events by code.
    pub errors: BTreeMap<String, u64>,
    /// Sockets the server closed (by close code) or dropped before the run closed them.
    pub closes: BTreeMap<String, u64>,
    pub resources: Resources,
}

/// Seconds per phase. Setup (register, rooms, join, connect) is reported apart from the
/// measured window (run + drain) because registration is argon2-bound and says nothing
/// about chat throughput.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub register_s: f64,
    pub rooms_s: f64,
    pub join_s: f64,
    pub connect_s: f64,
    pub setup_s: f64,
    /// Sending (or holding, for `idle`).
    pub run_s: f64,
    /// After sending stopped, until every ack and delivery arrived (or the timeout).
    pub drain_s: f64,
    /// Whether everything outstanding arrived before the drain timeout.
    pub drained: bool,
}

/// Rates over the measured window (run + drain).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Throughput {
    pub sent_per_s: f64,
    pub acked_per_s: f64,
    pub delivered_per_s: f64,
}

/// Memory and CPU, from `/proc`. Server figures need `--server-pid`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Resources {
    /// Server RSS before the sockets opened.
    pub server_rss_before_kib: Option<u64>,
    /// Server RSS with every socket open, at the end of the run.
    pub server_rss_after_kib: Option<u64>,
    /// (after − before) / connections.
    pub server_rss_per_connection_kib: Option<f64>,
    /// Server CPU time during the measured window, in seconds (2.0 per second = two cores).
    pub server_cpu_s: Option<f64>,
    pub bench_rss_kib: Option<u64>,
    pub bench_cpu_s: Option<f64>,
}

impl Report {
    /// No lost, repeated or reordered message, every send answered, no socket lost.
    pub fn is_clean(&self) -> bool {
        self.delivery.is_clean()
            && self.unanswered == 0
            && self.duplicate_acks == 0
            && self.closes.is_empty()
            && self.connect_failures.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

fn latency_line(f: &mut fmt::Formatter<'_>, label: &str, l: &LatencySummary) -> fmt::Result {
    if l.count == 0 {
        return writeln!(f, "{label:<13} -");
    }
    writeln!(
        f,
        "{label:<13} p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2} ms  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.count
    )
}

fn counts_line(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    counts: &BTreeMap<String, u64>,
) -> fmt::Result {
    if counts.is_empty() {
        return writeln!(f, "{label:<13} none");
    }
    let listed: Vec<String> = counts.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    writeln!(f, "{label:<13} {}", listed.join(", "))
}

fn kib(value: Option<u64>) -> String {
    value.map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.timings;
        let rate = if self.senders == 0 {
            "none sending".to_owned()
        } else if self.rate_per_sender > 0.0 {
            format!("{} msg/s each", self.rate_per_sender)
        } else {
            format!("flat out, {} in flight each", self.in_flight)
        };
        writeln!(
            f,
            "nebula-bench {} ({}): {} users, {} rooms, {} senders ({rate}), {}-byte messages{}",
            self.scenario.name(),
            self.run_id,
            self.users,
            self.rooms,
            self.senders,
            self.message_size,
            if self.interrupted {
                ", INTERRUPTED"
            } else {
                ""
            },
        )?;
        writeln!(
            f,
            "{:<13} {:.1} s (register {:.1}, rooms {:.1}, join {:.1}, connect {:.1})",
            "setup", t.setup_s, t.register_s, t.rooms_s, t.join_s, t.connect_s
        )?;
        writeln!(
            f,
            "{:<13} {:.1} s + drain {:.2} s{}",
            "run",
            t.run_s,
            t.drain_s,
            if t.drained {
                ""
            } else {
                " (timed out: something never arrived)"
            }
        )?;
        writeln!(
            f,
            "{:<13} {} open, {} failed to open",
            "connections",
            self.connections,
            self.connect_failures.values().sum::<u64>()
        )?;
        writeln!(
            f,
            "{:<13} sent {}  acked {}  failed {}  unanswered {}  duplicate acks {}",
            "messages", self.sent, self.acked, self.failed, self.unanswered, self.duplicate_acks
        )?;
        let d = &self.delivery;
        writeln!(
            f,
            "{:<13} {} of {} expected  missing {}  duplicates {}  out-of-order {}  → {}",
            "deliveries",
            d.delivered,
            d.expected,
            d.missing,
            d.duplicates,
            d.out_of_order,
            if d.is_clean() { "OK" } else { "VIOLATIONS" }
        )?;
        writeln!(
            f,
            "{:<13} {:.1} sent/s  {:.1} acked/s  {:.1} deliveries/s",
            "throughput",
            self.throughput.sent_per_s,
            self.throughput.acked_per_s,
            self.throughput.delivered_per_s
        )?;
        latency_line(f, "ack latency", &self.ack_latency)?;
        latency_line(f, "end-to-end", &self.e2e_latency)?;
        counts_line(f, "errors", &self.errors)?;
        if self.errors.contains_key("rate_limited") {
            writeln!(
                f,
                "{:<13} the server rate-limits messages: run it with RATE_LIMIT_MESSAGES_PER_SECOND=0",
                ""
            )?;
        }
        counts_line(f, "closes", &self.closes)?;
        counts_line(f, "connect fails", &self.connect_failures)?;
        let r = &self.resources;
        if r.server_rss_before_kib.is_some() || r.server_rss_after_kib.is_some() {
            writeln!(
                f,
                "{:<13} RSS {} → {}{}, CPU {}",
                "server",
                kib(r.server_rss_before_kib),
                kib(r.server_rss_after_kib),
                r.server_rss_per_connection_kib
                    .map_or(String::new(), |per| format!(
                        " ({per:.1} KiB per connection)"
                    )),
                r.server_cpu_s.map_or("?".into(), |cpu| format!(
                    "{cpu:.1} s ({:.2} cores)",
                    cpu / (t.run_s + t.drain_s).max(1e-9)
                )),
            )?;
        }
        writeln!(
            f,
            "{:<13} RSS {}, CPU {}",
            "bench",
            kib(r.bench_rss_kib),
            r.bench_cpu_s.map_or("?".into(), |cpu| format!(
                "{cpu:.1} s ({:.2} cores)",
                cpu / (t.run_s + t.drain_s).max(1e-9)
            )),
        )
    }
}
