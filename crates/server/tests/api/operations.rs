//! What operators and API clients see around the chat: service info, health, metrics, docs.

use nebula_wire::{ClientEvent, ServerEvent};
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, send};
use crate::on_both_backends;

on_both_backends!(
    service_info_health_metrics_and_docs,
    health_reports_a_lost_database,
    the_webpush_api_is_documented_where_it_is_served,
    service_info_tells_clients_the_limits_to_check_before_sending,
);

/// A client (the web client's composer and file picker) reads what the server accepts from
/// `GET /` instead of hard-coding it, so an operator's change reaches every client.
async fn service_info_tells_clients_the_limits_to_check_before_sending(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.message_max_chars = 123;
        config.media_max_bytes = 4567;
    })
    .await;
    let info: serde_json::Value = app.get("/").await.json();
    assert_eq!(info["limits"]["message_max_chars"], 123);
    assert_eq!(info["limits"]["media_max_bytes"], 4567);

    // A message one character over is refused, as the client was told.
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let too_long = alice
        .post(
            &format!("/rooms/{}/messages", room.id),
            serde_json::json!({ "content": "x".repeat(124) }),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn service_info_health_metrics_and_docs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let info: serde_json::Value = app.get("/").await.json();
    assert_eq!(info["name"], "nebula");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));

    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    let health: serde_json::Value = health.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"]["database"], "ok");
    assert_eq!(app.get("/health/live").await.status, StatusCode::OK);
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);

    let alice = app.register("alice").await;
    alice.create_room("Lobby", false).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(
        text.contains(r#"nebula_http_requests_total{method="POST",route="/rooms",status="201"}"#),
        "{text}"
    );
    assert!(
        text.contains("nebula_http_request_duration_seconds_bucket"),
        "latency is a histogram"
    );

    let openapi: serde_json::Value = app.get("/openapi.json").await.json();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/auth/register",
        "/auth/login",
        "/me",
        "/rooms",
        "/rooms/public",
        "/rooms/{room_id}",
        "/rooms/{room_id}/members",
        "/rooms/{room_id}/members/me",
        "/rooms/{room_id}/members/{user_id}",
        "/rooms/{room_id}/messages",
        "/voip/turn",
        "/dms",
        "/users",
        "/users/{user_id}",
        "/contacts",
        "/contacts/requests",
        "/contacts/requests/{request_id}/accept",
        "/contacts/requests/{request_id}/decline",
        "/contacts/{user_id}",
        "/blocks",
        "/blocks/{user_id}",
        "/health",
        "/metrics",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
    // Every error body is a problem document, and so documented.
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let content = response["content"].as_object();
                let is_error = status.starts_with('4') || status.starts_with('5');
                // `/health` answers 503 with its own report, not a problem.
                if let (true, Some(content)) = (is_error && !path.starts_with("/health"), content) {
                    assert!(
                        content.contains_key("application/problem+json"),
                        "{method} {path} {status}: {content:?}"
                    );
                }
            }
        }
    }
    let docs = send(app.http.get(app.url("/docs/"))).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text().contains("swagger"), "an API page is served");

    // The WebSocket protocol as AsyncAPI, linked from the API page (its description).
    assert!(openapi["paths"].get("/asyncapi.json").is_some());
    assert!(
        openapi["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("(/asyncapi.json)")),
        "/docs links the AsyncAPI document"
    );
    let asyncapi = app.get("/asyncapi.json").await;
    assert_eq!(asyncapi.status, StatusCode::OK);
    let asyncapi: serde_json::Value = asyncapi.json();
    assert_eq!(asyncapi["asyncapi"], "3.0.0");
    assert_eq!(asyncapi["channels"]["socket"]["address"], "/ws");
    assert_eq!(
        asyncapi["channels"]["room"]["address"],
        "/ws/rooms/{room_id}"
    );
    let messages = asyncapi["components"]["messages"].as_object().unwrap();
    let expected: Vec<String> = ClientEvent::TYPES
        .iter()
        .map(|t| format!("client.{t}"))
        .chain(ServerEvent::TYPES.iter().map(|t| format!("server.{t}")))
        .collect();
    for id in &expected {
        let (_, type_name) = id.split_once('.').unwrap();
        let message = &messages
            .get(id)
            .unwrap_or_else(|| panic!("{id} is documented"));
        assert_eq!(
            message["payload"]["properties"]["type"]["enum"][0],
            type_name
        );
    }
    assert_eq!(messages.len(), expected.len(), "no message but the wire's");
}

/// On PostgreSQL the test can take the database away from under the server.
async fn health_reports_a_lost_database(backend: Backend) {
    let Backend::Postgres(admin_url) = backend.clone() else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let name = app.database_url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = health.json();
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{body}"
    );
    assert_eq!(
        app.get("/health/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.get("/health/live").await.status, StatusCode::OK);
}

/// The Web Push subscription API is listed exactly where it is served (in-process
/// notifications with VAPID keys; dev mode generates throwaway ones).
async fn the_webpush_api_is_documented_where_it_is_served(backend: Backend) {
    let without = TestApp::spawn(backend.clone()).await;
    let openapi: serde_json::Value = without.get("/openapi.json").await.json();
    assert!(openapi["paths"].get("/webpush/subscribe").is_none());
    assert_eq!(
        without.get("/webpush/vapid-public-key").await.status,
        StatusCode::NOT_FOUND
    );

    let with = TestApp::spawn_with(backend, |config| config.dev_mode = true).await;
    let openapi: serde_json::Value = with.get("/openapi.json").await.json();
    for path in ["/webpush/subscribe", "/webpush/vapid-public-key"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
    assert_eq!(
        with.get("/webpush/vapid-public-key").await.status,
        StatusCode::OK
    );
}
