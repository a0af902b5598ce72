//! The WebSocket half of the contract: events, ordering, resume, and misbehaving clients.

use std::collections::HashMap;

use nebula_wire::{ClientEvent, PresenceStatus, ServerEvent, TypingState};
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::ws_client::Ended;

on_both_backends!(
    refused_clients_get_no_socket,
    a_sent_message_is_acked_to_its_sender_and_fanned_out_to_subscribers,
    messages_posted_over_rest_reach_subscribers,
    three_concurrent_senders_every_subscriber_sees_seq_1_to_150_in_order,
    with_a_write_delay_every_room_gets_everything_in_order_and_acks_follow_deliveries,
    resuming_with_since_seq_replays_exactly_what_was_missed,
    subscribing_while_messages_flow_has_no_gap_and_no_duplicate,
    the_room_endpoint_starts_subscribed,
    typing_read_presence_and_membership_events,
    leaving_a_room_ends_its_subscription,
    malformed_frames_get_errors_and_the_socket_stays_usable,
    oversized_frames_close_with_1009,
    flooding_closes_with_1008,
    a_stalled_client_is_dropped_alone_and_resumes,
    shutdown_closes_with_1012_and_loses_no_acked_message,
    an_expired_token_closes_with_4001,
);

fn status_of(err: tungstenite::Error) -> u16 {
    match err {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

async fn refused_clients_get_no_socket(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let den = alice.create_room("Den", true).await;
    let lobby = alice.create_room("Lobby", false).await;

    let mut forged = mallory.clone();
    forged.token = "not-a-token".into();
    assert_eq!(status_of(forged.try_ws("/ws").await.err().unwrap()), 401);
    assert_eq!(
        status_of(
            mallory
                .try_ws(&format!("/ws/rooms/{}", den.id))
                .await
                .err()
                .unwrap()
        ),
        404
    );
    assert_eq!(
        status_of(
            mallory
                .try_ws(&format!("/ws/rooms/{}", lobby.id))
                .await
                .err()
                .unwrap()
        ),
        403
    );
    let plain = app.get("/ws").await;
    plain.assert_problem(401, "unauthorized");

    // Over `/ws`, subscribing to rooms one may not see is refused with an error event.
    let mut ws = mallory.ws("/ws").await;
    ws.send(ClientEvent::Subscribe {
        room_id: den.id,
        since_seq: None,
        since_rev: None,
    })
    .await;
    let error = ws.next_event().await;
    assert!(
        matches!(&error, ServerEvent::Error { code, reference: Some(r), .. } if code == "room_not_found" && *r == den.id.to_string()),
        "{error:?}"
    );
    ws.send(ClientEvent::Subscribe {
        room_id: lobby.id,
        since_seq: None,
        since_rev: None,
    })
    .await;
    assert!(
        matches!(ws.next_event().await, ServerEvent::Error { code, .. } if code == "not_a_member")
    );
}

async fn a_sent_message_is_acked_to_its_sender_and_fanned_out_to_subscribers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let mut alice_ws = alice.subscribed(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;

    alice_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "hi bob".into(),
            client_msg_id: Some("c1".into()),
            reply_to: None,
            attachments: None,
        })
        .await;
    // The sender gets both its ack and, as a subscriber, message.new (in either order).
    let (mut ack, mut echo) = (None, None);
    while ack.is_none() || echo.is_none() {
        match alice_ws.next_event().await {
            ServerEvent::MessageAck {
                client_msg_id,
                message,
            } => ack = Some((client_msg_id, message)),
            ServerEvent::MessageNew { message } => echo = Some(message),
            _ => {}
        }
    }
    let (client_msg_id, message) = ack.unwrap();
    assert_eq!(client_msg_id.as_deref(), Some("c1"));
    assert_eq!((message.seq, message.content.as_str()), (1, "hi bob"));
    assert_eq!(
        echo.unwrap(),
        message,
        "the sender's own socket gets message.new too"
    );
    assert_eq!(bob_ws.next_message().await, message);

    // The ack means durable: history already has it.
    let history: serde_json::Value = bob.history(room.id, "").await.json();
    assert_eq!(history["total"], 1);
    // A resend with the same client_msg_id is acked with the original.
    alice_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "hi bob".into(),
            client_msg_id: Some("c1".into()),
            reply_to: None,
            attachments: None,
        })
        .await;
    let again = alice_ws
        .expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
        .await;
    assert!(matches!(again, ServerEvent::MessageAck { message: m, .. } if m == message));
}

