//! The standalone service as `main` runs it: `app::run` on port 0.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use nebula_notifier::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::push_endpoint::PushEndpoint;
use crate::support::{JWT_SECRET, SUBJECT, token, user};

/// The process-wide recorder, installed once for the whole test binary.
fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().unwrap();
            nebula_notifier::metrics::describe();
            handle
        })
        .clone()
}

#[tokio::test]
async fn the_service_serves_its_api_health_and_metrics_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let keys = nebula_notifier::generate_vapid_keys();
    let mut config = Config::defaults();
    config.database_url = format!("sqlite://{}", dir.path().join("service.db").display());
    config.jwt_secret = Some(JWT_SECRET.to_owned());
    config.dev_mode = false;
    config.vapid_private_key = Some(keys.private_key.clone());
    config.vapid_public_key = Some(keys.public_key.clone());
    config.vapid_subject = Some(SUBJECT.to_owned());
    // A port nothing listens on: the consumer keeps retrying, the API still works.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.rabbit_url = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f");
    let config = config.validate().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(nebula_notifier::app::run(
        listener,
        config,
        metrics(),
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();

    let health: Value = loop {
        match http.get(format!("{base}/health")).send().await {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK);
                break response.json().await.unwrap();
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(
        health,
        json!({"status": "degraded", "checks": {"database": "ok", "broker": "disconnected"}})
    );

    let key: Value = http
        .get(format!("{base}/webpush/vapid-public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["public_key"], keys.public_key);

    let endpoint = PushEndpoint::start(&keys.public_key, SUBJECT).await;
    let browser = endpoint.new_browser();
    let response = http
        .post(format!("{base}/webpush/subscribe"))
        .bearer_auth(token(&user("alice")))
        .json(&json!({"endpoint": browser.endpoint, "keys": {"p256dh": browser.p256dh, "auth": browser.auth}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = http
        .get(format!("{base}/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = http
        .put(format!("{base}/webpush/subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "method_not_allowed");

    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "nebula_notifier_events_consumed_total",
        "nebula_notifier_pushes_sent_total",
        "nebula_notifier_pushes_failed_total",
        "nebula_notifier_events_dead_lettered_total",
        "nebula_notifier_subscriptions_removed_total",
        "nebula_notifier_broker_connected",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), service)
        .await
        .expect("service did not stop")
        .unwrap()
        .unwrap();
}

#[test]
fn production_config_needs_real_secrets() {
    let mut config = Config::defaults();
    config.dev_mode = false;
    config.jwt_secret = Some("short".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("JWT_SECRET"), "{err}");

    config.jwt_secret = Some(JWT_SECRET.into());
    config.vapid_subject = Some(SUBJECT.into());
    config.vapid_private_key = None;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WEBPUSH_VAPID_PRIVATE_KEY")
    );

    let keys = nebula_notifier::generate_vapid_keys();
    let other = nebula_notifier::generate_vapid_keys();
    config.vapid_private_key = Some(keys.private_key);
    config.vapid_public_key = Some(other.public_key);
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("does not belong")
    );
    config.vapid_public_key = Some(keys.public_key);
    config.vapid_subject = Some("not-a-contact".into());
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WEBPUSH_VAPID_SUBJECT")
    );
    config.vapid_subject = Some(SUBJECT.into());
    config.validate().unwrap();
}
