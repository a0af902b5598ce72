//! Changes to stored messages — edits, deletes, reactions — group-committed like messages.
//!
//! A batch of changes is one transaction. Each room of the batch is locked first (in id order,
//! as message commits do) by the `UPDATE` that reserves its revs; everything that decides an
//! outcome — is the message deleted, who sent it, is the actor still a member, what role —
//! is read after that lock, so concurrent changes from any node are serialized per room and
//! a delete racing an edit can never be undone by it. Every change that happens takes the
//! room's next rev; refused and idempotent ones take none (the unused reservation is handed
//! back before commit, so revs stay gap-free in the database).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nebula_wire::{Message, ReplyTo, Rev, Role};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::rows::{MessageRow, Tally, message_columns, parse_role};
use super::{Store, StoreResult, with_writer};

/// Distinct emoji a message may carry.
pub const MAX_DISTINCT_REACTIONS: usize = 20;

/// A change to an existing message, as the writer queues it.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub room_id: Uuid,
    pub message_id: Uuid,
    /// Who asks for it (checked to be a member in the commit).
    pub actor: Uuid,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// New content (already validated); `window`: how long after posting edits are allowed.
    Edit {
        content: String,
        window: Option<Duration>,
        /// Members the new content mentions (`crate::mentions::resolve`).
        mentions: Vec<Uuid>,
    },
    /// By the sender, or by the room's owner or an admin (moderation).
    Delete,
    /// A delete by a server admin (a report's resolution) or for a deleted account: allowed
    /// whatever the actor's membership, otherwise exactly a `Delete`.
    DeleteAsModerator,
    React(String),
    Unreact(String),
}

/// Why a change was refused, decided inside the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MessageNotFound,
    NotAMember,
    NotAuthor,
    /// Deleting someone else's message without being the room's owner or an admin.
    Forbidden,
    EditWindowExpired,
    Deleted,
    TooManyReactions,
}

/// What a change did.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Changed now: the message at its new rev (to be published as `message.updated`).
    Changed(Message),
    /// Nothing to do (already reacted, already deleted, the same content): the message as it is.
    Unchanged(Message),
}

impl Applied {
    pub fn message(&self) -> &Message {
        match self {
            Applied::Changed(message) | Applied::Unchanged(message) => message,
        }
    }
}

pub type ChangeOutcome = Result<Applied, Refused>;

/// A committed batch of changes: one outcome per input, in order, and each touched room's
/// membership revision at the commit (events carry it; see `bus::members`).
#[derive(Debug)]
pub struct ChangesCommitted {
    pub outcomes: Vec<ChangeOutcome>,
    pub member_revs: BTreeMap<Uuid, i64>,
}

/// A message being changed in a batch: its row as read under the lock, then as changed.
struct Working {
    row: MessageRow,
    tally: Tally,
    dirty: bool,
}

impl Working {
    fn new(row: MessageRow) -> Self {
        let tally = Tally::decode(row.reactions.as_deref());
        Working {
            row,
            tally,
            dirty: false,
        }
    }

    /// The message in its current (possibly uncommitted) version.
    fn message(&self) -> Message {
        let row = &self.row;
        Message {
            id: row.id,
            room_id: row.room_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_username: row.sender_username.clone(),
            content: row.content.clone(),
            client_msg_id: row.client_msg_id.clone(),
            created_at: row.created_at,
            reply_to: row
                .reply_to_id
                .zip(row.reply_to_seq)
                .map(|(id, seq)| ReplyTo { id, seq }),
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
            reactions: self.tally.counts(),
            rev: row.rev,
            attachments: super::rows::decode_attachments(row.attachments.as_deref()),
            mentions: super::mentions::decode_mentions(row.mentions.as_deref()),
        }
    }

    /// Records a change at `rev` and returns the new version.
    fn changed(&mut self, rev: Rev) -> Applied {
        self.row.rev = rev;
        self.dirty = true;
        Applied::Changed(self.message())
    }
}

/// Whether an edit at `now` is past the window after `created_at`.
fn window_expired(window: Option<Duration>, created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let Some(window) = window else { return false };
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    now.signed_duration_since(created_at) > window
}

