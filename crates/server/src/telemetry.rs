//! Logs and metrics.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the log subscriber (`RUST_LOG` filters; default `info`) and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the trace exporter (see `nebula_notifier::otel`).
/// Keep the returned guard until exit: dropping it flushes the last spans.
pub fn init_logging(format: LogFormat) -> nebula_notifier::otel::Guard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (otel, guard) = nebula_notifier::otel::layer("nebula");
    let registry = tracing_subscriber::registry().with(otel).with(filter);
    match format {
        LogFormat::Human => registry.with(tracing_subscriber::fmt::layer()).init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .init(),
    }
    guard
}

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// The process's metrics recorder, installed on first use.
///
/// The `metrics` facade is process-global by design (like `tracing`): instrumentation deep in
/// the store or hub records without handles being passed around. Several servers in one test
/// process therefore share counters, which only ever makes them larger.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding application's): render an empty
                // registry of our own rather than failing to start.
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Registers every metric the server exports, so a scrape of a fresh node already lists each
/// name (dashboards and alerts see 0 instead of "no data"). Values are only incremented by
/// zero: several servers in one test process share the registry.
pub fn register_metrics() {
    use metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    };

    describe_counter!(
        "nebula_http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "nebula_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    describe_gauge!("nebula_ws_connections", "Open WebSocket connections");
    describe_gauge!(
        "nebula_ws_subscriptions",
        "Room subscriptions of open WebSocket connections"
    );
    describe_counter!(
        "nebula_ws_events_delivered_total",
        "Events written to WebSockets, by type"
    );
    describe_histogram!(
        "nebula_message_delivery_latency_seconds",
        metrics::Unit::Seconds,
        "From receiving a message from its sender to writing it to a subscriber's socket"
    );
    describe_histogram!(
        "nebula_commit_duration_seconds",
        metrics::Unit::Seconds,
        "Message batch commit latency"
    );
    describe_histogram!("nebula_commit_batch_size", "Messages per committed batch");
    describe_counter!("nebula_messages_stored_total", "Messages committed");
    describe_histogram!(
        "nebula_change_commit_duration_seconds",
        metrics::Unit::Seconds,
        "Commit latency of a batch of edits, deletes and reaction changes"
    );
    describe_counter!(
        "nebula_message_changes_total",
        "Edits, deletes and reaction changes committed (including those that changed nothing)"
    );
    describe_gauge!(
        "nebula_db_pool_connections",
        "Database connections by state (in_use, idle)"
    );
    describe_counter!(
        "nebula_ws_outbound_overflows_total",
        "Connections whose outbound queue overflowed"
    );
    describe_counter!(
        "nebula_ws_slow_consumer_disconnects_total",
        "Connections closed as slow consumers (4008)"
    );
    describe_counter!(
        "nebula_ws_disconnects_total",
        "Closed WebSocket connections by reason"
    );
    describe_counter!(
        "nebula_rate_limited_total",
        "Requests and frames refused by a rate limit"
    );
    describe_gauge!(
        "nebula_bus_connected",
        "1 while the event bus between nodes is connected"
    );

    // Labels are the wire's event `type`s and the close reasons' labels.
    for kind in nebula_wire::ServerEvent::ROOM_EVENT_TYPES
        .into_iter()
        .chain(["other"])
    {
        counter!("nebula_ws_events_delivered_total", "type" => kind).increment(0);
    }
    for reason in crate::gateway::CloseReason::ALL {
        counter!("nebula_ws_disconnects_total", "reason" => reason.label()).increment(0);
    }
    for limit in ["auth", "login_failures", "messages"] {
        counter!("nebula_rate_limited_total", "limit" => limit).increment(0);
    }
    for state in ["in_use", "idle"] {
        gauge!("nebula_db_pool_connections", "state" => state).increment(0.0);
    }
    counter!("nebula_messages_stored_total").increment(0);
    counter!("nebula_message_changes_total").increment(0);
    counter!("nebula_ws_outbound_overflows_total").increment(0);
    counter!("nebula_ws_slow_consumer_disconnects_total").increment(0);
    gauge!("nebula_ws_connections").increment(0.0);
    gauge!("nebula_ws_subscriptions").increment(0.0);
    gauge!("nebula_bus_connected").increment(0.0);
    let _ = histogram!("nebula_message_delivery_latency_seconds");
    let _ = histogram!("nebula_commit_duration_seconds");
    let _ = histogram!("nebula_commit_batch_size");
    let _ = histogram!("nebula_change_commit_duration_seconds");
}

/// The `method` label: a standard method, or `other`. Clients may send any token as a method,
/// and every distinct label value is a new time series held forever.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", Method::as_str)
}

/// Counts requests and records their latency by method, route template and status. No label
/// is taken from the client: the route is the matched template (`unmatched` otherwise).
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("nebula_http_requests_total", &labels).increment(1);
    metrics::histogram!("nebula_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_labelled_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for custom in ["FOO", "get", "PROPFIND", "X-\u{7f}"] {
            if let Ok(method) = Method::from_bytes(custom.as_bytes()) {
                assert_eq!(method_label(&method), "other", "{custom}");
            }
        }
    }
}
