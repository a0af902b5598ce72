//! Who may fetch a file, signed URLs, and two nodes sharing one store.

use nebula_wire::{Media, Message};
use reqwest::StatusCode;
use serde_json::json;

use super::{MediaKind, MediaSetup, fetch_anonymously, png, uploaded};
use crate::helpers::{Backend, TestApp, start_server, test_config};
use crate::on_every_store;

on_every_store!(
    only_the_uploader_and_members_of_a_room_where_it_is_attached_may_fetch,
    signed_urls_open_one_object_for_a_while,
    two_nodes_sharing_a_store_serve_each_others_uploads,
);

async fn only_the_uploader_and_members_of_a_room_where_it_is_attached_may_fetch(
    backend: Backend,
    kind: MediaKind,
) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let file = uploaded(&alice, "plan.txt", b"secret plan".to_vec(), "text/plain").await;
    let path = format!("/media/{}", file.id);
    assert_eq!(alice.get(&path).await.status, StatusCode::OK);
    // Not attached anywhere: only its uploader.
    bob.get(&path).await.assert_problem(404, "media_not_found");
    bob.get(&format!("{path}/info"))
        .await
        .assert_problem(404, "media_not_found");
    // Without credentials at all.
    assert_eq!(app.get(&path).await.status, StatusCode::UNAUTHORIZED);
    // Attached in a private room: its members, and nobody else.
    let room = alice.create_room("Plans", true).await;
    assert_eq!(alice.add(room.id, "bob").await.status, StatusCode::CREATED);
    let posted = alice
        .post_message(room.id, json!({"content": "", "attachments": [file.id]}))
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.text());
    let got = bob.get(&path).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, b"secret plan");
    // A file that is not an image is a download in a sandbox.
    let disposition = got.headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    carol
        .get(&path)
        .await
        .assert_problem(404, "media_not_found");
    carol
        .get(&format!("{path}/thumbnail"))
        .await
        .assert_problem(404, "media_not_found");
    // Someone who leaves the room loses access.
    assert_eq!(bob.leave(room.id).await.status, StatusCode::NO_CONTENT);
    bob.get(&path).await.assert_problem(404, "media_not_found");
    // An unknown id looks the same.
    alice
        .get(&format!("/media/{}", uuid::Uuid::new_v4()))
        .await
        .assert_problem(404, "media_not_found");
}

async fn signed_urls_open_one_object_for_a_while(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let alice = app.register("alice").await;
    let image = uploaded(&alice, "pic.png", png(64, 64), "image/png").await;
    let other = uploaded(&alice, "other.png", png(8, 8), "image/png").await;
    let url = image.url.clone().expect("a signed url");
    assert!(
        url.starts_with(&format!("/media/{}?exp=", image.id)),
        "{url}"
    );
    let got = fetch_anonymously(&alice, &url).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, png(64, 64));
    let thumb = fetch_anonymously(&alice, image.thumbnail_url.as_deref().unwrap()).await;
    assert_eq!(thumb.status, StatusCode::OK);
    // The signature is for that object only, and cannot be altered.
    let query = url.split_once('?').unwrap().1;
    fetch_anonymously(&alice, &format!("/media/{}?{query}", other.id))
        .await
        .assert_problem(404, "media_not_found");
    fetch_anonymously(&alice, &format!("/media/{}/thumbnail?{query}", image.id))
        .await
        .assert_problem(404, "media_not_found");
    let tampered = url.replace("exp=", "exp=9");
    fetch_anonymously(&alice, &tampered)
        .await
        .assert_problem(404, "media_not_found");
    // An expired one.
    let sig = query.split("sig=").nth(1).unwrap();
    fetch_anonymously(&alice, &format!("/media/{}?exp=1&sig={sig}", image.id))
        .await
        .assert_problem(404, "media_not_found");
    // Fresh URLs for whoever may read it.
    let info: Media = alice.get(&format!("/media/{}/info", image.id)).await.json();
    assert_eq!(info.id, image.id);
    assert!(info.url.is_some());
}

async fn two_nodes_sharing_a_store_serve_each_others_uploads(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let first = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let mut config = test_config(&first.database_url);
    media.apply(&mut config);
    let (addr, _shutdown, _server) = start_server(config).await;
    let alice = first.register("alice").await;
    let mut alice_there = alice.clone();
    alice_there.base = format!("http://{addr}");
    let bytes = png(100, 50);
    let here = uploaded(&alice, "here.png", bytes.clone(), "image/png").await;
    let there = uploaded(&alice_there, "there.png", bytes.clone(), "image/png").await;
    for (node, id) in [(&alice_there, here.id), (&alice, there.id)] {
        let got = node.get(&format!("/media/{id}")).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, bytes);
        let thumb = node.get(&format!("/media/{id}/thumbnail")).await;
        assert_eq!(thumb.status, StatusCode::OK);
    }
    // Signed URLs of one node work on the other (they share the signing secret).
    let got = fetch_anonymously(&alice_there, here.url.as_deref().unwrap()).await;
    assert_eq!(got.status, StatusCode::OK);
    // A message posted on one node carries the file on the other.
    let room = alice.create_room("Both", false).await;
    let message: Message = alice_there
        .post_message(
            room.id,
            json!({"content": "look", "attachments": [here.id]}),
        )
        .await
        .json();
    assert_eq!(message.attachments.len(), 1);
    let seen: Message = alice.message(room.id, message.id).await;
    assert_eq!(seen.attachments[0].id, here.id);
}
