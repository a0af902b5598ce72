//! A notification's trace across processes, exported over OTLP to a real receiver: the chat
//! node's outbox relay publishes to RabbitMQ, the `nebula-notifier` binary consumes it and
//! pushes to a loopback push service, once failing (503) so the event also goes round a retry
//! queue, then delivered. Every span is in the relay's trace, linked parent to child.

use std::process::Stdio;
use std::time::Duration;

use nebula_notifier::{ConsumerConfig, GeneratedVapidKeys};
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

use super::{Engine, JWT_SECRET, TestCluster, free_port, services};
use crate::helpers::{Session, http_client};
use crate::notifications::push_endpoint::{Browser, Mode, PushEndpoint};
use crate::notifications::{SUBJECT, delete_queues, shared_broker, unique_queue};
use crate::otlp::{OtlpReceiver, ReceivedSpan};

/// Retry delays of the notifier under test: the first retry waits this long.
const RETRY_BASE_MS: u64 = 300;
const RETRY_MAX_MS: u64 = 1200;
const MAX_ATTEMPTS: u32 = 4;
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_one_trace_from_the_outbox_through_rabbitmq_to_the_push() {
    let test = "a_notification_is_one_trace_from_the_outbox_through_rabbitmq_to_the_push";
    let Some((backend, redis)) = services(test, Engine::Redis) else {
        return;
    };
    let Some(amqp) = shared_broker(test) else {
        return;
    };
    let receiver = OtlpReceiver::start().await;
    let queue = unique_queue();
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        // Export every 50 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ];
    let mut node_env = otel.to_vec();
    node_env.extend([
        ("RABBIT_URL", amqp.as_str()),
        ("RABBIT_QUEUE", queue.as_str()),
    ]);
    let cluster = TestCluster::start(&backend, &redis, 1, &node_env).await;
    let vapid = nebula_notifier::generate_vapid_keys();
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let notifier = Notifier::start(&cluster, &amqp, &queue, &vapid, &otel).await;

    let bob = cluster.register(0, "bob").await;
    let room = bob.create_room("Traced", false).await;
    let browser = endpoint.new_browser();
    notifier.subscribe(&bob, &browser).await;
    // The push service is down for the first attempt: the event waits in a retry queue and
    // comes back, which must stay in the same trace.
    endpoint.set_mode(&browser, Mode::Unavailable);
    let alice = cluster.register(0, "alice").await;
    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    endpoint
        .wait_until(WAIT, "the first (refused) push attempt", |e| {
            e.requests_for(&browser) >= 1
        })
        .await;
    endpoint.set_mode(&browser, Mode::Accept);
    let pushes = endpoint.wait_for_pushes(1, WAIT).await;
    assert_eq!(pushes[0].payload.kind, "member.joined");
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    let attempts = endpoint.requests_for(&browser);

    // Both: a `notify.consume` ends (and is exported) after the `push.send` inside it.
    let spans = receiver
        .wait_for(
            "the notification's trace down to the delivered push",
            |spans| {
                spans
                    .iter()
                    .filter(|s| s.name == "outbox.publish")
                    .any(|root| {
                        count(spans, &root.trace_id, "push.send") >= attempts
                            && count(spans, &root.trace_id, "notify.consume") >= attempts
                    })
            },
        )
        .await;
    let root = spans
        .iter()
        .find(|s| s.name == "outbox.publish" && count(&spans, &s.trace_id, "push.send") > 0)
        .expect("the publication that led to the push");
    assert!(root.parent_span_id.is_empty(), "the relay starts the trace");
    assert_eq!(root.service, "nebula");
    let in_trace = |name: &str| -> Vec<&ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id && s.name == name)
            .collect()
    };
    let consumes = in_trace("notify.consume");
    assert_eq!(consumes.len(), attempts, "one consume per delivery attempt");
    for consume in &consumes {
        assert_eq!(consume.service, "nebula-notifier");
    }
    // The first delivery continues the relay's publication; each retry continues the
    // delivery that parked it.
    let mut parent = root;
    for _ in 0..attempts {
        let consume = consumes
            .iter()
            .find(|s| s.parent_span_id == parent.span_id)
            .unwrap_or_else(|| panic!("a notify.consume under {}", parent.name));
        parent = consume;
    }
    for consume in &consumes {
        let dispatch = in_trace("dispatch")
            .into_iter()
            .find(|s| s.parent_span_id == consume.span_id)
            .expect("the dispatch under each consume");
        let sends: Vec<_> = in_trace("push.send")
            .into_iter()
            .filter(|s| s.parent_span_id == dispatch.span_id)
            .collect();
        assert_eq!(sends.len(), 1, "one push per attempt, under its dispatch");
        assert_eq!(sends[0].instance, consume.instance);
    }
    assert_ne!(
        consumes[0].instance, root.instance,
        "consumed in the notifier's process"
    );

    notifier.stop().await;
}

