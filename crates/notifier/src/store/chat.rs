//! What the dispatcher reads from the chat server's own tables, at dispatch time, before
//! pushing a direct message, a mention or an incoming call: things that can change between the
//! send and the push (a read marker, a block, a delete, the recipient's notification settings).
//!
//! The notifier shares the chat server's database (see the crate README), so these are plain
//! reads of `room_members`, `messages`, `blocks` and `users`; the SQL is the same on both backends.

use uuid::Uuid;

use super::{PushStore, on_pool};
use crate::error::Result;

/// Why a notification is not pushed after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppressed {
    /// The recipient has read the message (their `last_read_seq` reached it).
    Read,
    /// One of the two users has blocked the other.
    Blocked,
    /// The message was deleted.
    Deleted,
    /// The recipient is no longer a member of the room.
    NotMember,
    /// The call stopped ringing before the push could go out.
    Expired,
    /// The recipient turned Web Push off (`PUT /me/notifications {"push": false}`).
    PushOff,
    /// The recipient set the room to a level that excludes this event (`none`).
    Muted,
}

impl Suppressed {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppressed::Read => "read",
            Suppressed::Blocked => "blocked",
            Suppressed::Deleted => "deleted",
            Suppressed::NotMember => "not_member",
            Suppressed::Expired => "expired",
            Suppressed::PushOff => "push_off",
            Suppressed::Muted => "muted",
        }
    }
}

impl PushStore {
    /// Whether message `seq` of `room_id` from `sender` should no longer be pushed to
    /// `recipient`, and why.
    #[tracing::instrument(skip(self))]
    pub async fn direct_message_suppressed(
        &self,
        room_id: Uuid,
        seq: i64,
        sender: Uuid,
        recipient: Uuid,
    ) -> Result<Option<Suppressed>> {
        if self.blocked_either_way(sender, recipient).await? {
            return Ok(Some(Suppressed::Blocked));
        }
        if !self.push_enabled(recipient).await? {
            return Ok(Some(Suppressed::PushOff));
        }
        // A level of `none` mutes the room; `mentions` (or the default) still lets through
        // what these pushes are about: a direct message, or a mention.
        const READ: &str = "SELECT last_read_seq, notification_level FROM room_members
             WHERE room_id = $1 AND user_id = $2";
        let read: Option<(i64, Option<String>)> = on_pool!(self, pool => sqlx::query_as(READ)
            .bind(room_id)
            .bind(recipient)
            .fetch_optional(pool)
            .await)?;
        match read {
            None => return Ok(Some(Suppressed::NotMember)),
            Some((_, Some(level))) if level == "none" => return Ok(Some(Suppressed::Muted)),
            Some((last_read, _)) if last_read >= seq => return Ok(Some(Suppressed::Read)),
            Some(_) => {}
        }
        const DELETED: &str = "SELECT COUNT(*) FROM messages WHERE room_id = $1 AND seq = $2 AND deleted_at IS NOT NULL";
        let (deleted,): (i64,) = on_pool!(self, pool => sqlx::query_as(DELETED)
            .bind(room_id)
            .bind(seq)
            .fetch_one(pool)
            .await)?;
        Ok((deleted > 0).then_some(Suppressed::Deleted))
    }

    /// Whether the user wants Web Push at all (`users.push_notifications`; an account the
    /// table does not know keeps the default, on).
    #[tracing::instrument(skip(self))]
    pub async fn push_enabled(&self, user_id: Uuid) -> Result<bool> {
        const SQL: &str = "SELECT push_notifications FROM users WHERE id = $1";
        let row: Option<(bool,)> = on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.is_none_or(|(on,)| on))
    }

    /// Whether either user has blocked the other.
    #[tracing::instrument(skip(self))]
    pub async fn blocked_either_way(&self, a: Uuid, b: Uuid) -> Result<bool> {
        const SQL: &str = "SELECT COUNT(*) FROM blocks
             WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1)";
        let (count,): (i64,) = on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(a)
            .bind(b)
            .fetch_one(pool)
            .await)?;
        Ok(count > 0)
    }
}
