//! The e-mail digest: for users with no open connection, at most one mail per their interval
//! listing the direct messages and mentions they have not read.
//!
//! ```text
//! direct message / mention ──(its commit)──► digest_pending(user, since)
//!                                                   │  every node, every scan period
//!                                                   ▼
//!   due? (first item and last digest at least one interval old) ── no → wait
//!   connected anywhere? ── yes → dropped (they saw it live)
//!   claim (FOR UPDATE SKIP LOCKED / the SQLite writer), re-check, list what is still unread
//!   and not deleted ── nothing → dropped;  else → outbox row (kind mail, fixed event_id)
//! ```
//!
//! Every node runs this loop: the claim in the store, not a leader, keeps two nodes from
//! sending one digest twice (see `store::digest`).

use std::sync::Arc;
use std::time::Duration;

use nebula_wire::notify::{DirectMessageNotification, MailContent};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ValidConfig;
use crate::mail::{Mails, escape};
use crate::presence::Presence;
use crate::store::Store;
use crate::store::digest::{DigestCandidate, DigestContext, DigestOutcome};

/// Longest digest interval a user may choose: a week.
pub const MAX_MINUTES: u32 = 10_080;

/// Candidates looked at per scan.
const BATCH: i64 = 500;

/// When digests come due.
#[derive(Debug, Clone, Copy)]
pub struct DigestTiming {
    /// For users who did not choose an interval (`EMAIL_DIGEST_MINUTES` or
    /// `EMAIL_DIGEST_SECONDS`).
    pub default_interval: Duration,
    /// How often each node looks for due digests: a quarter of the default interval, between
    /// 250 ms and 30 s, so a digest goes out soon after it is due without a busy loop.
    pub scan: Duration,
}

impl DigestTiming {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let default_interval = config.email_digest_seconds.map_or_else(
            || Duration::from_secs(u64::from(config.email_digest_minutes) * 60),
            Duration::from_secs,
        );
        DigestTiming {
            default_interval,
            scan: (default_interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(30)),
        }
    }

    /// The interval of a user who chose `minutes` (or not).
    pub fn interval(&self, minutes: Option<u32>) -> Duration {
        minutes.map_or(self.default_interval, |m| {
            Duration::from_secs(u64::from(m) * 60)
        })
    }

    /// The default interval as `/me/notifications` shows it: whole minutes, at least 1.
    pub fn default_minutes(&self) -> u32 {
        u32::try_from(self.default_interval.as_secs().div_ceil(60))
            .unwrap_or(MAX_MINUTES)
            .clamp(1, MAX_MINUTES)
    }
}

/// Starts the scheduler when mail can go out at all (an SMTP relay here, or `nebula-notifier`
/// behind RabbitMQ).
pub fn start(
    config: &ValidConfig,
    store: &Store,
    presence: Arc<Presence>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let mails_out = crate::outbox::rabbit_url(&config.config).is_some()
        || crate::outbox::non_empty(&config.config.smtp_url).is_some()
        || crate::outbox::non_empty(&config.config.resend_api_key).is_some();
    if !mails_out {
        tracing::info!("no SMTP_URL / RESEND_API_KEY / RABBIT_URL: no e-mail digests");
        return;
    }
    let scheduler = Scheduler {
        store: store.clone(),
        presence,
        mails: Mails::new(&config.public_url(), &config.jwt_secret),
        timing: DigestTiming::from_config(&config.config),
    };
    tasks.spawn(scheduler.run(shutdown));
}

struct Scheduler {
    store: Store,
    presence: Arc<Presence>,
    mails: Mails,
    timing: DigestTiming,
}

