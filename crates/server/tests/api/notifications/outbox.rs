//! The outbox itself: what each membership path writes, in the change's own transaction,
//! and one relay at a time on a shared PostgreSQL.

use std::collections::BTreeSet;

use nebula_wire::notify::MemberChange;
use nebula_wire::{MemberList, Room};
use reqwest::StatusCode;
use serde_json::json;

use super::push_endpoint::PushEndpoint;
use super::{SUBJECT, WAIT, embedded, eventually, outbox_rows, subscribe, wait_outbox_empty};
use crate::helpers::{Backend, Session, TestApp, start_server, test_config};
use crate::on_both_backends;

on_both_backends!(
    every_membership_change_writes_exactly_one_event,
    a_failed_outbox_write_undoes_the_membership_change,
    a_direct_message_and_its_outbox_row_commit_together,
);

/// Nothing listens on port 1: the relay never gets the rows out, so the test sees them.
const UNREACHABLE_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

async fn every_membership_change_writes_exactly_one_event(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.rabbit_url = Some(UNREACHABLE_BROKER.to_owned());
    })
    .await;
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    let room = bob.create_room("Lobby", false).await;
    assert!(
        outbox_rows(&app.database_url).await.is_empty(),
        "creating a room tells nobody"
    );

    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    assert_eq!(alice.join(room.id).await.status, StatusCode::OK);
    carol
        .leave(room.id)
        .await
        .assert_problem(404, "not_a_member");
    // An owner adds by username and by id.
    assert_eq!(bob.add(room.id, "carol").await.status, StatusCode::CREATED);
    let by_id = bob
        .post(
            &format!("/rooms/{}/members", room.id),
            json!({"user_id": dave.user.id}),
        )
        .await;
    assert_eq!(by_id.status, StatusCode::CREATED);
    assert_eq!(alice.leave(room.id).await.status, StatusCode::NO_CONTENT);
    // The owner leaving hands the room over, and is one more event.
    assert_eq!(bob.leave(room.id).await.status, StatusCode::NO_CONTENT);

    let rows = outbox_rows(&app.database_url).await;
    let seen: Vec<_> = rows
        .iter()
        .map(|row| (row.event.change, row.event.user.username.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (MemberChange::Joined, "alice"),
            (MemberChange::Joined, "carol"),
            (MemberChange::Joined, "dave"),
            (MemberChange::Left, "alice"),
            (MemberChange::Left, "bob"),
        ],
        "a repeated join and a non-member's leave write nothing"
    );
    let recipients: Vec<_> = rows
        .iter()
        .map(|row| row.event.recipients.clone())
        .collect();
    let ids = |sessions: &[&Session]| sessions.iter().map(|s| s.user.id).collect::<Vec<_>>();
    assert_eq!(
        recipients,
        [
            ids(&[&bob]),
            ids(&[&bob, &alice]),
            ids(&[&bob, &alice, &carol]),
            ids(&[&bob, &carol, &dave]),
            ids(&[&carol, &dave]),
        ],
        "the other members at the time of the change, in joining order"
    );
    for row in &rows {
        assert_eq!(row.event.version, 1);
        assert_eq!(
            (row.event.room_id, row.event.room_name.as_str()),
            (room.id, "Lobby")
        );
        assert!(!row.dead);
    }
    let event_ids: BTreeSet<_> = rows.iter().map(|row| row.event.event_id).collect();
    assert_eq!(event_ids.len(), rows.len(), "event ids are unique");

    // The broker being away degrades the node but it stays ready: the outbox holds the events.
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    let health: serde_json::Value = health.json();
    assert_eq!(health["status"], "degraded");
    assert!(
        health["checks"]["broker"]
            .as_str()
            .is_some_and(|check| check.starts_with("error")),
        "{health}"
    );
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);
}

