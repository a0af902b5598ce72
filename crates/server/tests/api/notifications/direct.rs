//! Web Push for direct messages and incoming calls (issue 14): written to the outbox with the
//! message (or by the invite), dropped by the relay when the recipient has an open connection,
//! re-checked by the dispatcher (read, blocked) when it pushes; in-process and through RabbitMQ.

use nebula_notifier::PushStore;
use nebula_wire::{CallMedia, ClientEvent, Room, ServerEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::push_endpoint::{Browser, Mode, PushEndpoint};
use super::{
    RunningConsumer, SUBJECT, WAIT, broker, embedded, eventually, outbox_payloads, shared_broker,
    store_subscription, subscribe, unique_queue, wait_outbox_empty,
};
use crate::helpers::{Backend, Session, TestApp};
use crate::on_both_backends;
use crate::ws_client::WsClient;

on_both_backends!(
    a_direct_message_to_an_offline_user_is_pushed_once,
    no_push_while_the_recipient_has_a_connection,
    read_or_blocked_before_a_retry_means_no_push,
    an_offline_callee_gets_an_incoming_call_push,
    through_rabbitmq_read_or_blocked_before_dispatch_means_no_push,
    through_rabbitmq_an_offline_callee_gets_an_incoming_call_push,
);

/// The direct room of the two.
async fn open_dm(from: &Session, to: &Session) -> Room {
    let reply = from.post("/dms", json!({"user_id": to.user.id})).await;
    assert!(reply.status.is_success(), "{}", reply.text());
    reply.json()
}

/// A `/ws` socket the server has registered (it answered a ping).
async fn connect(session: &Session) -> WsClient {
    let mut ws = session.ws("/ws").await;
    ws.send(ClientEvent::Ping).await;
    ws.expect(|event| matches!(event, ServerEvent::Pong)).await;
    ws
}

/// Marks `seq` of `room` read over the WebSocket and waits until the server stored it.
async fn read_up_to(session: &Session, room: Uuid, seq: i64) {
    let mut ws = session.subscribed(room).await;
    ws.send(ClientEvent::Read { room_id: room, seq }).await;
    eventually("the read marker to be stored", WAIT, || async {
        let room: Room = session.get(&format!("/rooms/{room}")).await.json();
        room.last_read_seq == Some(seq)
    })
    .await;
}

fn assert_direct_push(push: &Value, room: &Room, message: &nebula_wire::Message, from: &Session) {
    assert_eq!(push["type"], "message.direct", "{push}");
    assert_eq!(push["room_id"], room.id.to_string());
    assert_eq!(push["message"]["id"], message.id.to_string());
    assert_eq!(push["message"]["seq"], message.seq);
    assert_eq!(push["sender"]["id"], from.user.id.to_string());
    assert_eq!(push["sender"]["username"], from.user.username);
    assert!(push["event_id"].is_string() && push["occurred_at"].is_string());
}

async fn a_direct_message_to_an_offline_user_is_pushed_once(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (alices_browser, bobs_browser) = (endpoint.new_browser(), endpoint.new_browser());
    subscribe(&alice, &alices_browser).await;
    subscribe(&bob, &bobs_browser).await;
    // A group room they share: its messages are never pushed.
    let group = alice.create_room("Lobby", false).await;
    assert_eq!(bob.join(group.id).await.status, StatusCode::CREATED);
    endpoint.wait_for_pushes(1, WAIT).await; // alice's browser hears that bob joined
    alice.say(group.id, "hello everyone").await;

    let dm = open_dm(&alice, &bob).await;
    let long = format!("{} the end", "x".repeat(200));
    let message = alice.say(dm.id, &long).await;
    endpoint.wait_for_others(1, WAIT).await;
    // Rows are deleted once out: with the outbox empty, nothing more can come.
    wait_outbox_empty(&app).await;

    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    let pushes = endpoint.others_for(&bobs_browser);
    assert_eq!(pushes.len(), 1, "exactly once: {pushes:?}");
    assert_eq!(endpoint.requests_for(&bobs_browser), 1);
    assert_direct_push(&pushes[0], &dm, &message, &alice);
    let preview = pushes[0]["preview"].as_str().unwrap();
    assert_eq!(preview, format!("{}…", "x".repeat(100)));
    assert!(
        endpoint.others_for(&alices_browser).is_empty(),
        "the sender is never pushed their own message"
    );
}

async fn no_push_while_the_recipient_has_a_connection(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (bobs_browser, carols_browser) = (endpoint.new_browser(), endpoint.new_browser());
    subscribe(&bob, &bobs_browser).await;
    subscribe(&carol, &carols_browser).await;
    let with_bob = open_dm(&alice, &bob).await;
    let with_carol = open_dm(&alice, &carol).await;

    // Bob has a socket open, subscribed to no room at all; carol has none.
    let _bobs_socket = connect(&bob).await;
    alice.say(with_bob.id, "you are online").await;
    let to_carol = alice.say(with_carol.id, "you are not").await;
    endpoint.wait_for_others(1, WAIT).await;
    wait_outbox_empty(&app).await;

    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(endpoint.requests_for(&bobs_browser), 0, "bob was connected");
    let pushes = endpoint.others_for(&carols_browser);
    assert_eq!(pushes.len(), 1);
    assert_direct_push(&pushes[0], &with_carol, &to_carol, &alice);
}

/// In-process, checks at dispatch time: the first pushes fail (the push service is down);
/// before the retry bob reads his message and carol blocks the sender, so the retries send
/// nothing.
async fn read_or_blocked_before_a_retry_means_no_push(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (bobs_browser, carols_browser) = (endpoint.new_browser(), endpoint.new_browser());
    subscribe(&bob, &bobs_browser).await;
    subscribe(&carol, &carols_browser).await;
    let with_bob = open_dm(&alice, &bob).await;
    let with_carol = open_dm(&alice, &carol).await;
    endpoint.set_mode(&bobs_browser, Mode::Unavailable);
    endpoint.set_mode(&carols_browser, Mode::Unavailable);

    let to_bob = alice.say(with_bob.id, "are you there?").await;
    alice.say(with_carol.id, "and you?").await;
    endpoint
        .wait_until(WAIT, "the first attempts", |e| {
            e.requests_for(&bobs_browser) == 1 && e.requests_for(&carols_browser) == 1
        })
        .await;
    // The rows wait for their retries (1 s later).
    assert_eq!(outbox_payloads(&app.database_url).await.len(), 2);
    read_up_to(&bob, with_bob.id, to_bob.seq).await;
    assert_eq!(
        carol
            .put(&format!("/blocks/{}", alice.user.id))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    endpoint.set_mode(&bobs_browser, Mode::Accept);
    endpoint.set_mode(&carols_browser, Mode::Accept);
    wait_outbox_empty(&app).await;

    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(endpoint.requests_for(&bobs_browser), 1, "bob had read it");
    assert_eq!(
        endpoint.requests_for(&carols_browser),
        1,
        "carol blocked alice"
    );
    assert!(endpoint.others().is_empty());
}

async fn an_offline_callee_gets_an_incoming_call_push(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let browser = endpoint.new_browser();
    subscribe(&bob, &browser).await;
    open_dm(&alice, &bob).await;
    let mut alices_socket = connect(&alice).await;

    let call_id = Uuid::now_v7();
    alices_socket
        .send(ClientEvent::CallInvite {
            call_id,
            to_user_id: bob.user.id,
            media: CallMedia::Audio,
            sdp: "v=0 offer".into(),
        })
        .await;
    let pushes = endpoint.wait_for_others(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(pushes.len(), 1);
    let push = &pushes[0].raw;
    assert_eq!(push["type"], "call.incoming", "{push}");
    assert_eq!(push["call_id"], call_id.to_string());
    assert_eq!(push["from"]["id"], alice.user.id.to_string());
    assert_eq!(push["from"]["username"], "alice");
    assert_eq!(push["media"], "audio");
    assert!(push["expires_at"].is_string());
    // Worth delivering only while it rings (60 s by default).
    assert!((1..=60).contains(&pushes[0].ttl), "TTL {}", pushes[0].ttl);
    alices_socket
        .send(ClientEvent::CallHangup { call_id })
        .await;

    // With a connection open, bob hears the ring there instead.
    let mut bobs_socket = connect(&bob).await;
    let second = Uuid::now_v7();
    alices_socket
        .send(ClientEvent::CallInvite {
            call_id: second,
            to_user_id: bob.user.id,
            media: CallMedia::Video,
            sdp: "v=0 offer".into(),
        })
        .await;
    bobs_socket
        .expect(
            |event| matches!(event, ServerEvent::CallInvite { call_id, .. } if *call_id == second),
        )
        .await;
    wait_outbox_empty(&app).await;
    assert_eq!(
        endpoint.requests_for(&browser),
        1,
        "no push for a connected callee"
    );
}

/// Broker mode, checks at dispatch time: the rows are published while no notifier runs; then
/// bob reads his message and carol blocks the sender; only dave, who did neither, is pushed,
/// once. The consumer takes one event at a time, in queue order, so when dave's push arrives
/// the two before it were decided.
async fn through_rabbitmq_read_or_blocked_before_dispatch_means_no_push(backend: Backend) {
    let test = "through_rabbitmq_read_or_blocked_before_dispatch_means_no_push";
    let Some(url) = shared_broker(test) else {
        return;
    };
    let queue = unique_queue();
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| broker(config, &url, &queue)).await;
    let store = PushStore::connect(&app.database_url, 4).await.unwrap();
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let mut recipients: Vec<(Session, Browser, Room)> = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let user = app.register(name).await;
        let browser = endpoint.new_browser();
        store_subscription(&store, &user, &browser).await;
        let room = open_dm(&alice, &user).await;
        recipients.push((user, browser, room));
    }
    // No consumer yet: the relay declares the queue itself, and the events wait there.
    let mut messages = Vec::new();
    for (user, _, room) in &recipients {
        messages.push(
            alice
                .say(room.id, &format!("hi {}", user.user.username))
                .await,
        );
    }
    wait_outbox_empty(&app).await; // all three are in RabbitMQ now
    let (bob, carol) = (&recipients[0].0, &recipients[1].0);
    read_up_to(bob, recipients[0].2.id, messages[0].seq).await;
    assert_eq!(
        carol
            .put(&format!("/blocks/{}", alice.user.id))
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    let consumer = RunningConsumer::start(&url, &queue, store.clone(), &vapid);
    let (dave, daves_browser, daves_room) = &recipients[2];
    endpoint
        .wait_until(WAIT, "dave's push", |e| {
            !e.others_for(daves_browser).is_empty()
        })
        .await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(
        endpoint.requests_for(&recipients[0].1),
        0,
        "bob had read it"
    );
    assert_eq!(
        endpoint.requests_for(&recipients[1].1),
        0,
        "carol blocked alice"
    );
    let pushes = endpoint.others_for(daves_browser);
    assert_eq!(pushes.len(), 1);
    assert_direct_push(&pushes[0], daves_room, &messages[2], &alice);
    assert_eq!(pushes[0]["preview"], format!("hi {}", dave.user.username));
    consumer.stop(&url).await;
    store.close().await;
}

async fn through_rabbitmq_an_offline_callee_gets_an_incoming_call_push(backend: Backend) {
    let test = "through_rabbitmq_an_offline_callee_gets_an_incoming_call_push";
    let Some(url) = shared_broker(test) else {
        return;
    };
    let queue = unique_queue();
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| broker(config, &url, &queue)).await;
    let store = PushStore::connect(&app.database_url, 4).await.unwrap();
    let consumer = RunningConsumer::start(&url, &queue, store.clone(), &vapid);
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let browser = endpoint.new_browser();
    store_subscription(&store, &bob, &browser).await;
    open_dm(&alice, &bob).await;
    let mut alices_socket = connect(&alice).await;

    let call_id = Uuid::now_v7();
    alices_socket
        .send(ClientEvent::CallInvite {
            call_id,
            to_user_id: bob.user.id,
            media: CallMedia::Video,
            sdp: "v=0 offer".into(),
        })
        .await;
    let pushes = endpoint.wait_for_others(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(pushes[0].browser, browser.id);
    assert_eq!(pushes[0].raw["type"], "call.incoming");
    assert_eq!(pushes[0].raw["call_id"], call_id.to_string());
    assert_eq!(pushes[0].raw["from"]["username"], "alice");
    assert_eq!(pushes[0].raw["media"], "video");
    consumer.stop(&url).await;
    store.close().await;
}
