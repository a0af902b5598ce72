//! The `edits` scenario against the real server, in-process on port 0: every edit and
//! reaction toggle is acknowledged and reaches every subscriber of its room once, as
//! `message.updated` in growing `rev` order. (That the rev check catches reordered and
//! repeated revs is a unit test of the tracker: `accounting::revs_may_skip_but_must_grow`.)

use std::time::Duration;

use common::spawn_server;
use nebula_bench::{Options, Scenario, Target};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_edits_run_delivers_every_change_in_rev_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, stop) = spawn_server(&dir).await;

    let mut options = Options::new(url, Scenario::Edits);
    options.users = 6;
    options.rooms = 2;
    options.senders = 4;
    options.rate = 15.0;
    options.in_flight = 2;
    options.base_messages = 3;
    options.duration = Duration::from_secs(3);
    // The server runs in this process: its "server" CPU includes the simulator's, which is
    // fine for checking that the figures are there.
    options.server_pids = vec![std::process::id()];
    let report = nebula_bench::run(options, std::future::pending())
        .await
        .expect("the run completes");
    println!("{report}");

    assert_eq!(report.connections, 6, "{report}");
    assert!(
        report.sent >= 100,
        "senders should manage ~180 changes: {report}"
    );
    assert_eq!(report.acked, report.sent, "{report}");
    assert_eq!((report.failed, report.unanswered), (0, 0), "{report}");
    let delivery = report.delivery;
    assert_eq!(
        (delivery.missing, delivery.duplicates, delivery.out_of_order),
        (0, 0, 0),
        "{report}"
    );
    // Each room has 3 subscribers and every change reaches all of them.
    assert_eq!(delivery.expected, report.acked * 3, "{report}");
    assert_eq!(delivery.delivered, delivery.expected, "{report}");
    assert_eq!(report.ack_latency.count, report.acked, "{report}");
    // Every update was paired with the change that made it.
    assert_eq!(report.e2e_latency.count, delivery.delivered, "{report}");
    assert!(
        report.errors.is_empty() && report.closes.is_empty(),
        "{report}"
    );
    assert!(report.timings.drained && report.is_clean(), "{report}");
    assert_eq!(report.reaction_percent, Some(50));
    assert!(
        report
            .costs
            .server_cpu_us_per_message
            .is_some_and(|us| us > 0.0),
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains("changes") && text.contains("change→update"),
        "{text}"
    );

    let _ = stop.send(());
}

#[tokio::test]
async fn edits_refuse_the_socketio_peer() {
    let mut options = Options::new("http://127.0.0.1:4100", Scenario::Edits);
    options.target = Target::Socketio;
    let refused = nebula_bench::run(options, std::future::pending())
        .await
        .expect_err("the peer has no edits");
    assert!(
        refused.to_string().contains("needs --target nebula"),
        "{refused}"
    );
}
