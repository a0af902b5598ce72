//! Direct rooms: one per pair of users, private, with a membership that never changes.

use nebula_wire::{ClientEvent, DirectRoomList, Room, RoomKind, RoomList, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_direct_room_is_opened_once_whoever_asks,
    opening_a_direct_room_refuses_bad_targets,
    concurrent_requests_for_one_pair_get_one_room,
    direct_rooms_are_listed_most_recent_message_first,
    a_direct_room_is_private_and_its_members_never_change,
    blocks_refuse_direct_rooms_and_their_messages,
    dm_policy_contacts_needs_contacts,
    a_block_is_seen_by_the_commit_itself_whatever_a_writer_cached,
    a_direct_room_is_not_created_past_a_block_that_raced_the_request,
);

async fn a_direct_room_is_opened_once_whoever_asks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;

    let created = alice.post("/dms", json!({"user_id": bob.user.id})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let room: Room = created.json();
    assert_eq!(room.kind, RoomKind::Direct);
    assert!(room.is_private);
    assert_eq!(room.member_count, 2);
    assert_eq!(room.peer.as_ref().map(|p| p.id), Some(bob.user.id));

    // The other side, by username in any case, gets the same room with alice as its peer.
    let again = bob.post("/dms", json!({"username": "ALICE"})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let seen_by_bob: Room = again.json();
    assert_eq!(seen_by_bob.id, room.id);
    assert_eq!(seen_by_bob.peer.as_ref().map(|p| p.id), Some(alice.user.id));
    let repeat: Room = alice.post("/dms", json!({"username": "bob"})).await.json();
    assert_eq!(repeat.id, room.id);

    // Every room object says what kind it is; group rooms have no peer.
    let group = alice.create_room("Lobby", false).await;
    assert_eq!((group.kind, group.peer.is_none()), (RoomKind::Group, true));
    let mine: RoomList = alice.get("/rooms").await.json();
    let direct = mine.rooms.iter().find(|r| r.id == room.id).unwrap();
    assert_eq!(direct.peer.as_ref().map(|p| p.id), Some(bob.user.id));
    let fetched: Room = bob.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(fetched.peer.as_ref().map(|p| p.id), Some(alice.user.id));
    let raw: serde_json::Value = alice.get(&format!("/rooms/{}", group.id)).await.json();
    assert_eq!(raw["kind"], "group");

    // They chat there like anywhere else.
    bob.say(room.id, "hi alice").await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM direct_rooms").await,
        1,
        "one row for the pair"
    );
}

async fn opening_a_direct_room_refuses_bad_targets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    alice
        .post("/dms", json!({"user_id": alice.user.id}))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .post("/dms", json!({"username": "Alice"}))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .post("/dms", json!({}))
        .await
        .assert_problem(422, "validation_failed");
    alice
        .post("/dms", json!({"user_id": uuid::Uuid::now_v7()}))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post("/dms", json!({"username": "nobody"}))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post("/dms", json!({"username": "not a name!"}))
        .await
        .assert_problem(404, "user_not_found");
    alice
        .post("/dms", json!({"user_id": "not-a-uuid"}))
        .await
        .assert_problem(422, "invalid_body");
}

