//! The e-mail digest in the store: who may be due one, and claiming, composing and queueing
//! one digest in one transaction.
//!
//! Every node runs the scheduler (`crate::digest`); none leads. A digest is claimed by locking
//! the user's `digest_pending` row — `FOR UPDATE SKIP LOCKED` on PostgreSQL, so a second node
//! skips a user the first is composing for; SQLite has one writer, which serializes the same
//! transaction — and the row is deleted in the commit that queues the mail. The mail's
//! `event_id` is derived from the user and the end of their previous digest, so even a
//! digest composed twice is one outbox row (`event_id` is unique) and one mail (the notifier
//! dedupes on it).

use chrono::{DateTime, Utc};
use nebula_wire::Message;
use nebula_wire::notify::MailContent;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::rows::{MessageRow, message_columns};
use super::{Backend, Store, StoreResult, with_pool};

/// Items a digest lists at most (of each kind); the mail says how many more there are.
pub const MAX_ITEMS: i64 = 50;

/// How far back a first digest looks.
const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::days(7);

/// A user with something pending: (user, pending since, their interval in minutes if they
/// chose one, when their last digest went out).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DigestCandidate {
    pub user_id: Uuid,
    pub since: DateTime<Utc>,
    pub digest_minutes: Option<i32>,
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// One unread message a digest lists.
#[derive(Debug, Clone)]
pub struct DigestItem {
    pub room_name: String,
    /// A direct message (else a mention in a group room).
    pub direct: bool,
    pub message: Message,
}

/// What a digest is composed from.
#[derive(Debug, Clone)]
pub struct DigestContext {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub items: Vec<DigestItem>,
}

/// What [`Store::send_digest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestOutcome {
    /// Queued to the outbox.
    Sent,
    /// Another node holds the user's claim, or already sent it.
    NotClaimed,
    /// Their interval has not passed yet (since the last digest, or since the first item).
    NotDue,
    /// No verified address or notification mail off: the pending mark is dropped.
    Ineligible,
    /// Everything pending was read or deleted meanwhile: no mail.
    Nothing,
}

/// The `event_id` of the digest that follows the one that covered up to `covered_to`.
fn digest_event_id(user_id: Uuid, covered_to: DateTime<Utc>) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(b"nebula-digest:");
    hash.update(user_id.as_bytes());
    hash.update(covered_to.timestamp_micros().to_be_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.finalize()[..16]);
    // An RFC 9562 version 8 (custom) UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

/// Keys (room, seq, room name, kind) of the unread direct messages and mentions of `$user`
/// created after `$after`, then the messages themselves. A macro: the transaction types
/// differ per backend.
macro_rules! pending_items {
    ($tx:ident, $store:expr, $user:expr, $after:expr) => {{
        const DIRECT: &str = "SELECT msg.room_id, msg.seq, r.name, r.kind FROM room_members m
             JOIN rooms r ON r.id = m.room_id
             JOIN messages msg ON msg.room_id = m.room_id AND msg.seq > m.last_read_seq
             WHERE m.user_id = $1 AND r.kind = 'direct' AND msg.sender_id <> $1
               AND msg.deleted_at IS NULL AND msg.created_at > $2
               AND COALESCE(m.notification_level, 'all') <> 'none'
             ORDER BY msg.created_at LIMIT $3";
        const MENTIONS: &str = "SELECT mm.room_id, mm.seq, r.name, r.kind FROM message_mentions mm
             JOIN room_members m ON m.room_id = mm.room_id AND m.user_id = mm.user_id
             JOIN rooms r ON r.id = mm.room_id
             JOIN messages msg ON msg.room_id = mm.room_id AND msg.seq = mm.seq
             WHERE mm.user_id = $1 AND r.kind = 'group' AND mm.seq > m.last_read_seq
               AND msg.sender_id <> $1 AND msg.deleted_at IS NULL AND mm.created_at > $2
               AND COALESCE(m.notification_level, 'mentions') <> 'none'
             ORDER BY mm.created_at LIMIT $3";
        let mut keys: Vec<(Uuid, i64, String, String)> = Vec::new();
        for sql in [DIRECT, MENTIONS] {
            let found: Vec<(Uuid, i64, String, String)> = sqlx::query_as(sql)
                .bind($user)
                .bind($after)
                .bind(MAX_ITEMS)
                .fetch_all(&mut *$tx)
                .await?;
            keys.extend(found);
        }
        let mut items = Vec::with_capacity(keys.len());
        for (room_id, seq, room_name, kind) in keys {
            let row: Option<MessageRow> = sqlx::query_as(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE room_id = $1 AND seq = $2"
            ))
            .bind(room_id)
            .bind(seq)
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some(row) = row {
                // A message this node's keys cannot open is left out (and logged) rather than
                // holding back every later digest of its recipient.
                match $store.message_from(row) {
                    Ok(message) => items.push(DigestItem {
                        room_name,
                        direct: kind == "direct",
                        message,
                    }),
                    Err(err) => {
                        tracing::error!(error = %err, %room_id, seq, "digest item left out")
                    }
                }
            }
        }
        items.sort_by_key(|item| (item.message.created_at, item.message.seq));
        items
    }};
}

