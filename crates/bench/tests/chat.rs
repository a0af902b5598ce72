//! The simulator against the real server, in-process on port 0: a short `chat` run must see
//! every message acknowledged and delivered exactly once, in order.

use std::time::Duration;

use common::spawn_server;
use nebula_bench::floor::FloorOptions;
use nebula_bench::{Options, Scenario};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chat_run_delivers_everything_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, stop) = spawn_server(&dir).await;

    let mut options = Options::new(url, Scenario::Chat);
    options.users = 9;
    options.rooms = 3;
    options.senders = 4;
    options.rate = 20.0;
    options.duration = Duration::from_secs(3);
    options.message_size = 64;
    // The server runs in this process: its "server" CPU includes the simulator's, which is
    // fine for checking that the figures are there.
    options.server_pids = vec![std::process::id()];
    options.floor = Some(FloorOptions {
        pairs: 4,
        writes: 5_000,
        ..FloorOptions::default()
    });
    let report = nebula_bench::run(options, std::future::pending())
        .await
        .expect("the run completes");
    println!("{report}");

    assert_eq!(report.connections, 9, "{report}");
    assert!(
        report.sent >= 100,
        "senders should manage ~240 sends: {report}"
    );
    assert_eq!(report.acked, report.sent, "{report}");
    assert_eq!((report.failed, report.unanswered), (0, 0), "{report}");
    let delivery = report.delivery;
    assert_eq!(delivery.missing, 0, "{report}");
    assert_eq!(delivery.duplicates, 0, "{report}");
    assert_eq!(delivery.out_of_order, 0, "{report}");
    // Every room has 3 subscribers and every message reaches all of them.
    assert_eq!(delivery.expected, report.sent * 3, "{report}");
    assert_eq!(delivery.delivered, delivery.expected, "{report}");
    assert_eq!(report.ack_latency.count, report.acked);
    assert_eq!(report.e2e_latency.count, delivery.delivered);
    assert!(
        report.errors.is_empty() && report.closes.is_empty(),
        "{report}"
    );
    assert!(report.timings.drained && report.is_clean(), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json().expect("json")).expect("valid JSON");
    assert_eq!(json["scenario"], "chat");
    assert_eq!(json["delivery"]["missing"], 0);
    let costs = report.costs;
    assert_eq!(costs.deliveries, delivery.delivered, "{report}");
    assert!(
        costs.server_cpu_us_per_delivery.is_some_and(|us| us > 0.0),
        "{report}"
    );
    assert!(
        costs.floor_before.is_some() && costs.floor_after.is_some(),
        "{report}"
    );
    assert!(
        costs.server_cpu_per_delivery_in_floors.is_some(),
        "{report}"
    );
    assert!(json["costs"]["floor_ns_per_write"].is_number());

    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_measures_one_more_subscribe() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, stop) = spawn_server(&dir).await;

    let mut options = Options::new(url, Scenario::Presence);
    options.users = 6;
    options.probes = 3;
    let report = nebula_bench::run(options, std::future::pending())
        .await
        .expect("the run completes");
    println!("{report}");

    assert_eq!(report.connections, 6, "{report}");
    let probe = report.subscribe_probe.expect("a subscribe probe");
    assert_eq!(probe.latency.count, 3, "{report}");
    // The answer lists the six online members (and the probe itself).
    assert!(probe.subscribed_bytes > 6 * 40, "{report}");
    assert!(report.is_clean(), "{report}");

    let _ = stop.send(());
}
