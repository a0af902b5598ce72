//! What the dispatcher reads from the chat server's own tables, at dispatch time, before
//! pushing a direct message or an incoming call: things that can change between the send and
//! the push (a read marker, a block, a delete).
//!
//! The notifier shares the chat server's database (see the crate README), so these are plain
//! reads of `room_members`, `messages` and `blocks`; the SQL is the same on both backends.

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
}

impl Suppressed {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppressed::Read => "read",
            Suppressed::Blocked => "blocked",
            Suppressed::Deleted => "deleted",
            Suppressed::NotMember => "not_member",
            Suppressed::Expired => "expired",
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
        const READ: &str =
            "SELECT last_read_seq FROM room_members WHERE room_id = $1 AND user_id = $2";
        let read: Option<(i64,)> = on_pool!(self, pool => sqlx::query_as(READ)
            .bind(room_id)
            .bind(recipient)
            .fetch_optional(pool)
            .await)?;
        match read {
            None => return Ok(Some(Suppressed::NotMember)),
            Some((last_read,)) if last_read >= seq => return Ok(Some(Suppressed::Read)),
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
