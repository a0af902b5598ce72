//! Creating, finding and listing rooms.

use nebula_wire::{PublicRoomPage, Room, RoomList};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_new_room_is_public_unless_asked_and_its_creator_owns_it,
    public_rooms_are_listed_newest_first_and_searchable,
    my_rooms_include_private_ones,
    room_input_is_validated,
);

async fn a_new_room_is_public_unless_asked_and_its_creator_owns_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let reply = alice
        .post(
            "/rooms",
            json!({"name": "General", "description": "Everything"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let room: Room = reply.json();
    assert!(!room.is_private);
    assert_eq!(room.owner_id, alice.user.id);
    assert_eq!(room.member_count, 1);
    assert_eq!(room.description.as_deref(), Some("Everything"));

    let fetched: Room = alice.get(&format!("/rooms/{}", room.id)).await.json();
    assert_eq!(fetched, room);
    let members: serde_json::Value = alice
        .get(&format!("/rooms/{}/members", room.id))
        .await
        .json();
    assert_eq!(members["members"][0]["role"], "owner");
    assert_eq!(members["members"][0]["username"], "alice");
}

async fn public_rooms_are_listed_newest_first_and_searchable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let mut created = Vec::new();
    for name in ["Rust fans", "Cooking", "rustaceans", "100% off_topic"] {
        created.push(alice.create_room(name, false).await);
    }
    alice.create_room("Secret rust club", true).await;

    let all: PublicRoomPage = alice.get("/rooms/public").await.json();
    assert_eq!(all.total, 4, "private rooms are not listed");
    let names: Vec<_> = all.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["100% off_topic", "rustaceans", "Cooking", "Rust fans"]
    );

    let rust: PublicRoomPage = alice.get("/rooms/public?q=RUST").await.json();
    assert_eq!(rust.total, 2);
    assert!(
        rust.rooms
            .iter()
            .all(|r| r.name.to_lowercase().contains("rust"))
    );

    let percent: PublicRoomPage = alice.get("/rooms/public?q=%25").await.json();
    assert_eq!(percent.total, 1, "LIKE wildcards in q are literal");
    let underscore: PublicRoomPage = alice.get("/rooms/public?q=f_t").await.json();
    assert_eq!(underscore.total, 1);

    let page2: PublicRoomPage = alice.get("/rooms/public?page=2&page_size=3").await.json();
    assert_eq!(page2.total, 4, "total counts every match, not the page");
    assert_eq!(page2.rooms.len(), 1);
    assert_eq!(page2.rooms[0].id, created[0].id);
    let beyond: PublicRoomPage = alice.get("/rooms/public?page=99").await.json();
    assert!(beyond.rooms.is_empty());
}

async fn my_rooms_include_private_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let public = alice.create_room("Town square", false).await;
    let private = alice.create_room("Alice's den", true).await;
    let bobs = bob.create_room("Bob's", false).await;

    let mine: RoomList = alice.get("/rooms").await.json();
    let mut ids: Vec<_> = mine.rooms.iter().map(|r| r.id).collect();
    ids.sort();
    let mut expected = vec![public.id, private.id];
    expected.sort();
    assert_eq!(ids, expected);
    let his: RoomList = bob.get("/rooms").await.json();
    assert_eq!(
        his.rooms.iter().map(|r| r.id).collect::<Vec<_>>(),
        [bobs.id]
    );
}

async fn room_input_is_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "ok", "description": "d".repeat(1001)}),
    ] {
        alice
            .post("/rooms", body)
            .await
            .assert_problem(422, "validation_failed");
    }
    alice
        .post("/rooms", json!({"name": "ok", "is_private": "yes"}))
        .await
        .assert_problem(422, "invalid_body");
    let hundred = alice
        .post(
            "/rooms",
            json!({"name": "é".repeat(100), "unknown_field": 1}),
        )
        .await;
    assert_eq!(
        hundred.status,
        StatusCode::CREATED,
        "100 characters is allowed; unknown fields are ignored"
    );
    for query in [
        "?page=0",
        "?page_size=0",
        "?page_size=101",
        "?page=abc",
        "?page=-1",
    ] {
        alice
            .get(&format!("/rooms/public{query}"))
            .await
            .assert_problem(400, "invalid_query");
    }
}
