//! Membership is enforced at every moment: a removed member's sockets hear nothing more from
//! the room and cannot send to it, even when the event announcing the removal never reached
//! their node (simulated here by removing them in the database only).

use nebula_wire::{ClientEvent, ServerEvent};
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::ws_client::WsClient;

on_both_backends!(
    a_removed_member_hears_nothing_more,
    a_silently_removed_member_cannot_send,
    a_removed_members_sockets_get_member_left_and_stop,
);

/// Events until a `pong`.
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

async fn a_removed_members_sockets_get_member_left_and_stop(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Club", true).await;
    alice.add(room.id, "bob").await;
    let mut tab_one = bob.subscribed(room.id).await;
    let mut tab_two = bob.ws(&format!("/ws/rooms/{}", room.id)).await;
    tab_two
        .expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
        .await;
    let removed = alice
        .delete(&format!("/rooms/{}/members/{}", room.id, bob.user.id))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    for ws in [&mut tab_one, &mut tab_two] {
        let left = ws
            .expect(|e| matches!(e, ServerEvent::MemberLeft { .. }))
            .await;
        assert!(
            matches!(&left, ServerEvent::MemberLeft { user, .. } if user.id == bob.user.id),
            "{left:?}"
        );
    }
    alice.say(room.id, "after bob").await;
    for ws in [&mut tab_one, &mut tab_two] {
        let seen = drain(ws).await;
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e, ServerEvent::MessageNew { .. })),
            "{seen:?}"
        );
        ws.send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: Some(0),
            since_rev: None,
        })
        .await;
        let refused = ws.next_event().await;
        assert!(
            matches!(&refused, ServerEvent::Error { code, .. } if code == "room_not_found"),
            "{refused:?}"
        );
    }
}

/// The removal's `member.left` never arrives; the next message of the room, committed at a
/// newer membership revision, makes the node check its subscribers before delivering it.
async fn a_removed_member_hears_nothing_more(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Club", false).await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    alice.say(room.id, "before").await;
    assert_eq!(bob_ws.next_message().await.content, "before");

    app.remove_member_silently(room.id, bob.user.id).await;
    alice.say(room.id, "after").await;
    let left = bob_ws
        .expect(|e| {
            matches!(
                e,
                ServerEvent::MemberLeft { .. } | ServerEvent::MessageNew { .. }
            )
        })
        .await;
    assert!(
        matches!(&left, ServerEvent::MemberLeft { user, .. } if user.id == bob.user.id),
        "bob must be dropped before the message: {left:?}"
    );
    alice.say(room.id, "later").await;
    let seen = drain(&mut bob_ws).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ServerEvent::MessageNew { .. })),
        "{seen:?}"
    );
}

/// The socket still believes it is subscribed; the commit itself refuses the message.
async fn a_silently_removed_member_cannot_send(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Club", false).await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    // Bob's sends are accepted while he is a member (and his membership is remembered).
    bob_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "hello".into(),
            client_msg_id: Some("one".into()),
            reply_to: None,
            attachments: None,
        })
        .await;
    bob_ws
        .expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
        .await;

    app.remove_member_silently(room.id, bob.user.id).await;
    bob_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "am I still here?".into(),
            client_msg_id: Some("two".into()),
            reply_to: None,
            attachments: None,
        })
        .await;
    let refused = bob_ws
        .expect(|e| {
            matches!(
                e,
                ServerEvent::Error { .. } | ServerEvent::MessageAck { .. }
            )
        })
        .await;
    assert!(
        matches!(&refused, ServerEvent::Error { code, reference: Some(r), .. } if code == "not_a_member" && r == "two"),
        "{refused:?}"
    );
    let history: serde_json::Value = alice
        .get(&format!("/rooms/{}/messages", room.id))
        .await
        .json();
    assert_eq!(history["total"], 1, "only the first message is stored");
}
