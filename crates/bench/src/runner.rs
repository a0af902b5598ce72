//! One run, phase by phase: setup, connect, send (or hold), drain, close, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounting::Delivery;
use crate::client::{ConnectSpec, Connection, Shared};
use crate::editor::{EditPlan, change_until};
use crate::floor::{self, Floor};
use crate::frames::filler_content;
use crate::live::{Counts, Live};
use crate::options::Options;
use crate::presence::{self, SubscribeProbe};
use crate::progress::Progress;
use crate::reader::ReaderOutcome;
use crate::report::{CostInputs, Costs, Report, Resources, Throughput, Timings};
use crate::scenarios::Scenario;
use crate::sender::{Finished, SendPlan, send_until};
use crate::setup::{Api, World};
use crate::system::{self, Process};

/// How often the drain re-checks whether everything arrived.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Runs one benchmark. `stop` resolving (Ctrl-C in the binary) ends the sending phase early;
/// the run then drains and reports as usual. Setup cannot be interrupted into a report:
/// nothing has been measured yet.
pub async fn run(
    options: Options,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Report> {
    options.validate()?;
    let interrupted = CancellationToken::new();
    let _watch_stop = AbortOnDrop(tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            stop.await;
            interrupted.cancel();
        }
    }));
    let progress = Progress::new(options.progress);
    let endpoints = options.ws_endpoints()?;

    let api = options.target.api(&options)?;
    let setup_started = Instant::now();
    let (world, setup_times) = tokio::select! {
        prepared = options.target.prepare(api.as_ref(), &options, &progress) => prepared?,
        () = interrupted.cancelled() => bail!("interrupted during setup"),
    };
    let server = Servers(
        options
            .server_pids
            .iter()
            .copied()
            .map(Process::Pid)
            .collect(),
    );
    for pid in &options.server_pids {
        if Process::Pid(*pid).cpu_seconds().is_none() {
            bail!("--server-pid {pid}: no such process readable in /proc");
        }
    }
    let server_rss_before = server.rss_kib();

    let live = Arc::new(Live::new(
        options.rooms,
        world.messages.iter().flatten().copied(),
    )?);
    let shared = Shared {
        target: options.target,
        api: api.clone(),
        in_flight: options.in_flight,
        live: live.clone(),
        closing: CancellationToken::new(),
    };
    let connect_started = Instant::now();
    let (connections, connect_failures) = tokio::select! {
        opened = connect_all(&endpoints, &world, &options, &shared, &progress) => opened,
        () = interrupted.cancelled() => bail!("interrupted while connecting"),
    };
    if connections.is_empty() {
        bail!("no WebSocket could be opened: {connect_failures:?}");
    }
    // Everyone subscribing makes the server announce each arrival to the room: N(N−1)/2
    // presence events in a room of N. The measured window starts once they are delivered.
    tokio::select! {
        () = settle(&live) => {}
        () = interrupted.cancelled() => bail!("interrupted while connecting"),
    }
    let connect_time = connect_started.elapsed();
    let setup_time = setup_started.elapsed();

    let floor_before = measure_floor(&options, &progress, "before").await?;
    let before = Snapshot::take(&server, &options, &live);
    let run_started = Instant::now();
    let watch_done = CancellationToken::new();
    let watcher = progress.watch_run(live.clone(), options.duration, watch_done.clone());
    let stop_sending = CancellationToken::new();
    let editors = api.clone().filter(|_| options.scenario.makes_changes());
    let sending = start_senders(connections, &world, &options, editors, &live, &stop_sending)?;
    let (was_interrupted, subscribe_probe) = if options.scenario == Scenario::Presence {
        let probe_user = &world.accounts[options.users];
        let room = &world.rooms[options.layout().room_of(options.users)];
        tokio::select! {
            probed = presence::probe(api.as_ref(), &probe_user.token, room, options.probes) => {
                (false, Some(probed?))
            }
            () = interrupted.cancelled() => (true, None),
        }
    } else {
        tokio::select! {
            () = tokio::time::sleep(options.duration) => (false, None),
            () = interrupted.cancelled() => (true, None),
        }
    };
    if was_interrupted {
        progress.note("interrupted: stopping senders, draining, then reporting");
    }
    stop_sending.cancel();
    let mut send_errors = BTreeMap::new();
    let mut connections = Vec::with_capacity(sending.len());
    for task in sending {
        let (connection, errors) = task.await?;
        for (error, count) in errors {
            *send_errors.entry(error).or_insert(0) += count;
        }
        connections.push(connection);
    }
    let run_time = run_started.elapsed();

    let drain_started = Instant::now();
    let drained = drain(&live, &connections, options.drain_timeout).await;
    let drain_time = drain_started.elapsed();
    let after = Snapshot::take(&server, &options, &live);
    let server_rss_after = server.rss_kib();
    watch_done.cancel();
    let _ = watcher.await;
    let floor_after = measure_floor(&options, &progress, "after").await?;

    let resources = Resources {
        server_rss_before_kib: server_rss_before,
        server_rss_after_kib: server_rss_after,
        server_rss_per_connection_kib: None,
        server_cpu_s: difference(after.server_cpu, before.server_cpu),
        per_server_cpu_s: options
            .server_pids
            .iter()
            .zip(after.per_server_cpu.iter().zip(&before.per_server_cpu))
            .filter(|_| options.server_pids.len() > 1)
            .filter_map(|(pid, (after, before))| Some((*pid, difference(*after, *before)?)))
            .collect(),
        bench_rss_kib: Process::This.rss_kib(),
        bench_cpu_s: difference(after.bench_cpu, before.bench_cpu),
    };
    let costs = Costs::compute(CostInputs {
        deliveries: after.counts.delivered - before.counts.delivered,
        messages: after.counts.acked - before.counts.acked,
        server_cpu_s: resources.server_cpu_s,
        db_cpu: after
            .db_cpu
            .zip(before.db_cpu)
            .map(|((after, processes), (before, _))| (after - before, processes)),
        floor_before,
        floor_after,
    });

    shared.closing.cancel();
    let opened = connections.len();
    let outcomes = join_all(connections.into_iter().map(Connection::close)).await;

    let timings = Timings {
        register_s: setup_times.register.as_secs_f64(),
        rooms_s: setup_times.rooms.as_secs_f64(),
        join_s: setup_times.join.as_secs_f64(),
        messages_s: setup_times.messages.as_secs_f64(),
        connect_s: connect_time.as_secs_f64(),
        setup_s: setup_time.as_secs_f64(),
        run_s: run_time.as_secs_f64(),
        drain_s: drain_time.as_secs_f64(),
        drained,
    };
    let measured = Measured {
        timings,
        opened,
        connect_failures,
        send_errors,
        interrupted: was_interrupted,
        resources,
        costs,
        subscribe_probe,
    };
    Ok(build_report(&options, &live, outcomes, measured))
}

