//! The embedded sink: without a broker, the relay runs the notifier's pipeline in-process
//! (`Dispatcher` → Web Push), so one binary sends notifications with nothing else installed.
//!
//! Unlike the broker sink, a failing event does not hold up the others: it is rescheduled
//! with exponential backoff (`attempts` / `next_attempt_at`) and dead-lettered after
//! `OUTBOX_MAX_ATTEMPTS`. Rooms are delivered concurrently, each room's due events in order.

use std::collections::BTreeMap;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use futures_util::stream;
use nebula_notifier::{
    ApiState, Dispatcher, EndpointPolicy, Mailer, PushSender, SubscriptionRules, VapidKeys,
};
use nebula_wire::notify::Notification;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    DEAD_LETTERED, PUBLISHED, Recipients, Settings, backoff, non_empty, rabbit_url, skipped,
};
use crate::config::{Config, ConfigError, ValidConfig};
use crate::store::{OutboxRow, Store};

/// Rooms delivered at once; each has at most a few pushes in flight (the dispatcher's own
/// bound), so one slow push service cannot hold up every room.
const ROOMS_AT_ONCE: usize = 8;

/// The VAPID contact used in dev mode when `WEBPUSH_VAPID_SUBJECT` is unset.
const DEV_SUBJECT: &str = "mailto:dev@nebula.invalid";

/// The Web Push keys for in-process delivery, resolved from the config.
///
/// - `RABBIT_URL` set: `None`; `nebula-notifier` signs the pushes with its own keys.
/// - `WEBPUSH_VAPID_PRIVATE_KEY` set: those keys (the public key, when given, must match;
///   `WEBPUSH_VAPID_SUBJECT` is required outside dev mode).
/// - Neither, dev mode: a throwaway key pair, with a warning (browser subscriptions do not
///   survive a restart).
/// - Neither, production: `None`, and the relay logs that Web Push is disabled. Refusing to
///   start would break every deployment that does not want notifications.
pub fn embedded_vapid_keys(config: &Config) -> Result<Option<VapidKeys>, ConfigError> {
    if rabbit_url(config).is_some() {
        return Ok(None);
    }
    let invalid = |setting: &'static str, reason: String| ConfigError { setting, reason };
    let private_key = non_empty(&config.webpush_vapid_private_key);
    let public_key = non_empty(&config.webpush_vapid_public_key);
    if private_key.is_none() && public_key.is_some() {
        return Err(invalid(
            "WEBPUSH_VAPID_PRIVATE_KEY",
            "is required when WEBPUSH_VAPID_PUBLIC_KEY is set".into(),
        ));
    }
    let subject = match (non_empty(&config.webpush_vapid_subject), config.dev_mode) {
        (Some(subject), _) => subject,
        (None, true) => DEV_SUBJECT,
        (None, false) if private_key.is_some() => {
            return Err(invalid(
                "WEBPUSH_VAPID_SUBJECT",
                "is required with WEBPUSH_VAPID_PRIVATE_KEY (mailto:you@example.com)".into(),
            ));
        }
        (None, false) => return Ok(None),
    };
    match private_key {
        Some(private) => VapidKeys::from_base64(private, public_key, subject)
            .map(Some)
            .map_err(|err| vapid_error(err, invalid)),
        None => {
            tracing::warn!(
                "DEV_MODE: WEBPUSH_VAPID_PRIVATE_KEY missing; using a throwaway VAPID key pair, \
                 so browser push subscriptions stop working when the process restarts. Create \
                 stable keys with `cargo run -p nebula-notifier -- generate-vapid-keys`."
            );
            VapidKeys::ephemeral(subject)
                .map(Some)
                .map_err(|err| vapid_error(err, invalid))
        }
    }
}

