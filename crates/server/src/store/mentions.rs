//! Mentions in the store: resolving names to members, and what a message's commit writes
//! for the members it mentions.
//!
//! A message keeps its mentions in `messages.mentions` (JSON, so every read of the message
//! carries them) and in `message_mentions` (one row per member, for the digest's per-user
//! queries). In the message's commit, each mentioned member of a group room other than the
//! sender also gets a `mention` outbox row (a possible Web Push) and a `digest_pending` mark.

use uuid::Uuid;

use super::{Store, StoreResult, with_pool};

/// `messages.mentions` as stored: `NULL` for none.
pub(super) fn encode_mentions(mentions: &[Uuid]) -> Option<String> {
    if mentions.is_empty() {
        return None;
    }
    serde_json::to_string(mentions).ok()
}

/// `messages.mentions` read back; a value that does not decode (it never should) reads as
/// none rather than failing a page of history.
pub(super) fn decode_mentions(stored: Option<&str>) -> Vec<Uuid> {
    stored
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

impl Store {
    /// Members of `room_id` whose (lowercased) username is one of `names`: (name, user id).
    #[tracing::instrument(skip(self, names), fields(names = names.len()))]
    pub async fn members_named(
        &self,
        room_id: Uuid,
        names: &[String],
    ) -> StoreResult<Vec<(String, Uuid)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Built per backend: a query builder is typed by its database.
        let rows = with_pool!(self, pool => {
            let mut query = sqlx::QueryBuilder::new(
                "SELECT u.username_key, u.id FROM room_members m JOIN users u ON u.id = m.user_id
                 WHERE m.room_id = ",
            );
            query.push_bind(room_id);
            query.push(" AND u.username_key IN (");
            let mut list = query.separated(", ");
            for name in names {
                list.push_bind(name.clone());
            }
            query.push(")");
            query.build_query_as().fetch_all(pool).await?
        });
        Ok(rows)
    }
}

/// Inside transaction `$tx`: marks `$user` as having something for the e-mail digest since
/// `$since`, unless already marked (the earliest mark is the one the digest waits on).
macro_rules! mark_digest_pending {
    ($tx:ident, $user:expr, $since:expr) => {{
        sqlx::query(
            "INSERT INTO digest_pending (user_id, since) VALUES ($1, $2)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind($user)
        .bind($since)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(super) use mark_digest_pending;

/// Inside a message batch's transaction, after the inserts: for each new message with
/// mentions, its `message_mentions` rows and, for the members it mentions in a group room
/// (not its sender), a `mention` outbox row and a digest mark. Messages without mentions
/// cost nothing. Evaluates to whether an outbox row was written.
macro_rules! record_mentions {
    ($tx:ident, $created:ident) => {{
        let mut queued = false;
        let mut rooms: std::collections::HashMap<uuid::Uuid, (String, String)> =
            std::collections::HashMap::new();
        for message in $created.iter().flatten().filter(|m| !m.mentions.is_empty()) {
            if !rooms.contains_key(&message.room_id) {
                let room: (String, String) =
                    sqlx::query_as("SELECT name, kind FROM rooms WHERE id = $1")
                        .bind(message.room_id)
                        .fetch_one(&mut *$tx)
                        .await?;
                rooms.insert(message.room_id, room);
            }
            let (name, kind) = &rooms[&message.room_id];
            for user in &message.mentions {
                sqlx::query(
                    "INSERT INTO message_mentions (user_id, room_id, seq, message_id, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(user)
                .bind(message.room_id)
                .bind(message.seq)
                .bind(message.id)
                .bind(message.created_at)
                .execute(&mut *$tx)
                .await?;
                // A direct room's messages are pushed and digested as direct messages already.
                if *user == message.sender_id || kind == "direct" {
                    continue;
                }
                let event = super::outbox::OutboxEvent::mention(message, name, *user)?;
                super::outbox::insert_outbox_row!($tx, event, message.room_id);
                super::mentions::mark_digest_pending!($tx, *user, message.created_at);
                queued = true;
            }
        }
        queued
    }};
}
pub(super) use record_mentions;

/// Inside a change batch's transaction, for an edit that mentions members its previous
/// version did not: a `mention` outbox row for each of them (not the sender), as a new message
/// would have queued, unless the room is a direct room (its messages are pushed as direct
/// messages). `$room` caches the room's name and kind for the batch. Evaluates to whether an
/// outbox row was written.
macro_rules! queue_added_mentions {
    ($tx:ident, $room:ident, $message:expr, $added:expr) => {{
        let message: &nebula_wire::Message = $message;
        let mut queued = false;
        for user in $added.iter().filter(|user| **user != message.sender_id) {
            if $room.is_none() {
                let found: (String, String) =
                    sqlx::query_as("SELECT name, kind FROM rooms WHERE id = $1")
                        .bind(message.room_id)
                        .fetch_one(&mut *$tx)
                        .await?;
                $room = Some(found);
            }
            let Some((name, kind)) = &$room else { break };
            if kind == "direct" {
                break;
            }
            let event = super::outbox::OutboxEvent::mention(message, name, *user)?;
            super::outbox::insert_outbox_row!($tx, event, message.room_id);
            queued = true;
        }
        queued
    }};
}
pub(super) use queue_added_mentions;

/// Inside a change batch's transaction: replaces the `message_mentions` rows of an edited
/// (or, with no mentions, deleted) message.
macro_rules! rewrite_mentions {
    ($tx:ident, $row:expr, $mentions:expr) => {{
        let row = $row;
        sqlx::query("DELETE FROM message_mentions WHERE message_id = $1")
            .bind(row.id)
            .execute(&mut *$tx)
            .await?;
        for user in $mentions {
            sqlx::query(
                "INSERT INTO message_mentions (user_id, room_id, seq, message_id, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(row.room_id)
            .bind(row.seq)
            .bind(row.id)
            .bind(row.created_at)
            .execute(&mut *$tx)
            .await?;
            if *user != row.sender_id {
                super::mentions::mark_digest_pending!($tx, *user, row.created_at);
            }
        }
    }};
}
pub(super) use rewrite_mentions;
