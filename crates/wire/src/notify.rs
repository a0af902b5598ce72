//! Membership notifications: what the server's outbox publishes to RabbitMQ (queue
//! `room_member.notifications`) and the notification service consumes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::User;

/// What happened to the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    Joined,
    Left,
}

/// One membership change, written to the outbox in the same transaction as the change itself.
///
/// Versioned so a notifier can refuse (and dead-letter) a format it does not understand
/// instead of misreading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNotification {
    /// Format version; currently 1.
    pub version: u32,
    /// Unique per event: consumers dedupe on it, so a redelivered event has no second effect.
    pub event_id: Uuid,
    pub change: MemberChange,
    pub room_id: Uuid,
    pub room_name: String,
    /// Who joined or left.
    pub user: User,
    /// The other members of the room at the time of the change: who should be notified.
    pub recipients: Vec<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

impl MemberNotification {
    pub const VERSION: u32 = 1;
}

/// An e-mail to one user, rendered by the chat server and written to the outbox in the
/// transaction that caused it (a password reset, an address to verify). The mailer adds
/// `From`, `Date`, a `Message-ID` derived from `event_id` and the `List-Unsubscribe` headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailNotification {
    /// Format version; currently 1.
    pub version: u32,
    /// Unique per mail: consumers dedupe on it, so a redelivered event is not mailed twice.
    pub event_id: Uuid,
    /// The recipient's account.
    pub user_id: Uuid,
    pub mail: MailContent,
    pub occurred_at: DateTime<Utc>,
}

impl MailNotification {
    pub const VERSION: u32 = 1;
}

/// What a mail says and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailContent {
    pub to: String,
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part.
    pub html: String,
    /// One-click unsubscribe link (RFC 8058) for notification mail; `None` for mail the
    /// account asked for (resets, verification codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
}

/// Anything the outbox publishes: a membership change (Web Push) or an e-mail. Told apart by
/// their fields (`change` / `mail`), so version-1 membership events read as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Notification {
    Mail(MailNotification),
    Member(MemberNotification),
}

impl Notification {
    pub fn event_id(&self) -> Uuid {
        match self {
            Notification::Mail(mail) => mail.event_id,
            Notification::Member(member) => member.event_id,
        }
    }

    pub fn version(&self) -> u32 {
        match self {
            Notification::Mail(mail) => mail.version,
            Notification::Member(member) => member.version,
        }
    }
}