/// How many spans named `name` are in `trace`.
fn count(spans: &[ReceivedSpan], trace: &[u8], name: &str) -> usize {
    spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .count()
}

/// The `nebula-notifier` binary, as an operator runs it beside the chat nodes.
struct Notifier {
    base: String,
    child: Child,
    log: std::path::PathBuf,
    amqp: String,
    consumer: ConsumerConfig,
}

impl Notifier {
    async fn start(
        cluster: &TestCluster,
        amqp: &str,
        queue: &str,
        vapid: &GeneratedVapidKeys,
        extra_env: &[(&str, &str)],
    ) -> Notifier {
        let binary = tokio::task::spawn_blocking(notifier_binary).await.unwrap();
        let port = free_port();
        let log = cluster.dir.path().join("notifier.log");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HTTP_PORT", port.to_string())
            .env("DATABASE_URL", &cluster.database_url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("DEV_MODE", "false")
            .env("RABBIT_URL", amqp)
            .env("RABBIT_QUEUE", queue)
            .env("NOTIFIER_PREFETCH", "1")
            .env("NOTIFIER_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string())
            .env("NOTIFIER_RETRY_BASE_MS", RETRY_BASE_MS.to_string())
            .env("NOTIFIER_RETRY_MAX_MS", RETRY_MAX_MS.to_string())
            .env("WEBPUSH_VAPID_PUBLIC_KEY", &vapid.public_key)
            .env("WEBPUSH_VAPID_PRIVATE_KEY", &vapid.private_key)
            .env("WEBPUSH_VAPID_SUBJECT", SUBJECT)
            .env("WEBPUSH_ALLOW_PRIVATE_ENDPOINTS", "true")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .kill_on_drop(true);
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start nebula-notifier");
        let mut consumer = ConsumerConfig::new(amqp, queue);
        consumer.max_attempts = MAX_ATTEMPTS;
        consumer.retry_base = Duration::from_millis(RETRY_BASE_MS);
        consumer.retry_max = Duration::from_millis(RETRY_MAX_MS);
        let notifier = Notifier {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
            amqp: amqp.to_owned(),
            consumer,
        };
        notifier.wait_consuming().await;
        notifier
    }

    /// Waits until `/health` says the consumer is connected to RabbitMQ (its queues exist).
    async fn wait_consuming(&self) {
        let http = http_client();
        for _ in 0..400 {
            if let Ok(reply) = http.get(format!("{}/health", self.base)).send().await
                && let Ok(health) = reply.json::<serde_json::Value>().await
                && health["checks"]["broker"] == "connected"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nebula-notifier did not connect; log: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The browser subscribes through the notifier's own API, with the chat server's token.
    async fn subscribe(&self, user: &Session, browser: &Browser) {
        let on_notifier = Session {
            base: self.base.clone(),
            ..user.clone()
        };
        let reply = on_notifier
            .post(
                "/webpush/subscribe",
                json!({"endpoint": browser.endpoint, "keys": {"p256dh": browser.p256dh, "auth": browser.auth}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }

    /// Stops the process and deletes the test's queues.
    async fn stop(mut self) {
        let _ = self.child.kill().await;
        delete_queues(&self.amqp, &self.consumer).await;
    }
}

/// `target/<profile>/nebula-notifier`, built with cargo first (a narrow `cargo test -p nebula`
/// does not build another package's binaries).
fn notifier_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let profile_dir = deps
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut build = std::process::Command::new(env!("CARGO"));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "nebula-notifier",
            "--bin",
            "nebula-notifier",
        ])
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building nebula-notifier");
    let binary = profile_dir.join("nebula-notifier");
    assert!(binary.exists(), "{} after the build", binary.display());
    binary
}
