//! Dedupe state: which events are finished, and per (event, subscription) which pushes are
//! claimed or done.
//!
//! RabbitMQ delivers at least once (a redelivery after a lost ack, a retry after a partial
//! failure, two copies after a crash between republish and ack, or a publisher that sent one
//! event twice). These tables turn that into one push per (event, subscription), except for a
//! pusher that dies between the push service's answer and `complete_delivery`.
//!
//! The protocol, per copy of an event: `is_processed` (skip if so) → `pending_subscriptions`
//! → per subscription `claim_delivery`, push, `complete_delivery` (or `release_delivery`) →
//! `mark_processed` once every push is settled. `mark_processed` deletes the event's
//! per-subscription rows, which is safe only because a claim re-checks, atomically with
//! taking it, that the event is not processed (see `claim_delivery`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PushStore, on_pool};
use crate::error::Result;

/// What [`PushStore::claim_delivery`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The push is this handler's to send, then to complete or release.
    Claimed,
    /// Another handler holds a live claim on it, or it is already done.
    Taken,
    /// The whole event is processed (by another copy of it): nothing left to send.
    Processed,
}

impl PushStore {
    /// Whether every push of `event_id` is already done.
    #[tracing::instrument(skip(self))]
    pub async fn is_processed(&self, event_id: Uuid) -> Result<bool> {
        const SQL: &str = "SELECT COUNT(*) FROM webpush_processed_events WHERE event_id = $1";
        let (count,): (i64,) = on_pool!(self, pool => sqlx::query_as(SQL)
            .bind(event_id)
            .fetch_one(pool)
            .await)?;
        Ok(count > 0)
    }

    /// Claims the push of `event_id` to `subscription_id` for this handler.
    ///
    /// A pending claim older than `lease` belongs to a pusher that died mid-push and is taken
    /// over. The lease must exceed the push timeout, or a slow push could be doubled.
    ///
    /// Why the claim also checks that the event is not processed, in a second statement of
    /// the same transaction: [`PushStore::mark_processed`] deletes the event's 'done' rows, so
    /// a second copy of the event that checked "processed" before the first copy marked it,
    /// and claims after, would find no row in its way and push again. Checking inside the
    /// claim's own transaction closes that gap. It must be a separate statement: on
    /// PostgreSQL (READ COMMITTED) an `INSERT … WHERE NOT EXISTS (processed)` takes its
    /// snapshot before it waits for the marking transaction to delete the conflicting 'done'
    /// row, then inserts anyway; the next statement sees that transaction's commit. On SQLite
    /// the insert takes the write lock, so the check reads the latest state either way.
    #[tracing::instrument(skip(self))]
    pub async fn claim_delivery(
        &self,
        event_id: Uuid,
        subscription_id: Uuid,
        lease: std::time::Duration,
    ) -> Result<Claim> {
        const CLAIM: &str = "INSERT INTO webpush_deliveries \
                (event_id, subscription_id, state, updated_at) VALUES ($1, $2, 'pending', $3) \
             ON CONFLICT (event_id, subscription_id) DO UPDATE SET updated_at = excluded.updated_at \
             WHERE webpush_deliveries.state = 'pending' AND webpush_deliveries.updated_at < $4";
        const PROCESSED: &str = "SELECT COUNT(*) FROM webpush_processed_events WHERE event_id = $1";
        let now = Utc::now();
        let stale = now - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let claim = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(CLAIM)
                .bind(event_id)
                .bind(subscription_id)
                .bind(now)
                .bind(stale)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            let (processed,): (i64,) = sqlx::query_as(PROCESSED)
                .bind(event_id)
                .fetch_one(&mut *tx)
                .await?;
            let claim = match (processed > 0, claimed) {
                (true, _) => Claim::Processed,
                (false, true) => Claim::Claimed,
                (false, false) => Claim::Taken,
            };
            // Only a claim of an unfinished event is kept; otherwise nothing was changed
            // that should stay.
            if claim == Claim::Claimed {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok::<Claim, sqlx::Error>(claim)
        })?;
        Ok(claim)
    }

    /// Records that the push service has settled this push (accepted or refused for good).
    #[tracing::instrument(skip(self))]
    pub async fn complete_delivery(&self, event_id: Uuid, subscription_id: Uuid) -> Result<()> {
        const SQL: &str = "UPDATE webpush_deliveries SET state = 'done', updated_at = $3 \
             WHERE event_id = $1 AND subscription_id = $2";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(event_id)
            .bind(subscription_id)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Gives a claim back after a transient failure, so the retry can take it at once.
    #[tracing::instrument(skip(self))]
    pub async fn release_delivery(&self, event_id: Uuid, subscription_id: Uuid) -> Result<()> {
        const SQL: &str = "DELETE FROM webpush_deliveries \
             WHERE event_id = $1 AND subscription_id = $2 AND state = 'pending'";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(event_id)
            .bind(subscription_id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Marks `event_id` finished and drops its per-subscription rows, in one transaction so
    /// a crash in between cannot leave a finished event that a retry would push again.
    /// Returns false when the event was already marked.
    #[tracing::instrument(skip(self))]
    pub async fn mark_processed(&self, event_id: Uuid) -> Result<bool> {
        const MARK: &str = "INSERT INTO webpush_processed_events (event_id, processed_at) \
             VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING";
        const FORGET: &str = "DELETE FROM webpush_deliveries WHERE event_id = $1";
        let newly = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let marked = sqlx::query(MARK)
                .bind(event_id)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            sqlx::query(FORGET).bind(event_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<bool, sqlx::Error>(marked.rows_affected() > 0)
        })?;
        Ok(newly)
    }

    /// Forgets finished events older than `before`, so the table does not grow forever.
    ///
    /// Keep `before` well behind the longest time a message can spend in the broker (retries
    /// plus an outage), or a very late redelivery could be pushed a second time.
    #[tracing::instrument(skip(self))]
    pub async fn prune_processed(&self, before: DateTime<Utc>) -> Result<u64> {
        const SQL: &str = "DELETE FROM webpush_processed_events WHERE processed_at < $1";
        let pruned = on_pool!(self, pool => sqlx::query(SQL)
            .bind(before)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(pruned)
    }
}