async fn messages_posted_over_rest_reach_subscribers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    let posted = alice.say(room.id, "from REST").await;
    assert_eq!(ws.next_message().await, posted);
}

async fn three_concurrent_senders_every_subscriber_sees_seq_1_to_150_in_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = app.register("owner").await;
    let room = owner.create_room("Busy", false).await;
    let mut watchers = Vec::new();
    for name in ["watcher1", "watcher2"] {
        let user = app.register(name).await;
        user.join(room.id).await;
        watchers.push(user.subscribed(room.id).await);
    }
    // Everyone is subscribed before the first message goes out.
    let mut sockets = Vec::new();
    for n in 0..3 {
        let user = app.register(&format!("sender{n}")).await;
        user.join(room.id).await;
        sockets.push(user.subscribed(room.id).await);
    }
    let mut senders = tokio::task::JoinSet::new();
    for (n, mut ws) in sockets.into_iter().enumerate() {
        senders.spawn(async move {
            ws.send_numbered(room.id, n, 50).await;
            let mut acked = 0;
            let mut seqs = Vec::new();
            while acked < 50 {
                match ws.next_event().await {
                    ServerEvent::MessageAck { .. } => acked += 1,
                    ServerEvent::MessageNew { message } => seqs.push(message.seq),
                    _ => {}
                }
            }
            (ws, seqs)
        });
    }
    while let Some(result) = senders.join_next().await {
        let (mut ws, mut seqs) = result.unwrap();
        while seqs.len() < 150 {
            seqs.push(ws.next_message().await.seq);
        }
        assert_eq!(seqs, (1..=150).collect::<Vec<i64>>(), "a sender's view");
    }
    for mut ws in watchers {
        let mut seqs = Vec::new();
        for _ in 0..150 {
            seqs.push(ws.next_message().await.seq);
        }
        assert_eq!(seqs, (1..=150).collect::<Vec<i64>>(), "a watcher's view");
    }
}

/// `WS_WRITE_DELAY_MS` holds committed batches back to write them together: in two busy
/// rooms at once, every subscriber still sees every message once and in seq order, and each
/// sender's ack still comes after its message reached its own socket.
async fn with_a_write_delay_every_room_gets_everything_in_order_and_acks_follow_deliveries(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, |config| config.ws_write_delay_ms = 30).await;
    let owner = app.register("owner").await;
    let rooms = [
        owner.create_room("One", false).await.id,
        owner.create_room("Two", false).await.id,
    ];
    let mut watchers = Vec::new();
    for (n, room) in rooms.iter().enumerate() {
        let user = app.register(&format!("watcher{n}")).await;
        user.join(*room).await;
        watchers.push((*room, user.subscribed(*room).await));
    }
    let mut sockets = Vec::new();
    for n in 0..4 {
        let room = rooms[n % 2];
        let user = app.register(&format!("sender{n}")).await;
        user.join(room).await;
        sockets.push((room, user.subscribed(room).await));
    }
    let mut senders = tokio::task::JoinSet::new();
    for (n, (room, mut ws)) in sockets.into_iter().enumerate() {
        senders.spawn(async move {
            ws.send_numbered(room, n, 40).await;
            let (mut acked, mut seen) = (0, Vec::new());
            while acked < 40 {
                match ws.next_event().await {
                    ServerEvent::MessageAck { message, .. } => {
                        assert!(
                            seen.contains(&message.seq),
                            "the ack of seq {} came before its delivery",
                            message.seq
                        );
                        acked += 1;
                    }
                    ServerEvent::MessageNew { message } => seen.push(message.seq),
                    _ => {}
                }
            }
            while seen.len() < 80 {
                seen.push(ws.next_message().await.seq);
            }
            assert_eq!(seen, (1..=80).collect::<Vec<i64>>(), "a sender's view");
        });
    }
    while let Some(result) = senders.join_next().await {
        result.unwrap();
    }
    for (_, mut ws) in watchers {
        let mut seqs = Vec::new();
        for _ in 0..80 {
            seqs.push(ws.next_message().await.seq);
        }
        assert_eq!(seqs, (1..=80).collect::<Vec<i64>>(), "a watcher's view");
    }
}

