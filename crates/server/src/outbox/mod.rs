//! The outbox relay: one job, moving notifications out of the `outbox` table.
//!
//! ```text
//! join / add / leave ──(same transaction)──► outbox row ──► relay ─┬─► RabbitMQ (RABBIT_URL set) ─► nebula-notifier ─► Web Push
//! direct message ─────(its commit)─────────►                       └─► in-process Dispatcher (no RABBIT_URL)        ─► Web Push
//! call.invite to a user with no connection ►
//! ```
//!
//! - A direct message or incoming call is for one user, and only worth a push when that user
//!   has no open connection: the relay checks that, cluster-wide ([`Recipients`]), as it takes
//!   the row, and drops the row without publishing when they have one. What can change later
//!   (read markers, blocks, deletes) the dispatcher checks when it pushes.
//!
//! - A row is removed only once it is out: confirmed by the broker, or delivered in-process.
//!   A crash in between sends it again, and the notifier's dedupe by `event_id` absorbs that.
//! - One relay per database: on PostgreSQL the node holding an advisory lock
//!   ([`OutboxLease`]) relays, the others retry the lock now and then; SQLite is single-node.
//!   One publisher is what keeps each room's events in order.
//! - The relay wakes as soon as this node commits a change (`Store::outbox_wake`) and polls
//!   every few seconds for everything else (other nodes' rows, scheduled retries).
//!
//! The sinks live in [`broker`] (publish in order, reconnect with backoff) and [`embedded`]
//! (deliver in-process, per-event retries and dead-lettering, the Web Push HTTP API).

mod broker;
mod embedded;
mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use nebula_wire::notify::Notification;

use crate::config::{Config, ConfigError, ValidConfig};
use crate::presence::Presence;
use crate::store::{OutboxLease, OutboxRow, Store};

pub use embedded::embedded_vapid_keys;
pub use status::Outbox;

use broker::Broker;
use embedded::Embedded;
use status::BrokerStatus;

/// Rows waiting to go out (not dead-lettered).
pub const BACKLOG: &str = "nebula_outbox_backlog";
/// Rows that went out: confirmed by RabbitMQ, or delivered in-process.
pub const PUBLISHED: &str = "nebula_outbox_published_total";
/// Rows given up on (kept in the table with `dead_at` set).
pub const DEAD_LETTERED: &str = "nebula_outbox_dead_lettered_total";
/// Direct-message and call rows dropped by the relay because the recipient had an open
/// connection.
pub const SKIPPED_CONNECTED: &str = "nebula_outbox_skipped_connected_total";
/// 1 while this node's relay holds a RabbitMQ connection.
pub const BROKER_CONNECTED: &str = "nebula_broker_connected";

/// Registers the relay's metrics so a fresh node already exports them. Only increments by
/// zero: several servers in one test process share the registry.
pub fn register_metrics() {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    describe_gauge!(BACKLOG, "Outbox rows waiting to be published");
    describe_counter!(
        PUBLISHED,
        "Outbox rows published to RabbitMQ (confirmed) or delivered in-process"
    );
    describe_counter!(DEAD_LETTERED, "Outbox rows given up on");
    describe_counter!(
        SKIPPED_CONNECTED,
        "Direct-message and call notifications not sent: the recipient had an open connection"
    );
    describe_gauge!(
        BROKER_CONNECTED,
        "1 while the outbox relay is connected to RabbitMQ"
    );
    counter!(PUBLISHED).increment(0);
    counter!(DEAD_LETTERED).increment(0);
    counter!(SKIPPED_CONNECTED).increment(0);
    gauge!(BACKLOG).increment(0.0);
    gauge!(BROKER_CONNECTED).increment(0.0);
}

