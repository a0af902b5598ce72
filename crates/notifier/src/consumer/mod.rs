//! The RabbitMQ consumer: keeps a connection up and feeds each message to the dispatcher.
//!
//! Delivery guarantees. Messages are acked only after the dispatcher finished them (or after
//! a retry copy was confirmed by the broker, or they were dead-lettered), so a crash, a
//! killed task or a broker restart at any point leaves them unacked and RabbitMQ redelivers
//! them; the dispatcher's dedupe makes the redelivery harmless. Failing deliveries are
//! retried through per-delay holding queues with exponential backoff and dead-lettered after
//! `max_attempts`; messages that do not parse are dead-lettered at once.

mod handler;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::metrics;
use crate::topology::Topology;
use handler::Handler;

/// How the consumer talks to RabbitMQ and how hard it retries.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `amqp://user:pass@host:port/vhost` (vhost `/` is `%2f`).
    pub amqp_url: String,
    pub topology: Topology,
    /// Unacked messages the broker may hand us at once; also how many events are pushed
    /// concurrently.
    pub prefetch: u16,
    /// Attempts per event before it is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Wait before reconnecting to a broker that went away; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// On shutdown, how long in-flight events may take to finish before being abandoned
    /// (unacked, so redelivered later).
    pub shutdown_grace: Duration,
}

impl ConsumerConfig {
    /// Production defaults for `amqp_url` and `queue`.
    pub fn new(amqp_url: impl Into<String>, queue: impl Into<String>) -> Self {
        ConsumerConfig {
            amqp_url: amqp_url.into(),
            topology: Topology::new(queue),
            prefetch: 16,
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// The wait after failed attempt `attempt` (1-based), in whole milliseconds.
    pub fn retry_delay_ms(&self, attempt: u32) -> u64 {
        let base = u64::try_from(self.retry_base.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.retry_max.as_millis()).unwrap_or(u64::MAX);
        let factor = 1u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        base.saturating_mul(factor).min(max).max(1)
    }
}

/// Consumes membership events until shut down, reconnecting whenever the broker goes away.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    dispatcher: Dispatcher,
    connected: Arc<AtomicBool>,
}

impl Consumer {
    /// A consumer feeding `dispatcher`.
    pub fn new(config: ConsumerConfig, dispatcher: Dispatcher) -> Self {
        Consumer {
            config,
            dispatcher,
            connected: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True while consuming; shared with `/health`.
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// Runs until `shutdown` is cancelled. Never returns early: broker trouble is logged and
    /// retried with backoff, because the events wait safely in RabbitMQ meanwhile.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wait = self.config.reconnect_min;
        while !shutdown.is_cancelled() {
            match self.session(&shutdown, &mut wait).await {
                Ok(()) => break,
                Err(err) => {
                    self.set_connected(false);
                    tracing::warn!(error = %err, retry_in = ?wait, "broker session ended");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(self.config.reconnect_max);
        }
        self.set_connected(false);
        tracing::info!("consumer stopped");
    }

    /// One connection's life: declare, consume, and hand each message to a task. Returns
    /// `Ok` only on shutdown.
    async fn session(&self, shutdown: &CancellationToken, wait: &mut Duration) -> Result<()> {
        let properties =
            ConnectionProperties::default().with_connection_name("nebula-notifier".into());
        let connection = Connection::connect(&self.config.amqp_url, properties).await?;
        let channel = connection.create_channel().await?;
        let topology = &self.config.topology;
        topology.declare(&channel).await?;
        let handler =
            Arc::new(Handler::new(&self.config, self.dispatcher.clone(), &connection).await?);
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await?;
        let mut deliveries = channel
            .basic_consume(
                topology.queue().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.set_connected(true);
        *wait = self.config.reconnect_min;
        tracing::info!(queue = topology.queue(), "consuming");

        let mut tasks = JoinSet::new();
        let ended = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                () = handler.broken() => break Err(Error::BrokerNack("retry channel failed".into())),
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!(error = %err, "delivery task failed");
                    }
                }
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        let handler = Arc::clone(&handler);
                        tasks.spawn(async move { handler.handle(delivery).await });
                    }
                    Some(Err(err)) => break Err(err.into()),
                    None => break Err(Error::BrokerNack("broker cancelled the consumer".into())),
                },
            }
        };
        self.set_connected(false);
        if ended.is_ok() {
            // Stop new deliveries, let in-flight ones finish and ack, then leave cleanly.
            let _ = channel
                .basic_cancel(deliveries.tag(), BasicCancelOptions::default())
                .await;
        }
        // After a broker failure the tasks' acks are lost anyway, but letting their pushes
        // finish records them, so the redelivery does not push them again.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("in-flight events did not finish in time; they will be redelivered");
            tasks.abort_all();
        }
        let _ = connection.close(200, "OK".into()).await;
        ended
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        metrics::broker_connected(connected);
    }
}
