//! Notification settings: per account (`/me/notifications`) and per room
//! (`/rooms/{room_id}/notifications`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which events of a room reach a member while they are away (Web Push, the e-mail digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotificationLevel {
    /// Everything: messages of a direct room, mentions, and members joining or leaving.
    All,
    /// Only messages that mention them (the default of group rooms).
    Mentions,
    /// Nothing.
    None,
}

impl NotificationLevel {
    /// The stored spelling (`room_members.notification_level`).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationLevel::All => "all",
            NotificationLevel::Mentions => "mentions",
            NotificationLevel::None => "none",
        }
    }

    /// Reads a stored value; `None` for anything else.
    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "all" => Some(NotificationLevel::All),
            "mentions" => Some(NotificationLevel::Mentions),
            "none" => Some(NotificationLevel::None),
            _ => None,
        }
    }
}

/// `GET`/`PUT /me/notifications`: the caller's switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationSettings {
    /// Web Push to this account's browsers (direct messages, mentions, calls, members).
    pub push: bool,
    /// Notification e-mail (the digest); never the password-reset or verification mails.
    /// The one-click unsubscribe link of a digest turns it off.
    pub email: bool,
    /// At most one digest per this many minutes (1–10080; default `EMAIL_DIGEST_MINUTES`).
    #[schema(minimum = 1, maximum = 10080)]
    pub email_digest_minutes: u32,
}

/// `PUT /rooms/{room_id}/notifications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoomNotificationSettings {
    pub level: NotificationLevel,
}

/// `PUT /me/notifications`: the switches to change; omitted ones stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationSettingsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<bool>,
    /// 1–10080 (else 422 `validation_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10080)]
    pub email_digest_minutes: Option<u32>,
}
