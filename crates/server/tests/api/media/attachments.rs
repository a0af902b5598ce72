//! Attachments on messages: checked, delivered everywhere a message goes, and collected.

use nebula_wire::{ChangesPage, ClientEvent, Message, MessageWindow, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::{MediaKind, MediaSetup, eventually, fetch_anonymously, png, stored, uploaded};
use crate::helpers::{Backend, TestApp};
use crate::on_every_store;

on_every_store!(
    attachments_must_be_the_senders_uploads,
    attachments_travel_with_messages,
    deleting_a_message_removes_files_nothing_else_uses,
    uploads_never_attached_are_removed_later,
);

async fn attachments_must_be_the_senders_uploads(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    assert_eq!(bob.join(room.id).await.status, StatusCode::CREATED);
    let alices = uploaded(&alice, "a.txt", b"a".to_vec(), "text/plain").await;
    // Someone else's upload, an unknown id, a non-id, too many.
    for attachments in [
        json!([alices.id]),
        json!([Uuid::new_v4()]),
        json!(["not-an-id"]),
    ] {
        bob.post_message(room.id, json!({"content": "x", "attachments": attachments}))
            .await
            .assert_problem(422, "invalid_attachment");
    }
    let mut many = Vec::new();
    for i in 0..11 {
        many.push(
            uploaded(&alice, &format!("{i}.txt"), vec![b'x'], "text/plain")
                .await
                .id,
        );
    }
    alice
        .post_message(room.id, json!({"content": "x", "attachments": many}))
        .await
        .assert_problem(422, "invalid_attachment");
    // Ten is fine, and the content may then be empty.
    let ten = &many[..10];
    let message: Message = alice
        .post_message(room.id, json!({"content": "", "attachments": ten}))
        .await
        .json();
    let ids: Vec<Uuid> = message.attachments.iter().map(|m| m.id).collect();
    assert_eq!(ids, ten, "in the order given");
    // Over the WebSocket, the same rule as an error event.
    let mut ws = bob.subscribed(room.id).await;
    ws.send(ClientEvent::MessageSend {
        room_id: room.id,
        content: "mine?".into(),
        client_msg_id: Some("c1".into()),
        reply_to: None,
        attachments: Some(vec![alices.id.to_string()]),
    })
    .await;
    match ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await {
        ServerEvent::Error { code, .. } => assert_eq!(code, "invalid_attachment"),
        _ => unreachable!(),
    }
}

async fn attachments_travel_with_messages(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("Lobby", false).await;
    assert_eq!(bob.join(room.id).await.status, StatusCode::CREATED);
    let mut bobs_ws = bob.subscribed(room.id).await;
    let picture = uploaded(&alice, "pic.png", png(400, 300), "image/png").await;
    let mut alices_ws = alice.ws("/ws").await;
    alices_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "look".into(),
            client_msg_id: Some("m1".into()),
            reply_to: None,
            attachments: Some(vec![picture.id.to_string()]),
        })
        .await;
    let acked = match alices_ws
        .expect(|e| matches!(e, ServerEvent::MessageAck { .. }))
        .await
    {
        ServerEvent::MessageAck { message, .. } => message,
        _ => unreachable!(),
    };
    let live = bobs_ws.next_message().await;
    assert_eq!(live.id, acked.id);
    let attached = &live.attachments[0];
    assert_eq!(attached.id, picture.id);
    assert_eq!(attached.content_type, "image/png");
    assert_eq!((attached.width, attached.height), (Some(400), Some(300)));
    // Bob can show it with a plain <img src>: the URL in the event works without a token.
    let thumb = fetch_anonymously(&bob, attached.thumbnail_url.as_deref().unwrap()).await;
    assert_eq!(thumb.status, StatusCode::OK);
    let full = fetch_anonymously(&bob, attached.url.as_deref().unwrap()).await;
    assert_eq!(full.body, png(400, 300));
    // History and the change feed carry it too.
    let window: MessageWindow = bob
        .get(&format!("/rooms/{}/messages?after_seq=0", room.id))
        .await
        .json();
    assert_eq!(window.messages[0].attachments[0].id, picture.id);
    assert!(window.messages[0].attachments[0].url.is_some());
    let feed: ChangesPage = bob
        .get(&format!("/rooms/{}/changes?since_rev=0", room.id))
        .await
        .json();
    assert_eq!(feed.messages[0].attachments[0].id, picture.id);
    // An edit keeps them.
    let edited: Message = alice.edit(room.id, live.id, "look!").await.json();
    assert_eq!(edited.attachments[0].id, picture.id);
    assert_eq!(bobs_ws.next_updated().await.attachments.len(), 1);
}

async fn deleting_a_message_removes_files_nothing_else_uses(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let storage = media.storage();
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let only_here = uploaded(&alice, "a.png", png(10, 10), "image/png").await;
    let shared = uploaded(&alice, "b.txt", b"shared".to_vec(), "text/plain").await;
    let first: Message = alice
        .post_message(
            room.id,
            json!({"content": "1", "attachments": [only_here.id, shared.id]}),
        )
        .await
        .json();
    let second: Message = alice
        .post_message(room.id, json!({"content": "2", "attachments": [shared.id]}))
        .await
        .json();
    assert!(stored(&storage, only_here.id).await);
    assert_eq!(
        alice.delete_message(room.id, first.id).await.status,
        StatusCode::NO_CONTENT
    );
    let deleted = alice.message(room.id, first.id).await;
    assert!(deleted.attachments.is_empty());
    eventually(
        "the deleted message's own file leaves the store",
        || async { !stored(&storage, only_here.id).await },
    )
    .await;
    let thumbnail = storage
        .read_all(&nebula::media::thumbnail_key(only_here.id))
        .await
        .unwrap();
    assert_eq!(thumbnail, None, "and its thumbnail");
    alice
        .get(&format!("/media/{}", only_here.id))
        .await
        .assert_problem(404, "media_not_found");
    // The file the other message still carries stays.
    assert!(stored(&storage, shared.id).await);
    assert_eq!(
        alice.get(&format!("/media/{}", shared.id)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        alice.delete_message(room.id, second.id).await.status,
        StatusCode::NO_CONTENT
    );
    eventually("the last reference gone, the file goes", || async {
        !stored(&storage, shared.id).await
    })
    .await;
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM media").await, 0);
}

async fn uploads_never_attached_are_removed_later(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| {
        media.apply(config);
        config.media_orphan_seconds = 2;
        config.media_sweep_seconds = 1;
    })
    .await;
    let storage = media.storage();
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let orphan = uploaded(&alice, "o.txt", b"o".to_vec(), "text/plain").await;
    let kept = uploaded(&alice, "k.txt", b"k".to_vec(), "text/plain").await;
    alice
        .post_message(room.id, json!({"content": "k", "attachments": [kept.id]}))
        .await;
    eventually("the orphan is collected", || async {
        !stored(&storage, orphan.id).await
    })
    .await;
    alice
        .get(&format!("/media/{}", orphan.id))
        .await
        .assert_problem(404, "media_not_found");
    // The attached one outlives the orphan age.
    assert!(stored(&storage, kept.id).await);
    assert_eq!(
        alice.get(&format!("/media/{}", kept.id)).await.status,
        StatusCode::OK
    );
}
