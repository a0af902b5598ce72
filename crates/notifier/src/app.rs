//! The standalone service: HTTP API + consumer + housekeeping, wired from a [`ValidConfig`].
//!
//! `main` parses config, binds and calls [`run`]; tests call the same function with port 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::config::ValidConfig;
use crate::consumer::Consumer;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::http::{ApiState, router};
use crate::push::PushSender;
use crate::store::PushStore;

/// How often finished event ids past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// What `/health` and `/metrics` read.
#[derive(Clone)]
struct OpsState {
    store: PushStore,
    broker_connected: Arc<AtomicBool>,
    metrics: PrometheusHandle,
}

/// Runs the service on `listener` until `shutdown` is cancelled, then stops the consumer
/// (in-flight events get the grace period) and closes the database.
pub async fn run(
    listener: TcpListener,
    config: ValidConfig,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<()> {
    let store = PushStore::connect(
        &config.config.database_url,
        config.config.database_max_connections,
    )
    .await?;
    let sender = PushSender::new(
        config.vapid.clone(),
        config.push_ttl(),
        config.endpoint_policy(),
    )?;
    let dispatcher = Dispatcher::new(store.clone(), sender).with_mailer(config.mailer()?);
    let consumer = Consumer::new(config.consumer(), dispatcher);
    let ops = OpsState {
        store: store.clone(),
        broker_connected: consumer.connected_flag(),
        metrics,
    };
    let api = ApiState::new(store.clone(), &config.jwt_secret, config.vapid.public_key())
        .with_rules(config.subscription_rules());
    let app = app(api, ops);

    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
    let retention = chrono::Duration::days(i64::from(config.config.processed_retention_days));
    let prune_task = tokio::spawn(prune(store.clone(), retention, shutdown.clone()));

    tracing::info!(addr = %listener.local_addr()?, backend = store.backend_name(), "notifier listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    // If the server died on its own, take the rest down with it.
    shutdown.cancel();
    let _ = consumer_task.await;
    let _ = prune_task.await;
    store.close().await;
    served.map_err(Error::from)
}

/// The full router of the standalone service.
fn app(api: ApiState, ops: OpsState) -> Router {
    let ops_routes = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .with_state(ops);
    router(api)
        .merge(ops_routes)
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(TraceLayer::new_for_http())
}

/// 200 while the database answers (`broker` says whether the consumer is connected; events
/// wait in RabbitMQ meanwhile, so a broker outage alone is not unhealthy), else 503.
async fn health(State(ops): State<OpsState>) -> impl IntoResponse {
    let database = ops.store.ping().await.is_ok();
    let broker = ops.broker_connected.load(Ordering::Relaxed);
    let status = match (database, broker) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let code = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "checks": {
            "database": if database { "ok" } else { "unavailable" },
            "broker": if broker { "connected" } else { "disconnected" },
        }
    });
    (code, Json(body))
}

async fn render_metrics(State(ops): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
}

/// Deletes finished event ids older than `retention`, hourly, until shutdown.
async fn prune(store: PushStore, retention: chrono::Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.prune_processed(chrono::Utc::now() - retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot old processed events"),
            Err(err) => tracing::warn!(error = %err, "could not prune processed events"),
        }
    }
}
