//! A database written by the previous build (schema up to migration 0004, rows as it wrote
//! them) is upgraded in place at start and served correctly.

use std::path::Path;

use chrono::{DateTime, Utc};
use nebula_wire::{
    ChangesPage, ClientEvent, Message, MessagePage, Room, RoomKind, ServerEvent, User, UserList,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, JWT_SECRET, Session, TestApp, TestDb};
use crate::on_both_backends;

on_both_backends!(a_database_of_the_previous_build_is_served_after_upgrading);

/// Two users, a room, and three messages (the last two by bob), as the previous build wrote
/// them; bob has read up to seq 1.
macro_rules! write_rows {
    ($pool:ident) => {{
        for (id, name) in [(ALICE, "alice"), (BOB, "bob")] {
            sqlx::query(
                "INSERT INTO users (id, username, username_key, password_hash, created_at)
                 VALUES ($1, $2, $2, 'unused', $3)",
            )
            .bind(id)
            .bind(name)
            .bind(created_at())
            .execute(&$pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO rooms (id, name, name_key, description, is_private, owner_id,
                                member_count, last_seq, created_at, member_rev)
             VALUES ($1, 'Old times', 'old times', NULL, $2, $3, 2, 3, $4, 0)",
        )
        .bind(ROOM)
        .bind(false)
        .bind(ALICE)
        .bind(created_at())
        .execute(&$pool)
        .await
        .unwrap();
        for (user, role, read) in [(ALICE, "owner", 0_i64), (BOB, "member", 1)] {
            sqlx::query(
                "INSERT INTO room_members (room_id, user_id, role, joined_at, last_read_seq)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(ROOM)
            .bind(user)
            .bind(role)
            .bind(created_at())
            .bind(read)
            .execute(&$pool)
            .await
            .unwrap();
        }
        for (seq, sender, name) in [(1_i64, ALICE, "alice"), (2, BOB, "bob"), (3, BOB, "bob")] {
            sqlx::query(
                "INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content,
                                       client_msg_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(message_id(seq))
            .bind(ROOM)
            .bind(seq)
            .bind(sender)
            .bind(name)
            .bind(format!("old {seq}"))
            .bind(Some(format!("c{seq}")))
            .bind(created_at())
            .execute(&$pool)
            .await
            .unwrap();
        }
    }};
}

/// The previous build's migrations, applied the way it applied them (same `_sqlx_migrations`
/// bookkeeping), from the files in this tree.
async fn migrate_as_previous_build(database_url: &str) {
    let dialect = if database_url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0005" {
            std::fs::copy(&path, old.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    assert_eq!(migrator.iter().count(), 4);
    if dialect == "sqlite" {
        let options = format!("{database_url}?mode=rwc");
        let pool = sqlx::SqlitePool::connect(&options).await.unwrap();
        migrator.run(&pool).await.unwrap();
        write_rows!(pool);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        write_rows!(pool);
        pool.close().await;
    }
}

/// Ids of the rows the previous build wrote.
const ALICE: Uuid = Uuid::from_u128(0xa11ce);
const BOB: Uuid = Uuid::from_u128(0xb0b);
const ROOM: Uuid = Uuid::from_u128(0x1000);

fn message_id(seq: i64) -> Uuid {
    Uuid::from_u128(0x2000 + seq as u128)
}

fn created_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-02T03:04:05.123456Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A session for a user the test wrote itself (no password to log in with).
fn session(app: &TestApp, id: Uuid, username: &str) -> Session {
    let claims = json!({"sub": id, "username": username, "iat": 0,
                        "exp": Utc::now().timestamp() + 3600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let user = User {
        id,
        username: username.into(),
        created_at: created_at(),
    };
    app.session(token, user)
}

async fn a_database_of_the_previous_build_is_served_after_upgrading(backend: Backend) {
    let (db, database_url) = TestDb::create(&backend).await;
    migrate_as_previous_build(&database_url).await;
    let app = TestApp::spawn_on(db, database_url, |_| {}).await;
    let alice = session(&app, ALICE, "alice");
    let bob = session(&app, BOB, "bob");

    // History as it was, each old message its own change: rev = seq.
    let page: MessagePage = alice.history(ROOM, "").await.json();
    let old: Vec<(i64, i64, &str)> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.rev, m.content.as_str()))
        .collect();
    assert_eq!(old, [(1, 1, "old 1"), (2, 2, "old 2"), (3, 3, "old 3")]);
    let first = &page.messages[0];
    assert_eq!(first.created_at, created_at());
    assert_eq!(first.client_msg_id.as_deref(), Some("c1"));
    assert!(first.reply_to.is_none() && first.edited_at.is_none() && first.deleted_at.is_none());
    assert!(first.reactions.is_empty());
    // Unread state from the old `last_read_seq`.
    let room: Room = alice.get(&format!("/rooms/{ROOM}")).await.json();
    assert_eq!(
        (room.last_seq, room.last_read_seq, room.unread_count),
        (Some(3), Some(0), Some(2))
    );
    // Idempotency keys written by the old build still answer with the original.
    let repost = bob
        .post_message(ROOM, json!({"content": "old 2", "client_msg_id": "c2"}))
        .await;
    assert_eq!(repost.status.as_u16(), 200);
    assert_eq!(repost.json::<Message>().seq, 2);

    // New messages and changes continue both counters where the old rows left them.
    let mut ws = bob.ws("/ws").await;
    ws.send(ClientEvent::Subscribe {
        room_id: ROOM,
        since_seq: Some(3),
        since_rev: Some(3),
    })
    .await;
    assert!(matches!(
        ws.next_event().await,
        ServerEvent::Subscribed {
            last_seq: 3,
            last_rev: 3,
            ..
        }
    ));
    let reply = bob
        .post_message(ROOM, json!({"content": "new", "reply_to": message_id(1)}))
        .await;
    let new: Message = reply.json();
    assert_eq!((new.seq, new.rev), (4, 4));
    assert_eq!(new.reply_to.map(|r| r.seq), Some(1));
    let edited: Message = bob.edit(ROOM, message_id(2), "old 2, edited").await.json();
    assert_eq!(edited.rev, 5);
    assert_eq!(alice.react(ROOM, message_id(1), "👍").await.status, 204);
    assert_eq!(alice.delete_message(ROOM, message_id(3)).await.status, 204);
    assert_eq!(ws.next_message().await, new);
    assert_eq!(ws.next_updated().await, edited);
    assert_eq!(ws.next_updated().await.rev, 6);
    assert_eq!(ws.next_updated().await.rev, 7);
    let feed: ChangesPage = alice
        .get(&format!("/rooms/{ROOM}/changes?since_rev=3"))
        .await
        .json();
    let revs: Vec<(i64, i64)> = feed.messages.iter().map(|m| (m.seq, m.rev)).collect();
    assert_eq!(revs, [(4, 4), (2, 5), (1, 6), (3, 7)]);
    assert_eq!(feed.last_rev, 7);

    // Migration 0011: old rooms are group rooms; the two old users can open a direct room,
    // find each other and become contacts.
    assert_eq!(room.kind, RoomKind::Group);
    assert!(room.peer.is_none());
    let direct = alice.post("/dms", json!({"user_id": BOB})).await;
    assert_eq!(direct.status.as_u16(), 201, "{}", direct.text());
    assert_eq!(direct.json::<Room>().peer.map(|p| p.id), Some(BOB));
    let found: UserList = alice.get("/users?q=bo").await.json();
    assert_eq!(found.users.len(), 1);
    let asked = alice
        .post("/contacts/requests", json!({"username": "bob"}))
        .await;
    assert_eq!(asked.status.as_u16(), 201, "{}", asked.text());
}
