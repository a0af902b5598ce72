//! Nothing internal reaches a client: database errors become stable codes and fixed messages
//! over REST, WebSocket and `/health`, and no metric label comes from the client.

use nebula_wire::{ClientEvent, ServerEvent};
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, TestApp, send};
use crate::on_both_backends;

on_both_backends!(database_errors_reach_websockets_as_codes_only);

/// Words of the drivers' and the database's own messages that must never reach a client.
const INTERNAL_WORDS: &[&str] = &[
    "sqlx",
    "sqlite",
    "postgres",
    "database error",
    "returned from database",
    "no such table",
    "relation",
    "does not exist",
    "room_members",
    "nebula_test",
    "pool",
    "connection",
    "code:",
];

#[track_caller]
fn assert_safe(text: &str) {
    let lower = text.to_lowercase();
    for word in INTERNAL_WORDS {
        assert!(!lower.contains(word), "{word:?} leaked in {text}");
    }
}

/// The `error` event's code and message.
fn error_of(event: &ServerEvent) -> (&str, &str) {
    match event {
        ServerEvent::Error { code, message, .. } => (code, message),
        other => panic!("expected an error event, got {other:?}"),
    }
}

async fn database_errors_reach_websockets_as_codes_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.ws("/ws").await;
    // Break the database under the server: every membership lookup now fails in the driver.
    let drop = if app.database_url.starts_with("sqlite:") {
        "DROP TABLE room_members"
    } else {
        "DROP TABLE room_members CASCADE"
    };
    app.execute_sql(drop).await;

    ws.send(ClientEvent::Subscribe {
        room_id: room.id,
        since_seq: None,
        since_rev: None,
    })
    .await;
    let event = ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await;
    let (code, message) = error_of(&event);
    assert_eq!(code, "internal_error");
    assert_safe(message);
    ws.send(ClientEvent::Read {
        room_id: room.id,
        seq: 1,
    })
    .await;
    let event = ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await;
    assert_safe(error_of(&event).1);

    // REST says the same thing with the same code and text.
    let reply = alice.get(&format!("/rooms/{}", room.id)).await;
    reply.assert_problem(500, "internal_error");
    assert_eq!(reply.problem().detail, message);
    assert_safe(&reply.text());
}

/// A lost PostgreSQL database: `/health`, REST and the WebSocket name the failure without the
/// driver's words (host, database name, pool state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_reported_without_its_errors() {
    let Some(Backend::Postgres(admin_url)) = Backend::postgres() else {
        return;
    };
    let app = TestApp::spawn(Backend::Postgres(admin_url.clone())).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Lobby", false).await;
    let mut ws = alice.subscribed(room.id).await;
    let name = app.database_url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;

    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = health.json();
    let database = body["checks"]["database"].as_str().unwrap();
    assert!(
        ["error: unavailable", "error: timed out"].contains(&database),
        "{body}"
    );
    assert_safe(&health.text());

    let reply = alice.get("/rooms").await;
    assert!(reply.status.is_server_error(), "{}", reply.text());
    let problem = reply.problem();
    assert!(
        ["service_unavailable", "internal_error"].contains(&problem.code.as_str()),
        "{problem:?}"
    );
    assert_safe(&reply.text());

    ws.send(ClientEvent::MessageSend {
        room_id: room.id,
        content: "hello?".into(),
        client_msg_id: Some("m1".into()),
        reply_to: None,
        attachments: None,
    })
    .await;
    let event = ws.expect(|e| matches!(e, ServerEvent::Error { .. })).await;
    let (code, message) = error_of(&event);
    assert!(
        ["service_unavailable", "internal_error"].contains(&code),
        "{event:?}"
    );
    assert_safe(message);
}

/// Clients choose methods and paths freely; metric labels must not follow them, or anyone can
/// create time series without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_metric_labels_never_come_from_the_client() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let custom = Method::from_bytes(b"FOO").unwrap();
    let reply = send(app.http.request(custom, app.url("/rooms"))).await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    let reply = send(app.http.get(app.url("/no-such-route-xyzzy"))).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let metrics = app.get("/metrics").await.text();
    assert!(!metrics.contains("FOO"), "{metrics}");
    assert!(!metrics.contains("xyzzy"), "{metrics}");
    assert!(
        metrics.contains(r#"nebula_http_requests_total{method="other",route="/rooms""#),
        "{metrics}"
    );
}
