//! Reading single messages and the change feed: messages by their latest change (`rev`), the
//! edit history, and who reacted.

use chrono::{DateTime, Utc};
use nebula_wire::{Message, MessageVersion, ReplyTo, Rev, Seq, User};
use uuid::Uuid;

use super::rows::{MessageRow, message_columns};
use super::{Store, StoreResult, with_pool};

/// A message in the version the change feed found it at.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub message: Message,
    /// This version is the message's creation (nothing changed since): `message.new`, not
    /// `message.updated`.
    pub is_creation: bool,
}

impl From<MessageRow> for FeedEntry {
    fn from(row: MessageRow) -> Self {
        let is_creation = row.is_creation();
        FeedEntry {
            message: Message::from(row),
            is_creation,
        }
    }
}

/// Who reacted with which emoji, in the order they did.
#[derive(Debug, Clone)]
pub struct ReactionRecord {
    pub emoji: String,
    pub user: User,
}

#[derive(sqlx::FromRow)]
struct ReactionRow {
    emoji: String,
    id: Uuid,
    username: String,
    created_at: DateTime<Utc>,
}

impl Store {
    /// One message of a room, `None` if the room has no message with that id.
    pub async fn message(&self, room_id: Uuid, message_id: Uuid) -> StoreResult<Option<Message>> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND room_id = $2"
        );
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, MessageRow>(sql).bind(message_id).bind(room_id).fetch_optional(pool).await?
        });
        row.map(|row| self.message_from(row)).transpose()
    }

    /// What a reply to `message_id` points at, `None` if the room has no such message.
    pub async fn reply_target(
        &self,
        room_id: Uuid,
        message_id: Uuid,
    ) -> StoreResult<Option<ReplyTo>> {
        let seq: Option<Seq> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT seq FROM messages WHERE id = $1 AND room_id = $2")
                .bind(message_id)
                .bind(room_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(seq.map(|seq| ReplyTo {
            id: message_id,
            seq,
        }))
    }

    /// Up to `limit` messages whose latest change is in `after < rev <= up_to`, ascending
    /// `rev`, optionally only those with `seq <= max_seq`. One range scan of
    /// `messages_by_rev`, whatever the depth of history.
    pub async fn changes(
        &self,
        room_id: Uuid,
        after: Rev,
        up_to: Rev,
        max_seq: Option<Seq>,
        limit: i64,
    ) -> StoreResult<Vec<FeedEntry>> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE room_id = $1 AND rev > $2 AND rev <= $3 AND seq <= $4",
            " ORDER BY rev LIMIT $5"
        );
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, MessageRow>(sql)
                .bind(room_id)
                .bind(after)
                .bind(up_to)
                .bind(max_seq.unwrap_or(Seq::MAX))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|row| {
                let mut entry = FeedEntry::from(self.open_row(row)?);
                self.sign_message(&mut entry.message);
                Ok(entry)
            })
            .collect()
    }

    /// The room's last seq and last rev, read together (0, 0 for no such room).
    pub async fn room_positions(&self, room_id: Uuid) -> StoreResult<(Seq, Rev)> {
        let row: Option<(Seq, Rev)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT last_seq, last_rev FROM rooms WHERE id = $1")
                .bind(room_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.unwrap_or((0, 0)))
    }

    /// The earlier contents of a message of `room_id`, oldest first.
    pub async fn message_versions(
        &self,
        room_id: Uuid,
        message_id: Uuid,
    ) -> StoreResult<Vec<MessageVersion>> {
        // The room names the one partition of `messages` holding the message (a join on the
        // id alone would probe every partition).
        let rows: Vec<(i64, String, DateTime<Utc>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT v.rev, v.content, v.edited_at
                 FROM message_versions v JOIN messages m ON m.id = v.message_id
                 WHERE v.message_id = $1 AND m.room_id = $2 ORDER BY v.rev",
            )
            .bind(message_id)
            .bind(room_id)
            .fetch_all(pool)
            .await?
        });
        // The room id is part of what a version's ciphertext is bound to.
        rows.into_iter()
            .map(|(rev, stored, edited_at)| {
                Ok(MessageVersion {
                    content: self.open_version(room_id, message_id, rev, stored)?,
                    edited_at,
                })
            })
            .collect()
    }

    /// Every reaction on a message with its user, in the order they were made.
    pub async fn reactions(&self, message_id: Uuid) -> StoreResult<Vec<ReactionRecord>> {
        let rows: Vec<ReactionRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.emoji, u.id, u.username, u.created_at
                 FROM message_reactions r JOIN users u ON u.id = r.user_id
                 WHERE r.message_id = $1 ORDER BY r.rev",
            )
            .bind(message_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|row| ReactionRecord {
                emoji: row.emoji,
                user: User {
                    id: row.id,
                    username: row.username,
                    created_at: row.created_at,
                },
            })
            .collect())
    }
}
