//! What happens to one broker message: deliver and ack, retry later, or dead-letter.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection};
use nebula_wire::notify::Notification;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ConsumerConfig;
use crate::dispatch::Dispatcher;
use crate::error::{Error, Result};
use crate::metrics;
use crate::topology::{ATTEMPT_HEADER, ensure_confirmed, message_properties};

/// Shared by all delivery tasks of one broker session.
pub(super) struct Handler {
    dispatcher: Dispatcher,
    /// A separate channel in confirm mode: a retry copy must be confirmed before the
    /// original is acked, or a broker hiccup between the two would lose the event.
    retry_channel: Channel,
    /// Holding queue for the wait after attempt `n`, at index `n - 1`.
    retry_queues: Vec<String>,
    max_attempts: u32,
    /// Cancelled when the retry channel fails, to make the session reconnect.
    broken: CancellationToken,
    retry_pause: std::time::Duration,
}

impl Handler {
    /// Opens the retry channel and declares one holding queue per backoff step.
    pub(super) async fn new(
        config: &ConsumerConfig,
        dispatcher: Dispatcher,
        connection: &Connection,
    ) -> Result<Self> {
        let retry_channel = connection.create_channel().await?;
        retry_channel.confirm_select(Default::default()).await?;
        let max_attempts = config.max_attempts.max(1);
        let mut retry_queues = Vec::new();
        for attempt in 1..max_attempts {
            let delay = config.retry_delay_ms(attempt);
            retry_queues.push(
                config
                    .topology
                    .declare_retry_queue(&retry_channel, delay)
                    .await?,
            );
        }
        Ok(Handler {
            dispatcher,
            retry_channel,
            retry_queues,
            max_attempts,
            broken: CancellationToken::new(),
            retry_pause: config.retry_base,
        })
    }

    /// Resolves once the retry channel has failed.
    pub(super) async fn broken(&self) {
        self.broken.cancelled().await;
    }

    /// Settles one message. Every path ends in exactly one ack, reject or nack; if the
    /// connection is gone by then, the broker redelivers and the dedupe absorbs it.
    pub(super) async fn handle(&self, delivery: Delivery) {
        metrics::event_consumed();
        let attempt = attempt_of(&delivery.properties);
        let event = match parse(&delivery.data) {
            Ok(event) => event,
            Err(err) => {
                // A kind or version this build does not know (a newer server) lands here too:
                // it waits in the dead-letter queue, named in the log, for a newer notifier.
                tracing::warn!(error = %err, "dead-lettering a message that cannot be read");
                return dead_letter(&delivery).await;
            }
        };
        // The relay's publication is this delivery's parent when traces are exported.
        let span = if crate::otel::enabled() {
            let span = tracing::info_span!(parent: None, "notify.consume", event_id = %event.event_id(), attempt);
            crate::otel::set_parent(&span, &crate::otel::from_amqp_headers(&delivery.properties));
            span
        } else {
            tracing::Span::none()
        };
        let dispatched = self
            .dispatcher
            .dispatch(&event)
            .instrument(span.clone())
            .await;
        match dispatched {
            Ok(_) => settle(delivery.acker.ack(BasicAckOptions::default()).await),
            Err(err) if attempt >= self.max_attempts => {
                tracing::error!(event_id = %event.event_id(), attempt, error = %err,
                    "event failed on its last attempt; dead-lettering it");
                dead_letter(&delivery).await;
            }
            Err(err) => {
                tracing::warn!(event_id = %event.event_id(), attempt, error = %err,
                    "event failed; retrying later");
                // Inside this delivery's span, so the parked copy carries its traceparent
                // and the next attempt continues the same trace instead of starting one.
                self.retry(&delivery, &event, attempt)
                    .instrument(span)
                    .await;
            }
        }
    }

    /// Parks a copy in the holding queue for this attempt, then acks the original.
    async fn retry(&self, delivery: &Delivery, event: &Notification, attempt: u32) {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(queue) = self.retry_queues.get(index) else {
            return dead_letter(delivery).await;
        };
        let properties = message_properties(event.event_id().to_string(), attempt + 1);
        match self.publish(queue, &delivery.data, properties).await {
            Ok(()) => settle(delivery.acker.ack(BasicAckOptions::default()).await),
            Err(err) => {
                // Without the copy the original must stay: requeue it after a pause (no hot
                // loop) and have the session reconnect, which also rebuilds the channel.
                tracing::warn!(error = %err, "could not park a retry; requeueing");
                tokio::time::sleep(self.retry_pause).await;
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                settle(delivery.acker.nack(requeue).await);
                self.broken.cancel();
            }
        }
    }

    async fn publish(
        &self,
        queue: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        // The default exchange routes straight to the queue named by the routing key.
        let confirm = self
            .retry_channel
            .basic_publish("".into(), queue.into(), options, payload, properties)
            .await?
            .await?;
        ensure_confirmed(confirm)
    }
}

/// Rejects without requeue: the queue's dead-letter arguments move it to `<queue>.dlq`.
async fn dead_letter(delivery: &Delivery) {
    metrics::event_dead_lettered();
    let options = BasicRejectOptions { requeue: false };
    settle(delivery.acker.reject(options).await);
}

fn settle(result: lapin::Result<bool>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "could not settle a delivery; the broker will redeliver it");
    }
}

/// Reads a notification, refusing kinds and versions this build does not know.
fn parse(data: &[u8]) -> Result<Notification> {
    Notification::parse(data).map_err(|err| Error::MalformedEvent(err.to_string()))
}

/// The attempt number a message carries; 1 when absent (a fresh publish).
fn attempt_of(properties: &BasicProperties) -> u32 {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(ATTEMPT_HEADER).cloned());
    let attempt = match value {
        Some(AMQPValue::LongUInt(n)) => i64::from(n),
        Some(AMQPValue::LongInt(n)) => i64::from(n),
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::ShortUInt(n)) => i64::from(n),
        Some(AMQPValue::ShortInt(n)) => i64::from(n),
        Some(AMQPValue::ShortShortUInt(n)) => i64::from(n),
        Some(AMQPValue::ShortShortInt(n)) => i64::from(n),
        _ => 1,
    };
    u32::try_from(attempt.max(1)).unwrap_or(u32::MAX)
}