/// Waits until no presence (or other non-message) frame has arrived for `SETTLED`, at most
/// `SETTLE_LIMIT`.
async fn settle(live: &Live) {
    const SETTLED: Duration = Duration::from_secs(1);
    const SETTLE_LIMIT: Duration = Duration::from_secs(120);
    let started = Instant::now();
    let mut seen = live.other.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < SETTLED && started.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = live.other.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
}

/// CPU clocks and counters at one edge of the measured window.
struct Snapshot {
    server_cpu: Option<f64>,
    /// Each server process's CPU clock, in `--server-pid` order.
    per_server_cpu: Vec<Option<f64>>,
    bench_cpu: Option<f64>,
    db_cpu: Option<(f64, usize)>,
    counts: Counts,
}

impl Snapshot {
    fn take(server: &Servers, options: &Options, live: &Live) -> Snapshot {
        let per_server_cpu: Vec<Option<f64>> = server
            .0
            .iter()
            .map(|process| process.cpu_seconds())
            .collect();
        Snapshot {
            server_cpu: sum(&per_server_cpu),
            per_server_cpu,
            bench_cpu: Process::This.cpu_seconds(),
            db_cpu: system::db_cpu_seconds(&options.db),
            counts: live.counts(),
        }
    }
}

/// The server's processes: one, every node of a cluster, or none (not measured).
struct Servers(Vec<Process>);