impl Store {
    /// Applies a batch of changes in one transaction; one outcome per input, in order.
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    pub async fn apply_changes(&self, batch: &[NewChange]) -> StoreResult<ChangesCommitted> {
        let now = super::now();
        let mut by_room: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        for (index, change) in batch.iter().enumerate() {
            by_room.entry(change.room_id).or_default().push(index);
        }
        let mut outcomes: Vec<ChangeOutcome> = vec![Err(Refused::MessageNotFound); batch.len()];
        let mut member_revs = BTreeMap::new();
        // Whether an edit queued a push for a newly mentioned member.
        let mut queued = false;
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            for (room_id, indexes) in &by_room {
                // The room's name and kind, read only if an edit adds a mention.
                let mut room: Option<(String, String)> = None;
                let reserved = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
                // Locks the room until commit and reserves a rev per change.
                let locked: Option<(Rev, i64)> = sqlx::query_as(
                    "UPDATE rooms SET last_rev = last_rev + $2 WHERE id = $1
                     RETURNING last_rev, member_rev",
                )
                .bind(room_id)
                .bind(reserved)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((reserved_up_to, member_rev)) = locked else { continue };
                member_revs.insert(*room_id, member_rev);
                let first_rev = reserved_up_to - reserved + 1;
                let mut next_rev = first_rev;

                let mut ids: Vec<Uuid> = indexes.iter().map(|&i| batch[i].message_id).collect();
                ids.sort_unstable();
                ids.dedup();
                let mut query = QueryBuilder::new(concat!(
                    "SELECT ", message_columns!(), " FROM messages WHERE room_id = "
                ));
                query.push_bind(*room_id);
                query.push(" AND id IN (");
                let mut list = query.separated(", ");
                for id in &ids {
                    list.push_bind(*id);
                }
                query.push(")");
                let rows: Vec<MessageRow> = query.build_query_as().fetch_all(&mut *tx).await?;
                let rows = self.open_rows(rows)?;
                let mut messages: HashMap<Uuid, Working> =
                    rows.into_iter().map(|row| (row.id, Working::new(row))).collect();

                let mut actors: Vec<Uuid> = indexes.iter().map(|&i| batch[i].actor).collect();
                actors.sort_unstable();
                actors.dedup();
                let mut query =
                    QueryBuilder::new("SELECT user_id, role FROM room_members WHERE room_id = ");
                query.push_bind(*room_id);
                query.push(" AND user_id IN (");
                let mut list = query.separated(", ");
                for actor in &actors {
                    list.push_bind(*actor);
                }
                query.push(")");
                let roles: Vec<(Uuid, String)> = query.build_query_as().fetch_all(&mut *tx).await?;
                let roles: HashMap<Uuid, Role> =
                    roles.into_iter().map(|(user, role)| (user, parse_role(&role))).collect();

                for &index in indexes {
                    let change = &batch[index];
                    let moderating = matches!(change.action, Action::DeleteAsModerator);
                    let role = roles.get(&change.actor).copied();
                    let Some(role) = role.or(moderating.then_some(Role::Owner)) else {
                        outcomes[index] = Err(Refused::NotAMember);
                        continue;
                    };
                    let Some(message) = messages.get_mut(&change.message_id) else {
                        outcomes[index] = Err(Refused::MessageNotFound);
                        continue;
                    };
                    let is_sender = message.row.sender_id == change.actor;
                    let deleted = message.row.deleted_at.is_some();
                    outcomes[index] = match &change.action {
                        Action::Edit { content, window, mentions } => {
                            if !is_sender {
                                Err(Refused::NotAuthor)
                            } else if deleted {
                                Err(Refused::Deleted)
                            } else if window_expired(*window, message.row.created_at, now) {
                                Err(Refused::EditWindowExpired)
                            } else if message.row.content == *content {
                                Ok(Applied::Unchanged(message.message()))
                            } else {
                                let previous = std::mem::replace(&mut message.row.content, content.clone());
                                sqlx::query(
                                    "INSERT INTO message_versions (message_id, rev, content, edited_at)
                                     VALUES ($1, $2, $3, $4)",
                                )
                                .bind(change.message_id)
                                .bind(next_rev)
                                .bind(self.seal_version(*room_id, change.message_id, next_rev, &previous).into_owned())
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                                let before = super::mentions::decode_mentions(message.row.mentions.as_deref());
                                message.row.edited_at = Some(now);
                                message.row.mentions = super::mentions::encode_mentions(mentions);
                                super::mentions::rewrite_mentions!(tx, &message.row, mentions);
                                next_rev += 1;
                                let changed = message.changed(next_rev - 1);
                                let added: Vec<Uuid> =
                                    mentions.iter().copied().filter(|user| !before.contains(user)).collect();
                                if !added.is_empty() {
                                    queued |= super::mentions::queue_added_mentions!(tx, room, changed.message(), added);
                                }
                                Ok(changed)
                            }
                        }
                        Action::Delete | Action::DeleteAsModerator => {
                            if !is_sender && !matches!(role, Role::Owner | Role::Admin) {
                                Err(Refused::Forbidden)
                            } else if deleted {
                                Ok(Applied::Unchanged(message.message()))
                            } else {
                                // The content and everything derived from it go now, not later.
                                for sql in [
                                    "DELETE FROM message_versions WHERE message_id = $1",
                                    "DELETE FROM message_reactions WHERE message_id = $1",
                                    // Its media become collectable (see media::janitor).
                                    "DELETE FROM message_media WHERE message_id = $1",
                                    // A deleted message mentions nobody (nor is in a digest).
                                    "DELETE FROM message_mentions WHERE message_id = $1",
                                ] {
                                    sqlx::query(sql).bind(change.message_id).execute(&mut *tx).await?;
                                }
                                if !is_sender {
                                    // A delete by someone else (a room's owner or admin, a
                                    // server admin) is moderation: audited with it.
                                    let audit = super::Audit {
                                        actor: Some(change.actor),
                                        action: "message_deleted_by_other",
                                        target: Some(format!("message:{}", change.message_id)),
                                        ip: None,
                                    };
                                    super::accounts::append_audit!(tx, &audit);
                                }
                                message.row.content = String::new();
                                message.row.deleted_at = Some(now);
                                message.row.attachments = None;
                                message.row.mentions = None;
                                message.tally.clear();
                                next_rev += 1;
                                Ok(message.changed(next_rev - 1))
                            }
                        }
                        Action::React(emoji) => {
                            let new_emoji = message.tally.count(emoji) == 0;
                            if deleted {
                                Err(Refused::Deleted)
                            } else if new_emoji && message.tally.len() >= MAX_DISTINCT_REACTIONS {
                                Err(Refused::TooManyReactions)
                            } else {
                                let added = sqlx::query(
                                    "INSERT INTO message_reactions (message_id, emoji, user_id, rev)
                                     VALUES ($1, $2, $3, $4)
                                     ON CONFLICT (message_id, emoji, user_id) DO NOTHING",
                                )
                                .bind(change.message_id)
                                .bind(emoji)
                                .bind(change.actor)
                                .bind(next_rev)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected()
                                    == 1;
                                if added {
                                    message.tally.add(emoji, 1);
                                    next_rev += 1;
                                    Ok(message.changed(next_rev - 1))
                                } else {
                                    Ok(Applied::Unchanged(message.message()))
                                }
                            }
                        }
                        Action::Unreact(emoji) => {
                            let removed = sqlx::query(
                                "DELETE FROM message_reactions
                                 WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
                            )
                            .bind(change.message_id)
                            .bind(emoji)
                            .bind(change.actor)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                                == 1;
                            if removed {
                                message.tally.add(emoji, -1);
                                next_rev += 1;
                                Ok(message.changed(next_rev - 1))
                            } else {
                                Ok(Applied::Unchanged(message.message()))
                            }
                        }
                    };
                }

                // Each changed message is written once, in its last version.
                for message in messages.values().filter(|m| m.dirty) {
                    sqlx::query(
                        "UPDATE messages SET content = $3, edited_at = $4, deleted_at = $5,
                                reactions = $6, rev = $7, attachments = $8, mentions = $9
                         WHERE room_id = $1 AND seq = $2",
                    )
                    .bind(message.row.room_id)
                    .bind(message.row.seq)
                    .bind(self.seal_content(message.row.room_id, message.row.id, &message.row.content).into_owned())
                    .bind(message.row.edited_at)
                    .bind(message.row.deleted_at)
                    .bind(message.tally.encode())
                    .bind(message.row.rev)
                    .bind(&message.row.attachments)
                    .bind(&message.row.mentions)
                    .execute(&mut *tx)
                    .await?;
                }
                // Hand back the revs of refused and idempotent changes (nobody saw them: the
                // row has been locked since they were reserved).
                if next_rev - 1 != reserved_up_to {
                    sqlx::query("UPDATE rooms SET last_rev = $2 WHERE id = $1")
                        .bind(room_id)
                        .bind(next_rev - 1)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        if queued {
            self.wake_outbox_relay();
        }
        for outcome in outcomes.iter_mut().flatten() {
            let (Applied::Changed(message) | Applied::Unchanged(message)) = outcome;
            self.sign_message(message);
        }
        Ok(ChangesCommitted {
            outcomes,
            member_revs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edit_window_counts_from_posting() {
        let posted = Utc::now();
        let later = posted + chrono::Duration::seconds(61);
        assert!(!window_expired(None, posted, later), "0 means no limit");
        assert!(window_expired(Some(Duration::from_secs(60)), posted, later));
        assert!(!window_expired(
            Some(Duration::from_secs(61)),
            posted,
            later
        ));
    }
}