async fn concurrent_requests_for_one_pair_get_one_room(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (me, other) = if i % 2 == 0 {
            (alice.clone(), bob.user.id)
        } else {
            (bob.clone(), alice.user.id)
        };
        tasks.push(tokio::spawn(async move {
            me.post("/dms", json!({"user_id": other})).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        assert!(
            matches!(reply.status, StatusCode::CREATED | StatusCode::OK),
            "{}",
            reply.text()
        );
        created += usize::from(reply.status == StatusCode::CREATED);
        ids.insert(reply.json::<Room>().id);
    }
    assert_eq!(ids.len(), 1, "one room for the pair");
    assert_eq!(created, 1, "created once");
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM rooms WHERE kind = 'direct'")
            .await,
        1,
        "no orphan room left behind"
    );
}

async fn direct_rooms_are_listed_most_recent_message_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    let with = |who: &crate::helpers::Session| json!({"user_id": who.user.id});
    let to_bob: Room = alice.post("/dms", with(&bob)).await.json();
    let to_carol: Room = alice.post("/dms", with(&carol)).await.json();
    let to_dave: Room = alice.post("/dms", with(&dave)).await.json();
    alice.create_room("Not a DM", false).await;

    alice.say(to_carol.id, "first").await;
    bob.say(to_bob.id, "second").await;
    let listed: DirectRoomList = alice.get("/dms").await.json();
    let order: Vec<_> = listed.rooms.iter().map(|r| r.id).collect();
    // Without messages, a room counts from its creation (before both messages here).
    assert_eq!(order, [to_bob.id, to_carol.id, to_dave.id]);
    assert!(listed.rooms.iter().all(|r| r.kind == RoomKind::Direct));
    assert_eq!(listed.rooms[0].unread_count, Some(1));

    carol.say(to_carol.id, "third").await;
    let listed: DirectRoomList = alice.get("/dms").await.json();
    assert_eq!(listed.rooms[0].id, to_carol.id);
    let bobs: DirectRoomList = bob.get("/dms").await.json();
    assert_eq!(bobs.rooms.len(), 1);
    assert_eq!(bobs.rooms[0].peer.as_ref().unwrap().username, "alice");
}

async fn a_direct_room_is_private_and_its_members_never_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mallory = app.register("mallory").await;
    let room: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    let path = format!("/rooms/{}", room.id);

    // Outsiders see nothing.
    let public: serde_json::Value = mallory.get("/rooms/public").await.json();
    assert_eq!(public["total"], 0);
    mallory
        .get(&path)
        .await
        .assert_problem(404, "room_not_found");
    mallory
        .join(room.id)
        .await
        .assert_problem(404, "room_not_found");
    mallory
        .post_message(room.id, json!({"content": "hi"}))
        .await
        .assert_problem(404, "room_not_found");

    // Members can neither add, join, leave, remove nor change roles.
    alice
        .add(room.id, "mallory")
        .await
        .assert_problem(409, "direct_room");
    alice.join(room.id).await.assert_problem(409, "direct_room");
    bob.leave(room.id).await.assert_problem(409, "direct_room");
    alice
        .delete(&format!("{path}/members/{}", alice.user.id))
        .await
        .assert_problem(409, "direct_room");
    alice
        .delete(&format!("{path}/members/{}", bob.user.id))
        .await
        .assert_problem(409, "direct_room");
    alice
        .patch(
            &format!("{path}/members/{}", bob.user.id),
            json!({"role": "admin"}),
        )
        .await
        .assert_problem(409, "direct_room");
    let fetched: Room = bob.get(&path).await.json();
    assert_eq!(fetched.member_count, 2);
}

async fn blocks_refuse_direct_rooms_and_their_messages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    let mut bob_ws = bob.subscribed(room.id).await;

    let blocked = alice.put(&format!("/blocks/{}", bob.user.id)).await;
    assert_eq!(blocked.status, StatusCode::NO_CONTENT, "{}", blocked.text());

    // Either way round: no new direct room, no message over REST or WebSocket.
    bob.post("/dms", json!({"user_id": alice.user.id}))
        .await
        .assert_problem(403, "cannot_message_user");
    alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .assert_problem(403, "cannot_message_user");
    bob.post_message(room.id, json!({"content": "let me explain"}))
        .await
        .assert_problem(403, "cannot_message_user");
    bob_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "please".into(),
            client_msg_id: Some("c1".into()),
            reply_to: None,
            attachments: None,
        })
        .await;
    let refused = bob_ws
        .expect(|e| matches!(e, ServerEvent::Error { .. }))
        .await;
    assert!(
        matches!(&refused, ServerEvent::Error { code, .. } if code == "cannot_message_user"),
        "{refused:?}"
    );
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM messages").await,
        0,
        "nothing stored"
    );
    // Group rooms are not affected.
    let lobby = alice.create_room("Lobby", false).await;
    bob.join(lobby.id).await;
    bob.say(lobby.id, "still here").await;

    // Unblocked: the room works again.
    let unblocked = alice.delete(&format!("/blocks/{}", bob.user.id)).await;
    assert_eq!(unblocked.status, StatusCode::NO_CONTENT);
    bob.say(room.id, "thanks").await;
    let again = bob.post("/dms", json!({"user_id": alice.user.id})).await;
    assert_eq!(again.status, StatusCode::OK);
}

