//! Message changes over WebSocket: `message.updated` live, replies and attachments in
//! `message.send`, and resuming with `since_rev` — also while changes keep coming.

use std::collections::HashMap;

use nebula_wire::{ChangesPage, ClientEvent, Message, ServerEvent};
use uuid::Uuid;

use crate::helpers::{Backend, Session, TestApp};
use crate::on_both_backends;
use crate::ws_client::WsClient;

on_both_backends!(
    every_change_reaches_subscribers_as_message_updated,
    message_send_takes_replies_and_refuses_attachments,
    resuming_with_since_rev_replays_missed_changes_in_rev_order,
    the_room_endpoint_resumes_with_since_rev,
    subscribing_while_changes_flow_loses_nothing_and_repeats_nothing,
);

async fn every_change_reaches_subscribers_as_message_updated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    let posted = alice.say(room.id, "hello").await;
    assert_eq!(bob_ws.next_message().await, posted);

    let edited: Message = alice.edit(room.id, posted.id, "hello!").await.json();
    assert_eq!(bob_ws.next_updated().await, edited);
    bob.react(room.id, posted.id, "👍").await;
    let reacted = bob_ws.next_updated().await;
    assert_eq!(reacted.rev, edited.rev + 1);
    assert_eq!(reacted.reactions[0].count, 1);
    assert_eq!(reacted, alice.message(room.id, posted.id).await);
    // No event for a change that changes nothing.
    bob.react(room.id, posted.id, "👍").await;
    alice.delete_message(room.id, posted.id).await;
    let deleted = bob_ws.next_updated().await;
    assert_eq!(deleted.rev, reacted.rev + 1);
    assert_eq!(deleted.content, "");
    assert!(deleted.deleted_at.is_some() && deleted.reactions.is_empty());
    alice.delete_message(room.id, posted.id).await;
    bob_ws.send(ClientEvent::Ping).await;
    assert_eq!(bob_ws.next_event().await, ServerEvent::Pong, "nothing else");
}

async fn message_send_takes_replies_and_refuses_attachments(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let other = alice.create_room("Other", false).await;
    let original = alice.say(room.id, "question?").await;
    let elsewhere = alice.say(other.id, "elsewhere").await;
    let mut ws = alice.subscribed(room.id).await;
    let send = |reply_to: Option<String>, attachments: Option<Vec<String>>, id: &str| {
        ClientEvent::MessageSend {
            room_id: room.id,
            content: "answer".into(),
            client_msg_id: Some(id.into()),
            reply_to,
            attachments,
        }
    };
    ws.send(send(Some(original.id.to_string()), Some(vec![]), "good"))
        .await;
    let ack = ws
        .expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
        .await;
    let ServerEvent::MessageAck { message, .. } = ack else {
        unreachable!()
    };
    let target = message.reply_to.expect("a reply");
    assert_eq!((target.id, target.seq), (original.id, 1));
    for (reply_to, id) in [
        (elsewhere.id.to_string(), "other-room"),
        (Uuid::new_v4().to_string(), "unknown"),
        ("garbage".to_owned(), "garbage"),
    ] {
        ws.send(send(Some(reply_to), None, id)).await;
        let error = ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await;
        assert!(
            matches!(&error, ServerEvent::Error { code, reference: Some(r), .. } if code == "invalid_reply" && r == id),
            "{error:?}"
        );
    }
    ws.send(send(
        None,
        Some(vec![Uuid::new_v4().to_string()]),
        "attached",
    ))
    .await;
    let error = ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await;
    assert!(
        matches!(&error, ServerEvent::Error { code, .. } if code == "invalid_attachment"),
        "{error:?}"
    );
    ws.send_raw(&format!(
        r#"{{"type":"message.send","room_id":"{}","content":"x","reply_to":7}}"#,
        room.id
    ))
    .await;
    let error = ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await;
    assert!(
        matches!(&error, ServerEvent::Error { code, .. } if code == "invalid_event"),
        "{error:?}"
    );
}

/// Everything a socket receives until a `pong`.
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

fn resume(room_id: Uuid, since_seq: i64, since_rev: i64) -> ClientEvent {
    ClientEvent::Subscribe {
        room_id,
        since_seq: Some(since_seq),
        since_rev: Some(since_rev),
    }
}