impl Servers {
    /// Their summed RSS, if every one is readable.
    fn rss_kib(&self) -> Option<u64> {
        let each: Vec<Option<f64>> = self
            .0
            .iter()
            .map(|process| process.rss_kib().map(|kib| kib as f64))
            .collect();
        sum(&each).map(|kib| kib as u64)
    }
}

/// The sum, if there is at least one value and none is missing.
fn sum(values: &[Option<f64>]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.iter().copied().sum()
}

fn difference(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    after.zip(before).map(|(after, before)| after - before)
}

/// Measures the `write()` floor if the run asked for it, on a thread that may block.
async fn measure_floor(
    options: &Options,
    progress: &Progress,
    when: &str,
) -> anyhow::Result<Option<Floor>> {
    let Some(floor) = options.floor else {
        return Ok(None);
    };
    progress.note(&format!(
        "measuring the write() floor ({when} the window) …"
    ));
    let measured = tokio::task::spawn_blocking(move || floor::measure(&floor)).await??;
    Ok(Some(measured))
}

/// Opens every user's socket, a bounded number of handshakes at a time.
async fn connect_all(
    endpoints: &[String],
    world: &World,
    options: &Options,
    shared: &Shared,
    progress: &Progress,
) -> (Vec<Connection>, BTreeMap<String, u64>) {
    let layout = options.layout();
    let bar = progress.phase("connect", options.users);
    let results: Vec<anyhow::Result<Connection>> = stream::iter(0..options.users)
        .map(|index| {
            // Round-robin over the nodes. A room's members are users r, r + rooms, …, so
            // they spread over the nodes when the room count and the node count share no
            // factor (3 nodes and 30 rooms would put each room on one node).
            let node = index % endpoints.len();
            let spec = ConnectSpec {
                index,
                room: layout.room_of(index),
                node,
                room_id: world.rooms[layout.room_of(index)].clone(),
                token: world.accounts[index].token.clone(),
            };
            let bar = &bar;
            async move {
                let opened = Connection::open(&endpoints[node], spec, shared).await;
                bar.inc();
                opened
            }
        })
        .buffer_unordered(options.connect_concurrency)
        .collect()
        .await;
    bar.finish();
    let mut connections = Vec::with_capacity(results.len());
    let mut failures = BTreeMap::new();
    for result in results {
        match result {
            Ok(connection) => connections.push(connection),
            Err(err) => *failures.entry(format!("{err:#}")).or_insert(0) += 1,
        }
    }
    connections.sort_by_key(|connection| connection.index);
    (connections, failures)
}

