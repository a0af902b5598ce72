//! A room of 100k messages, a third of them reacted to: history pages, the change feed and
//! unread counts are each one index range scan (checked in the databases' own query plans),
//! and answer correctly.

use nebula_wire::{ChangesPage, MessageWindow, Room};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(a_room_of_100k_messages_is_read_by_index_range_scans);

const MESSAGES: i64 = 100_000;

/// The store's statements (see `store/messages.rs`, `store/changes.rs`, `store/rooms.rs`),
/// with literal parameters.
fn statements(room: &str, user: &str) -> [(String, &'static str); 3] {
    [
        (
            format!(
                "SELECT * FROM messages WHERE room_id = {room} AND seq < 50000 \
                 ORDER BY seq DESC LIMIT 51"
            ),
            "keyset page",
        ),
        (
            format!(
                "SELECT * FROM messages WHERE room_id = {room} AND rev > 99000 \
                 AND rev <= 9223372036854775807 AND seq <= 9223372036854775807 \
                 ORDER BY rev LIMIT 51"
            ),
            "change feed",
        ),
        (
            format!(
                "SELECT COUNT(*) FROM messages msg WHERE msg.room_id = {room} \
                 AND msg.seq > 10 AND msg.seq <= 1010 AND msg.sender_id <> {user} \
                 AND msg.deleted_at IS NULL"
            ),
            "unread count",
        ),
    ]
}

async fn a_room_of_100k_messages_is_read_by_index_range_scans(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Huge", false).await;
    bob.join(room.id).await;
    let sqlite = app.database_url.starts_with("sqlite:");
    let (room_sql, alice_sql) = (app.sql_uuid(room.id), app.sql_uuid(alice.user.id));
    let rows = if sqlite {
        format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {MESSAGES}) \
             INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, \
                                   created_at, rev, created_rev, reactions) \
             SELECT randomblob(16), {room_sql}, n, {alice_sql}, 'alice', 'm' || n, \
                    '2025-01-01T00:00:00+00:00', n, n, \
                    CASE WHEN n % 3 = 0 THEN '[[\"👍\",5],[\"🎉\",2]]' END FROM g"
        )
    } else {
        format!(
            "INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, \
                                   created_at, rev, created_rev, reactions) \
             SELECT gen_random_uuid(), {room_sql}, n, {alice_sql}, 'alice', 'm' || n, \
                    now(), n, n, \
                    CASE WHEN n % 3 = 0 THEN '[[\"👍\",5],[\"🎉\",2]]' END \
             FROM generate_series(1, {MESSAGES}) AS n"
        )
    };
    app.execute_sql(&rows).await;
    app.execute_sql(&format!(
        "UPDATE rooms SET last_seq = {MESSAGES}, last_rev = {MESSAGES} WHERE id = {room_sql}"
    ))
    .await;
    app.execute_sql("ANALYZE").await;

    for (statement, what) in statements(&room_sql, &alice_sql) {
        let plan = app.query_plan(&statement).await;
        if sqlite {
            assert!(
                plan.contains("SEARCH") && !plan.contains("SCAN") && !plan.contains("TEMP B-TREE"),
                "{what}: {plan}"
            );
        } else {
            assert!(
                plan.contains("Index") && !plan.contains("Seq Scan") && !plan.contains("Sort"),
                "{what}: {plan}"
            );
        }
    }

    // And the answers are right.
    let window: MessageWindow = bob.history(room.id, "?before_seq=50000").await.json();
    assert_eq!(window.messages.len(), 50);
    assert_eq!(window.messages[49].seq, 49_999);
    assert_eq!(window.messages[0].seq, 49_950);
    assert_eq!(
        window.messages[0].reactions[0].count, 5,
        "reactions come with the page"
    );
    assert!(window.messages[1].reactions.is_empty());
    let feed: ChangesPage = bob
        .get(&format!("/rooms/{}/changes?since_rev=99990", room.id))
        .await
        .json();
    let revs: Vec<i64> = feed.messages.iter().map(|m| m.rev).collect();
    assert_eq!(revs, (99_991..=MESSAGES).collect::<Vec<_>>());
    let listed: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(
        (listed.last_seq, listed.unread_count),
        (Some(MESSAGES), Some(1000)),
        "bounded: the first UNREAD_COUNT_MAX after his last read"
    );
}
