//! The final report: one struct, printed for people or as JSON for machines.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::accounting::Delivery;
use crate::floor::Floor;
use crate::latency::LatencySummary;
use crate::presence::SubscribeProbe;
use crate::scenarios::Scenario;
use crate::target::Target;

/// Everything one run measured. Field names are the JSON keys (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: Target,
    pub scenario: Scenario,
    pub run_id: String,
    pub url: String,
    pub users: usize,
    pub rooms: usize,
    pub senders: usize,
    /// Target messages per second per sender; 0 = unlimited.
    pub rate_per_sender: f64,
    /// The deliveries/s the rate was derived from (`--deliveries-per-second`), if any.
    pub deliveries_per_second_target: Option<f64>,
    pub message_size: usize,
    pub in_flight: usize,
    /// Messages each sender posted during setup.
    pub base_messages: usize,
    /// `edits`: the share of changes that toggled a reaction, in percent (the rest edited).
    pub reaction_percent: Option<u8>,
    /// Sockets that opened and subscribed.
    pub connections: usize,
    /// Sockets that failed to open or subscribe, by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Ctrl-C ended the run before `--duration`.
    pub interrupted: bool,
    pub timings: Timings,
    /// `message.send` frames written (`edits`: changes requested over REST).
    pub sent: u64,
    /// Sends acknowledged (`edits`: changes answered 2xx).
    pub acked: u64,
    /// Sends answered with an `error` event (`edits`: changes refused or failed).
    pub failed: u64,
    /// Sends with neither an ack nor an error when the run ended.
    pub unanswered: u64,
    pub duplicate_acks: u64,
    /// `message.new` checked by seq plus `message.updated` checked by rev.
    pub delivery: Delivery,
    pub throughput: Throughput,
    /// `message.send` written → its `message.ack` read, by the sender (`edits`: request
    /// started → answer read).
    pub ack_latency: LatencySummary,
    /// `message.send` written → `message.new` read, by every subscriber, sender included
    /// (`edits`: change request started → its `message.updated` read).
    pub e2e_latency: LatencySummary,
    /// `error` events by code.
    pub errors: BTreeMap<String, u64>,
    /// Sockets the server closed (by close code) or dropped before the run closed them.
    pub closes: BTreeMap<String, u64>,
    pub resources: Resources,
    /// Server (and database) CPU per unit of work, and the `write()` floor.
    pub costs: Costs,
    /// `presence` only: the extra socket's subscribe latency.
    pub subscribe_probe: Option<SubscribeProbe>,
}

/// Seconds per phase. Setup (register, rooms, join, connect) is reported apart from the
/// measured window (run + drain) because registration is argon2-bound and says nothing
/// about chat throughput.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub register_s: f64,
    pub rooms_s: f64,
    pub join_s: f64,
    /// Posting `--base-messages`.
    pub messages_s: f64,
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// Server RSS before the sockets opened.
    pub server_rss_before_kib: Option<u64>,
    /// Server RSS with every socket open, at the end of the run.
    pub server_rss_after_kib: Option<u64>,
    /// (after − before) / connections.
    pub server_rss_per_connection_kib: Option<f64>,
    /// Server CPU time during the measured window, in seconds (2.0 per second = two cores);
    /// with several server processes, their sum.
    pub server_cpu_s: Option<f64>,
    /// With several server processes (a cluster's nodes): each one's CPU time during the
    /// window, by PID, in `--server-pid` order.
    pub per_server_cpu_s: Vec<(u32, f64)>,
    pub bench_rss_kib: Option<u64>,
    pub bench_cpu_s: Option<f64>,
}

/// CPU per unit of work over the measured window (run + drain): the issue's "server CPU per
/// delivery", with the machine's `write()` floor measured in the same run to compare against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Costs {
    /// Messages delivered to subscribers during the window (`message.new` /
    /// `receiveMessage`; acks are not deliveries).
    pub deliveries: u64,
    /// Sends (`edits`: changes) acknowledged during the window.
    pub messages: u64,
    /// Server CPU (user + system, all threads) per delivery, in µs.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server CPU per acknowledged message (`edits`: change), in µs (the ingest figure).
    pub server_cpu_us_per_message: Option<f64>,
    /// Database processes read (`--db-pids` / `--pg`) at the end of the window.
    pub db_processes: Option<usize>,
    /// Their CPU during the window, in seconds.
    pub db_cpu_s: Option<f64>,
    /// Their CPU per 1000 acknowledged messages, in ms.
    pub db_cpu_ms_per_1k_messages: Option<f64>,
    /// `--measure-floor`: the floor measured just before the window …
    pub floor_before: Option<Floor>,
    /// … and just after it.
    pub floor_after: Option<Floor>,
    /// The mean of the two, in ns of CPU per `write()`.
    pub floor_ns_per_write: Option<f64>,
    /// `server_cpu_us_per_delivery` as a multiple of the floor.
    pub server_cpu_per_delivery_in_floors: Option<f64>,
}

