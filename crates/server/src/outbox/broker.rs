//! The broker sink: publishes outbox rows to RabbitMQ, strictly in outbox order.
//!
//! One connection with one channel in confirm mode. Each row is published as a persistent
//! message and deleted only after the broker confirmed it; the next row is not published
//! before that. So a failure leaves the failed row at the head, to be published first after
//! reconnecting, and a room's events reach the queue in the order they were committed.
//! The price is one round trip per event, which membership changes can afford.

use std::time::Duration;

use anyhow::Context as _;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use nebula_notifier::Topology;
use nebula_wire::notify::Notification;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::status::BrokerStatus;
use super::{DEAD_LETTERED, PUBLISHED, Recipients, Settings, skipped};
use crate::store::Store;

/// A broker that accepts the TCP connection but never answers must not stall the relay.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one publisher confirm before the connection is considered broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The RabbitMQ side of the relay; connects lazily and again after any failure.
pub(super) struct Broker {
    url: String,
    topology: Topology,
    session: Option<Session>,
    status: BrokerStatus,
}

struct Session {
    connection: Connection,
    channel: Channel,
}

impl Broker {
    pub(super) fn new(url: &str, queue: &str, status: BrokerStatus) -> Self {
        Broker {
            url: url.to_owned(),
            topology: Topology::new(queue),
            session: None,
            status,
        }
    }

    /// Publishes every live row, oldest first. An error leaves the rest for the next pass,
    /// which the relay schedules with backoff.
    pub(super) async fn pump(
        &mut self,
        store: &Store,
        settings: &Settings,
        recipients: &Recipients,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        loop {
            let rows = store.outbox_head(settings.batch).await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let event = match Notification::parse(row.payload.as_bytes()) {
                    Ok(event) => event,
                    Err(err) => {
                        // Only a row written by hand gets here; it can never be published.
                        tracing::error!(event_id = %row.event_id, error = %err, "unreadable outbox row; dead-lettering it");
                        store
                            .outbox_dead(row.id, row.attempts, &format!("unreadable: {err}"))
                            .await?;
                        metrics::counter!(DEAD_LETTERED).increment(1);
                        continue;
                    }
                };
                if recipients.connected(&event).await {
                    skipped(store, &row, &event).await?;
                    continue;
                }
                // Each notification starts a trace of its own (the request that wrote the row
                // committed long ago); it continues in the notifier through AMQP headers.
                let span = if nebula_notifier::otel::enabled() {
                    tracing::info_span!(parent: None, "outbox.publish", event_id = %row.event_id, room_id = %row.room_id)
                } else {
                    tracing::Span::none()
                };
                let published = tokio::time::timeout(
                    CONFIRM_TIMEOUT,
                    self.topology.publish_notification(&channel, &event),
                )
                .instrument(span)
                .await;
                let failure = match published {
                    Ok(Ok(())) => None,
                    Ok(Err(err)) => Some(err.to_string()),
                    Err(_) => Some("no publisher confirm in time".to_owned()),
                };
                if let Some(reason) = failure {
                    self.disconnect(&reason).await;
                    anyhow::bail!("publishing event {}: {reason}", row.event_id);
                }
                store.outbox_done(row.id).await?;
                metrics::counter!(PUBLISHED).increment(1);
                tracing::debug!(event_id = %row.event_id, room_id = %row.room_id, "notification published");
            }
        }
    }

    /// The open channel, connecting (and declaring the topology) when there is none.
    async fn channel(&mut self) -> anyhow::Result<Channel> {
        if let Some(session) = &self.session {
            if session.connection.status().connected() && session.channel.status().connected() {
                return Ok(session.channel.clone());
            }
            self.disconnect("connection lost").await;
        }
        match self.connect().await {
            Ok(session) => {
                let channel = session.channel.clone();
                self.session = Some(session);
                self.status.connected();
                tracing::info!(queue = self.topology.queue(), "connected to RabbitMQ");
                Ok(channel)
            }
            Err(err) => {
                self.status.down(format!("{err:#}"));
                Err(err)
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Session> {
        let properties =
            ConnectionProperties::default().with_connection_name("nebula-outbox".into());
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties))
                .await
                .context("connecting to RabbitMQ timed out")?
                .context("connecting to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        // Publisher confirms: `Topology::publish` then waits for the broker to take each
        // message before the row is deleted.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // The notifier declares the same topology; both go through `Topology::declare`, so
        // the arguments always match and whichever starts first creates the queues.
        self.topology
            .declare(&channel)
            .await
            .context("declaring the notification topology")?;
        Ok(Session {
            connection,
            channel,
        })
    }

    /// Forgets the session (closing it if it still can), so the next pass reconnects.
    async fn disconnect(&mut self, reason: &str) {
        self.status.down(reason);
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                session.connection.close(200, "reconnecting".into()),
            )
            .await;
        }
    }

    /// Closes the connection on shutdown.
    pub(super) async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                session.connection.close(200, "shutting down".into()),
            )
            .await;
        }
        self.status.down("relay stopped");
    }
}
