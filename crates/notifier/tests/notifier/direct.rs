//! `Dispatcher::dispatch` for direct messages and incoming calls: one recipient, and checks
//! made at dispatch time against the chat server's tables (here a minimal copy of them in the
//! notifier's database, as they are in the shared database in production).

use std::time::Duration;

use chrono::Utc;
use nebula_notifier::Suppressed;
use nebula_wire::CallMedia;
use nebula_wire::User;
use nebula_wire::notify::{CallNotification, DirectMessageNotification, Notification, UserRef};
use uuid::Uuid;

use crate::support::{Pipeline, user};

const WAIT: Duration = Duration::from_secs(10);

/// The chat server's columns the dispatcher reads.
const CHAT_TABLES: &str = "
CREATE TABLE room_members (room_id BLOB NOT NULL, user_id BLOB NOT NULL,
    last_read_seq INTEGER NOT NULL DEFAULT 0, notification_level TEXT,
    PRIMARY KEY (room_id, user_id));
CREATE TABLE users (id BLOB PRIMARY KEY, push_notifications BOOLEAN NOT NULL DEFAULT TRUE);
CREATE TABLE messages (room_id BLOB NOT NULL, seq INTEGER NOT NULL, deleted_at TEXT,
    PRIMARY KEY (room_id, seq));
CREATE TABLE blocks (blocker_id BLOB NOT NULL, blocked_id BLOB NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id));";

async fn chat_db(pipeline: &Pipeline) -> sqlx::SqlitePool {
    let pool = sqlx::SqlitePool::connect(pipeline.db.url()).await.unwrap();
    sqlx::raw_sql(CHAT_TABLES).execute(&pool).await.unwrap();
    pool
}

fn reference(user: &User) -> UserRef {
    UserRef {
        id: user.id,
        username: user.username.clone(),
    }
}

fn message(room: Uuid, seq: i64, from: &User, to: &User) -> Notification {
    Notification::DirectMessage(DirectMessageNotification {
        version: DirectMessageNotification::VERSION,
        event_id: Uuid::now_v7(),
        room_id: room,
        message_id: Uuid::now_v7(),
        seq,
        sender: reference(from),
        recipient: to.id,
        preview: format!("message {seq}"),
        occurred_at: Utc::now(),
    })
}

fn call(from: &User, to: &User, rings_for: chrono::Duration) -> Notification {
    Notification::IncomingCall(CallNotification {
        version: CallNotification::VERSION,
        event_id: Uuid::now_v7(),
        call_id: Uuid::now_v7(),
        caller: reference(from),
        callee: to.id,
        media: CallMedia::Video,
        occurred_at: Utc::now(),
        expires_at: Utc::now() + rings_for,
    })
}

#[tokio::test]
async fn direct_messages_are_pushed_unless_read_deleted_or_blocked() {
    let pipeline = Pipeline::sqlite().await;
    let chat = chat_db(&pipeline).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let alices_laptop = pipeline.subscribe(&alice).await;
    let bobs_laptop = pipeline.subscribe(&bob).await;
    let room = Uuid::now_v7();
    for member in [&alice, &bob] {
        sqlx::query("INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)")
            .bind(room)
            .bind(member.id)
            .execute(&chat)
            .await
            .unwrap();
    }
    for seq in 1..=4 {
        sqlx::query("INSERT INTO messages (room_id, seq) VALUES ($1, $2)")
            .bind(room)
            .bind(seq)
            .execute(&chat)
            .await
            .unwrap();
    }

    let first = message(room, 1, &alice, &bob);
    let report = pipeline.dispatcher.dispatch(&first).await.unwrap();
    assert_eq!((report.sent, report.suppressed), (1, None));
    let pushes = pipeline.endpoint.wait_for_others(1, WAIT).await;
    assert!(
        pipeline.endpoint.errors().is_empty(),
        "{:?}",
        pipeline.endpoint.errors()
    );
    assert_eq!(pushes[0].browser, bobs_laptop.id);
    // Pushes about one room share its topic: a burst replaces rather than stacks.
    assert_eq!(
        pushes[0].topic.as_deref(),
        Some(nebula_wire::notify::room_topic(room).as_str())
    );
    let Notification::DirectMessage(sent) = &first else {
        unreachable!()
    };
    assert_eq!(
        pushes[0].raw,
        serde_json::json!({
            "type": "message.direct",
            "room_id": room,
            "message": {"id": sent.message_id, "seq": 1},
            "sender": {"id": alice.id, "username": "alice"},
            "preview": "message 1",
            "event_id": sent.event_id,
            "occurred_at": sent.occurred_at,
        })
    );
    // Processed: a second copy sends nothing.
    assert!(
        pipeline
            .dispatcher
            .dispatch(&first)
            .await
            .unwrap()
            .duplicate
    );

    // Bob read up to 2 on another device: messages 1 and 2 are not pushed any more.
    sqlx::query("UPDATE room_members SET last_read_seq = 2 WHERE user_id = $1")
        .bind(bob.id)
        .execute(&chat)
        .await
        .unwrap();
    let read = message(room, 2, &alice, &bob);
    let report = pipeline.dispatcher.dispatch(&read).await.unwrap();
    assert_eq!(
        (report.sent, report.suppressed),
        (0, Some(Suppressed::Read))
    );
    assert!(
        pipeline
            .store()
            .is_processed(read.event_id())
            .await
            .unwrap()
    );

    sqlx::query("UPDATE messages SET deleted_at = '2026-01-01T00:00:00Z' WHERE seq = 3")
        .execute(&chat)
        .await
        .unwrap();
    let report = pipeline
        .dispatcher
        .dispatch(&message(room, 3, &alice, &bob))
        .await
        .unwrap();
    assert_eq!(report.suppressed, Some(Suppressed::Deleted));

    sqlx::query("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)")
        .bind(bob.id)
        .bind(alice.id)
        .execute(&chat)
        .await
        .unwrap();
    let report = pipeline
        .dispatcher
        .dispatch(&message(room, 4, &alice, &bob))
        .await
        .unwrap();
    assert_eq!(report.suppressed, Some(Suppressed::Blocked));

    assert_eq!(pipeline.endpoint.requests_for(&bobs_laptop), 1);
    assert_eq!(pipeline.endpoint.others_for(&bobs_laptop).len(), 1);
    assert_eq!(pipeline.endpoint.requests_for(&alices_laptop), 0);
    chat.close().await;
}