/// What [`Costs::compute`] works from.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostInputs {
    pub deliveries: u64,
    pub messages: u64,
    pub server_cpu_s: Option<f64>,
    /// (CPU seconds during the window, processes read).
    pub db_cpu: Option<(f64, usize)>,
    pub floor_before: Option<Floor>,
    pub floor_after: Option<Floor>,
}

impl Costs {
    pub fn compute(inputs: CostInputs) -> Costs {
        let per = |cpu_s: Option<f64>, count: u64, unit: f64| {
            cpu_s
                .filter(|_| count > 0)
                .map(|cpu| cpu * unit / count as f64)
        };
        let server_cpu_us_per_delivery = per(inputs.server_cpu_s, inputs.deliveries, 1e6);
        let floors: Vec<f64> = [inputs.floor_before, inputs.floor_after]
            .iter()
            .flatten()
            .map(|floor| floor.cpu_ns_per_write)
            .collect();
        let floor_ns_per_write =
            (!floors.is_empty()).then(|| floors.iter().sum::<f64>() / floors.len() as f64);
        Costs {
            deliveries: inputs.deliveries,
            messages: inputs.messages,
            server_cpu_us_per_delivery,
            server_cpu_us_per_message: per(inputs.server_cpu_s, inputs.messages, 1e6),
            db_processes: inputs.db_cpu.map(|(_, processes)| processes),
            db_cpu_s: inputs.db_cpu.map(|(cpu, _)| cpu),
            db_cpu_ms_per_1k_messages: per(inputs.db_cpu.map(|(cpu, _)| cpu), inputs.messages, 1e6),
            floor_before: inputs.floor_before,
            floor_after: inputs.floor_after,
            floor_ns_per_write,
            server_cpu_per_delivery_in_floors: server_cpu_us_per_delivery
                .zip(floor_ns_per_write)
                .filter(|(_, floor)| *floor > 0.0)
                .map(|(per_delivery, floor)| per_delivery * 1000.0 / floor),
        }
    }
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
        let words = Words::of(self.scenario);
        let rate = if let Some(probe) = &self.subscribe_probe {
            format!("none sending, {} subscribe probes", probe.latency.count)
        } else if self.senders == 0 {
            "none sending".to_owned()
        } else if self.rate_per_sender > 0.0 {
            match self.deliveries_per_second_target {
                Some(target) => format!(
                    "{:.3} msg/s each for {target:.0} deliveries/s",
                    self.rate_per_sender
                ),
                None => format!("{} {}/s each", self.rate_per_sender, words.per_second),
            }
        } else {
            format!("flat out, {} in flight each", self.in_flight)
        };
        let rate = match self.reaction_percent {
            Some(percent) => format!(
                "{rate}, {percent} % reaction toggles, the rest edits of {} messages each",
                self.base_messages
            ),
            None => rate,
        };
        writeln!(
            f,
            "nebula-bench {} → {} ({}): {} users, {} rooms, {} senders ({rate}), {}-byte messages{}",
            self.scenario.name(),
            self.target.name(),
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
        let messages = if self.base_messages > 0 {
            format!(", messages {:.1}", t.messages_s)
        } else {
            String::new()
        };
        writeln!(
            f,
            "{:<13} {:.1} s (register {:.1}, rooms {:.1}, join {:.1}{messages}, connect {:.1})",
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
            words.sent, self.sent, self.acked, self.failed, self.unanswered, self.duplicate_acks
        )?;
        let d = &self.delivery;
        writeln!(
            f,
            "{:<13} {} of {} expected  missing {}  duplicates {}  out-of-order {}  → {}",
            words.delivered,
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
        latency_line(f, words.ack_latency, &self.ack_latency)?;
        latency_line(f, words.e2e_latency, &self.e2e_latency)?;
        if let Some(probe) = &self.subscribe_probe {
            latency_line(f, "subscribe", &probe.latency)?;
            writeln!(
                f,
                "{:<13} largest `subscribed` frame {:.1} KiB (lists the online members)",
                "",
                probe.subscribed_bytes as f64 / 1024.0
            )?;
        }
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
                        " ({per:.1} KiB per connection{})",
                        if per < 0.0 {
                            ": negative, the server gave back memory of an earlier run; \
                             restart it before measuring memory"
                        } else {
                            ""
                        }
                    )),
                r.server_cpu_s.map_or("?".into(), |cpu| format!(
                    "{cpu:.1} s ({:.2} cores)",
                    cpu / (t.run_s + t.drain_s).max(1e-9)
                )),
            )?;
        }
        if !r.per_server_cpu_s.is_empty() {
            let window = (t.run_s + t.drain_s).max(1e-9);
            let each: Vec<String> = r
                .per_server_cpu_s
                .iter()
                .map(|(pid, cpu)| format!("{pid}: {cpu:.1} s ({:.2} cores)", cpu / window))
                .collect();
            writeln!(f, "{:<13} CPU {}", "per node", each.join(", "))?;
        }
        self.fmt_costs(f)?;
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

