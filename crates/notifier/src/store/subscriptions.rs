//! Browser push subscriptions, one row per endpoint.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::{Backend, PushStore, on_pool};
use crate::error::Result;

/// A stored browser `PushSubscription`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The push service URL the browser handed out; unique across all users.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url without padding (65 bytes decoded).
    pub p256dh: String,
    /// The browser's authentication secret, base64url without padding (16 bytes decoded).
    pub auth: String,
    pub created_at: DateTime<Utc>,
}

/// A validated subscription to store; see `http::subscriptions` for the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

/// Most ids bound in one `IN (…)` list: far below SQLite's and PostgreSQL's parameter limits.
const IN_LIST_CHUNK: usize = 500;

const UPSERT: &str = "INSERT INTO webpush_subscriptions \
        (id, user_id, endpoint, p256dh, auth, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (endpoint) DO UPDATE SET \
        user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth \
     RETURNING id, user_id, endpoint, p256dh, auth, created_at";

/// The user's subscriptions, and how many of them are for this endpoint (0 or 1).
const COUNT_OWN: &str = "SELECT COUNT(*), \
        COALESCE(SUM(CASE WHEN endpoint = $2 THEN 1 ELSE 0 END), 0) \
     FROM webpush_subscriptions WHERE user_id = $1";

/// First key of the per-user advisory lock on PostgreSQL, in the two-`int4` key space (the
/// server's outbox lease uses another first key there; sqlx's migration lock the one-`bigint`
/// space).
const SUBSCRIBE_LOCK_CLASS: i32 = 0x6e62_7770; // "nbwp"

