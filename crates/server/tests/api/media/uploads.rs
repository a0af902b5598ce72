//! Uploads, hostile ones included: every answer is safe, none is a 5xx.

use nebula_wire::{Media, MediaLimits};
use reqwest::StatusCode;

use super::{MediaKind, MediaSetup, bomb_png, png, upload, uploaded};
use crate::helpers::{Backend, Session, TestApp, send};
use crate::on_every_store;

on_every_store!(
    images_get_dimensions_and_a_thumbnail,
    hostile_uploads_get_safe_answers,
    oversized_and_empty_bodies_are_refused,
    the_quota_counts_every_upload,
    the_limits_and_the_quota_used_are_published,
);

async fn app(backend: Backend, kind: MediaKind) -> Option<(TestApp, MediaSetup)> {
    let media = MediaSetup::new(kind).await?;
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    Some((app, media))
}

/// `GET path` with the session's token, whole.
async fn get(who: &Session, path: &str) -> crate::helpers::Reply {
    who.get(path).await
}

fn header<'a>(reply: &'a crate::helpers::Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The headers that keep a served file from running script in our origin.
fn assert_served_safely(reply: &crate::helpers::Reply, inline: bool) {
    assert_eq!(header(reply, "x-content-type-options"), "nosniff");
    assert_eq!(header(reply, "content-security-policy"), "sandbox");
    let disposition = header(reply, "content-disposition");
    if inline {
        assert!(disposition.starts_with("inline"), "{disposition}");
    } else {
        assert!(disposition.starts_with("attachment"), "{disposition}");
    }
}

async fn images_get_dimensions_and_a_thumbnail(backend: Backend, kind: MediaKind) {
    let Some((app, _media)) = app(backend, kind).await else {
        return;
    };
    let alice = app.register("alice").await;
    let bytes = png(640, 480);
    // The declared type is ignored: the bytes are a PNG.
    let media = uploaded(&alice, "cat photo.png", bytes.clone(), "text/plain").await;
    assert_eq!(media.content_type, "image/png");
    assert_eq!(media.size, bytes.len() as i64);
    assert_eq!(media.filename, "cat photo.png");
    assert_eq!((media.width, media.height), (Some(640), Some(480)));
    let file = get(&alice, &format!("/media/{}", media.id)).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body, bytes);
    assert_eq!(header(&file, "content-type"), "image/png");
    assert_served_safely(&file, true);
    let thumb = get(&alice, &format!("/media/{}/thumbnail", media.id)).await;
    assert_eq!(thumb.status, StatusCode::OK);
    assert_eq!(header(&thumb, "content-type"), "image/png");
    assert_served_safely(&thumb, true);
    let decoded = image::load_from_memory(&thumb.body).expect("thumbnail decodes");
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    assert!(media.thumbnail_url.is_some());
}

async fn hostile_uploads_get_safe_answers(backend: Backend, kind: MediaKind) {
    let Some((app, _media)) = app(backend, kind).await else {
        return;
    };
    let alice = app.register("alice").await;
    let html = b"<!doctype html><html><script>alert(document.cookie)</script></html>".to_vec();
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    let real = png(200, 100);
    let truncated = real[..real.len() / 2].to_vec();
    // Deflate compresses at most ~1000:1, so a complete 20000 x 20000 PNG is ~90 KB; one cut
    // short after a few KB still announces 400 megapixels.
    let bomb = bomb_png();
    let short_bomb = bomb[..4096].to_vec();
    let cases: [(&str, Vec<u8>, &str, &str); 5] = [
        ("really-html.png", html, "image/png", "text/html"),
        ("drawing.svg", svg, "image/svg+xml", "image/svg+xml"),
        ("truncated.png", truncated, "image/png", "image/png"),
        ("bomb.png", bomb, "image/png", "image/png"),
        ("short-bomb.png", short_bomb, "image/png", "image/png"),
    ];
    for (name, bytes, declared, detected) in cases {
        let reply = upload(&alice, name, bytes.clone(), declared).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{name}: {}",
            reply.text()
        );
        let media: Media = reply.json();
        assert_eq!(media.content_type, detected, "{name}");
        let file = get(&alice, &format!("/media/{}", media.id)).await;
        assert_eq!(file.status, StatusCode::OK, "{name}");
        assert_eq!(file.body, bytes, "{name}");
        // Not a PNG/JPEG/GIF/WebP: a download, never a page of ours.
        assert_served_safely(&file, detected == "image/png");
        let thumb = get(&alice, &format!("/media/{}/thumbnail", media.id)).await;
        if name.ends_with("bomb.png") {
            assert!(bytes.len() < 128 * 1024, "{}", bytes.len());
            assert_eq!((media.width, media.height), (Some(20_000), Some(20_000)));
        }
        // Neither a script, a broken image nor a bomb gets decoded into a thumbnail.
        assert_eq!(media.thumbnail_url, None, "{name}");
        thumb.assert_problem(404, "media_not_found");
    }
}

async fn oversized_and_empty_bodies_are_refused(backend: Backend, kind: MediaKind) {
    let Some((app, media)) = app(backend, kind).await else {
        return;
    };
    let alice = app.register("alice").await;
    upload(&alice, "empty", Vec::new(), "application/octet-stream")
        .await
        .assert_problem(422, "validation_failed");
    // 30 MiB over the default 25 MiB: with a declared length, refused before reading it.
    let big = vec![7u8; 30 * 1024 * 1024];
    upload(&alice, "big.bin", big.clone(), "application/octet-stream")
        .await
        .assert_problem(413, "payload_too_large");
    // Streamed without a length: refused as soon as the limit is passed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let reply = send(
        alice
            .http
            .post(format!("{}/media?filename=big.bin", alice.base))
            .bearer_auth(&alice.token)
            .body(body),
    )
    .await;
    reply.assert_problem(413, "payload_too_large");
    // Nothing of them was kept.
    assert_eq!(app.query_i64("SELECT COUNT(*) FROM media").await, 0);
    drop(media);
}

async fn the_quota_counts_every_upload(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| {
        media.apply(config);
        config.media_quota_bytes = 1000;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    uploaded(&alice, "a", vec![1u8; 600], "application/octet-stream").await;
    upload(&alice, "b", vec![1u8; 600], "application/octet-stream")
        .await
        .assert_problem(413, "quota_exceeded");
    uploaded(&alice, "c", vec![1u8; 400], "application/octet-stream").await;
    // Per user.
    uploaded(&bob, "d", vec![1u8; 600], "application/octet-stream").await;
}

async fn the_limits_and_the_quota_used_are_published(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| {
        media.apply(config);
        config.media_max_bytes = 5000;
        config.media_quota_bytes = 9000;
    })
    .await;
    let alice = app.register("alice").await;
    let limits = |used_bytes| MediaLimits {
        max_bytes: 5000,
        quota_bytes: 9000,
        used_bytes,
    };
    let reply = get(&alice, "/media/limits").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json::<MediaLimits>(), limits(0));
    uploaded(&alice, "a", vec![1u8; 600], "application/octet-stream").await;
    assert_eq!(
        get(&alice, "/media/limits").await.json::<MediaLimits>(),
        limits(600)
    );
    assert_eq!(
        app.get("/media/limits").await.status,
        StatusCode::UNAUTHORIZED
    );
}
