//! History over many rooms (PostgreSQL: `messages` partitioned by a hash of the room): every
//! per-room statement of the store is one index scan of one partition, in the plan the
//! server's prepared statements get too (a generic plan, pruned when it starts), and the
//! answers are right.

use nebula_wire::{ChangesPage, Message, MessageWindow};
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(per_room_statements_read_one_partition_by_index);

/// Messages of the room the test reads; and rooms of other people, with messages in each,
/// spread over every partition.
const MESSAGES: i64 = 20_000;
const OTHER_ROOMS: i64 = 1_000;
const OTHER_MESSAGES: i64 = 50;

/// The store's per-room statements (`store/messages.rs`, `store/changes.rs`), with literal
/// parameters: what each must read is one index range of one partition.
fn statements(room: &str, user: &str, id: &str) -> Vec<(String, &'static str)> {
    vec![
        (
            format!(
                "SELECT * FROM messages WHERE room_id = {room} AND seq < 10000 \
                 ORDER BY seq DESC LIMIT 51"
            ),
            "keyset page before",
        ),
        (
            format!(
                "SELECT * FROM messages WHERE room_id = {room} AND seq > 10000 \
                 AND seq < 9223372036854775807 ORDER BY seq ASC LIMIT 51"
            ),
            "keyset page after",
        ),
        (
            format!(
                "SELECT * FROM messages WHERE room_id = {room} AND rev > 19000 \
                 AND rev <= 9223372036854775807 AND seq <= 9223372036854775807 \
                 ORDER BY rev LIMIT 51"
            ),
            "change feed",
        ),
        (
            format!(
                "SELECT * FROM messages WHERE room_id = {room} AND sender_id = {user} \
                 AND client_msg_id = 'c777'"
            ),
            "idempotency lookup",
        ),
        (
            format!("SELECT * FROM messages WHERE id = {id} AND room_id = {room}"),
            "one message by id",
        ),
    ]
}

async fn per_room_statements_read_one_partition_by_index(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Deep", false).await;
    bob.join(room.id).await;
    let sqlite = app.database_url.starts_with("sqlite:");
    let (room_sql, alice_sql) = (app.sql_uuid(room.id), app.sql_uuid(alice.user.id));
    // The deep room, every message with an idempotency key; then other rooms (no members
    // needed: nothing reads them here) with their own messages.
    let fill = if sqlite {
        [
            format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {MESSAGES}) \
                 INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, \
                                       client_msg_id, created_at, rev, created_rev) \
                 SELECT randomblob(16), {room_sql}, n, {alice_sql}, 'alice', 'm' || n, 'c' || n, \
                        '2025-01-01T00:00:00+00:00', n, n FROM g"
            ),
            format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {OTHER_ROOMS}) \
                 INSERT INTO rooms (id, name, name_key, is_private, owner_id, last_seq, last_rev, \
                                    created_at) \
                 SELECT randomblob(16), 'r' || n, 'r' || n, 0, {alice_sql}, {OTHER_MESSAGES}, \
                        {OTHER_MESSAGES}, '2025-01-01T00:00:00+00:00' FROM g"
            ),
            format!(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {OTHER_MESSAGES}) \
                 INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, \
                                       client_msg_id, created_at, rev, created_rev) \
                 SELECT randomblob(16), r.id, n, {alice_sql}, 'alice', 'm' || n, 'c' || n, \
                        '2025-01-01T00:00:00+00:00', n, n FROM rooms r, g WHERE r.id <> {room_sql}"
            ),
        ]
    } else {
        [
            format!(
                "INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, \
                                       client_msg_id, created_at, rev, created_rev) \
                 SELECT gen_random_uuid(), {room_sql}, n, {alice_sql}, 'alice', 'm' || n, \
                        'c' || n, now(), n, n FROM generate_series(1, {MESSAGES}) AS n"
            ),
            format!(
                "INSERT INTO rooms (id, name, name_key, is_private, owner_id, last_seq, last_rev, \
                                    created_at) \
                 SELECT gen_random_uuid(), 'r' || n, 'r' || n, FALSE, {alice_sql}, \
                        {OTHER_MESSAGES}, {OTHER_MESSAGES}, now() \
                 FROM generate_series(1, {OTHER_ROOMS}) AS n"
            ),
            format!(
                "INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, \
                                       client_msg_id, created_at, rev, created_rev) \
                 SELECT gen_random_uuid(), r.id, n, {alice_sql}, 'alice', 'm' || n, 'c' || n, \
                        now(), n, n \
                 FROM rooms r, generate_series(1, {OTHER_MESSAGES}) AS n WHERE r.id <> {room_sql}"
            ),
        ]
    };
    for statement in fill {
        app.execute_sql(&statement).await;
    }
    app.execute_sql(&format!(
        "UPDATE rooms SET last_seq = {MESSAGES}, last_rev = {MESSAGES} WHERE id = {room_sql}"
    ))
    .await;
    app.execute_sql("ANALYZE").await;

    // One message's id, as a client would know it.
    let window: MessageWindow = bob.history(room.id, "?before_seq=778&limit=1").await.json();
    let known = &window.messages[0];
    assert_eq!(
        (known.seq, known.client_msg_id.as_deref()),
        (777, Some("c777"))
    );
    let id_sql = app.sql_uuid(known.id);

    let mut statements = statements(&room_sql, &alice_sql, &id_sql);
    // Seq (and rev) allocation: the room row, by its key, locked for the commit.
    statements.push((
        format!(
            "UPDATE rooms SET last_seq = last_seq + 1, last_rev = last_rev + 1 \
             WHERE id = {room_sql} RETURNING last_seq, last_rev, member_rev, kind"
        ),
        "seq allocation",
    ));
    for (statement, what) in &statements {
        let plan = app.query_plan(statement).await;
        if sqlite {
            assert!(
                plan.contains("SEARCH") && !plan.contains("SCAN") && !plan.contains("TEMP B-TREE"),
                "{what}: {plan}"
            );
        } else {
            assert!(
                plan.contains("Index") && !plan.contains("Seq Scan") && !sorts(&plan),
                "{what}: {plan}"
            );
            assert!(
                !plan.contains("Append") && partitions_in(&plan).len() <= 1,
                "{what}: pruned to one partition when planned: {plan}"
            );
        }
    }
    if !sqlite {
        prepared_plans_start_on_one_partition(&app.database_url, &room_sql, &alice_sql).await;
    }

    // And the answers are right, at both ends of the history.
    let deep: MessageWindow = bob.history(room.id, "?before_seq=10000").await.json();
    let seqs: Vec<i64> = deep.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, deep.has_more), ((9950..10000).collect(), true));
    let oldest: MessageWindow = bob.history(room.id, "?before_seq=3").await.json();
    let seqs: Vec<i64> = oldest.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, oldest.has_more), (vec![1, 2], false));
    let feed: ChangesPage = bob
        .get(&format!("/rooms/{}/changes?since_rev=19990", room.id))
        .await
        .json();
    let revs: Vec<i64> = feed.messages.iter().map(|m| m.rev).collect();
    assert_eq!(revs, (19_991..=MESSAGES).collect::<Vec<_>>());
    assert_eq!(&alice.message(room.id, known.id).await, known);
    let repost = alice
        .post_message(
            room.id,
            json!({"content": "again", "client_msg_id": "c777"}),
        )
        .await;
    assert_eq!(repost.status.as_u16(), 200, "{}", repost.text());
    assert_eq!(repost.json::<Message>().id, known.id);
    let new = alice
        .post_message(
            room.id,
            json!({"content": "new", "client_msg_id": "c777-2"}),
        )
        .await;
    assert_eq!(new.status.as_u16(), 201, "{}", new.text());
    // The seq allocation planned above ran nowhere: the next message takes the next seq.
    assert_eq!(new.json::<Message>().seq, MESSAGES + 1);
}

