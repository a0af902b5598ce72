//! Broker mode: the relay publishes to RabbitMQ and a notifier consumer (in this process, on
//! the same database) pushes. Events arrive exactly once and in order per room, also across
//! a broker outage.

use std::collections::BTreeMap;

use nebula_notifier::PushStore;
use reqwest::StatusCode;
use uuid::Uuid;

use super::push_endpoint::PushEndpoint;
use super::rabbit_node::RabbitNode;
use super::{
    RunningConsumer, SUBJECT, WAIT, broker, eventually, metric, outbox_rows, shared_broker,
    store_subscription, unique_queue, wait_outbox_empty,
};
use crate::helpers::{Backend, TestApp, services_required};
use crate::on_both_backends;

on_both_backends!(changes_arrive_once_and_in_order_per_room);

/// `(room, "member.joined"/"member.left", username)` per push, in arrival order.
fn arrivals(endpoint: &PushEndpoint) -> Vec<(Uuid, String, String)> {
    endpoint
        .received()
        .into_iter()
        .map(|push| {
            (
                push.payload.room_id,
                push.payload.kind,
                push.payload.user.username,
            )
        })
        .collect()
}

/// The arrivals of each room, in order.
fn per_room(arrivals: &[(Uuid, String, String)]) -> BTreeMap<Uuid, Vec<(String, String)>> {
    let mut rooms: BTreeMap<Uuid, Vec<(String, String)>> = BTreeMap::new();
    for (room, kind, user) in arrivals {
        rooms
            .entry(*room)
            .or_default()
            .push((kind.clone(), user.clone()));
    }
    rooms
}

fn expected(steps: &[(&str, &str)]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|(kind, user)| (format!("member.{kind}"), (*user).to_owned()))
        .collect()
}

async fn changes_arrive_once_and_in_order_per_room(backend: Backend) {
    let Some(url) = shared_broker("changes_arrive_once_and_in_order_per_room") else {
        return;
    };
    let queue = unique_queue();
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| broker(config, &url, &queue)).await;
    let store = PushStore::connect(&app.database_url, 4).await.unwrap();
    let consumer = RunningConsumer::start(&url, &queue, store.clone(), &vapid);
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;

    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let lobby = bob.create_room("Lobby", false).await;
    let den = bob.create_room("Den", false).await;
    let browser = endpoint.new_browser();
    store_subscription(&store, &bob, &browser).await;

    // Interleaved changes in two rooms, as fast as the API takes them.
    for (who, room, join) in [
        (&alice, lobby.id, true),
        (&carol, den.id, true),
        (&carol, lobby.id, true),
        (&alice, lobby.id, false),
        (&carol, den.id, false),
        (&alice, den.id, true),
        (&carol, lobby.id, false),
        (&alice, lobby.id, true),
    ] {
        let status = if join {
            who.join(room).await.status
        } else {
            who.leave(room).await.status
        };
        assert!(status.is_success(), "{status}");
    }
    endpoint.wait_for_pushes(8, WAIT).await;
    wait_outbox_empty(&app).await;

    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    let rooms = per_room(&arrivals(&endpoint));
    assert_eq!(
        rooms[&lobby.id],
        expected(&[
            ("joined", "alice"),
            ("joined", "carol"),
            ("left", "alice"),
            ("left", "carol"),
            ("joined", "alice"),
        ])
    );
    assert_eq!(
        rooms[&den.id],
        expected(&[("joined", "carol"), ("left", "carol"), ("joined", "alice")])
    );
    let health: serde_json::Value = app.get("/health").await.json();
    assert_eq!(health["checks"]["broker"], "ok", "{health}");
    consumer.stop(&url).await;
    store.close().await;
}

/// The broker stops while members come and go: the changes still succeed, their events wait
/// in the outbox, and after the restart every one of them arrives exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_delays_notifications_but_loses_none() {
    let mut node = match RabbitNode::start().await {
        Ok(node) => node,
        Err(why) => {
            assert!(!services_required(), "cannot start a RabbitMQ node: {why}");
            eprintln!("skipped a_broker_outage_delays_notifications_but_loses_none: {why}");
            return;
        }
    };
    let (url, queue) = (node.url(), unique_queue());
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(Backend::Sqlite, |config| broker(config, &url, &queue)).await;
    let store = PushStore::connect(&app.database_url, 4).await.unwrap();
    let consumer = RunningConsumer::start(&url, &queue, store.clone(), &vapid);
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let bob = app.register("bob").await;
    let room = bob.create_room("Lobby", false).await;
    let browser = endpoint.new_browser();
    store_subscription(&store, &bob, &browser).await;
    let mut members = Vec::new();
    for name in ["alice", "carol", "dave"] {
        members.push(app.register(name).await);
    }

    assert_eq!(members[0].join(room.id).await.status, StatusCode::CREATED);
    endpoint.wait_for_pushes(1, WAIT).await;

    node.stop().await;
    for member in &members[1..] {
        assert_eq!(member.join(room.id).await.status, StatusCode::CREATED);
    }
    assert_eq!(
        members[0].leave(room.id).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(outbox_rows(&app.database_url).await.len(), 3);
    // The gauge is process-wide and other tests set it too: wait to see this relay's value.
    eventually("a backlog on /metrics", WAIT, || async {
        metric(&app, "nebula_outbox_backlog")
            .await
            .is_some_and(|rows| rows > 0.0)
    })
    .await;
    eventually("/health to report the broker down", WAIT, || async {
        let health: serde_json::Value = app.get("/health").await.json();
        health["status"] == "degraded"
    })
    .await;
    assert_eq!(endpoint.received().len(), 1, "nothing went out meanwhile");

    node.boot().await.expect("the broker restarts");
    endpoint.wait_for_pushes(4, WAIT).await;
    wait_outbox_empty(&app).await;
    // A late duplicate would have been pushed by now: the consumer has caught up.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    let arrivals = arrivals(&endpoint);
    let steps: Vec<_> = arrivals
        .iter()
        .map(|(_, kind, user)| (kind.clone(), user.clone()))
        .collect();
    assert_eq!(
        steps,
        expected(&[
            ("joined", "alice"),
            ("joined", "carol"),
            ("joined", "dave"),
            ("left", "alice"),
        ])
    );
    let event_ids: std::collections::BTreeSet<_> = endpoint
        .received()
        .iter()
        .map(|push| push.payload.event_id)
        .collect();
    assert_eq!(event_ids.len(), 4, "each event exactly once");
    eventually("/health to report the broker back", WAIT, || async {
        let health: serde_json::Value = app.get("/health").await.json();
        health["checks"]["broker"] == "ok"
    })
    .await;
    consumer.stop(&url).await;
    store.close().await;
    node.stop().await;
}