/// Spawns a sending task for each sender (`message.send` on its socket, or REST changes
/// for `edits`); other connections pass through unchanged.
fn start_senders(
    connections: Vec<Connection>,
    world: &World,
    options: &Options,
    api: Option<Api>,
    live: &Arc<Live>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<Finished>>> {
    let layout = options.layout();
    let content = filler_content(options.message_size);
    let interval = options.send_interval();
    let start = tokio::time::Instant::now();
    let senders = options.senders.max(1) as u32;
    let mut tasks = Vec::with_capacity(connections.len());
    for connection in connections {
        if !layout.is_sender(connection.index) {
            tasks.push(tokio::spawn(async move { (connection, BTreeMap::new()) }));
            continue;
        }
        let offset = interval.map_or(Duration::ZERO, |interval| {
            interval * (connection.index as u32 % senders) / senders
        });
        let (live, stop) = (live.clone(), stop.clone());
        if let Some(api) = &api {
            let plan = EditPlan {
                api: api.clone(),
                token: world.accounts[connection.index].token.clone(),
                room_id: world.rooms[connection.room].clone(),
                messages: world.messages[connection.index]
                    .iter()
                    .filter_map(|id| Some((*id, live.changes.slot(id)?)))
                    .collect(),
                interval,
                first_at: start + offset,
                in_flight: options.in_flight,
                reaction_percent: options.reaction_percent,
                message_size: options.message_size,
            };
            tasks.push(tokio::spawn(change_until(connection, plan, live, stop)));
            continue;
        }
        let template = options.target.send_template(
            &world.rooms[connection.room],
            &content,
            connection.index,
        )?;
        let plan = SendPlan {
            template,
            interval,
            first_at: start + offset,
        };
        tasks.push(tokio::spawn(send_until(connection, plan, live, stop)));
    }
    Ok(tasks)
}

/// Waits until every send (or change) is answered and every open subscriber has reached its
/// room's highest acknowledged seq and received as many `message.updated` as its room had
/// changes acknowledged, or `timeout`. True if everything arrived. (A socket the server
/// closed will never catch up; the report lists it under closes and its gaps as missing.)
async fn drain(live: &Live, connections: &[Connection], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = live.counts();
        let answered = counts.acked + counts.failed >= counts.sent;
        if answered
            && connections
                .iter()
                .filter(|connection| connection.is_open())
                .all(|connection| {
                    connection.seen() >= live.room_acked(connection.room)
                        && connection.updates_seen() >= live.room_changes(connection.room)
                })
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// What `run` measured besides the live counters and the readers' outcomes.
struct Measured {
    timings: Timings,
    opened: usize,
    connect_failures: BTreeMap<String, u64>,
    send_errors: BTreeMap<String, u64>,
    interrupted: bool,
    resources: Resources,
    costs: Costs,
    subscribe_probe: Option<SubscribeProbe>,
}

fn build_report(
    options: &Options,
    live: &Live,
    outcomes: Vec<ReaderOutcome>,
    measured: Measured,
) -> Report {
    // A room's last seq: the highest acked, or delivered to anyone, whichever is higher.
    let mut room_last: Vec<_> = (0..options.rooms)
        .map(|room| live.room_acked(room))
        .collect();
    for outcome in &outcomes {
        if let Some(last) = room_last.get_mut(outcome.room) {
            *last = (*last).max(outcome.tracker.highest());
        }
    }
    let mut delivery = Delivery::default();
    let mut errors = measured.send_errors;
    let mut closes = BTreeMap::new();
    let mut duplicate_acks = 0;
    for outcome in outcomes {
        let last = room_last.get(outcome.room).copied().unwrap_or(0);
        delivery.add(outcome.tracker.delivery(last));
        delivery.add(outcome.revs.delivery_of(live.room_changes(outcome.room)));
        duplicate_acks += outcome.duplicate_acks;
        for (code, count) in outcome.errors {
            *errors.entry(code).or_insert(0) += count;
        }
        if let Some(ended) = outcome.ended_early {
            *closes.entry(ended).or_insert(0) += 1;
        }
    }
    let counts = live.counts();
    let timings = measured.timings;
    let window = (timings.run_s + timings.drain_s).max(1e-9);
    let mut resources = measured.resources;
    resources.server_rss_per_connection_kib = resources
        .server_rss_after_kib
        .zip(resources.server_rss_before_kib)
        .filter(|_| measured.opened > 0)
        .map(|(after, before)| (after as f64 - before as f64) / measured.opened as f64);
    Report {
        target: options.target,
        scenario: options.scenario,
        run_id: options.run_id.clone(),
        url: options.url.clone(),
        users: options.users,
        rooms: options.rooms,
        senders: options.senders,
        rate_per_sender: options.rate,
        deliveries_per_second_target: options.deliveries_per_second,
        message_size: options.message_size,
        in_flight: options.in_flight,
        base_messages: options.base_messages,
        reaction_percent: options
            .scenario
            .makes_changes()
            .then_some(options.reaction_percent),
        connections: measured.opened,
        connect_failures: measured.connect_failures,
        interrupted: measured.interrupted,
        timings,
        sent: counts.sent,
        acked: counts.acked,
        failed: counts.failed,
        unanswered: counts.sent.saturating_sub(counts.acked + counts.failed),
        duplicate_acks,
        delivery,
        throughput: Throughput {
            sent_per_s: counts.sent as f64 / timings.run_s.max(1e-9),
            acked_per_s: counts.acked as f64 / window,
            delivered_per_s: counts.delivered as f64 / window,
        },
        ack_latency: live.ack_latency.summary(),
        e2e_latency: live.e2e_latency.summary(),
        errors,
        closes,
        resources,
        costs: measured.costs,
        subscribe_probe: measured.subscribe_probe,
    }
}

/// Aborts a background task when the run returns, however it returns.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
