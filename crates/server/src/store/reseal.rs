//! `nebula rekey`'s database side: rewrites message content and edit-history versions that are
//! not under the current key (plaintext included), a batch at a time, while the server runs.
//!
//! Every rewrite is conditional on the value read (`… AND content = old`), so an edit or a
//! delete that commits between the read and the write always wins: the rewrite touches
//! nothing, and the row is read again. Rewriting never changes what a row says, so it bumps no
//! `rev` and clients see nothing. Rows are walked by id, so a run is resumable and idempotent:
//! a second run rewrites nothing.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Store, StoreResult, with_pool, with_writer};

/// How often a row that keeps changing under a rewrite is read again before it is left to
/// the next run (each change was written by the server, under its own current key).
const RACE_RETRIES: usize = 3;

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Messages looked at (their versions are looked at with them).
    pub scanned: u64,
    /// Values rewritten under the current key: contents and versions.
    pub rewritten: u64,
    /// Values changed by someone else at every try: left as the server wrote them.
    pub raced: u64,
    /// The last message id of the batch: where the next one starts. `None`: nothing left.
    pub last: Option<Uuid>,
}

/// A stored text value to rewrite: which row, and its value as read.
#[derive(Debug, Clone)]
enum Target {
    Content { room_id: Uuid, id: Uuid },
    Version { room_id: Uuid, id: Uuid, rev: i64 },
}

impl Store {
    /// Rewrites the contents and versions of up to `limit` messages with ids after `after`
    /// that are not under the current key.
    pub async fn reseal_messages(&self, after: Uuid, limit: i64) -> StoreResult<Resealed> {
        let messages: Vec<(Uuid, Uuid, String)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT id, room_id, content FROM messages WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let Some(last) = messages.last().map(|m| m.0) else {
            return Ok(Resealed::default());
        };
        // The versions of exactly these messages: the same id range. Their rooms come from
        // the messages just read, not from a join on the id alone (which would probe every
        // partition of `messages`); a version of a message not read above belongs to one
        // committed since, which was written under the current key.
        let rooms: HashMap<Uuid, Uuid> =
            messages.iter().map(|(id, room, _)| (*id, *room)).collect();
        let versions: Vec<(Uuid, i64, String)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT message_id, rev, content FROM message_versions
                 WHERE message_id > $1 AND message_id <= $2",
            )
            .bind(after)
            .bind(last)
            .fetch_all(pool)
            .await?
        });
        let versions = versions
            .into_iter()
            .filter_map(|(id, rev, content)| Some((id, rev, content, *rooms.get(&id)?)));
        let mut pending: Vec<(Target, String)> =
            messages
                .iter()
                .map(|(id, room_id, content)| {
                    let target = Target::Content {
                        room_id: *room_id,
                        id: *id,
                    };
                    (target, content.clone())
                })
                .chain(versions.map(|(id, rev, content, room_id)| {
                    (Target::Version { room_id, id, rev }, content)
                }))
                .filter(|(_, stored)| self.keyring.text_needs_rekey(stored))
                .collect();
        let mut done = Resealed {
            scanned: messages.len() as u64,
            last: Some(last),
            ..Resealed::default()
        };
        for attempt in 0..=RACE_RETRIES {
            if pending.is_empty() {
                break;
            }
            let raced = self.reseal(&pending).await?;
            done.rewritten += (pending.len() - raced.len()) as u64;
            if attempt == RACE_RETRIES {
                done.raced = raced.len() as u64;
                break;
            }
            // Read the raced values again: still to do only if not under the current key.
            let mut again = Vec::with_capacity(raced.len());
            for target in raced {
                if let Some(stored) = self.stored_value(&target).await?
                    && self.keyring.text_needs_rekey(&stored)
                {
                    again.push((target, stored));
                }
            }
            pending = again;
        }
        Ok(done)
    }

    /// Rewrites every `(target, stored)` in one transaction, each only if it still holds
    /// `stored`; returns those that did not (changed or deleted meanwhile).
    async fn reseal(&self, pending: &[(Target, String)]) -> StoreResult<Vec<Target>> {
        // Decrypt and re-encrypt before the transaction: it holds row locks (PostgreSQL) or
        // the only write connection (SQLite) for as short a time as possible.
        let mut rewrites = Vec::with_capacity(pending.len());
        for (target, stored) in pending {
            let new = match *target {
                Target::Content { room_id, id } => {
                    let text = self.open_content(room_id, id, stored.clone())?;
                    self.seal_content(room_id, id, &text).into_owned()
                }
                Target::Version { room_id, id, rev } => {
                    let text = self.open_version(room_id, id, rev, stored.clone())?;
                    self.seal_version(room_id, id, rev, &text).into_owned()
                }
            };
            rewrites.push((target, stored, new));
        }
        let mut raced = Vec::new();
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            for (target, old, new) in &rewrites {
                let query = match target {
                    Target::Content { room_id, id } => sqlx::query(
                        "UPDATE messages SET content = $3
                         WHERE id = $1 AND room_id = $4 AND content = $2",
                    )
                    .bind(*id)
                    .bind(old.as_str())
                    .bind(new.as_str())
                    .bind(*room_id),
                    Target::Version { id, rev, .. } => sqlx::query(
                        "UPDATE message_versions SET content = $4
                         WHERE message_id = $1 AND content = $2 AND rev = $3",
                    )
                    .bind(*id)
                    .bind(old.as_str())
                    .bind(*rev)
                    .bind(new.as_str()),
                };
                if query.execute(&mut *tx).await?.rows_affected() == 0 {
                    raced.push((*target).clone());
                }
            }
            tx.commit().await?;
        });
        Ok(raced)
    }

    /// A value as stored now; `None` if its row is gone.
    async fn stored_value(&self, target: &Target) -> StoreResult<Option<String>> {
        Ok(with_pool!(self, pool => {
            match target {
                Target::Content { room_id, id } => {
                    sqlx::query_scalar("SELECT content FROM messages WHERE id = $1 AND room_id = $2")
                        .bind(*id)
                        .bind(*room_id)
                        .fetch_optional(pool)
                        .await?
                }
                Target::Version { id, rev, .. } => {
                    sqlx::query_scalar(
                        "SELECT content FROM message_versions WHERE message_id = $1 AND rev = $2",
                    )
                    .bind(*id)
                    .bind(*rev)
                    .fetch_optional(pool)
                    .await?
                }
            }
        }))
    }

    /// Up to `limit` uploads with ids after `after`, and whether each has a thumbnail.
    pub async fn media_after(&self, after: Uuid, limit: i64) -> StoreResult<Vec<(Uuid, bool)>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as("SELECT id, has_thumbnail FROM media WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }
}
