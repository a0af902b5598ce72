//! Registering, logging in, tokens, and the auth rate limit.

use jsonwebtoken::{EncodingKey, Header};
use nebula_wire::{AuthResponse, User};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, JWT_SECRET, TestApp, password_of, send};
use crate::on_both_backends;

on_both_backends!(
    register_then_log_in_then_ask_who_i_am,
    usernames_are_unique_ignoring_case,
    failed_logins_cannot_tell_unknown_users_from_wrong_passwords,
    registration_input_is_validated,
    bad_tokens_are_refused,
    auth_attempts_are_rate_limited_per_ip,
);

async fn register_then_log_in_then_ask_who_i_am(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let reply = app
        .post_json(
            "/auth/register",
            json!({"username": "Alice", "password": "correct horse", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let raw: serde_json::Value = reply.json();
    assert_eq!(raw["token_type"], "Bearer");
    assert!(raw["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(
        raw["user"].as_object().unwrap().len(),
        3,
        "user is exactly {{id, username, created_at}}: {raw}"
    );
    let registered: AuthResponse = reply.json();
    assert_eq!(registered.user.username, "Alice");

    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(
        login.status,
        StatusCode::OK,
        "login is case-insensitive on the name: {}",
        login.text()
    );
    let login: AuthResponse = login.json();
    assert_eq!(login.user, registered.user);

    let me = send(app.http.get(app.url("/me")).bearer_auth(&login.token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json::<User>(), registered.user);
}

async fn usernames_are_unique_ignoring_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("bob").await;
    app.post_json(
        "/auth/register",
        json!({"username": "BOB", "password": "whatever1"}),
    )
    .await
    .assert_problem(409, "username_taken");
}

async fn failed_logins_cannot_tell_unknown_users_from_wrong_passwords(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.register("carol").await;
    let wrong_password = app
        .post_json(
            "/auth/login",
            json!({"username": "carol", "password": "not-her-password"}),
        )
        .await;
    let unknown_user = app
        .post_json(
            "/auth/login",
            json!({"username": "nobody", "password": "not-her-password"}),
        )
        .await;
    wrong_password.assert_problem(401, "invalid_credentials");
    assert_eq!(
        wrong_password.body, unknown_user.body,
        "byte-identical answers"
    );
    assert_eq!(wrong_password.status, unknown_user.status);
    let right = app
        .post_json(
            "/auth/login",
            json!({"username": "carol", "password": password_of("carol")}),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK);
}

async fn registration_input_is_validated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (username, password) in [
        ("ab", "long enough"),
        (&"x".repeat(33) as &str, "long enough"),
        ("has space", "long enough"),
        ("émile", "long enough"),
        ("dave", "short"),
        ("dave", &"p".repeat(129)),
    ] {
        app.post_json(
            "/auth/register",
            json!({"username": username, "password": password}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    app.post_json(
        "/auth/register",
        json!({"username": "dave", "password": "long enough", "email": "nope"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post_json("/auth/register", json!({"username": "dave"}))
        .await
        .assert_problem(422, "invalid_body");
    // Limits are inclusive.
    let edge = app
        .post_json(
            "/auth/register",
            json!({"username": "abc", "password": "p".repeat(128)}),
        )
        .await;
    assert_eq!(edge.status, StatusCode::CREATED);
}

async fn bad_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let erin = app.register("erin").await;
    let forge = |secret: &str, exp: i64| {
        let claims = json!({"sub": erin.user.id, "username": "erin", "iat": 0, "exp": exp});
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let in_an_hour = chrono::Utc::now().timestamp() + 3600;
    let cases = [
        (None, "unauthorized"),
        (Some("garbage".to_owned()), "invalid_token"),
        (
            Some(forge(
                "another-secret-another-secret-another-secret",
                in_an_hour,
            )),
            "invalid_token",
        ),
        (
            Some(forge(JWT_SECRET, chrono::Utc::now().timestamp() - 5)),
            "token_expired",
        ),
    ];
    for (token, code) in cases {
        let mut request = app.http.get(app.url("/me"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request).await.assert_problem(401, code);
    }
    let valid = send(
        app.http
            .get(app.url("/me"))
            .bearer_auth(forge(JWT_SECRET, in_an_hour)),
    )
    .await;
    assert_eq!(valid.status, StatusCode::OK);
}

async fn auth_attempts_are_rate_limited_per_ip(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.rate_limit_auth_per_minute = 3).await;
    for _ in 0..3 {
        let reply = app
            .post_json(
                "/auth/login",
                json!({"username": "frank", "password": "whatever1"}),
            )
            .await;
        reply.assert_problem(401, "invalid_credentials");
    }
    let limited = app
        .post_json(
            "/auth/register",
            json!({"username": "frank", "password": "whatever1"}),
        )
        .await;
    limited.assert_problem(429, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}
