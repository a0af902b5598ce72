//! A database written by the previous build (schema up to migration 0004, rows as it wrote
//! them) is upgraded in place at start and served correctly.

use std::path::Path;

use chrono::{DateTime, Utc};
use nebula_wire::{
    ChangesPage, ClientEvent, Message, MessageHistory, MessagePage, MessageWindow, ReactionList,
    Room, RoomKind, ServerEvent, User, UserList,
};
use serde_json::json;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::helpers::{Backend, JWT_SECRET, Session, TestApp, TestDb};
use crate::on_both_backends;

on_both_backends!(
    a_database_of_the_previous_build_is_served_after_upgrading,
    a_database_of_the_previous_release_is_served_after_partitioning,
);

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

/// The migrations numbered below `first_new` from the files in this tree, as an older build
/// had them (`count` of them).
async fn migrations_before(database_url: &str, first_new: &str, count: usize) -> Migrator {
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
        if name.as_str() < first_new {
            std::fs::copy(&path, old.path().join(&name)).unwrap();
        }
    }
    let migrator = Migrator::new(old.path()).await.unwrap();
    assert_eq!(migrator.iter().count(), count);
    migrator
}

/// The previous build's migrations, applied the way it applied them (same `_sqlx_migrations`
/// bookkeeping), from the files in this tree.
async fn migrate_as_previous_build(database_url: &str) {
    let migrator = migrations_before(database_url, "0005", 4).await;
    if database_url.starts_with("sqlite:") {
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

/// Rooms of the previous release's database besides the main one, and messages in each: spread
/// over the partitions the upgrade copies them into.
const OTHER_ROOMS: u128 = 40;
const OTHER_MESSAGES: i64 = 25;
/// Messages of the main room; message 2 was edited (rev 301), message 3 reacted to (rev 302),
/// message 4 replies to message 1.
const MAIN_MESSAGES: i64 = 300;

fn other_room(index: u128) -> Uuid {
    Uuid::from_u128(0x5000 + index)
}

fn other_message(room: u128, seq: i64) -> Uuid {
    Uuid::from_u128(0x9_0000_0000 + room * 1000 + seq as u128)
}

/// What the previous release (migrations up to 0017) wrote: the main room of alice and bob,
/// and `OTHER_ROOMS` rooms of alice's, with edits, reactions, a reply and idempotency keys.
macro_rules! write_release_rows {
    ($pool:ident) => {{
        let mut tx = $pool.begin().await.unwrap();
        for (id, name) in [(ALICE, "alice"), (BOB, "bob")] {
            sqlx::query(
                "INSERT INTO users (id, username, username_key, password_hash, created_at)
                 VALUES ($1, $2, $2, 'unused', $3)",
            )
            .bind(id)
            .bind(name)
            .bind(created_at())
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        let rooms = std::iter::once((ROOM, MAIN_MESSAGES, MAIN_MESSAGES + 2))
            .chain((0..OTHER_ROOMS).map(|i| (other_room(i), OTHER_MESSAGES, OTHER_MESSAGES)));
        for (room, last_seq, last_rev) in rooms {
            sqlx::query(
                "INSERT INTO rooms (id, name, name_key, description, is_private, owner_id,
                                    member_count, last_seq, last_rev, created_at)
                 VALUES ($1, 'Before', 'before', NULL, FALSE, $2, 1, $3, $4, $5)",
            )
            .bind(room)
            .bind(ALICE)
            .bind(last_seq)
            .bind(last_rev)
            .bind(created_at())
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO room_members (room_id, user_id, role, joined_at)
                 VALUES ($1, $2, 'owner', $3)",
            )
            .bind(room)
            .bind(ALICE)
            .bind(created_at())
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO room_members (room_id, user_id, role, joined_at)
             VALUES ($1, $2, 'member', $3)",
        )
        .bind(ROOM)
        .bind(BOB)
        .bind(created_at())
        .execute(&mut *tx)
        .await
        .unwrap();
        let insert = "INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content,
                                            client_msg_id, created_at, rev, created_rev,
                                            reply_to_id, reply_to_seq, edited_at, reactions)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
        for seq in 1..=MAIN_MESSAGES {
            let (sender, name) = if seq % 2 == 1 {
                (ALICE, "alice")
            } else {
                (BOB, "bob")
            };
            let (content, rev, edited_at, reactions) = match seq {
                2 => ("old 2, edited".to_owned(), 301, Some(created_at()), None),
                3 => (format!("old {seq}"), 302, None, Some(r#"[["👍",1]]"#)),
                _ => (format!("old {seq}"), seq, None, None),
            };
            let reply_to = (seq == 4).then(|| (message_id(1), 1_i64));
            sqlx::query(insert)
                .bind(message_id(seq))
                .bind(ROOM)
                .bind(seq)
                .bind(sender)
                .bind(name)
                .bind(content)
                .bind(format!("c{seq}"))
                .bind(created_at())
                .bind(rev)
                .bind(seq)
                .bind(reply_to.map(|r| r.0))
                .bind(reply_to.map(|r| r.1))
                .bind(edited_at)
                .bind(reactions)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO message_versions (message_id, rev, content, edited_at)
             VALUES ($1, 301, 'old 2', $2)",
        )
        .bind(message_id(2))
        .bind(created_at())
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO message_reactions (message_id, emoji, user_id, rev)
             VALUES ($1, '👍', $2, 302)",
        )
        .bind(message_id(3))
        .bind(ALICE)
        .execute(&mut *tx)
        .await
        .unwrap();
        for room in 0..OTHER_ROOMS {
            for seq in 1..=OTHER_MESSAGES {
                sqlx::query(insert)
                    .bind(other_message(room, seq))
                    .bind(other_room(room))
                    .bind(seq)
                    .bind(ALICE)
                    .bind("alice")
                    .bind(format!("room {room} message {seq}"))
                    .bind(format!("c{seq}"))
                    .bind(created_at())
                    .bind(seq)
                    .bind(seq)
                    .bind(None::<Uuid>)
                    .bind(None::<i64>)
                    .bind(None::<DateTime<Utc>>)
                    .bind(None::<&str>)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
    }};
}

/// A database as the previous release (migrations 0001–0017) left it, with its rows.
async fn migrate_as_previous_release(database_url: &str) {
    let migrator = migrations_before(database_url, "0018", 10).await;
    if database_url.starts_with("sqlite:") {
        let options = format!("{database_url}?mode=rwc");
        let pool = sqlx::SqlitePool::connect(&options).await.unwrap();
        migrator.run(&pool).await.unwrap();
        write_release_rows!(pool);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        write_release_rows!(pool);
        pool.close().await;
    }
}

/// Migration 0018 (PostgreSQL: `messages` partitioned by room; SQLite: nothing) keeps every
/// row and what the server makes of it: history, the change feed, idempotent resends, single
/// messages with their edit history and reactions, and the counters new messages continue.
async fn a_database_of_the_previous_release_is_served_after_partitioning(backend: Backend) {
    let (db, database_url) = TestDb::create(&backend).await;
    migrate_as_previous_release(&database_url).await;
    let app = TestApp::spawn_on(db, database_url, |_| {}).await;
    let alice = session(&app, ALICE, "alice");
    let bob = session(&app, BOB, "bob");

    let total = MAIN_MESSAGES + OTHER_MESSAGES * OTHER_ROOMS as i64;
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM messages").await, total);
    if !app.database_url.starts_with("sqlite:") {
        // Partitioned, and the rows spread over the partitions (40 rooms hash into most of 16).
        let partitions = "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'messages'::regclass";
        assert_eq!(app.query_i64(partitions).await, 16);
        let used = app
            .query_i64("SELECT COUNT(DISTINCT tableoid) FROM messages")
            .await;
        assert!(used >= 8, "rows in {used} partitions only");
        assert_eq!(
            app.query_i64("SELECT COUNT(*) FROM pg_class WHERE relname = 'messages_unpartitioned'")
                .await,
            0,
            "the old table is gone"
        );
    }

    // History: the newest page, keyset windows at both ends, each message as it was.
    let page: MessagePage = bob.history(ROOM, "").await.json();
    assert_eq!(page.total, MAIN_MESSAGES);
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (251..=300).collect::<Vec<_>>());
    let window: MessageWindow = bob.history(ROOM, "?before_seq=6&limit=5").await.json();
    assert!(!window.has_more);
    let oldest: Vec<(i64, Uuid, &str)> = window
        .messages
        .iter()
        .map(|m| (m.seq, m.id, m.content.as_str()))
        .collect();
    assert_eq!(
        oldest,
        [
            (1, message_id(1), "old 1"),
            (2, message_id(2), "old 2, edited"),
            (3, message_id(3), "old 3"),
            (4, message_id(4), "old 4"),
            (5, message_id(5), "old 5"),
        ]
    );
    assert_eq!(window.messages[1].edited_at, Some(created_at()));
    assert_eq!(window.messages[2].reactions[0].emoji, "👍");
    assert_eq!(
        window.messages[3].reply_to.map(|r| (r.id, r.seq)),
        Some((message_id(1), 1))
    );
    let newest: MessageWindow = bob.history(ROOM, "?after_seq=297").await.json();
    let seqs: Vec<i64> = newest.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, newest.has_more), (vec![298, 299, 300], false));
    let other: MessageWindow = alice
        .history(other_room(7), "?after_seq=0&limit=100")
        .await
        .json();
    let ids: Vec<Uuid> = other.messages.iter().map(|m| m.id).collect();
    let expected: Vec<Uuid> = (1..=OTHER_MESSAGES).map(|s| other_message(7, s)).collect();
    assert_eq!(ids, expected, "another room's history, whole and in order");

    // The change feed: the newest creations, then the edit and the reaction.
    let feed: ChangesPage = bob
        .get(&format!("/rooms/{ROOM}/changes?since_rev=298"))
        .await
        .json();
    let revs: Vec<(i64, i64)> = feed.messages.iter().map(|m| (m.seq, m.rev)).collect();
    assert_eq!(revs, [(299, 299), (300, 300), (2, 301), (3, 302)]);
    assert_eq!(feed.last_rev, MAIN_MESSAGES + 2);

    // Idempotency keys of the old rows still answer with the original, per sender and room
    // (alice's `c1` in another room is another message).
    for (who, key, seq) in [(&bob, "c2", 2), (&alice, "c1", 1), (&bob, "c300", 300)] {
        let repost = who
            .post_message(ROOM, json!({"content": "again", "client_msg_id": key}))
            .await;
        assert_eq!(repost.status.as_u16(), 200, "{key}: {}", repost.text());
        let original: Message = repost.json();
        assert_eq!((original.seq, original.id), (seq, message_id(seq)));
    }
    let again = alice
        .post_message(
            other_room(3),
            json!({"content": "again", "client_msg_id": "c1"}),
        )
        .await;
    assert_eq!(again.status.as_u16(), 200);
    assert_eq!(again.json::<Message>().id, other_message(3, 1));

    // Single messages by id, their edit history and reactions.
    assert_eq!(alice.message(ROOM, message_id(4)).await.content, "old 4");
    let history: MessageHistory = alice
        .get(&format!("/rooms/{ROOM}/messages/{}/history", message_id(2)))
        .await
        .json();
    let versions: Vec<&str> = history
        .versions
        .iter()
        .map(|v| v.content.as_str())
        .collect();
    assert_eq!(versions, ["old 2"]);
    let reactions: ReactionList = bob
        .get(&format!(
            "/rooms/{ROOM}/messages/{}/reactions",
            message_id(3)
        ))
        .await
        .json();
    assert_eq!(reactions.reactions[0].users[0].id, ALICE);
    // A message id names its message only in its own room.
    alice
        .get(&format!(
            "/rooms/{}/messages/{}",
            other_room(1),
            message_id(4)
        ))
        .await
        .assert_problem(404, "message_not_found");

    // New messages and changes continue both counters.
    let new = bob
        .post_message(
            ROOM,
            json!({"content": "new", "client_msg_id": "fresh", "reply_to": message_id(2)}),
        )
        .await;
    assert_eq!(new.status.as_u16(), 201, "{}", new.text());
    let new: Message = new.json();
    assert_eq!((new.seq, new.rev), (MAIN_MESSAGES + 1, MAIN_MESSAGES + 3));
    let edited: Message = alice
        .edit(ROOM, message_id(1), "old 1, edited")
        .await
        .json();
    assert_eq!(edited.rev, MAIN_MESSAGES + 4);
    assert_eq!(alice.delete_message(ROOM, message_id(3)).await.status, 204);
    assert_eq!(
        alice.message(ROOM, message_id(3)).await.rev,
        MAIN_MESSAGES + 5
    );
    let resent = bob
        .post_message(ROOM, json!({"content": "new", "client_msg_id": "fresh"}))
        .await;
    assert_eq!(resent.status.as_u16(), 200);
    assert_eq!(resent.json::<Message>().id, new.id);
}
