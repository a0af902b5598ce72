//! RabbitMQ fixtures: the shared test broker, a unique queue per test, a running consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use nebula_notifier::{Consumer, ConsumerConfig, Dispatcher, Topology};
use nebula_wire::notify::MemberNotification;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::unavailable;

/// `NEBULA_TEST_AMQP_URL` if it is set and the broker answers; otherwise skip (or panic when
/// services are required).
pub async fn shared_broker(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("NEBULA_TEST_AMQP_URL") else {
        return unavailable(test, "NEBULA_TEST_AMQP_URL is not set");
    };
    let connect = Connection::connect(&url, ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, "OK".into()).await;
            Some(url)
        }
        Ok(Err(err)) => unavailable(
            test,
            &format!("cannot reach RabbitMQ at NEBULA_TEST_AMQP_URL: {err}"),
        ),
        Err(_) => unavailable(test, "RabbitMQ at NEBULA_TEST_AMQP_URL does not answer"),
    }
}

/// A publisher on a queue of its own, so tests can share one broker in parallel.
pub struct TestQueue {
    pub topology: Topology,
    connection: Connection,
    pub channel: Channel,
}

impl TestQueue {
    /// Declares a fresh `room_member.notifications.test-<uuid>` topology on `url`.
    pub async fn new(url: &str) -> TestQueue {
        let topology = Topology::new(format!(
            "room_member.notifications.test-{}",
            Uuid::new_v4().simple()
        ));
        TestQueue::on(url, topology).await
    }

    /// A publisher for an existing `topology` (declared again, idempotently).
    pub async fn on(url: &str, topology: Topology) -> TestQueue {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        topology.declare(&channel).await.unwrap();
        TestQueue {
            topology,
            connection,
            channel,
        }
    }

    /// Publishes as the server's outbox relay would, waiting for the broker's confirm.
    pub async fn publish(&self, event: &MemberNotification) {
        let event = nebula_wire::notify::Notification::Member(event.clone());
        self.topology
            .publish_notification(&self.channel, &event)
            .await
            .unwrap();
    }

    /// Publishes arbitrary bytes to the queue (a message some other producer got wrong).
    pub async fn publish_raw(&self, payload: &[u8]) {
        self.channel
            .basic_publish(
                nebula_notifier::EXCHANGE.into(),
                self.topology.queue().into(),
                Default::default(),
                payload,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Takes every message waiting in the dead-letter queue.
    pub async fn drain_dead_letters(&self) -> Vec<Vec<u8>> {
        let mut found = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(
                self.topology.dead_letter_queue().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            found.push(message.delivery.data.clone());
        }
        found
    }

    /// Messages ready in the main queue.
    pub async fn ready(&self) -> u32 {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .channel
            .queue_declare(self.topology.queue().into(), options, FieldTable::default())
            .await
            .unwrap();
        queue.message_count()
    }

    /// Deletes the test's queues (main, dead-letter, retry holding queues).
    pub async fn delete(self, config: &ConsumerConfig) {
        let mut names = vec![
            self.topology.queue().to_owned(),
            self.topology.dead_letter_queue(),
        ];
        for attempt in 1..config.max_attempts {
            names.push(self.topology.retry_queue(config.retry_delay_ms(attempt)));
        }
        for name in names {
            let _ = self
                .channel
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

/// Test timings: quick retries and reconnects so faults resolve in seconds.
pub fn fast_config(url: &str, topology: &Topology) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(url, topology.queue());
    config.prefetch = 4;
    config.max_attempts = 3;
    config.retry_base = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(400);
    config.reconnect_min = Duration::from_millis(100);
    config.reconnect_max = Duration::from_millis(500);
    config.shutdown_grace = Duration::from_secs(2);
    config
}

/// A consumer running in its own task.
pub struct RunningConsumer {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    connected: Arc<AtomicBool>,
}

impl RunningConsumer {
    pub fn start(config: ConsumerConfig, dispatcher: Dispatcher) -> RunningConsumer {
        let consumer = Consumer::new(config, dispatcher);
        let connected = consumer.connected_flag();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(consumer.run(shutdown.clone()));
        RunningConsumer {
            shutdown,
            task,
            connected,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Waits until the consumer holds a broker connection.
    pub async fn wait_connected(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_connected() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "consumer did not connect within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop: in-flight events finish and are acked.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("consumer did not stop")
            .unwrap();
    }

    /// A crash: the task is dropped wherever it is, acks and all.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
