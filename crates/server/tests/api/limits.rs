//! No member can knock a room offline: every kind of frame has a budget, typing is coalesced,
//! low-value events are shed before messages, and connections and subscriptions are capped.

use std::time::Duration;

use futures_util::SinkExt;
use nebula_wire::{ClientEvent, ServerEvent, TypingState};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::ws_client::{Ended, PATIENCE, WsClient};

on_both_backends!(
    a_typing_flood_leaves_every_other_subscriber_connected,
    typing_is_coalesced_and_the_last_state_always_arrives,
    the_frame_budget_is_shared_by_a_users_connections,
    subscriptions_per_connection_are_capped,
    connections_per_user_are_capped,
);

/// Events until a `pong`: everything the server sent before answering a ping.
async fn drain(ws: &mut WsClient) -> Vec<ServerEvent> {
    ws.send(ClientEvent::Ping).await;
    let mut seen = Vec::new();
    loop {
        match ws.next_event().await {
            ServerEvent::Pong => return seen,
            event => seen.push(event),
        }
    }
}

fn typing_states(events: &[ServerEvent]) -> Vec<TypingState> {
    events
        .iter()
        .filter_map(|event| match event {
            ServerEvent::Typing { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

/// The attack seen in the wild: one member sends 20,000 `typing` frames as fast as the socket
/// allows. Before budgets, every other subscriber's queue overflowed and all were dropped.
async fn a_typing_flood_leaves_every_other_subscriber_connected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.register("owner").await;
    let room = owner.create_room("Busy", false).await;
    let mut listeners = Vec::new();
    for n in 0..20 {
        let user = app.register(&format!("listener{n}")).await;
        assert_eq!(user.join(room.id).await.status, StatusCode::CREATED);
        listeners.push(user.subscribed(room.id).await);
    }
    let flooder = app.register("flooder").await;
    flooder.join(room.id).await;
    let mut flood = flooder.subscribed(room.id).await;

    let frames: Vec<String> = [TypingState::Start, TypingState::Stop]
        .iter()
        .map(|state| {
            serde_json::to_string(&ClientEvent::Typing {
                room_id: room.id,
                state: *state,
            })
            .unwrap()
        })
        .collect();
    for n in 0..20_000 {
        // The server closes the socket long before the end; later writes just fail.
        if flood
            .stream
            .feed(Frame::text(frames[n % 2].as_str()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = flood.stream.flush().await;
    let (ended, seen) = flood.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(1008))), "{ended:?}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, ServerEvent::Error { code, .. } if code == "rate_limited")),
        "the flooder was told it is rate limited"
    );

    // Everyone else is still here, and messages still arrive.
    let message = owner.say(room.id, "still here?").await;
    for (n, listener) in listeners.iter_mut().enumerate() {
        let got = listener.next_message().await;
        assert_eq!(got.id, message.id, "listener {n}");
        let typing = typing_states(&drain(listener).await);
        // Coalesced: one relay per second at most, plus a final stop on the way out.
        assert!(
            typing.len() <= 8,
            "listener {n} saw {} typing events",
            typing.len()
        );
    }
}

async fn typing_is_coalesced_and_the_last_state_always_arrives(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Chat", false).await;
    bob.join(room.id).await;
    let mut alice_ws = alice.subscribed(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;

    // A start and an immediate stop: alice sees both, in order (the stop a moment later).
    for state in [TypingState::Start, TypingState::Stop] {
        bob_ws
            .send(ClientEvent::Typing {
                room_id: room.id,
                state,
            })
            .await;
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.extend(typing_states(&[alice_ws
            .expect(|e| matches!(e, ServerEvent::Typing { .. }))
            .await]));
    }
    assert_eq!(seen, [TypingState::Start, TypingState::Stop]);

    // Ten quick flips ending on stop: at most a couple of relays, and the last one is stop.
    for n in 0..10 {
        let state = if n % 2 == 0 {
            TypingState::Start
        } else {
            TypingState::Stop
        };
        bob_ws
            .send(ClientEvent::Typing {
                room_id: room.id,
                state,
            })
            .await;
    }
    let mut relayed = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(3), alice_ws.next_event()).await;
        match event {
            Ok(ServerEvent::Typing { state, .. }) => relayed.push(state),
            Ok(_) => {}
            Err(_) => break, // nothing more for three seconds: the relay has settled
        }
    }
    assert!(relayed.len() <= 2, "{relayed:?}");
    assert_ne!(
        relayed.last(),
        Some(&TypingState::Start),
        "alice must not be left seeing bob type: {relayed:?}"
    );

    // Bob starts typing and disconnects: alice sees him stop.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bob_ws
        .send(ClientEvent::Typing {
            room_id: room.id,
            state: TypingState::Start,
        })
        .await;
    let start = alice_ws
        .expect(|e| matches!(e, ServerEvent::Typing { .. }))
        .await;
    assert!(matches!(
        start,
        ServerEvent::Typing {
            state: TypingState::Start,
            ..
        }
    ));
    drop(bob_ws);
    let stop = alice_ws
        .expect(|e| matches!(e, ServerEvent::Typing { .. }))
        .await;
    assert!(
        matches!(
            stop,
            ServerEvent::Typing {
                state: TypingState::Stop,
                ..
            }
        ),
        "{stop:?}"
    );
}

async fn the_frame_budget_is_shared_by_a_users_connections(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.ws_frames_per_second = 0;
        config.ws_user_frames_per_second = 2; // bursts of 10
    })
    .await;
    let alice = app.register("alice").await;
    let mut one = alice.ws("/ws").await;
    let mut two = alice.ws("/ws").await;
    for _ in 0..6 {
        one.send(ClientEvent::Ping).await;
        assert_eq!(one.next_event().await, ServerEvent::Pong);
    }
    // The user's bucket had 10: the second connection gets the rest, then is refused.
    let mut pongs = 0;
    let mut limited = false;
    for _ in 0..8 {
        two.send(ClientEvent::Ping).await;
        match two.next_event().await {
            ServerEvent::Pong => pongs += 1,
            ServerEvent::Error { code, .. } if code == "rate_limited" => limited = true,
            other => panic!("{other:?}"),
        }
    }
    assert!(limited, "the shared budget ran out");
    assert!(pongs <= 5, "{pongs} pongs on the second connection");
}