async fn dm_policy_contacts_needs_contacts(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.dm_policy = nebula::config::DmPolicy::Contacts;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .assert_problem(403, "cannot_message_user");
    let request: serde_json::Value = alice
        .post("/contacts/requests", json!({"user_id": bob.user.id}))
        .await
        .json();
    let accept = bob
        .post(
            &format!(
                "/contacts/requests/{}/accept",
                request["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(accept.status, StatusCode::OK, "{}", accept.text());
    let opened = alice.post("/dms", json!({"user_id": bob.user.id})).await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.text());
}

/// The check at submit time has a twin in the message commit: a writer that already knows the
/// sender as a member (its cache) still refuses them once a block committed, because blocking
/// moves the room's membership revision under the room's lock. Driven through the store
/// directly, past the submit-time check, as a block racing a send would be.
async fn a_block_is_seen_by_the_commit_itself_whatever_a_writer_cached(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    let store = nebula::store::Store::connect(&app.database_url, 2)
        .await
        .unwrap();
    let mut cache = nebula::store::MemberCache::default();
    let message = |content: &str| nebula::store::NewMessage {
        room_id: room.id,
        sender_id: bob.user.id,
        sender_username: "bob".into(),
        content: content.into(),
        client_msg_id: None,
        reply_to: None,
        attachments: Vec::new(),
        mentions: Vec::new(),
    };
    let before = store
        .append_messages(&[message("before")], &mut cache)
        .await
        .unwrap();
    assert!(before.outcomes[0].is_ok(), "a member, now cached");

    let blocked = alice.put(&format!("/blocks/{}", bob.user.id)).await;
    assert_eq!(blocked.status, StatusCode::NO_CONTENT);
    let after = store
        .append_messages(&[message("after")], &mut cache)
        .await
        .unwrap();
    assert!(after.outcomes[0].is_err(), "refused in the commit");
    // The other user too (blocks refuse the pair's room both ways).
    let from_alice = nebula::store::NewMessage {
        sender_id: alice.user.id,
        sender_username: "alice".into(),
        ..message("mine")
    };
    let refused = store
        .append_messages(&[from_alice], &mut cache)
        .await
        .unwrap();
    assert!(refused.outcomes[0].is_err());
    store.close().await;
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM messages").await, 1);

    // Unblocked: the commit accepts them again.
    alice.delete(&format!("/blocks/{}", bob.user.id)).await;
    bob.say(room.id, "hello again").await;
}

/// `POST /dms` checks blocks (and `DM_POLICY=contacts`) again in the transaction that creates
/// the room, under the users' row locks that blocking takes too: a block that committed after
/// the request's first check still stops the room. Driven through the store directly, past
/// that first check, as the racing request would be.
async fn a_direct_room_is_not_created_past_a_block_that_raced_the_request(backend: Backend) {
    use nebula::store::DirectRoom;
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let blocked = bob.put(&format!("/blocks/{}", alice.user.id)).await;
    assert_eq!(blocked.status, StatusCode::NO_CONTENT);
    let store = nebula::store::Store::connect(&app.database_url, 2)
        .await
        .unwrap();

    let opened = store
        .open_direct_room(&alice.user, &bob.user, false)
        .await
        .unwrap();
    assert_eq!(opened, DirectRoom::Refused);
    // Not contacts: refused under the contacts-only policy, allowed otherwise.
    let contacts_only = store
        .open_direct_room(&alice.user, &carol.user, true)
        .await
        .unwrap();
    assert_eq!(contacts_only, DirectRoom::Refused);
    let everyone = store
        .open_direct_room(&alice.user, &carol.user, false)
        .await
        .unwrap();
    assert!(matches!(everyone, DirectRoom::Opened { created: true, .. }));
    store.close().await;
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM rooms WHERE kind = 'direct'")
            .await,
        1
    );
}