async fn resuming_with_since_seq_replays_exactly_what_was_missed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    for n in 1..=3 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    for n in 1..=3 {
        assert_eq!(bob_ws.next_message().await.seq, n);
    }
    drop(bob_ws); // disconnect mid-conversation
    for n in 4..=8 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    let mut bob_ws = bob.ws("/ws").await;
    bob_ws
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: Some(3),
            since_rev: None,
        })
        .await;
    assert!(matches!(
        bob_ws.next_event().await,
        ServerEvent::Subscribed { last_seq: 8, .. }
    ));
    alice.say(room.id, "m9").await;
    let seqs: Vec<i64> = [(); 6].iter().map(|_| 0).collect();
    let mut got = Vec::new();
    for _ in seqs {
        got.push(bob_ws.next_message().await.seq);
    }
    assert_eq!(got, [4, 5, 6, 7, 8, 9]);
    bob_ws.send(ClientEvent::Ping).await;
    assert_eq!(
        bob_ws.next_event().await,
        ServerEvent::Pong,
        "nothing repeated before the pong"
    );
}

async fn subscribing_while_messages_flow_has_no_gap_and_no_duplicate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let poster = alice.clone();
    let posting = tokio::spawn(async move {
        for n in 1..=150 {
            poster.say(room.id, &format!("m{n}")).await;
        }
    });
    // Subscribe (and re-subscribe) from scratch while the poster is mid-stream.
    while alice
        .history(room.id, "?limit=1")
        .await
        .json::<serde_json::Value>()["messages"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        tokio::task::yield_now().await;
    }
    let mut ws = alice.ws("/ws").await;
    ws.send(ClientEvent::Subscribe {
        room_id: room.id,
        since_seq: Some(0),
        since_rev: None,
    })
    .await;
    let mut seen = Vec::new();
    while seen.len() < 150 {
        seen.push(ws.next_message().await.seq);
    }
    posting.await.unwrap();
    assert_eq!(seen, (1..=150).collect::<Vec<i64>>());
}

async fn the_room_endpoint_starts_subscribed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    alice.say(room.id, "before").await;
    let mut ws = alice
        .ws(&format!("/ws/rooms/{}?since_seq=0", room.id))
        .await;
    let subscribed = ws.next_event().await;
    assert!(
        matches!(&subscribed, ServerEvent::Subscribed { last_seq: 1, online, .. } if online.len() == 1),
        "{subscribed:?}"
    );
    assert_eq!(ws.next_message().await.content, "before");
    alice.say(room.id, "after").await;
    assert_eq!(ws.next_message().await.seq, 2);
}

async fn typing_read_presence_and_membership_events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    let mut alice_ws = alice.subscribed(room.id).await;

    bob.join(room.id).await;
    let joined = alice_ws.next_event().await;
    assert!(
        matches!(&joined, ServerEvent::MemberJoined { user, .. } if user.id == bob.user.id),
        "{joined:?}"
    );

    let mut bob_ws = bob.ws("/ws").await;
    bob_ws
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: None,
            since_rev: None,
        })
        .await;
    let subscribed = bob_ws.next_event().await;
    let ServerEvent::Subscribed { online, .. } = subscribed else {
        panic!("{subscribed:?}")
    };
    let mut names: Vec<_> = online.iter().map(|u| u.username.as_str()).collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"]);
    let online = alice_ws.next_event().await;
    assert!(
        matches!(&online, ServerEvent::Presence { user, status: PresenceStatus::Online, .. } if user.id == bob.user.id),
        "{online:?}"
    );
    // A second tab of bob is no new transition.
    let bob_tab = bob.subscribed(room.id).await;

    bob_ws
        .send(ClientEvent::Typing {
            room_id: room.id,
            state: TypingState::Start,
        })
        .await;
    let typing = alice_ws.next_event().await;
    assert_eq!(
        typing,
        ServerEvent::Typing {
            room_id: room.id,
            user_id: bob.user.id,
            username: "bob".into(),
            state: TypingState::Start
        }
    );

    alice.say(room.id, "one").await;
    alice_ws.next_message().await;
    bob_ws.next_message().await;
    bob_ws
        .send(ClientEvent::Read {
            room_id: room.id,
            seq: 1,
        })
        .await;
    let read = alice_ws.next_event().await;
    assert_eq!(
        read,
        ServerEvent::Read {
            room_id: room.id,
            user_id: bob.user.id,
            seq: 1
        }
    );

    drop(bob_tab);
    drop(bob_ws);
    let offline = alice_ws.next_event().await;
    assert!(
        matches!(&offline, ServerEvent::Presence { user, status: PresenceStatus::Offline, .. } if user.id == bob.user.id),
        "{offline:?}"
    );
    // He was last shown typing: going away stops that.
    let stopped = alice_ws.next_event().await;
    assert!(
        matches!(&stopped, ServerEvent::Typing { user_id, state: TypingState::Stop, .. } if *user_id == bob.user.id),
        "{stopped:?}"
    );

    bob.leave(room.id).await;
    let left = alice_ws.next_event().await;
    assert!(
        matches!(&left, ServerEvent::MemberLeft { user, .. } if user.id == bob.user.id),
        "{left:?}"
    );
    // Bob's typing never came back to bob, and nothing else is pending for alice.
    alice_ws.send(ClientEvent::Ping).await;
    assert_eq!(alice_ws.next_event().await, ServerEvent::Pong);
}

