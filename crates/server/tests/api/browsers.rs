//! What browsers may do: cross-origin REST calls (`CORS_ALLOWED_ORIGINS`), WebSocket upgrades
//! from other sites' pages, and the protective headers on every response.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::helpers::{Backend, Session, TestApp, send};

async fn app_allowing(origins: &str) -> TestApp {
    let origins = origins.parse().unwrap();
    TestApp::spawn_with(Backend::Sqlite, |config| {
        config.cors_allowed_origins = origins;
    })
    .await
}

/// A browser's preflight for an authenticated `POST /rooms` from a page of `origin`.
async fn preflight(app: &TestApp, origin: &str) -> HeaderMap {
    let reply = send(
        app.http
            .request(Method::OPTIONS, app.url("/rooms"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            ),
    )
    .await;
    reply.headers
}

fn allowed_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_may_call_the_api_only_when_listed() {
    // Unset: same origin only, so no CORS headers for anyone.
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(
        allowed_origin(&preflight(&app, "https://evil.example").await),
        None
    );
    let simple = send(
        app.http
            .get(app.url("/"))
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(allowed_origin(&simple.headers), None);

    let app = app_allowing("https://app.example, http://localhost:5173").await;
    let granted = preflight(&app, "https://app.example").await;
    assert_eq!(allowed_origin(&granted), Some("https://app.example"));
    let headers = granted["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(granted.get("access-control-allow-credentials").is_none());
    assert_eq!(
        allowed_origin(&preflight(&app, "https://evil.example").await),
        None
    );
    let alice = app.register("alice").await;
    let listed = send(
        alice
            .http
            .get(app.url("/me"))
            .bearer_auth(&alice.token)
            .header("origin", "http://localhost:5173"),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        allowed_origin(&listed.headers),
        Some("http://localhost:5173")
    );
    let exposed = listed.headers["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("retry-after"), "{exposed}");

    let app = app_allowing("*").await;
    assert_eq!(
        allowed_origin(&preflight(&app, "https://any.example").await),
        Some("*")
    );
}

/// Opens `path` as `session` with an `Origin` header, returning the refusal if there is one.
async fn ws_from(session: &Session, path: &str, origin: Option<&str>) -> Result<(), (u16, String)> {
    let url = format!(
        "{}{path}?token={}",
        session.base.replacen("http", "ws", 1),
        session.token
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(response)) => Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(other) => panic!("websocket {path}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_sites_cannot_open_websockets() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let room_path = format!("/ws/rooms/{}", room.id);
    for path in ["/ws", room_path.as_str()] {
        let (status, body) = ws_from(&alice, path, Some("https://evil.example"))
            .await
            .expect_err("a foreign page is refused");
        assert_eq!(status, 403, "{body}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "origin_not_allowed");
        // The server's own page (the web client), and clients that are not browsers, pass.
        let own = app.base.clone();
        assert_eq!(ws_from(&alice, path, Some(&own)).await, Ok(()));
        assert_eq!(ws_from(&alice, path, None).await, Ok(()));
    }

    let app = app_allowing("https://app.example").await;
    let bob = app.register("bob").await;
    assert_eq!(
        ws_from(&bob, "/ws", Some("https://app.example")).await,
        Ok(())
    );
    assert_eq!(
        ws_from(&bob, "/ws", Some("https://evil.example"))
            .await
            .map_err(|e| e.0),
        Err(403)
    );
    let app = app_allowing("*").await;
    let carol = app.register("carol").await;
    assert_eq!(
        ws_from(&carol, "/ws", Some("https://evil.example")).await,
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let app = app_allowing("https://app.example").await;
    let alice = app.register("alice").await;
    let login = app
        .post_json(
            "/auth/login",
            json!({"username": "alice", "password": "wrong-password"}),
        )
        .await;
    let register = send(
        app.http
            .post(app.url("/auth/register"))
            .json(&json!({"username": "bob", "password": "long enough"})),
    )
    .await;
    let me = alice.get("/me").await;
    let replies = [
        ("GET /", app.get("/").await),
        (
            "GET / (browser)",
            send(app.http.get(app.url("/")).header("accept", "text/html")).await,
        ),
        ("GET /web/app.js", app.get("/web/app.js").await),
        ("GET /nowhere", app.get("/nowhere").await),
        ("PUT /rooms", send(app.http.put(app.url("/rooms"))).await),
        ("GET /rooms (no token)", app.get("/rooms").await),
        ("GET /health", app.get("/health").await),
        ("GET /metrics", app.get("/metrics").await),
        ("GET /docs/", app.get("/docs/").await),
        (
            "POST /rooms",
            alice.post("/rooms", json!({"name": "Lobby"})).await,
        ),
        (
            "OPTIONS /rooms",
            send(
                app.http
                    .request(Method::OPTIONS, app.url("/rooms"))
                    .header("origin", "https://app.example")
                    .header("access-control-request-method", "POST"),
            )
            .await,
        ),
        ("POST /auth/login", login),
        ("POST /auth/register", register),
        ("GET /me", me),
    ];
    for (what, reply) in &replies {
        assert_eq!(reply.headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(reply.headers["referrer-policy"], "no-referrer", "{what}");
    }
    for (what, reply) in &replies[replies.len() - 3..] {
        assert_eq!(reply.headers["cache-control"], "no-store", "{what}");
    }
    // The web client keeps its own policy.
    let page = &replies[1].1;
    assert!(page.headers.contains_key("content-security-policy"));
}