/// Timings and sizes of the relay. Production values come from [`Settings::from_config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the relay looks for rows nobody woke it for.
    pub poll_interval: Duration,
    /// How often a standby node retries the leader lock.
    pub lease_retry: Duration,
    /// Rows read per query.
    pub batch: i64,
    /// In-process attempts per event before it is dead-lettered.
    pub max_attempts: u32,
    /// Wait after the first failed in-process attempt; doubles up to `retry_max`. The whole
    /// schedule (1 s doubling, 10 attempts ≈ 8.5 min) must outlast the dispatcher's claim
    /// lease (60 s), or an event whose claim was orphaned by a crash would run out of
    /// attempts before the claim expires.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Wait before reconnecting to RabbitMQ; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl Settings {
    /// The production timings, with `OUTBOX_MAX_ATTEMPTS` from the config.
    pub fn from_config(config: &Config) -> Self {
        Settings {
            poll_interval: Duration::from_secs(2),
            lease_retry: Duration::from_secs(5),
            batch: 100,
            max_attempts: config.outbox_max_attempts.max(1),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

/// The checks `Config::validate` delegates here, so a bad notification setting stops the
/// start with its name.
pub fn validate_settings(config: &Config) -> Result<(), ConfigError> {
    if let Some(url) = rabbit_url(config)
        && !url.starts_with("amqp://")
    {
        return Err(ConfigError {
            setting: "RABBIT_URL",
            // lapin is built without TLS (its TLS stacks are slow C builds).
            reason: "must start with amqp:// (amqps is not built in)".into(),
        });
    }
    if config.rabbit_queue.trim().is_empty() {
        return Err(ConfigError {
            setting: "RABBIT_QUEUE",
            reason: "must not be empty".into(),
        });
    }
    if config.outbox_max_attempts == 0 {
        return Err(ConfigError {
            setting: "OUTBOX_MAX_ATTEMPTS",
            reason: "must be at least 1".into(),
        });
    }
    if config.webpush_max_subscriptions_per_user == 0 {
        return Err(ConfigError {
            setting: "WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The in-process mailer, if `SMTP_URL` or `RESEND_API_KEY` is set.
pub(crate) fn mailer(config: &Config) -> Result<Option<nebula_notifier::Mailer>, ConfigError> {
    nebula_notifier::Mailer::from_settings(
        config.smtp_url.as_deref(),
        config.resend_api_key.as_deref(),
        config.from_email.as_deref(),
    )
    .map_err(|err| match err {
        nebula_notifier::Error::Config { setting, reason } => ConfigError { setting, reason },
        other => ConfigError {
            setting: "SMTP_URL",
            reason: other.to_string(),
        },
    })
}

/// `RABBIT_URL`, if set to something: an empty value (`RABBIT_URL=` in a `.env`) means unset.
pub(crate) fn rabbit_url(config: &Config) -> Option<&str> {
    non_empty(&config.rabbit_url)
}

/// An optional setting, with an empty value read as unset.
pub(crate) fn non_empty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Where rows go.
enum Sink {
    /// Boxed: a live AMQP session is large, and the enum is moved into the relay task.
    Broker(Box<Broker>),
    Embedded(Embedded),
    /// No broker and no VAPID keys: nothing can deliver, so rows are dropped rather than
    /// left to pile up and flood browsers once keys appear.
    Discard,
}

/// Starts the relay as a background task (stopped by `shutdown`) and returns the handle
/// the HTTP layer uses: `/health`'s broker check and, in embedded mode, the Web Push API.
pub async fn start(
    config: &ValidConfig,
    store: &Store,
    presence: Arc<Presence>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Outbox> {
    register_metrics();
    let settings = Settings::from_config(&config.config);
    let mailer = if rabbit_url(&config.config).is_some() {
        None
    } else {
        mailer(&config.config)?
    };
    let (sink, outbox) = match (rabbit_url(&config.config), &config.vapid) {
        (Some(url), _) => {
            let status = BrokerStatus::new();
            let broker = Broker::new(url, &config.config.rabbit_queue, status.clone());
            tracing::info!(queue = %config.config.rabbit_queue, "notifications go through RabbitMQ");
            (Sink::Broker(Box::new(broker)), Outbox::with_broker(status))
        }
        (None, Some(vapid)) => {
            let (embedded, api) = Embedded::start(store, Some(vapid), mailer, config).await?;
            tracing::info!("notifications are pushed in-process (no RABBIT_URL)");
            (Sink::Embedded(embedded), Outbox::embedded(api))
        }
        (None, None) if mailer.is_some() => {
            let (embedded, _) = Embedded::start(store, None, mailer, config).await?;
            tracing::warn!(
                "Web Push disabled (no WEBPUSH_VAPID_PRIVATE_KEY / WEBPUSH_VAPID_SUBJECT outside \
                 dev mode); e-mail is sent in-process"
            );
            (Sink::Embedded(embedded), Outbox::disabled())
        }
        (None, None) => {
            tracing::warn!(
                "Web Push disabled: no RABBIT_URL and no WEBPUSH_VAPID_PRIVATE_KEY / \
                 WEBPUSH_VAPID_SUBJECT outside dev mode; membership notifications are dropped. \
                 Generate keys with `cargo run -p nebula-notifier -- generate-vapid-keys`."
            );
            (Sink::Discard, Outbox::disabled())
        }
    };
    let relay = Relay {
        store: store.clone(),
        wake: store.outbox_wake(),
        sink,
        settings,
        status: outbox.broker_status(),
        recipients: Recipients(presence),
    };
    tasks.spawn(relay.run(shutdown));
    Ok(outbox)
}

/// The background task.
struct Relay {
    store: Store,
    wake: Arc<Notify>,
    sink: Sink,
    settings: Settings,
    status: Option<BrokerStatus>,
    recipients: Recipients,
}

/// Whether the one recipient of a direct message or call notification has an open WebSocket
/// connection anywhere in the cluster (see `Presence::user_connected`). Such a user sees the
/// message, or hears the call ring, in the client: a push would only repeat it.
pub(crate) struct Recipients(Arc<Presence>);

impl Recipients {
    pub(crate) async fn connected(&self, event: &Notification) -> bool {
        match event.single_recipient() {
            Some(user_id) => self.0.user_connected(user_id).await,
            None => false,
        }
    }
}

/// Removes a row the relay decided not to send (its recipient is connected).
pub(crate) async fn skipped(
    store: &Store,
    row: &OutboxRow,
    event: &Notification,
) -> anyhow::Result<()> {
    tracing::debug!(event_id = %row.event_id, kind = event.kind(), "recipient is connected; no push");
    store.outbox_done(row.id).await?;
    metrics::counter!(SKIPPED_CONNECTED).increment(1);
    Ok(())
}

impl Relay {
    /// Waits to lead, relays while leading, and starts over if the lease is lost.
    async fn run(mut self, shutdown: CancellationToken) {
        while let Some(lease) = self.acquire_lease(&shutdown).await {
            tracing::info!("relaying the outbox");
            self.lead(lease, &shutdown).await;
        }
        if let Sink::Broker(broker) = &mut self.sink {
            broker.close().await;
        }
        tracing::info!("outbox relay stopped");
    }

    /// Returns the lease once this node holds it, or `None` on shutdown.
    async fn acquire_lease(&self, shutdown: &CancellationToken) -> Option<OutboxLease> {
        let mut announced = false;
        loop {
            // `lead` returns on shutdown too; without this the relay would lead again at once.
            if shutdown.is_cancelled() {
                return None;
            }
            match self.store.try_outbox_lease().await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => {
                    if !announced {
                        announced = true;
                        tracing::info!("another node relays the outbox; standing by");
                    }
                    if let Some(status) = &self.status {
                        status.standby();
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot try the outbox lock"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(self.settings.lease_retry) => {}
            }
        }
    }

    /// Moves rows out until the lease is lost or shutdown.
    async fn lead(&mut self, mut lease: OutboxLease, shutdown: &CancellationToken) {
        let mut backoff = self.settings.reconnect_min;
        loop {
            if !lease.still_held().await {
                tracing::warn!("lost the outbox lock (database connection gone); retrying it");
                return;
            }
            let pause = match self.pump(shutdown).await {
                Ok(()) => {
                    backoff = self.settings.reconnect_min;
                    self.settings.poll_interval
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), retry_in = ?backoff, "outbox relay pass failed");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.settings.reconnect_max);
                    pause
                }
            };
            self.refresh_backlog().await;
            if !self.pause(pause, shutdown).await {
                lease.release().await;
                return;
            }
        }
    }

    /// One pass: everything that can go out now.
    async fn pump(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Broker(broker) => {
                broker
                    .pump(&self.store, &self.settings, &self.recipients, shutdown)
                    .await
            }
            Sink::Embedded(embedded) => {
                embedded
                    .pump(&self.store, &self.settings, &self.recipients, shutdown)
                    .await
            }
            Sink::Discard => loop {
                let rows = self.store.outbox_head(self.settings.batch).await?;
                if rows.is_empty() {
                    return Ok(());
                }
                for row in rows {
                    tracing::debug!(event_id = %row.event_id, "no Web Push configured; dropping notification");
                    self.store.outbox_done(row.id).await?;
                }
            },
        }
    }

    /// Sleeps `pause`, or less when a membership change wakes the relay; `false` on
    /// shutdown. While backing off from a broker failure, a wake only refreshes the backlog
    /// gauge (so it shows the rows piling up) and the pause goes on.
    async fn pause(&self, pause: Duration, shutdown: &CancellationToken) -> bool {
        let until = tokio::time::Instant::now() + pause;
        let backing_off = pause > self.settings.poll_interval
            || matches!(&self.status, Some(status) if !status.is_connected());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                () = self.wake.notified() => {
                    if !backing_off {
                        return true;
                    }
                    self.refresh_backlog().await;
                }
            }
        }
    }

    async fn refresh_backlog(&self) {
        match self.store.outbox_backlog().await {
            Ok(rows) => metrics::gauge!(BACKLOG).set(rows as f64),
            Err(err) => tracing::debug!(error = %err, "cannot count the outbox backlog"),
        }
    }
}

/// The wait after failed attempt `attempt` (1-based): `base`, doubling, at most `max`.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<_> = (1..=11).map(|n| backoff(n, base, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(200, base, max), max);
    }
}