async fn leaving_a_room_ends_its_subscription(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    bob.leave(room.id).await;
    assert!(matches!(
        bob_ws.next_event().await,
        ServerEvent::MemberLeft { .. }
    ));
    alice.say(room.id, "bob must not see this").await;
    bob_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "let me in".into(),
            client_msg_id: None,
            reply_to: None,
            attachments: None,
        })
        .await;
    let refused = bob_ws.next_event().await;
    assert!(
        matches!(&refused, ServerEvent::Error { code, .. } if code == "not_a_member"),
        "{refused:?}"
    );
}

async fn malformed_frames_get_errors_and_the_socket_stays_usable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    for bad in [
        "not json",
        "{}",
        r#"{"type":"nope"}"#,
        r#"{"type":"subscribe","room_id":"x"}"#,
        r#"{"type":"read","room_id":5}"#,
    ] {
        ws.send_raw(bad).await;
        let error = ws.next_event().await;
        assert!(
            matches!(&error, ServerEvent::Error { code, .. } if code == "invalid_event"),
            "{bad}: {error:?}"
        );
    }
    ws.send(ClientEvent::MessageSend {
        room_id: room.id,
        content: "   ".into(),
        client_msg_id: Some("blank".into()),
        reply_to: None,
        attachments: None,
    })
    .await;
    let invalid = ws.next_event().await;
    assert!(
        matches!(&invalid, ServerEvent::Error { code, reference: Some(r), .. } if code == "validation_failed" && r == "blank"),
        "{invalid:?}"
    );
    ws.send(ClientEvent::Ping).await;
    assert_eq!(ws.next_event().await, ServerEvent::Pong);
    ws.send(ClientEvent::MessageSend {
        room_id: room.id,
        content: "still works".into(),
        client_msg_id: None,
        reply_to: None,
        attachments: None,
    })
    .await;
    // Its own message.new may come first (the contract allows either order).
    ws.expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
        .await;
}

async fn oversized_frames_close_with_1009(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    let content = "a".repeat(70 * 1024);
    let frame = json!({"type": "message.send", "room_id": room.id, "content": content}).to_string();
    ws.send_raw(&frame).await;
    let (ended, _) = ws.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(1009))), "{ended:?}");
}

async fn flooding_closes_with_1008(backend: Backend) {
    let app =
        TestApp::spawn_with(backend, |config| config.rate_limit_messages_per_second = 1).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    for n in 0..40 {
        ws.send(ClientEvent::MessageSend {
            room_id: room.id,
            content: format!("spam {n}"),
            client_msg_id: None,
            reply_to: None,
            attachments: None,
        })
        .await;
    }
    let (ended, seen) = ws.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(1008))), "{ended:?}");
    assert!(
        seen.iter()
            .any(|e| matches!(e, ServerEvent::Error { code, .. } if code == "rate_limited"))
    );
}

