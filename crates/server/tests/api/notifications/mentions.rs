//! Web Push for mentions (issue 17): a mentioned member with no open connection, pushes on and
//! the room not muted gets a `message.mention` push; every push about a room carries the
//! room's RFC 8030 `Topic`, so a burst replaces rather than stacks; levels and the push switch
//! also govern membership pushes.

use nebula_wire::notify::room_topic;
use nebula_wire::{ClientEvent, Room, ServerEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::push_endpoint::PushEndpoint;
use super::{SUBJECT, WAIT, embedded, subscribe, wait_outbox_empty};
use crate::helpers::{Backend, Reply, Session, TestApp, send};
use crate::on_both_backends;

on_both_backends!(
    a_mentioned_offline_member_is_pushed_with_the_rooms_topic,
    muted_rooms_and_push_off_stop_pushes,
    an_edit_pushes_only_the_members_it_newly_mentions,
);

async fn put_json(session: &Session, path: &str, body: Value) -> Reply {
    send(
        session
            .http
            .put(format!("{}{path}", session.base))
            .bearer_auth(&session.token)
            .json(&body),
    )
    .await
}

/// A server pushing in-process to a loopback push service, and alice's room "Lobby" with bob
/// and carol in it, its membership notifications already out (before anyone has a browser).
struct Lobby {
    app: TestApp,
    endpoint: PushEndpoint,
    alice: Session,
    bob: Session,
    carol: Session,
    room: Room,
}

impl Lobby {
    async fn open(backend: Backend) -> Lobby {
        let vapid = nebula_notifier::generate_vapid_keys();
        let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
        let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
        let alice = app.register("alice").await;
        let bob = app.register("bob").await;
        let carol = app.register("carol").await;
        let room = alice.create_room("Lobby", false).await;
        for member in [&bob, &carol] {
            assert_eq!(member.join(room.id).await.status, StatusCode::CREATED);
        }
        wait_outbox_empty(&app).await;
        Lobby {
            app,
            endpoint,
            alice,
            bob,
            carol,
            room,
        }
    }
}

async fn a_mentioned_offline_member_is_pushed_with_the_rooms_topic(backend: Backend) {
    let Lobby {
        app,
        endpoint,
        alice,
        bob,
        carol,
        room,
    } = Lobby::open(backend).await;
    let (alices_browser, bobs_browser, carols_browser) = (
        endpoint.new_browser(),
        endpoint.new_browser(),
        endpoint.new_browser(),
    );
    subscribe(&alice, &alices_browser).await;
    subscribe(&bob, &bobs_browser).await;
    subscribe(&carol, &carols_browser).await;

    let message = alice
        .say(room.id, "@bob have a look, and you too @alice")
        .await;
    assert_eq!(message.mentions, [bob.user.id, alice.user.id]);
    let pushes = endpoint.wait_for_others(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let push = &pushes[0];
    assert_eq!(push.browser, bobs_browser.id);
    assert_eq!(push.raw["type"], "message.mention");
    assert_eq!(push.raw["room_id"], room.id.to_string());
    assert_eq!(push.raw["room_name"], "Lobby");
    assert_eq!(push.raw["message"]["id"], message.id.to_string());
    assert_eq!(push.raw["sender"]["username"], "alice");
    assert_eq!(push.raw["preview"], message.content);
    let topic = room_topic(room.id);
    assert_eq!(push.topic.as_deref(), Some(topic.as_str()));
    assert!(topic.len() <= 32);
    assert_eq!(endpoint.requests_for(&carols_browser), 0, "not mentioned");
    assert_eq!(endpoint.requests_for(&alices_browser), 0, "her own mention");

    // With a connection open anywhere, no push (as for direct messages).
    let mut socket = bob.ws("/ws").await;
    socket.send(ClientEvent::Ping).await;
    socket
        .expect(|event| matches!(event, ServerEvent::Pong))
        .await;
    alice.say(room.id, "@bob you are online now").await;
    // Direct messages carry their room's topic too.
    let dm: Room = alice
        .post("/dms", json!({"user_id": carol.user.id}))
        .await
        .json();
    alice.say(dm.id, "psst").await;
    let pushes = endpoint.wait_for_others(2, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(endpoint.requests_for(&bobs_browser), 1, "bob was connected");
    assert_eq!(pushes[1].browser, carols_browser.id);
    assert_eq!(pushes[1].raw["type"], "message.direct");
    assert_eq!(pushes[1].topic.as_deref(), Some(room_topic(dm.id).as_str()));
    assert_ne!(room_topic(dm.id), topic);
}

async fn muted_rooms_and_push_off_stop_pushes(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    let room = alice.create_room("Lobby", false).await;
    for member in [&bob, &carol, &dave] {
        assert_eq!(member.join(room.id).await.status, StatusCode::CREATED);
    }
    wait_outbox_empty(&app).await;
    let browsers = [
        endpoint.new_browser(),
        endpoint.new_browser(),
        endpoint.new_browser(),
        endpoint.new_browser(),
    ];
    for (user, browser) in [&alice, &bob, &carol, &dave].into_iter().zip(&browsers) {
        subscribe(user, browser).await;
    }
    let [alices, bobs, carols, daves] = &browsers;
    // Bob mutes the room, carol keeps it at the default (mentions), dave turns pushes off;
    // alice asks for everything.
    let level = |session: &Session, level: &str| {
        let (session, path) = (session.clone(), format!("/rooms/{}/notifications", room.id));
        let body = json!({"level": level});
        async move { put_json(&session, &path, body).await }
    };
    assert_eq!(level(&bob, "none").await.status, StatusCode::OK);
    assert_eq!(level(&alice, "all").await.status, StatusCode::OK);
    let off = put_json(&dave, "/me/notifications", json!({"push": false})).await;
    assert_eq!(off.status, StatusCode::OK);

    alice.say(room.id, "@bob @carol @dave meeting now").await;
    let pushes = endpoint.wait_for_others(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].browser, carols.id, "only carol");
    assert_eq!(endpoint.requests_for(bobs), 0, "bob muted the room");
    assert_eq!(endpoint.requests_for(daves), 0, "dave's pushes are off");

    // Membership pushes: for members at `all`, or who never chose (the wire contract's
    // Part 1), never for a room at `mentions` or `none` by choice, nor with pushes off.
    assert_eq!(level(&carol, "mentions").await.status, StatusCode::OK);
    let eve = app.register("eve").await;
    assert_eq!(eve.join(room.id).await.status, StatusCode::CREATED);
    let joined = endpoint.wait_for_pushes(1, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(joined[0].browser, alices.id);
    assert_eq!(joined[0].raw["type"], "member.joined");
    assert_eq!(
        joined[0].topic.as_deref(),
        Some(room_topic(room.id).as_str())
    );
    assert_eq!(endpoint.requests_for(carols), 1, "only the mention");
    assert_eq!(
        endpoint.requests_for(bobs) + endpoint.requests_for(daves),
        0
    );
}

/// An edit that adds a mention reaches the newly mentioned member as a new message would;
/// members the previous version already mentioned are not pushed again.
async fn an_edit_pushes_only_the_members_it_newly_mentions(backend: Backend) {
    let Lobby {
        app,
        endpoint,
        alice,
        bob,
        carol,
        room,
    } = Lobby::open(backend).await;
    let (bobs_browser, carols_browser) = (endpoint.new_browser(), endpoint.new_browser());
    subscribe(&bob, &bobs_browser).await;
    subscribe(&carol, &carols_browser).await;

    let message = alice.say(room.id, "@bob can you look").await;
    endpoint.wait_for_others(1, WAIT).await;
    let edited = alice
        .edit(room.id, message.id, "@bob can you look, with @carol")
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text());
    let pushes = endpoint.wait_for_others(2, WAIT).await;
    wait_outbox_empty(&app).await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    let push = &pushes[1];
    assert_eq!(push.browser, carols_browser.id);
    assert_eq!(push.raw["type"], "message.mention");
    assert_eq!(push.raw["message"]["id"], message.id.to_string());
    assert_eq!(push.raw["preview"], "@bob can you look, with @carol");
    assert_eq!(
        endpoint.requests_for(&bobs_browser),
        1,
        "bob was mentioned already"
    );

    // An edit that only drops a mention, or keeps the same ones, pushes nobody.
    let edited = alice
        .edit(room.id, message.id, "can you look, @carol")
        .await;
    assert_eq!(edited.status, StatusCode::OK);
    alice.say(room.id, "@bob marker").await;
    let pushes = endpoint.wait_for_others(3, WAIT).await;
    wait_outbox_empty(&app).await;
    assert_eq!(pushes.len(), 3, "{pushes:?}");
    assert_eq!(pushes[2].browser, bobs_browser.id, "only the marker's push");
    assert_eq!(endpoint.requests_for(&carols_browser), 1);
}
