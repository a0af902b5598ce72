//! The standalone service as `main` runs it: `app::run` on port 0.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use nebula_notifier::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::push_endpoint::PushEndpoint;
use crate::support::rabbit::{TestQueue, shared_broker};
use crate::support::{JWT_SECRET, SUBJECT, event, token, user};

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
    // The push service below is on 127.0.0.1.
    config.allow_private_endpoints = true;
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

/// The report against the standalone service, with default settings: a loopback
/// endpoint is refused at subscribe, and one stored anyway (by a process that allowed it, or
/// before the rule) is never contacted when a member joins; RabbitMQ, database and sockets
/// all real.
#[tokio::test]
async fn with_default_settings_the_service_never_contacts_a_loopback_endpoint() {
    let Some(amqp) =
        shared_broker("with_default_settings_the_service_never_contacts_a_loopback_endpoint").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = nebula_notifier::generate_vapid_keys();
    let queue = TestQueue::new(&amqp).await;
    let mut config = Config::defaults();
    config.database_url = format!("sqlite://{}", dir.path().join("service.db").display());
    config.jwt_secret = Some(JWT_SECRET.to_owned());
    config.dev_mode = false;
    config.vapid_private_key = Some(keys.private_key.clone());
    config.vapid_subject = Some(SUBJECT.to_owned());
    config.rabbit_url = amqp.clone();
    config.rabbit_queue = queue.topology.queue().to_owned();
    assert!(!config.allow_private_endpoints, "the default");
    let config = config.validate().unwrap();
    let consumer_config = config.consumer();
    let database_url = config.config.database_url.clone();

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
    let endpoint = PushEndpoint::start(&keys.public_key, SUBJECT).await;
    let browser = endpoint.new_browser();
    let (alice, bob) = (user("alice"), user("bob"));
    let subscription = json!({"endpoint": browser.endpoint, "keys": {"p256dh": browser.p256dh, "auth": browser.auth}});

    let reply = loop {
        match http
            .post(format!("{base}/webpush/subscribe"))
            .bearer_auth(token(&bob))
            .json(&subscription)
            .send()
            .await
        {
            Ok(reply) => break reply,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = reply.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_subscription", "{problem}");

    let store = nebula_notifier::PushStore::connect(&database_url, 1)
        .await
        .unwrap();
    let new = nebula_notifier::NewSubscription {
        endpoint: browser.endpoint.clone(),
        p256dh: browser.p256dh.clone(),
        auth: browser.auth.clone(),
    };
    store.upsert_subscription(bob.id, &new).await.unwrap();
    let joined = event(nebula_wire::notify::MemberChange::Joined, &alice, &[&bob]);
    queue.publish(&joined).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !store.is_processed(joined.event_id).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event was never processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(
        endpoint.connections(),
        0,
        "the loopback endpoint was contacted"
    );
    assert!(store.subscriptions_of(bob.id).await.unwrap().is_empty());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), service)
        .await
        .expect("service did not stop")
        .unwrap()
        .unwrap();
    store.close().await;
    queue.delete(&consumer_config).await;
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

    config.max_subscriptions_per_user = 0;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER")
    );
}

#[test]
fn the_endpoint_settings_are_flags_and_environment_variables() {
    use clap::{CommandFactory as _, Parser as _};
    let command = nebula_notifier::config::Cli::command();
    let env_of = |id: &str| {
        command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
    };
    assert_eq!(
        env_of("allow_private_endpoints").as_deref(),
        Some("WEBPUSH_ALLOW_PRIVATE_ENDPOINTS")
    );
    assert_eq!(
        env_of("max_subscriptions_per_user").as_deref(),
        Some("WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER")
    );
    let defaults = Config::defaults();
    assert!(!defaults.allow_private_endpoints);
    assert_eq!(defaults.max_subscriptions_per_user, 10);
    let cli = nebula_notifier::config::Cli::try_parse_from([
        "nebula-notifier",
        "--allow-private-endpoints",
        "true",
        "--max-subscriptions-per-user",
        "3",
    ])
    .unwrap();
    assert!(cli.config.allow_private_endpoints);
    assert_eq!(cli.config.max_subscriptions_per_user, 3);
}