async fn subscriptions_per_connection_are_capped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.ws_max_subscriptions = 2).await;
    let alice = app.register("alice").await;
    let rooms = [
        alice.create_room("one", false).await,
        alice.create_room("two", false).await,
        alice.create_room("three", true).await,
    ];
    let mut ws = alice.ws("/ws").await;
    for room in &rooms[..2] {
        ws.send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: None,
            since_rev: None,
        })
        .await;
        assert!(matches!(
            ws.next_event().await,
            ServerEvent::Subscribed { .. }
        ));
    }
    ws.send(ClientEvent::Subscribe {
        room_id: rooms[2].id,
        since_seq: None,
        since_rev: None,
    })
    .await;
    let refused = ws.next_event().await;
    assert!(
        matches!(&refused, ServerEvent::Error { code, reference: Some(r), .. }
            if code == "too_many_subscriptions" && *r == rooms[2].id.to_string()),
        "{refused:?}"
    );
    // Subscribing again to a room it has is no new subscription.
    ws.send(ClientEvent::Subscribe {
        room_id: rooms[0].id,
        since_seq: None,
        since_rev: None,
    })
    .await;
    assert!(matches!(
        ws.next_event().await,
        ServerEvent::Subscribed { .. }
    ));
    ws.send(ClientEvent::Unsubscribe {
        room_id: rooms[1].id,
    })
    .await;
    assert!(matches!(
        ws.next_event().await,
        ServerEvent::Unsubscribed { .. }
    ));
    ws.send(ClientEvent::Subscribe {
        room_id: rooms[2].id,
        since_seq: None,
        since_rev: None,
    })
    .await;
    let subscribed = ws.next_event().await;
    assert!(
        matches!(subscribed, ServerEvent::Subscribed { .. }),
        "{subscribed:?}"
    );
}

async fn connections_per_user_are_capped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.ws_max_connections_per_user = 2).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let first = alice.ws("/ws").await;
    let _second = alice.ws("/ws").await;
    match alice.try_ws("/ws").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429)
        }
        other => panic!("a third socket must be refused: {:?}", other.map(|_| ())),
    }
    let _bob = bob.ws("/ws").await; // the cap is per user
    // Once one closes, a new one is allowed (the server frees the slot when its task ends).
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if alice.try_ws("/ws").await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