#[tokio::test]
async fn an_incoming_call_is_pushed_while_it_rings_only() {
    let pipeline = Pipeline::sqlite().await;
    let chat = chat_db(&pipeline).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;

    let ringing = call(&alice, &bob, chrono::Duration::seconds(30));
    let report = pipeline.dispatcher.dispatch(&ringing).await.unwrap();
    assert_eq!(report.sent, 1);
    let pushes = pipeline.endpoint.wait_for_others(1, WAIT).await;
    assert_eq!(pushes[0].browser, laptop.id);
    assert_eq!(pushes[0].raw["type"], "call.incoming");
    assert_eq!(pushes[0].raw["from"]["username"], "alice");
    assert_eq!(pushes[0].raw["media"], "video");
    assert!((1..=30).contains(&pushes[0].ttl), "TTL {}", pushes[0].ttl);

    let over = call(&alice, &bob, chrono::Duration::seconds(-1));
    let report = pipeline.dispatcher.dispatch(&over).await.unwrap();
    assert_eq!(report.suppressed, Some(Suppressed::Expired));

    sqlx::query("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)")
        .bind(alice.id)
        .bind(bob.id)
        .execute(&chat)
        .await
        .unwrap();
    let blocked = call(&alice, &bob, chrono::Duration::seconds(30));
    let report = pipeline.dispatcher.dispatch(&blocked).await.unwrap();
    assert_eq!(report.suppressed, Some(Suppressed::Blocked));
    assert_eq!(pipeline.endpoint.requests_for(&laptop), 1);
    chat.close().await;
}

fn mention(room: Uuid, seq: i64, from: &User, to: &User) -> Notification {
    Notification::Mention(nebula_wire::notify::MentionNotification {
        version: nebula_wire::notify::MentionNotification::VERSION,
        event_id: Uuid::now_v7(),
        room_id: room,
        room_name: "Lobby".into(),
        message_id: Uuid::now_v7(),
        seq,
        sender: reference(from),
        recipient: to.id,
        preview: format!("@{} look", to.username),
        occurred_at: Utc::now(),
    })
}

#[tokio::test]
async fn mentions_are_pushed_with_the_room_topic_unless_muted_or_push_is_off() {
    let pipeline = Pipeline::sqlite().await;
    let chat = chat_db(&pipeline).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let bobs_laptop = pipeline.subscribe(&bob).await;
    let room = Uuid::now_v7();
    for member in [&alice, &bob] {
        sqlx::query("INSERT INTO room_members (room_id, user_id) VALUES ($1, $2)")
            .bind(room)
            .bind(member.id)
            .execute(&chat)
            .await
            .unwrap();
    }
    for seq in 1..=3 {
        sqlx::query("INSERT INTO messages (room_id, seq) VALUES ($1, $2)")
            .bind(room)
            .bind(seq)
            .execute(&chat)
            .await
            .unwrap();
    }

    let first = mention(room, 1, &alice, &bob);
    let report = pipeline.dispatcher.dispatch(&first).await.unwrap();
    assert_eq!((report.sent, report.suppressed), (1, None));
    let pushes = pipeline.endpoint.wait_for_others(1, WAIT).await;
    assert!(pipeline.endpoint.errors().is_empty());
    assert_eq!(pushes[0].browser, bobs_laptop.id);
    assert_eq!(pushes[0].raw["type"], "message.mention");
    assert_eq!(pushes[0].raw["room_name"], "Lobby");
    assert_eq!(pushes[0].raw["message"]["seq"], 1);
    assert_eq!(
        pushes[0].topic.as_deref(),
        Some(nebula_wire::notify::room_topic(room).as_str())
    );

    sqlx::query("UPDATE room_members SET notification_level = 'none' WHERE user_id = $1")
        .bind(bob.id)
        .execute(&chat)
        .await
        .unwrap();
    let report = pipeline
        .dispatcher
        .dispatch(&mention(room, 2, &alice, &bob))
        .await
        .unwrap();
    assert_eq!(report.suppressed, Some(Suppressed::Muted));

    sqlx::query("UPDATE room_members SET notification_level = 'mentions' WHERE user_id = $1")
        .bind(bob.id)
        .execute(&chat)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (id, push_notifications) VALUES ($1, FALSE)")
        .bind(bob.id)
        .execute(&chat)
        .await
        .unwrap();
    let report = pipeline
        .dispatcher
        .dispatch(&mention(room, 3, &alice, &bob))
        .await
        .unwrap();
    assert_eq!(report.suppressed, Some(Suppressed::PushOff));
    assert_eq!(pipeline.endpoint.requests_for(&bobs_laptop), 1);
}