/// What the report's lines call things: messages sent, or changes made (`edits`).
struct Words {
    sent: &'static str,
    one: &'static str,
    per_second: &'static str,
    delivered: &'static str,
    ack_latency: &'static str,
    e2e_latency: &'static str,
}

impl Words {
    fn of(scenario: Scenario) -> Words {
        if scenario.makes_changes() {
            Words {
                sent: "changes",
                one: "change",
                per_second: "changes",
                delivered: "updates (rev)",
                ack_latency: "change ack",
                e2e_latency: "change→update",
            }
        } else {
            Words {
                sent: "messages",
                one: "message",
                per_second: "msg",
                delivered: "deliveries",
                ack_latency: "ack latency",
                e2e_latency: "end-to-end",
            }
        }
    }
}

impl Report {
    /// The `cost`, `database` and `floor` lines.
    fn fmt_costs(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.costs;
        if c.server_cpu_us_per_delivery.is_some() || c.server_cpu_us_per_message.is_some() {
            let mut parts = Vec::new();
            if let Some(per) = c.server_cpu_us_per_delivery {
                let floors = c
                    .server_cpu_per_delivery_in_floors
                    .map_or(String::new(), |x| format!(" = {x:.2}× the write() floor"));
                parts.push(format!(
                    "{per:.2} µs per delivery ({} deliveries){floors}",
                    c.deliveries
                ));
            }
            if let Some(per) = c.server_cpu_us_per_message {
                parts.push(format!(
                    "{per:.1} µs per acked {}",
                    Words::of(self.scenario).one
                ));
            }
            writeln!(f, "{:<13} server CPU {}", "cost", parts.join(", "))?;
        }
        if let Some(cpu) = c.db_cpu_s {
            writeln!(
                f,
                "{:<13} CPU {cpu:.2} s in {} processes{}",
                "database",
                c.db_processes.unwrap_or(0),
                c.db_cpu_ms_per_1k_messages
                    .map_or(String::new(), |ms| format!(
                        ", {ms:.1} ms per 1k {}s",
                        Words::of(self.scenario).one
                    )),
            )?;
        }
        if let Some(floor) = c.floor_ns_per_write {
            let show = |floor: &Option<Floor>| {
                floor.map_or("-".into(), |floor| {
                    format!("{:.2}", floor.cpu_ns_per_write / 1000.0)
                })
            };
            let sample = c.floor_before.or(c.floor_after);
            writeln!(
                f,
                "{:<13} write() of {} B to loopback: {:.2} µs CPU (before {}, after {}; {} pairs, {} writes{})",
                "floor",
                sample.map_or(0, |s| s.frame_bytes),
                floor / 1000.0,
                show(&c.floor_before),
                show(&c.floor_after),
                sample.map_or(0, |s| s.pairs),
                sample.map_or(0, |s| s.writes),
                sample
                    .and_then(|s| s.system_share)
                    .map_or(String::new(), |share| format!(
                        ", {:.0} % in the kernel",
                        share * 100.0
                    )),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(ns: f64) -> Floor {
        Floor {
            cpu_ns_per_write: ns,
            cpu_ns_min: ns,
            cpu_ns_max: ns,
            wall_ns_per_write: ns * 1.5,
            system_share: Some(0.9),
            reader_wakeups_per_write: Some(0.5),
            writes: 1000,
            pairs: 10,
            frame_bytes: 150,
            cpu: Some(0),
        }
    }

    #[test]
    fn cpu_per_delivery_and_per_message() {
        let costs = Costs::compute(CostInputs {
            deliveries: 400_000,
            messages: 400,
            server_cpu_s: Some(4.0),
            db_cpu: Some((0.2, 12)),
            floor_before: Some(floor(2_000.0)),
            floor_after: Some(floor(3_000.0)),
        });
        assert_eq!(costs.server_cpu_us_per_delivery, Some(10.0));
        assert_eq!(costs.server_cpu_us_per_message, Some(10_000.0));
        assert_eq!(costs.db_cpu_ms_per_1k_messages, Some(500.0));
        assert_eq!(costs.db_processes, Some(12));
        assert_eq!(costs.floor_ns_per_write, Some(2_500.0));
        assert_eq!(costs.server_cpu_per_delivery_in_floors, Some(4.0));
    }

    #[test]
    fn nothing_to_divide_by_gives_no_figure() {
        let costs = Costs::compute(CostInputs {
            server_cpu_s: Some(1.0),
            floor_after: Some(floor(1_000.0)),
            ..CostInputs::default()
        });
        assert_eq!(costs.server_cpu_us_per_delivery, None);
        assert_eq!(costs.server_cpu_us_per_message, None);
        assert_eq!(costs.server_cpu_per_delivery_in_floors, None);
        assert_eq!(costs.floor_ns_per_write, Some(1_000.0));
        let without_pid = Costs::compute(CostInputs {
            deliveries: 10,
            messages: 1,
            ..CostInputs::default()
        });
        assert_eq!(without_pid.server_cpu_us_per_delivery, None);
        assert_eq!(without_pid.db_cpu_s, None);
    }
}
