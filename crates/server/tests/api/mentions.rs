//! Mentions (issue 17): `@username` in a message is resolved to `mentions: [user_id]` — members
//! of the room only, each once, ignoring case, never inside a word — on REST and WebSocket
//! sends and on edits, carried by history, the changes feed and replays, and gone with a delete.

use nebula_wire::{ChangesPage, ClientEvent, Message, ServerEvent};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    mentions_name_members_once_ignoring_case_and_never_inside_words,
    mentions_travel_with_history_changes_and_replays_and_go_with_a_delete,
);

async fn mentions_name_members_once_ignoring_case_and_never_inside_words(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let _outsider = app.register("dave").await;
    let room = alice.create_room("Lobby", false).await;
    for member in [&bob, &carol] {
        assert_eq!(member.join(room.id).await.status, StatusCode::CREATED);
    }

    let message = alice
        .say(
            room.id,
            "@BOB, ask @carol and @Bob again; not @dave (no member), not bob@carol.example, \
             not @nobody, and @alice is me.",
        )
        .await;
    assert_eq!(
        message.mentions,
        [bob.user.id, carol.user.id, alice.user.id]
    );

    let plain = alice.say(room.id, "no mentions here").await;
    assert!(plain.mentions.is_empty());
    let glued = alice.say(room.id, "mail@bob or x@carol").await;
    assert!(
        glued.mentions.is_empty(),
        "an @ inside a word is an address"
    );
    let sentence = alice.say(room.id, "thanks @carol.").await;
    assert_eq!(sentence.mentions, [carol.user.id], "a full stop ends it");

    // Over the WebSocket too.
    let mut ws = bob.subscribed(room.id).await;
    ws.send(ClientEvent::MessageSend {
        room_id: room.id,
        content: "hey @Alice".into(),
        client_msg_id: Some("m1".into()),
        reply_to: None,
        attachments: None,
    })
    .await;
    let acked = ws
        .expect(|event| matches!(event, ServerEvent::MessageAck { .. }))
        .await;
    let ServerEvent::MessageAck { message, .. } = acked else {
        unreachable!()
    };
    assert_eq!(message.mentions, [alice.user.id]);

    // An edit resolves them again.
    let edited = alice.edit(room.id, plain.id, "now for @carol").await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text());
    assert_eq!(edited.json::<Message>().mentions, [carol.user.id]);
    let unedited = alice.edit(room.id, sentence.id, "nobody now").await;
    assert!(unedited.json::<Message>().mentions.is_empty());

    // Both documents describe the field (the WebSocket's through its `Message` schema).
    for path in ["/openapi.json", "/asyncapi.json"] {
        let document: serde_json::Value = app.get(path).await.json();
        let mentions = &document["components"]["schemas"]["Message"]["properties"]["mentions"];
        assert_eq!(mentions["type"], "array", "{path}");
    }
    let openapi: serde_json::Value = app.get("/openapi.json").await.json();
    for path in ["/me/notifications", "/rooms/{room_id}/notifications"] {
        assert!(openapi["paths"][path]["put"].is_object(), "{path}");
    }
}

async fn mentions_travel_with_history_changes_and_replays_and_go_with_a_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    bob.join(room.id).await;
    let first = alice.say(room.id, "hi @bob").await;
    let second = alice.say(room.id, "and again @bob").await;

    let history: nebula_wire::MessagePage =
        bob.history(room.id, "?page=1&page_size=10").await.json();
    let ids: Vec<Vec<Uuid>> = history
        .messages
        .iter()
        .map(|m| m.mentions.clone())
        .collect();
    assert_eq!(ids, [vec![bob.user.id], vec![bob.user.id]]);
    assert_eq!(bob.message(room.id, first.id).await.mentions, [bob.user.id]);

    let mut ws = bob.ws("/ws").await;
    ws.send(ClientEvent::Subscribe {
        room_id: room.id,
        since_seq: Some(0),
        since_rev: None,
    })
    .await;
    assert_eq!(ws.next_message().await.mentions, [bob.user.id]);

    let deleted = alice.delete_message(room.id, second.id).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = bob.message(room.id, second.id).await;
    assert!(
        gone.deleted_at.is_some() && gone.mentions.is_empty(),
        "{gone:?}"
    );
    let changes: ChangesPage = bob
        .get(&format!("/rooms/{}/changes?since_rev=0", room.id))
        .await
        .json();
    let latest = changes.messages.iter().find(|m| m.id == second.id).unwrap();
    assert!(latest.mentions.is_empty());
    assert_eq!(
        app.query_i64("SELECT COUNT(*) FROM message_mentions").await,
        1,
        "only the live message's row is left"
    );
}