/// Names the setting a notifier key error is about.
fn vapid_error(
    err: nebula_notifier::Error,
    invalid: impl Fn(&'static str, String) -> ConfigError,
) -> ConfigError {
    match err {
        nebula_notifier::Error::Config { setting, reason } => invalid(setting, reason),
        other => invalid("WEBPUSH_VAPID_PRIVATE_KEY", other.to_string()),
    }
}

/// In-process delivery.
pub(super) struct Embedded {
    dispatcher: Dispatcher,
    /// Web Push configured; without it membership events are dropped and only mail goes out.
    push: bool,
}

impl Embedded {
    /// The dispatcher over this database (creating the notifier's tables) and the state of
    /// the Web Push HTTP API, which accepts the server's own tokens. Both apply the same
    /// endpoint rules (`WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`), as `nebula-notifier` does.
    ///
    /// Without VAPID keys (mail only) the pushes are signed with a throwaway pair that is
    /// never used: membership events are dropped and the Web Push API is not served.
    pub(super) async fn start(
        store: &Store,
        vapid: Option<&VapidKeys>,
        mailer: Option<Mailer>,
        config: &ValidConfig,
    ) -> anyhow::Result<(Embedded, ApiState)> {
        let push = vapid.is_some();
        let throwaway;
        let vapid = match vapid {
            Some(vapid) => vapid,
            None => {
                throwaway = VapidKeys::ephemeral(DEV_SUBJECT).context("a throwaway VAPID key")?;
                &throwaway
            }
        };
        let push_store = store
            .push_store()
            .await
            .context("preparing the Web Push tables")?;
        let settings = &config.config;
        let endpoints = EndpointPolicy::new(settings.webpush_allow_private_endpoints);
        if endpoints.allows_private() {
            tracing::warn!(
                "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS=true: push endpoints on private and loopback \
                 addresses and plain http are accepted; never set it in production"
            );
        }
        let sender = PushSender::new(
            vapid.clone(),
            nebula_notifier::push::DEFAULT_TTL,
            endpoints.clone(),
        )
        .context("building the Web Push client")?;
        let rules = SubscriptionRules {
            endpoints,
            max_per_user: settings.webpush_max_subscriptions_per_user,
        };
        let api = ApiState::new(push_store.clone(), &config.jwt_secret, vapid.public_key())
            .with_rules(rules);
        register_push_metrics();
        Ok((
            Embedded {
                dispatcher: Dispatcher::new(push_store, sender).with_mailer(mailer),
                push,
            },
            api,
        ))
    }

    /// Delivers every due row; failed ones are rescheduled or dead-lettered.
    pub(super) async fn pump(
        &self,
        store: &Store,
        settings: &Settings,
        recipients: &Recipients,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let rows = store
                .outbox_due(crate::store::now(), settings.batch)
                .await?;
            let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= settings.batch;
            let mut rooms: BTreeMap<Uuid, Vec<OutboxRow>> = BTreeMap::new();
            for row in rows {
                rooms.entry(row.room_id).or_default().push(row);
            }
            let results: Vec<anyhow::Result<()>> = stream::iter(rooms.into_values())
                .map(|rows| self.deliver_room(store, settings, recipients, rows))
                .buffer_unordered(ROOMS_AT_ONCE)
                .collect()
                .await;
            results.into_iter().collect::<anyhow::Result<()>>()?;
            // A failed row was rescheduled, so the next query cannot return it again now.
            if !full || shutdown.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// One room's due rows, in order; a failing row is rescheduled and the next one goes on.
    async fn deliver_room(
        &self,
        store: &Store,
        settings: &Settings,
        recipients: &Recipients,
        rows: Vec<OutboxRow>,
    ) -> anyhow::Result<()> {
        for row in rows {
            self.deliver_row(store, settings, recipients, row).await?;
        }
        Ok(())
    }

    async fn deliver_row(
        &self,
        store: &Store,
        settings: &Settings,
        recipients: &Recipients,
        row: OutboxRow,
    ) -> anyhow::Result<()> {
        let delivered = match Notification::parse(row.payload.as_bytes()) {
            Ok(event) if !self.push && !matches!(event, Notification::Mail(_)) => {
                tracing::debug!(event_id = %row.event_id, kind = event.kind(), "no Web Push configured; dropping notification");
                store.outbox_done(row.id).await?;
                return Ok(());
            }
            Ok(event) if recipients.connected(&event).await => {
                return skipped(store, &row, &event).await;
            }
            Ok(event) => self
                .dispatcher
                .dispatch(&event)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => {
                // Retrying cannot fix it: straight to the dead letters.
                return dead_letter(store, &row, row.attempts, &format!("unreadable: {err}")).await;
            }
        };
        let error = match delivered {
            Ok(report) => {
                store.outbox_done(row.id).await?;
                metrics::counter!(PUBLISHED).increment(1);
                tracing::debug!(event_id = %row.event_id, sent = report.sent, "notification delivered");
                return Ok(());
            }
            Err(error) => error,
        };
        let attempts = row.attempts.saturating_add(1);
        if u32::try_from(attempts).unwrap_or(u32::MAX) >= settings.max_attempts {
            return dead_letter(store, &row, attempts, &error).await;
        }
        let wait = backoff(
            u32::try_from(attempts).unwrap_or(1),
            settings.retry_base,
            settings.retry_max,
        );
        tracing::warn!(event_id = %row.event_id, attempts, %error, retry_in = ?wait, "notification not delivered yet");
        // `wait` is at most `retry_max`, far inside chrono's range.
        let next = crate::store::now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(1));
        store
            .outbox_retry_at(row.id, attempts, next, &error)
            .await?;
        Ok(())
    }
}

async fn dead_letter(
    store: &Store,
    row: &OutboxRow,
    attempts: i32,
    error: &str,
) -> anyhow::Result<()> {
    tracing::error!(event_id = %row.event_id, room_id = %row.room_id, attempts, %error,
        "giving up on a notification; it stays in the outbox marked dead");
    store.outbox_dead(row.id, attempts, error).await?;
    metrics::counter!(DEAD_LETTERED).increment(1);
    Ok(())
}

/// The notifier's push counters, at zero, so `/metrics` lists them before the first push.
fn register_push_metrics() {
    use nebula_notifier::metrics::{PUSHES_FAILED, PUSHES_SENT, SUBSCRIPTIONS_REMOVED};
    for name in [PUSHES_SENT, PUSHES_FAILED, SUBSCRIPTIONS_REMOVED] {
        metrics::counter!(name).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["nebula"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).expect("flags parse")
    }

    fn refusal(args: &[&str]) -> String {
        let config = config(args);
        crate::outbox::validate_settings(&config)
            .and_then(|()| embedded_vapid_keys(&config))
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn push_endpoint_settings_default_to_public_only_and_ten_per_user() {
        use clap::CommandFactory as _;
        let defaults = config(&[]);
        assert!(!defaults.webpush_allow_private_endpoints);
        assert_eq!(defaults.webpush_max_subscriptions_per_user, 10);
        let set = config(&[
            "--webpush-allow-private-endpoints",
            "true",
            "--webpush-max-subscriptions-per-user",
            "3",
        ]);
        assert!(set.webpush_allow_private_endpoints);
        assert_eq!(set.webpush_max_subscriptions_per_user, 3);
        // The same variable names as nebula-notifier's.
        let command = Config::command();
        let env_of = |id: &str| {
            command
                .get_arguments()
                .find(|arg| arg.get_id() == id)
                .and_then(|arg| arg.get_env())
                .map(|env| env.to_string_lossy().into_owned())
        };
        assert_eq!(
            env_of("webpush_allow_private_endpoints").as_deref(),
            Some("WEBPUSH_ALLOW_PRIVATE_ENDPOINTS")
        );
        assert_eq!(
            env_of("webpush_max_subscriptions_per_user").as_deref(),
            Some("WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER")
        );
    }

    #[test]
    fn dev_mode_without_keys_makes_throwaway_ones() {
        let keys = embedded_vapid_keys(&config(&["--dev-mode", "true"])).unwrap();
        assert_eq!(keys.unwrap().subject(), DEV_SUBJECT);
    }

    #[test]
    fn production_without_keys_disables_embedded_push() {
        let prod = ["--dev-mode", "false"];
        assert!(embedded_vapid_keys(&config(&prod)).unwrap().is_none());
        // `NAME=` in a .env file means unset, not an invalid empty value.
        let empty = ["--dev-mode", "false", "--webpush-vapid-private-key", ""];
        assert!(embedded_vapid_keys(&config(&empty)).unwrap().is_none());
    }

    #[test]
    fn with_a_broker_the_notifier_holds_the_keys() {
        let args = [
            "--rabbit-url",
            "amqp://localhost",
            "--webpush-vapid-private-key",
            "x",
        ];
        assert!(embedded_vapid_keys(&config(&args)).unwrap().is_none());
    }

    #[test]
    fn given_keys_are_used_and_checked() {
        let keys = nebula_notifier::generate_vapid_keys();
        let other = nebula_notifier::generate_vapid_keys();
        let (private, public) = (keys.private_key.as_str(), keys.public_key.as_str());
        let subject = ["--webpush-vapid-subject", "mailto:ops@example.com"];
        let mut args = vec![
            "--dev-mode",
            "false",
            "--webpush-vapid-private-key",
            private,
        ];
        args.extend(subject);
        let loaded = embedded_vapid_keys(&config(&args)).unwrap().unwrap();
        assert_eq!(loaded.public_key(), public);

        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec![
                    "--dev-mode",
                    "false",
                    "--webpush-vapid-private-key",
                    private,
                ],
                "WEBPUSH_VAPID_SUBJECT",
            ),
            (
                [
                    args.as_slice(),
                    &["--webpush-vapid-public-key", &other.public_key],
                ]
                .concat(),
                "WEBPUSH_VAPID_PRIVATE_KEY",
            ),
            (
                vec!["--webpush-vapid-private-key", "not base64!"],
                "WEBPUSH_VAPID_PRIVATE_KEY",
            ),
            (
                vec!["--webpush-vapid-public-key", public],
                "WEBPUSH_VAPID_PRIVATE_KEY",
            ),
            (
                vec![
                    "--webpush-vapid-private-key",
                    private,
                    "--webpush-vapid-subject",
                    "ops@example.com",
                ],
                "WEBPUSH_VAPID_SUBJECT",
            ),
            (vec!["--rabbit-url", "amqps://broker"], "RABBIT_URL"),
            (vec!["--rabbit-queue", " "], "RABBIT_QUEUE"),
            (vec!["--outbox-max-attempts", "0"], "OUTBOX_MAX_ATTEMPTS"),
            (
                vec!["--webpush-max-subscriptions-per-user", "0"],
                "WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER",
            ),
        ];
        for (args, setting) in cases {
            let message = refusal(&args);
            assert!(message.contains(setting), "{args:?} → {message}");
        }
    }
}
