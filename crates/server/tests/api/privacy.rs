//! A private room is invisible to non-members on every path: exactly as if it did not exist.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, Reply, Session, TestApp};
use crate::on_both_backends;

on_both_backends!(private_rooms_are_indistinguishable_from_missing_ones_on_every_path);

/// Every room path, as an outsider would try it.
async fn every_path(outsider: &Session, room: Uuid) -> Vec<(String, Reply)> {
    let base = format!("/rooms/{room}");
    vec![
        (format!("GET {base}"), outsider.get(&base).await),
        (
            format!("GET {base}/members"),
            outsider.get(&format!("{base}/members")).await,
        ),
        (
            format!("POST {base}/members {{}}"),
            outsider.post(&format!("{base}/members"), json!({})).await,
        ),
        (
            format!("POST {base}/members {{username}}"),
            outsider
                .post(&format!("{base}/members"), json!({"username": "alice"}))
                .await,
        ),
        (
            format!("DELETE {base}/members/me"),
            outsider.delete(&format!("{base}/members/me")).await,
        ),
        (
            format!("GET {base}/messages"),
            outsider.get(&format!("{base}/messages")).await,
        ),
        (
            format!("GET {base}/messages?before_seq"),
            outsider.get(&format!("{base}/messages?before_seq=5")).await,
        ),
        (
            format!("POST {base}/messages"),
            outsider
                .post(&format!("{base}/messages"), json!({"content": "hi"}))
                .await,
        ),
    ]
}

async fn private_rooms_are_indistinguishable_from_missing_ones_on_every_path(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let mallory = app.register("mallory").await;
    let den = alice.create_room("Den", true).await;
    alice.say(den.id, "secret").await;

    let private = every_path(&mallory, den.id).await;
    let missing = every_path(&mallory, Uuid::new_v4()).await;
    for ((path, reply), (_, absent)) in private.iter().zip(&missing) {
        reply.assert_problem(404, "room_not_found");
        assert_eq!(
            reply.body, absent.body,
            "{path} differs from a missing room"
        );
    }
    let listed: serde_json::Value = mallory.get("/rooms/public").await.json();
    assert_eq!(listed["total"], 0);
    let mine: serde_json::Value = mallory.get("/rooms").await.json();
    assert_eq!(mine["rooms"], json!([]));

    // Once added, everything opens up.
    alice.add(den.id, "mallory").await;
    assert_eq!(
        mallory
            .get(&format!("/rooms/{}/messages", den.id))
            .await
            .status,
        StatusCode::OK
    );
}