impl PushStore {
    /// Stores a subscription for `user_id`, or refreshes it when the endpoint is known.
    ///
    /// An endpoint belongs to one browser profile; if another user signs in there and
    /// subscribes, the endpoint moves to that user, so the previous one stops getting
    /// notifications on a device they no longer use. No limit per user: the HTTP API goes
    /// through [`PushStore::upsert_subscription_within`].
    #[tracing::instrument(skip(self, new), fields(endpoint = %new.endpoint))]
    pub async fn upsert_subscription(
        &self,
        user_id: Uuid,
        new: &NewSubscription,
    ) -> Result<Subscription> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let row = on_pool!(self, pool => sqlx::query_as::<_, Subscription>(UPSERT)
            .bind(id)
            .bind(user_id)
            .bind(&new.endpoint)
            .bind(&new.p256dh)
            .bind(&new.auth)
            .bind(now)
            .fetch_one(pool)
            .await)?;
        Ok(row)
    }

    /// As [`PushStore::upsert_subscription`], unless `user_id` already has `max`
    /// subscriptions and this endpoint is not one of them: then nothing is stored and the
    /// answer is `None`. Refreshing one of the user's own endpoints is always allowed.
    ///
    /// The count and the insert happen under a per-user lock, so concurrent subscribes of one
    /// user cannot together exceed `max`: SQLite's write lock taken at `BEGIN IMMEDIATE`, a
    /// transaction-scoped advisory lock on PostgreSQL (whose READ COMMITTED count would not
    /// see the other transaction's uncommitted row).
    #[tracing::instrument(skip(self, new), fields(endpoint = %new.endpoint))]
    pub async fn upsert_subscription_within(
        &self,
        user_id: Uuid,
        new: &NewSubscription,
        max: u32,
    ) -> Result<Option<Subscription>> {
        let (id, now) = (Uuid::now_v7(), Utc::now());
        // The same steps on both backends once the lock is held.
        macro_rules! capped_upsert {
            ($tx:ident) => {{
                let (count, own): (i64, i64) = sqlx::query_as(COUNT_OWN)
                    .bind(user_id)
                    .bind(&new.endpoint)
                    .fetch_one(&mut *$tx)
                    .await?;
                if own == 0 && count >= i64::from(max) {
                    $tx.rollback().await?;
                    return Ok(None);
                }
                let row = sqlx::query_as::<_, Subscription>(UPSERT)
                    .bind(id)
                    .bind(user_id)
                    .bind(&new.endpoint)
                    .bind(&new.p256dh)
                    .bind(&new.auth)
                    .bind(now)
                    .fetch_one(&mut *$tx)
                    .await?;
                $tx.commit().await?;
                Ok(Some(row))
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                capped_upsert!(tx)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                    .bind(SUBSCRIBE_LOCK_CLASS)
                    .bind(user_lock_key(user_id))
                    .execute(&mut *tx)
                    .await?;
                capped_upsert!(tx)
            }
        }
    }

    /// Removes `user_id`'s subscription for `endpoint`; says whether there was one.
    ///
    /// Scoped to the caller so nobody can unsubscribe someone else's browser by guessing
    /// its endpoint.
    #[tracing::instrument(skip(self))]
    pub async fn remove_subscription(&self, user_id: Uuid, endpoint: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM webpush_subscriptions WHERE endpoint = $1 AND user_id = $2";
        let removed = on_pool!(self, pool => sqlx::query(SQL)
            .bind(endpoint)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(removed > 0)
    }

    /// Removes a subscription the push service reported gone (404/410).
    #[tracing::instrument(skip(self))]
    pub async fn remove_subscription_by_id(&self, id: Uuid) -> Result<bool> {
        const SQL: &str = "DELETE FROM webpush_subscriptions WHERE id = $1";
        let removed = on_pool!(self, pool => sqlx::query(SQL)
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(removed > 0)
    }

    /// Every subscription of one user, oldest first.
    #[tracing::instrument(skip(self))]
    pub async fn subscriptions_of(&self, user_id: Uuid) -> Result<Vec<Subscription>> {
        const SQL: &str = "SELECT id, user_id, endpoint, p256dh, auth, created_at \
             FROM webpush_subscriptions WHERE user_id = $1 ORDER BY created_at, id";
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Subscription>(SQL)
            .bind(user_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows)
    }

    /// The subscriptions of `users` whose push of `event_id` is not done yet.
    ///
    /// Skipping already-delivered ones is what makes a retry after a partial failure push
    /// only where the first attempt did not get through.
    #[tracing::instrument(skip(self, users), fields(users = users.len()))]
    pub async fn pending_subscriptions(
        &self,
        event_id: Uuid,
        users: &[Uuid],
    ) -> Result<Vec<Subscription>> {
        let mut found = Vec::new();
        for chunk in users.chunks(IN_LIST_CHUNK) {
            let rows = on_pool!(self, pool => {
                let mut query = QueryBuilder::new(
                    "SELECT s.id, s.user_id, s.endpoint, s.p256dh, s.auth, s.created_at \
                     FROM webpush_subscriptions s WHERE s.user_id IN (",
                );
                let mut ids = query.separated(", ");
                for user in chunk {
                    ids.push_bind(*user);
                }
                query.push(
                    ") AND NOT EXISTS (SELECT 1 FROM webpush_deliveries d \
                     WHERE d.subscription_id = s.id AND d.state = 'done' AND d.event_id = ",
                );
                query.push_bind(event_id);
                query.push(") ORDER BY s.created_at, s.id");
                query.build_query_as::<Subscription>().fetch_all(pool).await
            })?;
            found.extend(rows);
        }
        Ok(found)
    }
}

/// The user's half of the advisory lock key: the id folded to 32 bits. Two users sharing it
/// only wait for each other now and then.
fn user_lock_key(user_id: Uuid) -> i32 {
    let bits = user_id.as_u128();
    let folded = (bits ^ (bits >> 32) ^ (bits >> 64) ^ (bits >> 96)) & 0xffff_ffff;
    i32::from_ne_bytes(u32::try_from(folded).unwrap_or_default().to_ne_bytes())
}