impl Scheduler {
    async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.timing.scan);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.pass().await {
                tracing::warn!(error = %format!("{err:#}"), "digest pass failed; retrying next scan");
            }
        }
    }

    /// One scan: every candidate whose digest is due.
    async fn pass(&self) -> anyhow::Result<()> {
        let now = chrono::Utc::now();
        for candidate in self.store.digest_candidates(BATCH).await? {
            let interval = self.interval(&candidate);
            let Ok(window) = chrono::Duration::from_std(interval) else {
                continue;
            };
            // Cheap pre-checks without a lock; the claim checks again.
            let recent = |at: chrono::DateTime<chrono::Utc>| at > now - window;
            if recent(candidate.since) || candidate.last_sent_at.is_some_and(recent) {
                continue;
            }
            if self.presence.user_connected(candidate.user_id).await {
                self.store.digest_seen(candidate.user_id).await?;
                continue;
            }
            let outcome = self
                .store
                .send_digest(candidate.user_id, window, |context| {
                    render(&self.mails, context)
                })
                .await?;
            tracing::debug!(user_id = %candidate.user_id, ?outcome, "digest");
            if outcome == DigestOutcome::Sent {
                tracing::info!(user_id = %candidate.user_id, "digest queued");
            }
        }
        Ok(())
    }

    fn interval(&self, candidate: &DigestCandidate) -> Duration {
        self.timing
            .interval(candidate.digest_minutes.and_then(|m| u32::try_from(m).ok()))
    }
}

/// The digest mail: one line per unread message (room, sender, excerpt, link).
pub fn render(mails: &Mails, context: &DigestContext) -> MailContent {
    let count = context.items.len();
    let base = mails.public_url();
    let mut text = format!(
        "Hello {},\n\nwhile you were away, {count} message{} waited for you on Nebula:\n\n",
        context.username,
        if count == 1 { "" } else { "s" }
    );
    let mut html = format!(
        "<p>Hello {},</p><p>while you were away, {count} message{} waited for you on Nebula:</p><ul>",
        escape(&context.username),
        if count == 1 { "" } else { "s" }
    );
    for item in &context.items {
        let message = &item.message;
        let link = format!("{base}/?room={}&seq={}", message.room_id, message.seq);
        let place = if item.direct {
            "direct message".to_owned()
        } else {
            format!("mention in #{}", item.room_name)
        };
        let excerpt = DirectMessageNotification::preview_of(&message.content);
        text.push_str(&format!(
            "- {place}, from {}: {excerpt}\n  {link}\n",
            message.sender_username
        ));
        html.push_str(&format!(
            "<li>{place}, from <strong>{sender}</strong>: {excerpt} <a href=\"{link}\">Open</a></li>",
            place = escape(&place),
            sender = escape(&message.sender_username),
            excerpt = escape(&excerpt),
            link = escape(&link),
        ));
    }
    let settings = format!("{base}/");
    text.push_str(&format!(
        "\nChange how often you get these in Nebula's notification settings ({settings}).\n"
    ));
    html.push_str(&format!(
        "</ul><p>Change how often you get these in <a href=\"{}\">Nebula's notification settings</a>.</p>",
        escape(&settings)
    ));
    MailContent {
        to: context.email.clone(),
        subject: format!(
            "{count} unread message{} on Nebula",
            if count == 1 { "" } else { "s" }
        ),
        text,
        html,
        unsubscribe_url: Some(mails.unsubscribe_url(context.user_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_come_from_the_user_or_the_default() {
        use clap::Parser as _;
        let mut config = crate::config::Config::parse_from(["nebula"]);
        let timing = DigestTiming::from_config(&config);
        assert_eq!(timing.default_interval, Duration::from_secs(15 * 60));
        assert_eq!(timing.default_minutes(), 15);
        assert_eq!(timing.scan, Duration::from_secs(30));
        assert_eq!(timing.interval(Some(2)), Duration::from_secs(120));
        config.email_digest_seconds = Some(2);
        let timing = DigestTiming::from_config(&config);
        assert_eq!(timing.interval(None), Duration::from_secs(2));
        assert_eq!(timing.scan, Duration::from_millis(500));
        assert_eq!(timing.default_minutes(), 1);
    }
}