/// Whether a PostgreSQL plan has a sort node (a `Merge Append`'s sort key is no sort: it
/// merges index scans already in order).
fn sorts(plan: &str) -> bool {
    plan.contains("Sort  (")
}

/// The distinct partitions of `messages` a plan names.
fn partitions_in(plan: &str) -> std::collections::BTreeSet<&str> {
    plan.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            word.strip_prefix("messages_p")
                .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

/// The server's statements are prepared: after five runs PostgreSQL may keep one generic plan
/// for every room. Such a plan prunes when it starts (`Subplans Removed: 15`) and scans one
/// partition; the batched idempotency lookup (keys of many rooms joined against the index)
/// prunes per key, and runs one partition's index scan for each.
async fn prepared_plans_start_on_one_partition(database_url: &str, room: &str, user: &str) {
    let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
    let explain = async |db: &mut sqlx::PgConnection, sql: &str| -> String {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut *db)
            .await
            .unwrap();
        rows.join("\n")
    };
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&mut db)
        .await
        .unwrap();
    for (prepare, execute, what) in [
        (
            "PREPARE before(uuid, int8, int8) AS SELECT * FROM messages \
             WHERE room_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            format!("EXECUTE before({room}, 10000, 51)"),
            "keyset page before",
        ),
        (
            "PREPARE feed(uuid, int8, int8, int8, int8) AS SELECT * FROM messages \
             WHERE room_id = $1 AND rev > $2 AND rev <= $3 AND seq <= $4 ORDER BY rev LIMIT $5",
            format!("EXECUTE feed({room}, 19000, 9223372036854775807, 9223372036854775807, 51)"),
            "change feed",
        ),
        (
            "PREPARE original(uuid, uuid, text) AS SELECT * FROM messages \
             WHERE room_id = $1 AND sender_id = $2 AND client_msg_id = $3",
            format!("EXECUTE original({room}, {user}, 'c777')"),
            "idempotency lookup",
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(prepare.to_owned()))
            .execute(&mut db)
            .await
            .unwrap();
        let plan = explain(&mut db, &format!("EXPLAIN {execute}")).await;
        assert!(
            plan.contains("Subplans Removed: 15")
                && partitions_in(&plan).len() == 1
                && plan.contains("Index")
                && !plan.contains("Seq Scan")
                && !sorts(&plan),
            "{what}, generic plan: {plan}"
        );
    }

    // The batch form (`postgres_originals`), with keys in two rooms: each key runs the index
    // scan of its own partition only.
    let other: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id::text FROM rooms WHERE id <> {room} ORDER BY id LIMIT 1"
    )))
    .fetch_one(&mut db)
    .await
    .unwrap();
    let plan = explain(
        &mut db,
        &format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) \
             SELECT m.* FROM unnest(ARRAY[{room}, '{other}']::uuid[], \
                                    ARRAY[{user}, {user}]::uuid[], \
                                    ARRAY['c777', 'c7']::text[]) \
                 AS k(k_room, k_sender, k_client) \
             CROSS JOIN LATERAL (SELECT * FROM messages WHERE room_id = k.k_room \
                 AND sender_id = k.k_sender AND client_msg_id = k.k_client \
                 AND client_msg_id IS NOT NULL LIMIT 1) AS m"
        ),
    )
    .await;
    let executed = plan
        .lines()
        .filter(|line| line.contains("Index Scan") && !line.contains("never executed"))
        .count();
    assert!(
        !plan.contains("Seq Scan") && (1..=2).contains(&executed),
        "batched idempotency lookup: {plan}"
    );
    db.close().await.unwrap();
}
