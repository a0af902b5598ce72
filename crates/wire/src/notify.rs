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
