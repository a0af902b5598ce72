//! The change feed, unread counts, and changes racing each other.

use std::collections::HashSet;

use nebula_wire::{ChangesPage, ClientEvent, Message, Room, RoomList, ServerEvent};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    the_change_feed_lists_every_message_created_or_changed_in_rev_order,
    the_change_feed_is_validated_and_for_members_only,
    unread_counts_follow_reads_own_messages_and_deletes,
    unread_counts_are_bounded_far_behind,
    concurrent_reactions_from_many_users_all_count_once,
    a_delete_racing_edits_never_resurrects_content,
);

async fn changes(app_user: &crate::helpers::Session, room: Uuid, query: &str) -> ChangesPage {
    let reply = app_user.get(&format!("/rooms/{room}/changes{query}")).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
    reply.json()
}

async fn the_change_feed_lists_every_message_created_or_changed_in_rev_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut posted = Vec::new();
    for n in 1..=5 {
        posted.push(alice.say(room.id, &format!("m{n}")).await);
    }
    let all = changes(&alice, room.id, "").await;
    assert_eq!(all.messages, posted);
    assert_eq!((all.last_rev, all.has_more), (5, false));

    alice.edit(room.id, posted[1].id, "m2 edited").await;
    alice.react(room.id, posted[3].id, "👍").await;
    alice.delete_message(room.id, posted[0].id).await;
    alice.react(room.id, posted[1].id, "🎉").await;
    let sixth = alice.say(room.id, "m6").await;

    let since = changes(&alice, room.id, "?since_rev=5").await;
    let seen: Vec<(i64, i64)> = since.messages.iter().map(|m| (m.seq, m.rev)).collect();
    // Each changed message once, at its latest rev; ascending rev.
    assert_eq!(seen, [(4, 7), (1, 8), (2, 9), (6, 10)]);
    assert_eq!(since.last_rev, 10);
    assert_eq!(since.messages[3], sixth);
    for message in &since.messages {
        assert_eq!(message, &alice.message(room.id, message.id).await);
    }
    // Pages of `limit`, with `has_more`, resumed from the last rev seen.
    let first = changes(&alice, room.id, "?since_rev=0&limit=4").await;
    assert_eq!(first.messages.len(), 4);
    assert!(first.has_more);
    let cursor = first.messages.last().unwrap().rev;
    let rest = changes(&alice, room.id, &format!("?since_rev={cursor}&limit=4")).await;
    assert!(!rest.has_more);
    let revs: Vec<i64> = first
        .messages
        .iter()
        .chain(&rest.messages)
        .map(|m| m.rev)
        .collect();
    assert_eq!(
        revs,
        [3, 5, 7, 8, 9, 10],
        "every message once, in rev order"
    );
    let none = changes(&alice, room.id, "?since_rev=10").await;
    assert!(none.messages.is_empty() && !none.has_more);
    assert_eq!(none.last_rev, 10);
}

async fn the_change_feed_is_validated_and_for_members_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    let den = alice.create_room("Den", true).await;
    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?since_rev=x",
        "?since_rev=1.5",
    ] {
        alice
            .get(&format!("/rooms/{}/changes{query}", room.id))
            .await
            .assert_problem(400, "invalid_query");
    }
    bob.get(&format!("/rooms/{}/changes", room.id))
        .await
        .assert_problem(403, "not_a_member");
    bob.get(&format!("/rooms/{}/changes", den.id))
        .await
        .assert_problem(404, "room_not_found");
    alice
        .get(&format!("/rooms/{}/changes", Uuid::new_v4()))
        .await
        .assert_problem(404, "room_not_found");
    alice
        .get("/rooms/nope/changes")
        .await
        .assert_problem(400, "invalid_path");
    // A negative cursor is just "from the start".
    alice.say(room.id, "hi").await;
    assert_eq!(
        changes(&alice, room.id, "?since_rev=-5")
            .await
            .messages
            .len(),
        1
    );
}

fn counters(room: &Room) -> (Option<i64>, Option<i64>, Option<i64>) {
    (room.last_seq, room.last_read_seq, room.unread_count)
}