async fn resuming_with_since_rev_replays_missed_changes_in_rev_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let mut m = Vec::new();
    for n in 1..=5 {
        m.push(alice.say(room.id, &format!("m{n}")).await);
    }
    // Bob was here until rev 5, then away.
    alice.edit(room.id, m[1].id, "m2 edited").await; // rev 6
    alice.react(room.id, m[3].id, "👍").await; // rev 7
    let sixth = alice.say(room.id, "m6").await; // rev 8
    alice.delete_message(room.id, m[0].id).await; // rev 9
    alice.edit(room.id, sixth.id, "m6 edited").await; // rev 10
    alice.react(room.id, m[3].id, "🎉").await; // rev 11

    let mut ws = bob.ws("/ws").await;
    ws.send(resume(room.id, 5, 5)).await;
    let subscribed = ws.next_event().await;
    assert!(
        matches!(
            subscribed,
            ServerEvent::Subscribed {
                last_seq: 6,
                last_rev: 11,
                ..
            }
        ),
        "{subscribed:?}"
    );
    let seen = drain(&mut ws).await;
    let replayed: Vec<(&str, i64, i64)> = seen
        .iter()
        .map(|event| match event {
            ServerEvent::MessageNew { message } => ("new", message.seq, message.rev),
            ServerEvent::MessageUpdated { message } => ("updated", message.seq, message.rev),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // The new message first, in its current version; then the older ones' changes in rev
    // order, each once, at its latest.
    assert_eq!(
        replayed,
        [
            ("new", 6, 10),
            ("updated", 2, 6),
            ("updated", 1, 9),
            ("updated", 4, 11)
        ]
    );
    for event in &seen {
        let (ServerEvent::MessageNew { message } | ServerEvent::MessageUpdated { message }) = event
        else {
            unreachable!()
        };
        assert_eq!(message, &alice.message(room.id, message.id).await);
    }
    // Then live.
    alice.react(room.id, m[2].id, "👍").await;
    assert_eq!(ws.next_updated().await.rev, 12);

    // Without since_rev, no change is replayed (as before); with only since_rev, no message.
    let mut plain = bob.ws("/ws").await;
    plain
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: Some(5),
            since_rev: None,
        })
        .await;
    plain
        .expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
        .await;
    let seen = drain(&mut plain).await;
    assert!(
        matches!(&seen[..], [ServerEvent::MessageNew { message }] if message.seq == 6),
        "{seen:?}"
    );
    let mut changes_only = bob.ws("/ws").await;
    changes_only
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: None,
            since_rev: Some(10),
        })
        .await;
    changes_only
        .expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
        .await;
    let seen = drain(&mut changes_only).await;
    let revs: Vec<i64> = seen
        .iter()
        .map(|e| match e {
            ServerEvent::MessageUpdated { message } => message.rev,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(revs, [11, 12], "m4's last change, then m3's");
}

async fn the_room_endpoint_resumes_with_since_rev(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let first = alice.say(room.id, "one").await;
    alice.say(room.id, "two").await;
    alice.edit(room.id, first.id, "one, edited").await;
    let mut ws = alice
        .ws(&format!("/ws/rooms/{}?since_seq=2&since_rev=2", room.id))
        .await;
    assert!(matches!(
        ws.next_event().await,
        ServerEvent::Subscribed { last_rev: 3, .. }
    ));
    let updated = ws.next_updated().await;
    assert_eq!((updated.seq, updated.content.as_str()), (1, "one, edited"));
}

/// One poster adds messages while another edits and reacts to them, and a third client
/// subscribes (with `since_seq` and `since_rev` of a moment before) in the middle of it. It
/// must see every message once, in seq order, changes in rev order, and end with every
/// message in its final version.
async fn subscribing_while_changes_flow_loses_nothing_and_repeats_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    const TOTAL: usize = 60;
    let mut early = Vec::new();
    for n in 0..10 {
        early.push(alice.say(room.id, &format!("early {n}")).await);
    }
    let poster = alice.clone();
    let posting = tokio::spawn(async move {
        let mut posted = Vec::new();
        for n in 10..TOTAL {
            posted.push(poster.say(room.id, &format!("m{n}")).await);
        }
        posted
    });
    let changer = bob.clone();
    let ids: Vec<Uuid> = early.iter().map(|m| m.id).collect();
    let changing = tokio::spawn(async move { change_repeatedly(&changer, room.id, &ids).await });
    // Resume from a point in the past while both are mid-stream.
    wait_for_rev(&alice, room.id, 25).await;
    let mut ws = alice.ws("/ws").await;
    ws.send(resume(room.id, 5, 8)).await;
    let posted = posting.await.unwrap();
    changing.await.unwrap();
    let last = alice.say(room.id, "the end").await;

    let mut news = Vec::new();
    // What the client had before it went away: the first five messages as posted.
    let mut latest: HashMap<Uuid, Message> = early[..5].iter().map(|m| (m.id, m.clone())).collect();
    let mut last_update_rev = 0;
    while latest.get(&last.id).is_none_or(|m| m.rev < last.rev) {
        match ws.next_event().await {
            ServerEvent::MessageNew { message } => {
                assert!(!latest.contains_key(&message.id), "{message:?} again");
                news.push(message.seq);
                latest.insert(message.id, message);
            }
            ServerEvent::MessageUpdated { message } => {
                let known = latest
                    .get(&message.id)
                    .unwrap_or_else(|| panic!("updated before new: {message:?}"))
                    .clone();
                assert!(message.rev > known.rev, "{message:?} after {known:?}");
                assert!(message.rev > last_update_rev, "changes out of rev order");
                last_update_rev = message.rev;
                latest.insert(message.id, message);
            }
            _ => {}
        }
    }
    assert_eq!(news, (6..=TOTAL as i64 + 1).collect::<Vec<_>>());
    // Everyone's final version, as the database has it.
    let feed: ChangesPage = alice
        .get(&format!("/rooms/{}/changes?since_rev=0&limit=100", room.id))
        .await
        .json();
    assert!(!feed.has_more);
    assert_eq!(feed.messages.len(), TOTAL + 1);
    for message in feed.messages {
        assert_eq!(
            latest.get(&message.id),
            Some(&message),
            "seq {}",
            message.seq
        );
    }
    assert_eq!(posted.len(), TOTAL - 10);
}

/// Reactions added and removed on the given messages, round after round: each a change.
async fn change_repeatedly(bob: &Session, room: Uuid, ids: &[Uuid]) {
    for round in 0..4 {
        for (n, id) in ids.iter().enumerate() {
            let emoji = if n % 2 == 0 { "👍" } else { "❤️" };
            let reply = if round % 2 == 0 {
                bob.react(room, *id, emoji).await
            } else {
                bob.unreact(room, *id, emoji).await
            };
            assert_eq!(reply.status, 204, "{}", reply.text());
        }
    }
}

async fn wait_for_rev(session: &Session, room: Uuid, rev: i64) {
    loop {
        let page: ChangesPage = session
            .get(&format!("/rooms/{room}/changes?since_rev={rev}&limit=1"))
            .await
            .json();
        if page.last_rev >= rev {
            return;
        }
        tokio::task::yield_now().await;
    }
}
