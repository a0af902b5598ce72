//! Registering, logging in, tokens, and the auth rate limit.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use nebula_wire::{AuthResponse, User};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, JWT_SECRET, Reply, TestApp, password_of, send};
use crate::on_both_backends;

on_both_backends!(
    register_then_log_in_then_ask_who_i_am,
    usernames_are_unique_ignoring_case,
    failed_logins_cannot_tell_unknown_users_from_wrong_passwords,
    registration_input_is_validated,
    bad_tokens_are_refused,
    auth_attempts_are_rate_limited_per_ip,
    failed_logins_are_limited_per_account_whoever_sends_them,
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

/// A login from `client` (the address our trusted proxy puts in `X-Forwarded-For`).
async fn login_from(app: &TestApp, client: &str, username: &str, password: &str) -> Reply {
    send(
        app.http
            .post(app.url("/auth/login"))
            .header("x-forwarded-for", client)
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Guessing one account's password from many addresses still meets a limit, and the limit
/// treats a username nobody has exactly like a real one, so it reveals no account.
async fn failed_logins_are_limited_per_account_whoever_sends_them(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.rate_limit_login_failures_per_account_per_hour = 3;
        config.trusted_proxies = "127.0.0.1/32".parse().unwrap();
    })
    .await;
    app.register("carol").await;
    app.register("dave").await;
    app.register("erin").await;
    let mut answers: Vec<Vec<Reply>> = Vec::new();
    for username in ["carol", "nobody"] {
        let mut replies = Vec::new();
        for attempt in 0..4 {
            let client = format!("198.51.100.{attempt}");
            replies.push(login_from(&app, &client, username, "not-the-password").await);
        }
        answers.push(replies);
    }
    for replies in &answers {
        for failed in &replies[..3] {
            failed.assert_problem(401, "invalid_credentials");
        }
        let limited = &replies[3];
        limited.assert_problem(429, "rate_limited");
        assert!(
            (1..=1200).contains(&retry_after(limited)),
            "Retry-After {}",
            retry_after(limited)
        );
    }
    // An existing and an unknown account answer alike (the 429s' `Retry-After` may differ by
    // the second that passed between them).
    for (existing, unknown) in answers[0][..3].iter().zip(&answers[1][..3]) {
        assert_eq!(existing.body, unknown.body);
    }
    // While limited, even the right password is refused: guessing it is what is limited.
    login_from(&app, "203.0.113.1", "CAROL", &password_of("carol"))
        .await
        .assert_problem(429, "rate_limited");
    // Other accounts are not affected, and successful logins are not failures.
    let dave = login_from(&app, "198.51.100.0", "dave", &password_of("dave")).await;
    assert_eq!(dave.status, StatusCode::OK, "{}", dave.text());
    for _ in 0..6 {
        let ok = login_from(&app, "203.0.113.2", "erin", &password_of("erin")).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    }
}

/// A fabricated stored hash whose verification keeps a hashing thread busy for seconds
/// (1.2 million passes over 8 KiB: about 3 s on the development machine). It matches nothing.
const SLOW_HASH: &str = "$argon2id$v=19$m=8,t=1200000,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Password hashing is the costliest work an anonymous client can ask for. Its queue is
/// bounded (503 with `Retry-After` beyond it), and a password longer than any account can have
/// is refused without hashing, while every hashing thread is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_before_authentication_is_bounded() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.password_hash_queue = 1;
    })
    .await;
    app.register("alice").await;
    app.register("slow").await;
    let wrong = json!({"username": "alice", "password": "not-her-password"});
    let failed = app.post_json("/auth/login", wrong.clone()).await;
    failed.assert_problem(401, "invalid_credentials");
    app.execute_sql(&format!(
        "UPDATE users SET password_hash = '{SLOW_HASH}' WHERE username_key = 'slow'"
    ))
    .await;

    // Occupy every hashing thread (the server has one per core, like this process): wait
    // until each is running a slow verification.
    let threads = app.passwords.load().threads;
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..threads {
        let request = app
            .http
            .post(app.url("/auth/login"))
            .json(&json!({"username": "slow", "password": "whatever-1"}));
        slow.spawn(async move { request.send().await.map(|r| r.status()) });
    }
    wait_until(|| app.passwords.load().running == threads).await;
    // Then fill the queue (size 1) with a login that waits (its client gives up; it stays
    // queued), and the next one is refused at once.
    let waiting = app.http.post(app.url("/auth/login")).json(&wrong).send();
    let waiting = tokio::spawn(waiting);
    wait_until(|| app.passwords.load().queued == 1).await;
    let refused = send(app.http.post(app.url("/auth/login")).json(&wrong)).await;
    let busy = (refused.status == StatusCode::SERVICE_UNAVAILABLE).then_some(refused);
    let busy = busy.expect("a login is refused while hashing is saturated");
    busy.assert_problem(503, "service_unavailable");
    assert!(retry_after(&busy) >= 1);
    app.post_json(
        "/auth/register",
        json!({"username": "newcomer", "password": "long enough"}),
    )
    .await
    .assert_problem(503, "service_unavailable");

    // Over-long passwords never reach the saturated pool (whose full queue would answer 503):
    // refused at once, exactly like any other failed login.
    for username in ["alice", "slow", "nobody"] {
        let reply = send(
            app.http
                .post(app.url("/auth/login"))
                .json(&json!({"username": username, "password": "p".repeat(129)}))
                .timeout(crate::ws_client::PATIENCE),
        )
        .await;
        reply.assert_problem(401, "invalid_credentials");
        assert_eq!(reply.body, failed.body, "same answer as a wrong password");
    }
    slow.abort_all();
    waiting.abort();
}

/// Waits until `condition` holds, checking every few milliseconds (the server's state changes
/// on its own threads; there is no event to wait on).
async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + crate::ws_client::PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
