//! Dedupe state: which events are finished, and per (event, subscription) which pushes are
//! claimed or done.
//!
//! RabbitMQ delivers at least once (a redelivery after a lost ack, a retry after a partial
//! failure, two copies after a crash between republish and ack, or a publisher that sent one
//! event twice). These tables turn that into one push per (event, subscription), except for a
//! pusher that dies between the push service's answer and `complete_delivery`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PushStore, on_pool};
use crate::error::Result;

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

    /// Claims the push of `event_id` to `subscription_id`; false if someone else holds a
    /// live claim or it is already done.
    ///
    /// A pending claim older than `lease` belongs to a pusher that died mid-push and is taken
    /// over. The lease must exceed the push timeout, or a slow push could be doubled.
    #[tracing::instrument(skip(self))]
    pub async fn claim_delivery(
        &self,
        event_id: Uuid,
        subscription_id: Uuid,
        lease: std::time::Duration,
    ) -> Result<bool> {
        const SQL: &str = "INSERT INTO webpush_deliveries \
                (event_id, subscription_id, state, updated_at) VALUES ($1, $2, 'pending', $3) \
             ON CONFLICT (event_id, subscription_id) DO UPDATE SET updated_at = excluded.updated_at \
             WHERE webpush_deliveries.state = 'pending' AND webpush_deliveries.updated_at < $4";
        let now = Utc::now();
        let stale = now - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let claimed = on_pool!(self, pool => sqlx::query(SQL)
            .bind(event_id)
            .bind(subscription_id)
            .bind(now)
            .bind(stale)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(claimed > 0)
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
