//! Compressed responses: a client that accepts gzip or br gets the API's JSON and the web
//! client's files compressed, decoding to the same bytes; media, small bodies and clients
//! that ask for nothing are served as they are.

use std::io::Read;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, Reply, Session, TestApp, send};
use crate::media::{MediaKind, MediaSetup, uploaded};
use crate::on_both_backends;

on_both_backends!(
    the_api_document_comes_compressed_to_a_client_that_accepts_it,
    a_history_page_comes_compressed_and_decodes_to_the_same_messages,
    media_and_small_bodies_are_never_compressed,
);

/// `GET path` with `Accept-Encoding: encoding` (`None`: no header at all).
async fn get_encoded(
    app: &TestApp,
    who: Option<&Session>,
    path: &str,
    encoding: Option<&str>,
) -> Reply {
    let mut request = app.http.get(app.url(path));
    if let Some(who) = who {
        request = request.bearer_auth(&who.token);
    }
    if let Some(encoding) = encoding {
        request = request.header("accept-encoding", encoding);
    }
    send(request).await
}

fn content_encoding(reply: &Reply) -> Option<&str> {
    reply
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
}

/// The body as the client's decoder would see it.
fn decoded(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    match content_encoding(reply) {
        Some("gzip") => {
            flate2::read::GzDecoder::new(reply.body.as_slice())
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(reply.body.as_slice(), 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        None => out.clone_from(&reply.body),
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}

async fn the_api_document_comes_compressed_to_a_client_that_accepts_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let plain = get_encoded(&app, None, "/openapi.json", None).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(
        content_encoding(&plain),
        None,
        "nothing asked, nothing compressed"
    );
    let document: Value = plain_json(&plain);

    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
    ] {
        let reply = get_encoded(&app, None, "/openapi.json", Some(accept)).await;
        assert_eq!(reply.status, StatusCode::OK, "{accept}");
        assert_eq!(
            content_encoding(&reply),
            Some(expected),
            "Accept-Encoding: {accept}"
        );
        assert!(
            reply
                .headers
                .get("vary")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
            "caches must key on Accept-Encoding"
        );
        assert!(
            reply.body.len() * 4 < plain.body.len(),
            "{accept}: {} bytes compressed vs {} plain",
            reply.body.len(),
            plain.body.len()
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded(&reply)).unwrap(),
            document,
            "{accept}"
        );
    }

    // The web client's script, as a browser asks for it.
    let script = get_encoded(&app, None, "/web/app.js", Some("gzip, deflate, br, zstd")).await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(content_encoding(&script), Some("br"));
    let original = get_encoded(&app, None, "/web/app.js", None).await;
    assert_eq!(decoded(&script), original.body);
}

fn plain_json(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).expect("JSON")
}

async fn a_history_page_comes_compressed_and_decodes_to_the_same_messages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("General", false).await;
    for n in 0..30 {
        alice
            .say(
                room.id,
                &format!("message number {n} about the weekly plan"),
            )
            .await;
    }
    let path = format!("/rooms/{}/messages?limit=100", room.id);
    let plain = get_encoded(&app, Some(&alice), &path, None).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text());
    assert_eq!(
        plain_json(&plain)["messages"].as_array().map(Vec::len),
        Some(30),
        "{}",
        plain.text()
    );
    for accept in ["gzip", "br"] {
        let reply = get_encoded(&app, Some(&alice), &path, Some(accept)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(content_encoding(&reply), Some(accept));
        assert!(
            reply.body.len() < plain.body.len() / 2,
            "{accept}: {} vs {}",
            reply.body.len(),
            plain.body.len()
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded(&reply)).unwrap(),
            plain_json(&plain)
        );
    }
}

async fn media_and_small_bodies_are_never_compressed(backend: Backend) {
    let media = MediaSetup::new(MediaKind::Fs).await.expect("fs store");
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let alice = app.register("alice").await;

    // A text upload compresses beautifully, and is still served byte for byte with its length.
    let text = "all work and no play makes a dull upload\n"
        .repeat(200)
        .into_bytes();
    let note = uploaded(&alice, "notes.txt", text.clone(), "text/plain").await;
    let fetched = get_encoded(
        &app,
        Some(&alice),
        &format!("/media/{}", note.id),
        Some("gzip, br"),
    )
    .await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(
        content_encoding(&fetched),
        None,
        "media is served as stored"
    );
    assert_eq!(
        fetched
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(text.len().to_string().as_str())
    );
    assert_eq!(fetched.body, text);
    // The signed URL (an <img src>) likewise.
    let picture = uploaded(&alice, "p.png", crate::media::png(64, 64), "image/png").await;
    let signed = get_encoded(
        &app,
        None,
        picture.url.as_deref().expect("signed url"),
        Some("gzip, br"),
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK);
    assert_eq!(content_encoding(&signed), None);

    // Small JSON: not worth it.
    let me = get_encoded(&app, Some(&alice), "/me", Some("gzip, br")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert!(me.body.len() < 1024, "{} bytes", me.body.len());
    assert_eq!(content_encoding(&me), None);
    // Nor the small error documents.
    let missing = get_encoded(&app, None, "/no/such/route", Some("gzip")).await;
    assert_eq!(content_encoding(&missing), None);
    missing.assert_problem(404, "not_found");
}
