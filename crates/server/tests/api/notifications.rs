//! Membership notifications end to end: a change over REST → outbox row in the same
//! transaction → relay → (RabbitMQ → notifier consumer, or in-process) → Web Push to a
//! loopback push service that checks the VAPID JWT and decrypts the payload like a browser.
//!
//! The push service, its RFC 8291 decryption and the private RabbitMQ node are the
//! notifier's own test fixtures, compiled in here rather than copied.

mod broker;
mod direct;
mod embedded;
mod mentions;
mod outbox;

#[allow(dead_code)]
#[path = "../../../notifier/tests/notifier/support/ece.rs"]
mod ece;
#[allow(dead_code)]
#[path = "../../../notifier/tests/notifier/support/push_endpoint.rs"]
pub(crate) mod push_endpoint;
#[allow(dead_code)]
#[path = "../../../notifier/tests/notifier/support/rabbit_node.rs"]
mod rabbit_node;

use std::future::Future;
use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use nebula::config::Config;
use nebula_notifier::{
    ConsumerConfig, Dispatcher, EndpointPolicy, GeneratedVapidKeys, NewSubscription, PushSender,
    PushStore, Topology, VapidKeys,
};
use nebula_wire::notify::{MemberNotification, Notification};
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Session, TestApp, services_required};
use push_endpoint::Browser;

/// The VAPID contact the test servers sign with and the push endpoint expects.
pub(crate) const SUBJECT: &str = "mailto:tests@nebula.invalid";
/// Generous: a relay backing off from a stopped broker waits up to 30 s between attempts.
const WAIT: Duration = Duration::from_secs(60);

/// Embedded mode: no broker, these VAPID keys, and the loopback push service allowed
/// (`WEBPUSH_ALLOW_PRIVATE_ENDPOINTS=true`).
fn embedded(config: &mut Config, vapid: &GeneratedVapidKeys) {
    config.rabbit_url = None;
    config.webpush_allow_private_endpoints = true;
    config.webpush_vapid_private_key = Some(vapid.private_key.clone());
    config.webpush_vapid_public_key = Some(vapid.public_key.clone());
    config.webpush_vapid_subject = Some(SUBJECT.to_owned());
}

/// Broker mode on `url`, publishing to a queue of the test's own.
fn broker(config: &mut Config, url: &str, queue: &str) {
    config.rabbit_url = Some(url.to_owned());
    config.rabbit_queue = queue.to_owned();
}

pub(crate) fn unique_queue() -> String {
    format!(
        "room_member.notifications.test-{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// `NEBULA_TEST_AMQP_URL`, or `None` with the reason printed (a failure when services are
/// required).
pub(crate) fn shared_broker(test: &str) -> Option<String> {
    match std::env::var("NEBULA_TEST_AMQP_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if services_required() => {
            panic!("{test}: NEBULA_TEST_REQUIRE_SERVICES=1 but NEBULA_TEST_AMQP_URL is unset")
        }
        _ => {
            eprintln!("skipped {test}: NEBULA_TEST_AMQP_URL is unset (RabbitMQ tests need it)");
            None
        }
    }
}

/// The browser subscribes through the server's own port, as a web page would.
pub(crate) async fn subscribe(user: &Session, browser: &Browser) {
    let reply = user
        .post(
            "/webpush/subscribe",
            json!({"endpoint": browser.endpoint, "keys": {"p256dh": browser.p256dh, "auth": browser.auth}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

/// Stores a subscription directly, as the standalone notifier's API would.
async fn store_subscription(store: &PushStore, user: &Session, browser: &Browser) {
    let new = NewSubscription {
        endpoint: browser.endpoint.clone(),
        p256dh: browser.p256dh.clone(),
        auth: browser.auth.clone(),
    };
    store.upsert_subscription(user.user.id, &new).await.unwrap();
}

/// One row of the outbox table.
#[derive(Debug)]
struct OutboxEntry {
    event: MemberNotification,
    attempts: i32,
    dead: bool,
}

/// The membership rows of the outbox, oldest first, read straight from the test's database.
async fn outbox_rows(database_url: &str) -> Vec<OutboxEntry> {
    outbox_payloads(database_url)
        .await
        .into_iter()
        .filter_map(|(payload, attempts, dead)| {
            match Notification::parse(payload.as_bytes()).expect("a readable notification") {
                Notification::Member(event) => Some(OutboxEntry {
                    event,
                    attempts,
                    dead,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Every outbox row's payload, attempts and whether it is dead, oldest first.
async fn outbox_payloads(database_url: &str) -> Vec<(String, i32, bool)> {
    const SQL: &str =
        "SELECT payload, attempts, dead_at IS NOT NULL AS dead FROM outbox ORDER BY id";
    let rows: Vec<(String, i32, bool)> = if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let rows = sqlx::query_as(SQL).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let rows = sqlx::query_as(SQL).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    rows
}

/// Polls `check` until it holds, failing with `what` after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every outbox row is gone (so every delivery has finished).
async fn wait_outbox_empty(app: &TestApp) {
    eventually("an empty outbox", WAIT, || async {
        outbox_payloads(&app.database_url).await.is_empty()
    })
    .await;
}

/// A gauge or counter value from `/metrics` (unlabelled series only).
async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text();
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A notifier consumer in this process, as `nebula-notifier` would run it, on `store`.
struct RunningConsumer {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    config: ConsumerConfig,
}

impl RunningConsumer {
    fn start(url: &str, queue: &str, store: PushStore, vapid: &GeneratedVapidKeys) -> Self {
        let keys =
            VapidKeys::from_base64(&vapid.private_key, Some(&vapid.public_key), SUBJECT).unwrap();
        // The push service is on 127.0.0.1, as with WEBPUSH_ALLOW_PRIVATE_ENDPOINTS=true.
        let sender =
            PushSender::new(keys, Duration::from_secs(3600), EndpointPolicy::new(true)).unwrap();
        let mut config = ConsumerConfig::new(url, queue);
        // One event at a time: the notifier pushes concurrently events it holds at once, so
        // only with prefetch 1 does the endpoint see them in queue order, which is what
        // these tests check the server's relay for.
        config.prefetch = 1;
        config.max_attempts = 3;
        config.retry_base = Duration::from_millis(100);
        config.retry_max = Duration::from_millis(400);
        config.reconnect_min = Duration::from_millis(100);
        config.reconnect_max = Duration::from_millis(500);
        config.shutdown_grace = Duration::from_secs(2);
        let consumer =
            nebula_notifier::Consumer::new(config.clone(), Dispatcher::new(store, sender));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer.run(shutdown.clone()));
        RunningConsumer {
            shutdown,
            task,
            config,
        }
    }

    /// Stops the consumer and deletes the test's queues.
    async fn stop(self, url: &str) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        delete_queues(url, &self.config).await;
    }
}

/// Deletes the queues a consumer with `config` declared (main, dead-letter and retry queues).
pub(crate) async fn delete_queues(url: &str, config: &ConsumerConfig) {
    let topology: &Topology = &config.topology;
    let mut queues = vec![topology.queue().to_owned(), topology.dead_letter_queue()];
    for attempt in 1..config.max_attempts {
        queues.push(topology.retry_queue(config.retry_delay_ms(attempt)));
    }
    if let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await
        && let Ok(channel) = connection.create_channel().await
    {
        for queue in queues {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = connection.close(200, "OK".into()).await;
    }
}
