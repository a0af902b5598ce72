//! Events addressed to users rather than rooms (`dm.opened`, `room.added`,
//! `contact.requested`, `contact.accepted`): every open connection of the user gets them,
//! subscribed to anything or nothing, and nobody else does.

use nebula_wire::{ClientEvent, ContactRequest, Room, RoomKind, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Session, TestApp};
use crate::on_both_backends;
use crate::ws_client::WsClient;

on_both_backends!(
    new_rooms_and_contacts_reach_every_connection_of_their_user_only,
    rooms_you_open_or_join_yourself_are_announced_only_where_they_are_new,
);

/// A `/ws` connection subscribed to nothing, known to the server (a ping answered).
async fn connected(session: &Session) -> WsClient {
    let mut ws = session.ws("/ws").await;
    ws.send(ClientEvent::Ping).await;
    ws.expect(|event| matches!(event, ServerEvent::Pong)).await;
    ws
}

/// Every event `ws` received before a ping sent now is answered.
async fn received(ws: &mut WsClient) -> Vec<ServerEvent> {
    ws.send(ClientEvent::Ping).await;
    let mut events = Vec::new();
    loop {
        match ws.next_event().await {
            ServerEvent::Pong => return events,
            event => events.push(event),
        }
    }
}

async fn new_rooms_and_contacts_reach_every_connection_of_their_user_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut alices = connected(&alice).await;
    let mut bobs_phone = connected(&bob).await;
    let mut bobs_laptop = connected(&bob).await;
    let mut carols = connected(&carol).await;

    // Alice opens a direct room with bob: both of bob's connections hear of it, with alice as
    // the peer, and so does alice's own (another device of hers would).
    let dm: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    for ws in [&mut bobs_phone, &mut bobs_laptop] {
        let events = received(ws).await;
        let [ServerEvent::DmOpened { room }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(room.id, dm.id);
        assert_eq!(room.kind, RoomKind::Direct);
        assert_eq!(room.peer.as_ref().map(|p| p.id), Some(alice.user.id));
    }
    let events = received(&mut alices).await;
    let [ServerEvent::DmOpened { room }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(room.peer.as_ref().map(|p| p.id), Some(bob.user.id));

    // Alice adds bob to a private room.
    let private = alice.create_room("Secret plans", true).await;
    assert_eq!(
        alice.add(private.id, "bob").await.status,
        StatusCode::CREATED
    );
    let events = received(&mut bobs_phone).await;
    let [ServerEvent::RoomAdded { room }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!((room.id, room.is_private), (private.id, true));
    assert_eq!(room.last_seq, Some(0), "seen as a member sees it");

    // A contact request, accepted.
    let request: ContactRequest = alice
        .post("/contacts/requests", json!({"user_id": bob.user.id}))
        .await
        .json();
    let events = received(&mut bobs_laptop).await;
    let [
        ServerEvent::RoomAdded { .. },
        ServerEvent::ContactRequested { request: heard },
    ] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!(heard, &request);
    let accepted = bob
        .post(
            &format!("/contacts/requests/{}/accept", request.id),
            json!({}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK);
    let events = received(&mut alices).await;
    let [ServerEvent::ContactAccepted { contact }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(contact.user.id, bob.user.id);

    // Carol asks alice, alice asks carol back: for carol, alice accepted.
    let asked = carol
        .post("/contacts/requests", json!({"user_id": alice.user.id}))
        .await;
    assert_eq!(asked.status, StatusCode::CREATED);
    let back = alice
        .post("/contacts/requests", json!({"user_id": carol.user.id}))
        .await;
    assert_eq!(back.status, StatusCode::OK);
    let events = received(&mut carols).await;
    let [ServerEvent::ContactAccepted { contact }] = events.as_slice() else {
        panic!("carol hears only that alice accepted: {events:?}");
    };
    assert_eq!(contact.user.id, alice.user.id);
    let events = received(&mut alices).await;
    let [ServerEvent::ContactRequested { request }] = events.as_slice() else {
        panic!("alice heard carol's request: {events:?}");
    };
    assert_eq!(request.from.id, carol.user.id);
    let events = received(&mut bobs_phone).await;
    assert!(
        matches!(events.as_slice(), [ServerEvent::ContactRequested { .. }]),
        "bob's phone heard only his own request: {events:?}"
    );
}

async fn rooms_you_open_or_join_yourself_are_announced_only_where_they_are_new(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let dm: Room = alice
        .post("/dms", json!({"user_id": bob.user.id}))
        .await
        .json();
    let mut alices = connected(&alice).await;
    let mut bobs = connected(&bob).await;

    // The pair's existing room (200) is nothing new.
    let again = bob.post("/dms", json!({"user_id": alice.user.id})).await;
    assert_eq!(again.status, StatusCode::OK);
    let existing: Room = again.json();
    assert_eq!(existing.id, dm.id);
    // Joining a public room yourself is not being added.
    let public = alice.create_room("Open house", false).await;
    assert_eq!(bob.join(public.id).await.status, StatusCode::CREATED);
    // Adding someone already a member (200) is nothing new either.
    assert_eq!(alice.add(public.id, "bob").await.status, StatusCode::OK);
    assert_eq!(received(&mut bobs).await, []);
    assert_eq!(received(&mut alices).await, []);
}