/// A client that stops reading overflows its own queue and is dropped; everyone else keeps
/// receiving every message, and the dropped client resumes without loss.
async fn a_stalled_client_is_dropped_alone_and_resumes(backend: Backend) {
    // Small batches and a queue that holds a few of them: a reading client keeps up, a
    // client that stops reading overflows quickly.
    let app = TestApp::spawn_with(backend, |config| {
        config.ws_outbound_queue = 64;
        config.write_batch_max = 16;
    })
    .await;
    let alice = app.register("alice").await;
    let stalled = app.register("stalled").await;
    let room = alice.create_room("Lobby", false).await;
    stalled.join(room.id).await;
    // A small receive buffer: the kernel would otherwise queue tens of MiB for it.
    let mut stalled_ws = stalled.ws_with_small_buffer("/ws").await;
    stalled_ws
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: None,
            since_rev: None,
        })
        .await;
    stalled_ws
        .expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
        .await;
    let mut reader = alice.subscribed(room.id).await;
    let mut sender = alice.ws("/ws").await;

    // 10 MB in all: more than the stalled client's socket buffers can absorb.
    let total = 2500;
    let content = "x".repeat(3900);
    let sending = tokio::spawn(async move {
        for window in 0..total / 100 {
            for n in window * 100..(window + 1) * 100 {
                sender
                    .send(ClientEvent::MessageSend {
                        room_id: room.id,
                        content: content.clone(),
                        client_msg_id: Some(n.to_string()),
                        reply_to: None,
                        attachments: None,
                    })
                    .await;
            }
            for _ in 0..100 {
                sender
                    .expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
                    .await;
            }
        }
        sender
    });
    let mut seqs = Vec::new();
    while seqs.len() < total {
        seqs.push(reader.next_message().await.seq);
    }
    sending.await.unwrap();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "the reading client got everything, in order"
    );

    let (ended, seen) = stalled_ws.until_closed().await;
    assert!(
        matches!(ended, Ended::Dropped | Ended::Closed(Some(4008))),
        "{ended:?}"
    );
    let got: Vec<i64> = seen
        .iter()
        .filter_map(|e| match e {
            ServerEvent::MessageNew { message } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert!(
        got.len() < total,
        "the stalled client was cut off ({} of {total})",
        got.len()
    );
    let last = got.last().copied().unwrap_or(0);
    assert_eq!(got, (1..=last).collect::<Vec<_>>());

    let mut resumed = stalled.ws("/ws").await;
    resumed
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: Some(last),
            since_rev: None,
        })
        .await;
    let mut rest = Vec::new();
    while rest.len() < total - got.len() {
        rest.push(resumed.next_message().await.seq);
    }
    assert_eq!(rest, (last + 1..=total as i64).collect::<Vec<_>>());
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("nebula_ws_slow_consumer_disconnects_total"),
        "slow-consumer drops are counted"
    );
}

async fn shutdown_closes_with_1012_and_loses_no_acked_message(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    for n in 0..20 {
        ws.send(ClientEvent::MessageSend {
            room_id: room.id,
            content: format!("m{n}"),
            client_msg_id: Some(format!("c{n}")),
            reply_to: None,
            attachments: None,
        })
        .await;
    }
    let first_ack = ws
        .expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
        .await;
    app.stop().await;
    let (ended, seen) = ws.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(1012))), "{ended:?}");
    // Frames the server had not read yet when it stopped may go unanswered; every frame it
    // took was answered before the close.
    let acked: HashMap<String, i64> = seen
        .iter()
        .chain([&first_ack])
        .filter_map(|e| match e {
            ServerEvent::MessageAck {
                client_msg_id,
                message,
            } => Some((client_msg_id.clone()?, message.seq)),
            _ => None,
        })
        .collect();
    assert!(!acked.is_empty());

    app.restart().await;
    let alice = app.session(alice.token.clone(), alice.user.clone());
    let history: nebula_wire::MessagePage = alice.history(room.id, "").await.json();
    let stored: HashMap<String, i64> = history
        .messages
        .iter()
        .map(|m| (m.client_msg_id.clone().unwrap(), m.seq))
        .collect();
    for (id, seq) in &acked {
        assert_eq!(stored.get(id), Some(seq), "acked message {id} kept its seq");
    }
    // The sender retries everything it did not see acked: what was committed answers with
    // its original seq, what was not is stored now, and nothing is stored twice.
    for n in 0..20 {
        let id = format!("c{n}");
        if acked.contains_key(&id) {
            continue;
        }
        let reply = alice
            .post_message(
                room.id,
                json!({"content": format!("m{n}"), "client_msg_id": id}),
            )
            .await;
        let message: nebula_wire::Message = reply.json();
        if let Some(seq) = stored.get(&id) {
            assert_eq!(
                (reply.status.as_u16(), message.seq),
                (200, *seq),
                "committed before the stop: {id}"
            );
        } else {
            assert_eq!(reply.status.as_u16(), 201, "never committed: {id}");
        }
    }
    let history: nebula_wire::MessagePage = alice.history(room.id, "").await.json();
    assert_eq!(history.total, 20);
    let seqs: Vec<i64> = history
        .messages
        .iter()
        .map(|m| m.seq)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

async fn an_expired_token_closes_with_4001(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let claims = json!({"sub": alice.user.id, "username": "alice", "iat": 0, "exp": chrono::Utc::now().timestamp() + 2});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let short_lived = app.session(token, alice.user.clone());
    let mut ws = short_lived.ws("/ws").await;
    let (ended, _) = ws.until_closed().await;
    assert!(matches!(ended, Ended::Closed(Some(4001))), "{ended:?}");
}
