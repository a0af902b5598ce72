//! `/`, `/health` (+ `/health/live`, `/health/ready`) and `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nebula_wire::{Health, ServiceInfo, ServiceLimits};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(service_info))
        .routes(routes!(health))
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// Service name, version and limits; a browser (`Accept: text/html`) gets the web client
/// instead.
#[utoipa::path(get, path = "/", tag = "operations", responses(
    (status = 200, body = ServiceInfo, description = "service info, or the web client for `Accept: text/html`"),
))]
async fn service_info(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if crate::web::wants_html(headers.get(header::ACCEPT)) {
        return crate::web::index();
    }
    let config = &state.config.config;
    axum::Json(ServiceInfo {
        name: "nebula".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        docs: "/docs".to_owned(),
        limits: ServiceLimits {
            message_max_chars: i64::try_from(config.message_max_chars).unwrap_or(i64::MAX),
            media_max_bytes: i64::try_from(config.media_max_bytes).unwrap_or(i64::MAX),
        },
    })
    .into_response()
}

/// How long a health check waits for the database before calling it down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A check's public value: `ok`, or a fixed `error: …` word. `/health` is unauthenticated, so
/// the cause (a driver's message, with host names and database names) goes to the log only.
fn check_value(check: &'static str, result: Result<(), String>, public: &'static str) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(cause) => {
            tracing::warn!(check, error = %cause, "health check failed");
            format!("error: {public}")
        }
    }
}

async fn checks(state: &AppState) -> (StatusCode, Health) {
    let mut checks = BTreeMap::new();
    let database = match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(result) => check_value("database", result.map_err(|e| e.to_string()), "unavailable"),
        Err(_) => check_value("database", Err("no answer in time".into()), "timed out"),
    };
    let healthy = database == "ok";
    checks.insert("database".to_owned(), database);
    // The bus between nodes is not essential: without it a node still serves its own clients
    // and repairs what it missed when the bus returns. Degraded, not unavailable.
    let mut degraded = false;
    if let Some(bus) = state.bus.health().await {
        degraded |= bus.is_err();
        checks.insert("bus".to_owned(), check_value("bus", bus, "unavailable"));
    }
    // The outbox holds notifications while RabbitMQ is away: degraded too, never unready.
    if let Some(broker) = state.outbox.broker_check() {
        degraded |= broker.is_err();
        let value = check_value("broker", broker, "disconnected");
        checks.insert("broker".to_owned(), value);
    }
    let (status, label) = match (healthy, degraded) {
        (true, false) => (StatusCode::OK, "ok"),
        (true, true) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (
        status,
        Health {
            status: label.to_owned(),
            checks,
        },
    )
}

/// Health of this node and its dependencies; 503 naming the failing check.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let (status, body) = checks(&state).await;
    (status, axum::Json(body))
}

/// Liveness: the process answers. Never checks dependencies (a database outage must not get
/// every node restarted).
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Health)))]
async fn live() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".to_owned(),
        checks: BTreeMap::new(),
    })
}

/// Readiness: this node can serve requests (its database answers).
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    health(State(state)).await
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (in_use, idle) = state.store.pool_usage();
    metrics::gauge!("nebula_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!("nebula_db_pool_connections", "state" => "idle").set(f64::from(idle));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
