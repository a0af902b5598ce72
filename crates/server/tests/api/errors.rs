//! Bad input always gets a clear 4xx problem, never a 500.

use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, send};
use crate::on_both_backends;

on_both_backends!(
    malformed_requests_get_problem_details,
    oversized_bodies_get_413
);

async fn malformed_requests_get_problem_details(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let post_raw = |path: String, body: &'static str| {
        let alice = alice.clone();
        async move {
            send(
                alice
                    .http
                    .post(format!("{}{path}", alice.base))
                    .bearer_auth(&alice.token)
                    .body(body),
            )
            .await
        }
    };
    post_raw("/rooms".into(), "{not json")
        .await
        .assert_problem(400, "malformed_json");
    post_raw("/rooms".into(), "")
        .await
        .assert_problem(400, "malformed_json");
    post_raw("/rooms".into(), "[1, 2]")
        .await
        .assert_problem(422, "invalid_body");
    post_raw("/rooms".into(), "{\"name\": null}")
        .await
        .assert_problem(422, "invalid_body");
    post_raw(
        format!("/rooms/{}/messages", room.id),
        "{\"content\": \"\\ud800\"}",
    )
    .await
    .assert_problem(400, "malformed_json");
    post_raw(
        format!("/rooms/{}/members", room.id),
        "{\"user_id\": \"not-a-uuid\"}",
    )
    .await
    .assert_problem(422, "invalid_body");
    app.post_json(
        "/auth/login",
        serde_json::json!({"username": 1, "password": []}),
    )
    .await
    .assert_problem(422, "invalid_body");

    alice
        .get("/rooms/not-a-uuid")
        .await
        .assert_problem(400, "invalid_path");
    alice
        .get("/rooms/not-a-uuid/messages")
        .await
        .assert_problem(400, "invalid_path");
    alice
        .get("/no/such/route")
        .await
        .assert_problem(404, "not_found");
    send(
        alice
            .http
            .put(format!("{}/rooms", alice.base))
            .bearer_auth(&alice.token),
    )
    .await
    .assert_problem(405, "method_not_allowed");
    // A huge number where a small one is expected.
    alice
        .get("/rooms/public?page_size=1e99")
        .await
        .assert_problem(400, "invalid_query");
}

async fn oversized_bodies_get_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let huge = format!("{{\"content\": \"{}\"}}", "a".repeat(1024 * 1024 + 1));
    let reply = send(
        alice
            .http
            .post(format!("{}/rooms/{}/messages", alice.base, room.id))
            .bearer_auth(&alice.token)
            .header("content-type", "application/json")
            .body(huge),
    )
    .await;
    reply.assert_problem(413, "payload_too_large");
    assert_eq!(alice.say(room.id, "still fine").await.seq, 1);
    assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}