/// The event and the change share one transaction: when the outbox refuses the row (a
/// trigger here), the join or leave is rolled back with it.
async fn a_failed_outbox_write_undoes_the_membership_change(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.rabbit_url = Some(UNREACHABLE_BROKER.to_owned());
    })
    .await;
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let room = bob.create_room("Lobby", false).await;
    let members = || async {
        let list: MemberList = bob.get(&format!("/rooms/{}/members", room.id)).await.json();
        let count = bob
            .get(&format!("/rooms/{}", room.id))
            .await
            .json::<Room>()
            .member_count;
        let names: Vec<_> = list.members.into_iter().map(|m| m.username).collect();
        (names, count)
    };

    refuse_outbox_rows(&app.database_url, true).await;
    alice
        .join(room.id)
        .await
        .assert_problem(500, "internal_error");
    assert_eq!(members().await, (vec!["bob".to_owned()], 1));

    refuse_outbox_rows(&app.database_url, false).await;
    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    refuse_outbox_rows(&app.database_url, true).await;
    alice
        .leave(room.id)
        .await
        .assert_problem(500, "internal_error");
    assert_eq!(
        members().await,
        (vec!["bob".to_owned(), "alice".to_owned()], 2)
    );
    let rows = outbox_rows(&app.database_url).await;
    assert_eq!(rows.len(), 1, "only the join that committed left an event");
}

/// Installs (or removes) a trigger that makes every outbox insert fail.
async fn refuse_outbox_rows(database_url: &str, refuse: bool) {
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let sql = if refuse {
            "CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END"
        } else {
            "DROP TRIGGER refuse"
        };
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let statements: &[&str] = if refuse {
            &[
                "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$",
                "CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()",
            ]
        } else {
            &["DROP TRIGGER refuse ON outbox"]
        };
        for sql in statements {
            sqlx::query(*sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

/// Two nodes on one PostgreSQL database: one relays (advisory lock), the other stands by and
/// takes over when the first stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_relays_at_a_time_and_another_takes_over() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let vapid = nebula_notifier::generate_vapid_keys();
    let mut first = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let mut config = test_config(&first.database_url);
    embedded(&mut config, &vapid);
    let (addr, stop_second, second) = start_server(config).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;

    let bob = first.register("bob").await;
    let alice = first.register("alice").await;
    let room = bob.create_room("Lobby", false).await;
    subscribe(&bob, &endpoint.new_browser()).await;
    eventually("one lock holder", WAIT, || async {
        advisory_locks(&first.database_url).await == 1
    })
    .await;
    alice.join(room.id).await;
    endpoint.wait_for_pushes(1, WAIT).await;

    // The first node (the leader: it started alone) stops; the second relays from now on.
    first.stop().await;
    let alice_on_second = Session {
        base: format!("http://{addr}"),
        ..alice.clone()
    };
    assert_eq!(
        alice_on_second.leave(room.id).await.status,
        StatusCode::NO_CONTENT
    );
    endpoint.wait_for_pushes(2, WAIT).await;
    wait_outbox_empty(&first).await;
    assert_eq!(advisory_locks(&first.database_url).await, 1);
    let kinds: Vec<_> = endpoint
        .received()
        .iter()
        .map(|push| push.payload.kind.clone())
        .collect();
    assert_eq!(kinds, ["member.joined", "member.left"]);
    let _ = stop_second.send(());
    let _ = second.await;
}

/// Granted advisory locks on the relay's key in this database.
async fn advisory_locks(database_url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let count = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2",
    )
    .bind(0x6e65_6275_i32)
    .bind(0x6f75_7462_i32)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    count
}

/// A direct message writes its notification in its own commit: if the row cannot be written
/// the message is not stored either; group rooms write none.
async fn a_direct_message_and_its_outbox_row_commit_together(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.rabbit_url = Some(UNREACHABLE_BROKER.to_owned());
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let dm: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    let group = alice.create_room("Lobby", false).await;

    alice.say(group.id, "no row for this").await;
    let message = alice.say(dm.id, "one row for this").await;
    let payloads = super::outbox_payloads(&app.database_url).await;
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let event: serde_json::Value = serde_json::from_str(&payloads[0].0).unwrap();
    assert_eq!(event["kind"], "direct_message");
    assert_eq!(event["message_id"], message.id.to_string());
    assert_eq!(event["recipient"], bob.user.id.to_string());

    refuse_outbox_rows(&app.database_url, true).await;
    let refused = alice
        .post_message(dm.id, json!({"content": "lost with its row"}))
        .await;
    assert!(refused.status.is_server_error(), "{}", refused.text());
    refuse_outbox_rows(&app.database_url, false).await;
    let history: serde_json::Value = alice.history(dm.id, "?after_seq=0&limit=10").await.json();
    let contents: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["one row for this"]);
    assert_eq!(super::outbox_payloads(&app.database_url).await.len(), 1);
}