/// The claim-compose-queue transaction, once per backend (`$lock` is the claim's SQL).
macro_rules! digest_transaction {
    ($store:expr, $pool:ident, $lock:expr, $user_id:expr, $interval:expr, $render:expr) => {{
        let now = super::now();
        let mut tx = $pool.begin().await?;
        let claimed: Option<(DateTime<Utc>,)> = sqlx::query_as($lock)
            .bind($user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((since,)) = claimed else {
            return Ok(DigestOutcome::NotClaimed);
        };
        let account: Option<(String, Option<String>, bool, bool)> = sqlx::query_as(
            "SELECT username, email, email_verified, email_notifications FROM users WHERE id = $1",
        )
        .bind($user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let eligible = account.and_then(|(username, email, verified, on)| {
            email
                .filter(|_| verified && on)
                .map(|email| (username, email))
        });
        let Some((username, email)) = eligible else {
            sqlx::query("DELETE FROM digest_pending WHERE user_id = $1")
                .bind($user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(DigestOutcome::Ineligible);
        };
        let last: Option<(DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT last_sent_at, covered_to FROM email_digests WHERE user_id = $1")
                .bind($user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let recent = |at: DateTime<Utc>| at > now - $interval;
        if recent(since) || last.is_some_and(|(sent, _)| recent(sent)) {
            return Ok(DigestOutcome::NotDue);
        }
        let after = last.map_or(now - FIRST_LOOKBACK, |(_, covered)| covered);
        let items = pending_items!(tx, $store, $user_id, after);
        sqlx::query("DELETE FROM digest_pending WHERE user_id = $1")
            .bind($user_id)
            .execute(&mut *tx)
            .await?;
        let Some(covered_to) = items.iter().map(|item| item.message.created_at).max() else {
            tx.commit().await?;
            return Ok(DigestOutcome::Nothing);
        };
        let context = DigestContext {
            user_id: $user_id,
            username,
            email,
            items,
        };
        let mail: MailContent = $render(&context);
        let event_id = digest_event_id($user_id, after);
        let (_, _, payload) = super::mail::mail_payload_with_id($user_id, &mail, event_id)?;
        sqlx::query(
            "INSERT INTO outbox (event_id, room_id, payload, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind($user_id)
        .bind(payload)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO email_digests (user_id, last_sent_at, covered_to) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET last_sent_at = excluded.last_sent_at,
                 covered_to = excluded.covered_to",
        )
        .bind($user_id)
        .bind(now)
        .bind(covered_to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DigestOutcome::Sent)
    }};
}

impl Store {
    /// Users with a pending mark, oldest first (at most `limit`).
    #[tracing::instrument(skip(self))]
    pub async fn digest_candidates(&self, limit: i64) -> StoreResult<Vec<DigestCandidate>> {
        const SQL: &str =
            "SELECT p.user_id, p.since, u.email_digest_minutes AS digest_minutes, d.last_sent_at
             FROM digest_pending p JOIN users u ON u.id = p.user_id
             LEFT JOIN email_digests d ON d.user_id = p.user_id
             ORDER BY p.since LIMIT $1";
        let rows = with_pool!(self, pool => {
            sqlx::query_as(SQL).bind(limit).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Claims `user_id`'s digest, and if it is due and anything is still unread, composes it
    /// with `render` and queues it, all in one transaction.
    #[tracing::instrument(skip(self, render))]
    pub async fn send_digest(
        &self,
        user_id: Uuid,
        interval: chrono::Duration,
        render: impl Fn(&DigestContext) -> MailContent,
    ) -> StoreResult<DigestOutcome> {
        let outcome: StoreResult<DigestOutcome> = async {
            match &self.backend {
                Backend::Sqlite { writer, .. } => digest_transaction!(
                    self,
                    writer,
                    "SELECT since FROM digest_pending WHERE user_id = $1",
                    user_id,
                    interval,
                    render
                ),
                Backend::Postgres(pool) => digest_transaction!(
                    self,
                    pool,
                    "SELECT since FROM digest_pending WHERE user_id = $1 FOR UPDATE SKIP LOCKED",
                    user_id,
                    interval,
                    render
                ),
            }
        }
        .await;
        if outcome.as_ref().is_ok_and(|o| *o == DigestOutcome::Sent) {
            self.wake_outbox_relay();
        }
        outcome
    }

    /// The user was connected when their digest came due: they saw what was pending, so it
    /// is dropped and a later digest starts after it.
    #[tracing::instrument(skip(self))]
    pub async fn digest_seen(&self, user_id: Uuid) -> StoreResult<()> {
        let now = super::now();
        super::with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM digest_pending WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            // A user with no digest yet gets a row whose `last_sent_at` is long past (no mail
            // went out), so it does not delay their first digest.
            sqlx::query(
                "INSERT INTO email_digests (user_id, last_sent_at, covered_to) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id) DO UPDATE SET covered_to = excluded.covered_to",
            )
            .bind(user_id)
            .bind(DateTime::<Utc>::UNIX_EPOCH)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_id_is_fixed_by_the_user_and_the_previous_digest() {
        let (user, at) = (Uuid::now_v7(), Utc::now());
        assert_eq!(digest_event_id(user, at), digest_event_id(user, at));
        assert_ne!(
            digest_event_id(user, at),
            digest_event_id(user, at + chrono::Duration::microseconds(1))
        );
        assert_ne!(
            digest_event_id(user, at),
            digest_event_id(Uuid::now_v7(), at)
        );
        assert_eq!(digest_event_id(user, at).get_version_num(), 8);
    }
}
