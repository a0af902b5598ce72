//! The RabbitMQ names and arguments shared by the server's publisher and this consumer.
//!
//! Queue arguments must match exactly on every declaration (RabbitMQ refuses a redeclaration
//! with different ones), so both sides declare through [`Topology::declare`] and never by hand.
//!
//! ```text
//! publisher ──► EXCHANGE (direct) ──[routing key = queue]──► QUEUE ──► consumer
//!                   ▲                                          │ reject / out of attempts
//!                   │ expired (TTL)                            ▼
//!        QUEUE.retry.<ms>ms ◄── consumer republishes     DEAD_LETTER_EXCHANGE ──► QUEUE.dlq
//! ```

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use nebula_wire::notify::{MemberNotification, Notification};

use crate::error::{Error, Result};

/// The direct exchange membership events are published to.
pub const EXCHANGE: &str = "nebula.room_member";
/// The queue the notifier consumes; also the routing key.
pub const QUEUE: &str = "room_member.notifications";
/// Where rejected and exhausted messages go (bound to `<queue>.dlq`).
pub const DEAD_LETTER_EXCHANGE: &str = "nebula.room_member.dlx";
/// Message header counting delivery attempts (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-nebula-attempt";

/// Persistent messages survive a broker restart (with a durable queue).
const PERSISTENT: u8 = 2;

/// The names derived from one queue name. Tests use a unique queue each so they can share a
/// broker; production uses [`QUEUE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    queue: String,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new(QUEUE)
    }
}

impl Topology {
    /// The topology around `queue`.
    pub fn new(queue: impl Into<String>) -> Self {
        Topology {
            queue: queue.into(),
        }
    }

    /// The main queue, and the routing key events are published with.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Where messages that cannot be delivered end up, for an operator to inspect or replay.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    /// The holding queue for messages waiting `delay_ms` before their next attempt.
    pub fn retry_queue(&self, delay_ms: u64) -> String {
        format!("{}.retry.{delay_ms}ms", self.queue)
    }

    /// Declares the exchanges, the main queue and its dead-letter queue (idempotent).
    pub async fn declare(&self, channel: &Channel) -> Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                EXCHANGE.into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                DEAD_LETTER_EXCHANGE.into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;

        let dlq = self.dead_letter_queue();
        declare_queue(channel, &dlq, FieldTable::default()).await?;
        bind(channel, &dlq, DEAD_LETTER_EXCHANGE, &dlq).await?;

        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-dead-letter-exchange".into(),
            long_string(DEAD_LETTER_EXCHANGE),
        );
        arguments.insert("x-dead-letter-routing-key".into(), long_string(&dlq));
        declare_queue(channel, &self.queue, arguments).await?;
        bind(channel, &self.queue, EXCHANGE, &self.queue).await
    }

    /// Declares the queue where a message waits `delay_ms` before going back to the main
    /// queue. One queue per delay, because RabbitMQ only expires messages at the head of a
    /// queue: mixing delays in one queue would hold short ones behind long ones.
    pub async fn declare_retry_queue(&self, channel: &Channel, delay_ms: u64) -> Result<String> {
        let name = self.retry_queue(delay_ms);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
        );
        arguments.insert("x-dead-letter-exchange".into(), long_string(EXCHANGE));
        arguments.insert("x-dead-letter-routing-key".into(), long_string(&self.queue));
        declare_queue(channel, &name, arguments).await?;
        Ok(name)
    }

    /// Publishes `event` as a persistent message and waits for the broker's confirm when the
    /// channel is in confirm mode (`confirm_select`), which the server's outbox relay should
    /// use so it deletes an outbox row only once RabbitMQ has the message.
    pub async fn publish(&self, channel: &Channel, event: &MemberNotification) -> Result<()> {
        self.publish_notification(channel, &Notification::Member(event.clone()))
            .await
    }

    /// Publishes any kind of notification, as [`Topology::publish`] does.
    pub async fn publish_notification(
        &self,
        channel: &Channel,
        event: &Notification,
    ) -> Result<()> {
        let payload = event
            .to_json()
            .map_err(|err| Error::MalformedEvent(format!("cannot encode: {err}")))?;
        let payload = payload.into_bytes();
        let properties = message_properties(event.event_id().to_string(), 1);
        let confirm = channel
            .basic_publish(
                EXCHANGE.into(),
                self.queue.as_str().into(),
                // Mandatory: if nothing is bound, the broker returns the message and we report
                // it, instead of it vanishing silently.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &payload,
                properties,
            )
            .await?
            .await?;
        ensure_confirmed(confirm)
    }
}

/// Declares the production topology ([`QUEUE`]); what the chat server's publisher calls.
pub async fn declare_topology(channel: &Channel) -> Result<()> {
    Topology::default().declare(channel).await
}

/// Properties of every notification message: persistent JSON carrying its attempt number,
/// and the current span's trace context when traces are exported (so the notifier's work
/// continues the publisher's trace).
pub(crate) fn message_properties(message_id: String, attempt: u32) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
    crate::otel::amqp_headers(crate::otel::inject(&tracing::Span::current()), &mut headers);
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_headers(headers)
}

/// Turns a broker nack into an error, so a caller never acks work the broker did not take.
pub(crate) fn ensure_confirmed(confirmation: Confirmation) -> Result<()> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(Error::BrokerNack("message was unroutable".into())),
        Confirmation::Nack(_) => Err(Error::BrokerNack("broker nacked the message".into())),
    }
}

async fn declare_queue(channel: &Channel, name: &str, arguments: FieldTable) -> Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, arguments)
        .await?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, routing_key: &str) -> Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
