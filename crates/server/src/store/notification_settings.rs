//! Notification settings: an account's switches (`users.push_notifications`,
//! `users.email_notifications`, `users.email_digest_minutes`) and each member's level per
//! room (`room_members.notification_level`, `NULL` for the room kind's default).

use nebula_wire::{NotificationLevel, RoomKind};
use uuid::Uuid;

use super::{Store, StoreResult, with_pool, with_writer};

/// A member's level as stored, or the default of the room's kind: every message of a
/// direct room is for its two users; in a group room only mentions are, unless asked.
pub fn effective_level(kind: RoomKind, stored: Option<&str>) -> NotificationLevel {
    stored
        .and_then(NotificationLevel::parse)
        .unwrap_or(match kind {
            RoomKind::Direct => NotificationLevel::All,
            RoomKind::Group => NotificationLevel::Mentions,
        })
}

/// An account's switches as stored; `digest_minutes` is `None` for the server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSettings {
    pub push: bool,
    pub email: bool,
    pub digest_minutes: Option<u32>,
}

/// A change to an account's switches: `None` leaves a switch as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsChange {
    pub push: Option<bool>,
    pub email: Option<bool>,
    pub digest_minutes: Option<u32>,
}

impl Store {
    /// The account's switches (`None`: no such account).
    #[tracing::instrument(skip(self))]
    pub async fn notification_settings(
        &self,
        user_id: Uuid,
    ) -> StoreResult<Option<StoredSettings>> {
        const SQL: &str = "SELECT push_notifications, email_notifications, email_digest_minutes
                           FROM users WHERE id = $1";
        let row: Option<(bool, bool, Option<i32>)> = with_pool!(self, pool => {
            sqlx::query_as(SQL).bind(user_id).fetch_optional(pool).await?
        });
        Ok(row.map(|(push, email, minutes)| StoredSettings {
            push,
            email,
            digest_minutes: minutes.and_then(|m| u32::try_from(m).ok()),
        }))
    }

    /// Applies `change` to the account's switches (in one statement: concurrent changes of
    /// different switches both land).
    #[tracing::instrument(skip(self))]
    pub async fn change_notification_settings(
        &self,
        user_id: Uuid,
        change: SettingsChange,
    ) -> StoreResult<()> {
        const SQL: &str = "UPDATE users SET
               push_notifications = COALESCE($2, push_notifications),
               email_notifications = COALESCE($3, email_notifications),
               email_digest_minutes = COALESCE($4, email_digest_minutes)
             WHERE id = $1";
        let minutes = change.digest_minutes.and_then(|m| i32::try_from(m).ok());
        with_writer!(self, pool => {
            sqlx::query(SQL)
                .bind(user_id)
                .bind(change.push)
                .bind(change.email)
                .bind(minutes)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Sets a member's level in a room; `false` if they are not a member.
    #[tracing::instrument(skip(self))]
    pub async fn set_notification_level(
        &self,
        room_id: Uuid,
        user_id: Uuid,
        level: NotificationLevel,
    ) -> StoreResult<bool> {
        const SQL: &str =
            "UPDATE room_members SET notification_level = $3 WHERE room_id = $1 AND user_id = $2";
        let updated = with_writer!(self, pool => {
            sqlx::query(SQL)
                .bind(room_id)
                .bind(user_id)
                .bind(level.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated == 1)
    }
}