async fn unread_counts_follow_reads_own_messages_and_deletes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let quiet = bob.create_room("Quiet", true).await;

    let mut from_alice = Vec::new();
    for n in 1..=3 {
        from_alice.push(alice.say(room.id, &format!("a{n}")).await);
        bob.say(room.id, &format!("b{n}")).await;
    }
    let mine = |list: RoomList, id: Uuid| list.rooms.into_iter().find(|r| r.id == id).unwrap();
    let listed = mine(bob.get("/rooms").await.json(), room.id);
    // Bob's own messages are not unread to him.
    assert_eq!(counters(&listed), (Some(6), Some(0), Some(3)));
    let one: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(counters(&one), (Some(6), Some(0), Some(3)));
    assert_eq!(
        counters(&mine(bob.get("/rooms").await.json(), quiet.id)),
        (Some(0), Some(0), Some(0))
    );
    let for_alice: Room = alice.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(counters(&for_alice), (Some(6), Some(0), Some(3)));

    // Reading up to seq 3 (a1, b1, a2) leaves a3.
    let mut ws = bob.subscribed(room.id).await;
    ws.send(ClientEvent::Read {
        room_id: room.id,
        seq: 3,
    })
    .await;
    ws.expect(|e| matches!(e, ServerEvent::Read { .. })).await;
    let one: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(counters(&one), (Some(6), Some(3), Some(1)));
    // A deleted message is not unread.
    alice.delete_message(room.id, from_alice[2].id).await;
    let one: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(counters(&one), (Some(6), Some(3), Some(0)));

    // Outsiders see no reading state; neither does a public listing.
    let outside: serde_json::Value = carol.get(&format!("/rooms/{}", room.id)).await.json();
    for field in ["last_seq", "last_read_seq", "unread_count"] {
        assert!(outside.get(field).is_none(), "{outside}");
    }
    let public: serde_json::Value = bob.get("/rooms/public").await.json();
    assert!(public["rooms"][0].get("unread_count").is_none());
    // The creator of a room starts with nothing unread.
    let created: serde_json::Value = carol.post("/rooms", json!({"name": "Mine"})).await.json();
    assert_eq!(
        (
            &created["last_seq"],
            &created["last_read_seq"],
            &created["unread_count"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );
}

async fn unread_counts_are_bounded_far_behind(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.unread_count_max = 5).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    bob.say(room.id, "mine").await;
    for n in 0..7 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    // Eight behind, window of five: the first five after his last read, one of them his own.
    let one: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(counters(&one), (Some(8), Some(0), Some(4)));
    // Within the window again, exact.
    let mut ws = bob.subscribed(room.id).await;
    ws.send(ClientEvent::Read {
        room_id: room.id,
        seq: 4,
    })
    .await;
    ws.expect(|e| matches!(e, ServerEvent::Read { .. })).await;
    let one: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(counters(&one), (Some(8), Some(4), Some(4)));
}

async fn concurrent_reactions_from_many_users_all_count_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let message = alice.say(room.id, "popular").await;
    let mut users = Vec::new();
    for n in 0..12 {
        let user = app.register(&format!("fan{n}")).await;
        user.join(room.id).await;
        users.push(user);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        tasks.spawn(async move {
            for emoji in ["👍", "❤️", "👍", "🎉"] {
                assert_eq!(user.react(room.id, message.id, emoji).await.status, 204);
            }
            assert_eq!(user.unreact(room.id, message.id, "🎉").await.status, 204);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let now = alice.message(room.id, message.id).await;
    let counts: Vec<(String, i64)> = now
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.count))
        .collect();
    assert_eq!(counts, [("👍".into(), 12), ("❤️".into(), 12)]);
    // Three changes per user (👍, ❤️, 🎉), one removal: every one took exactly one rev.
    assert_eq!(now.rev, message.rev + 12 * 4);
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM message_reactions")
            .await,
        24
    );
}

async fn a_delete_racing_edits_never_resurrects_content(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    for round in 0..8 {
        let message = alice.say(room.id, &format!("round {round}")).await;
        let editor = alice.clone();
        let edits = tokio::spawn(async move {
            let mut statuses = HashSet::new();
            for n in 0..6 {
                let reply = editor
                    .edit(room.id, message.id, &format!("edit {round}.{n}"))
                    .await;
                statuses.insert(reply.status.as_u16());
            }
            statuses
        });
        let deleted = alice.delete_message(room.id, message.id).await;
        assert_eq!(deleted.status, 204);
        let statuses = edits.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        let now = alice.message(room.id, message.id).await;
        assert_eq!(now.content, "", "round {round}: {now:?}");
        assert!(now.deleted_at.is_some());
        // Subscribers end on the tombstone too: it is the highest rev of the message.
        let mut last: Option<Message> = None;
        while last.as_ref().is_none_or(|m| m.rev < now.rev) {
            match ws.next_event().await {
                ServerEvent::MessageUpdated { message: m } if m.id == message.id => {
                    assert!(last.as_ref().is_none_or(|l| l.rev < m.rev));
                    last = Some(m);
                }
                _ => {}
            }
        }
        assert_eq!(last, Some(now));
    }
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM message_versions").await,
        0,
        "no edit history of a deleted message is left"
    );
}
