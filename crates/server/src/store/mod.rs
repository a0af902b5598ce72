//! The store: every database access, on embedded SQLite or PostgreSQL.
//!
//! Both backends share one schema (one migration folder per dialect) and, wherever the dialects
//! agree, the very same SQL: `with_pool!` expands a block once per backend, so each query is
//! written once and type-checked against both drivers. The integration suite runs against both.

mod accounts;
mod admin;
mod changes;
mod contacts;
pub mod digest;
mod dms;
mod erasure;
mod lifecycle;
pub(crate) mod mail;
mod media;
mod mentions;
mod messages;
mod moderation;
pub mod notification_settings;
mod outbox;
mod reseal;
mod rooms;
mod rows;
mod sealing;
mod stories;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Notify;

pub use accounts::Audit;
pub use changes::{FeedEntry, ReactionRecord};
pub use contacts::RequestOutcome;
pub use dms::DirectRoom;
pub use lifecycle::{
    Action, Applied, ChangeOutcome, ChangesCommitted, MAX_DISTINCT_REACTIONS, NewChange, Refused,
};
pub use media::MediaRecord;
pub use messages::{Committed, Direction, MemberCache, NewMessage, NotAMember, Outcome, Posted};
pub use moderation::ReportSubject;
pub use outbox::{OutboxLease, OutboxRow};
pub use reseal::Resealed;
pub use rooms::{AddOutcome, MembershipCheck, RoomAccess, RoomRecord, SubscriptionState};
pub use stories::StoryRecord;
pub use users::UserRecord;

/// Storage failures. Client mistakes are not here: they are caught before the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. a taken username).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database could not be reached in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A store invariant failed: a bug, reported instead of a panic.
    #[error("store invariant violated: {0}")]
    Invariant(&'static str),
    /// A stored value did not decrypt (a missing key, or a value moved or damaged): internal,
    /// never the client's fault. Names the row, never its bytes.
    #[error("cannot decrypt {row}: {cause}")]
    Undecryptable {
        row: String,
        #[source]
        cause: crate::at_rest::Undecryptable,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(err.to_string())
            }
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether an error is a unique-constraint violation (both drivers report it the same way).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// Which database the store talks to.
#[derive(Debug, Clone)]
enum Backend {
    /// SQLite allows one writer at a time. Writes go through a one-connection pool so they
    /// queue in-process instead of spinning on SQLITE_BUSY; reads use their own pool (WAL lets
    /// them run beside the writer).
    Sqlite {
        reader: SqlitePool,
        writer: SqlitePool,
    },
    Postgres(PgPool),
}

/// A cheap, cloneable handle to the database.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Raised after a membership change committed an outbox row (see `outbox.rs`).
    outbox_wake: Arc<Notify>,
    /// Signs the media URLs of what the store returns; `None` leaves them unsigned paths.
    media_urls: Option<Arc<crate::media::MediaUrls>>,
    /// Encryption at rest of message content and edit history (empty: plaintext).
    keyring: crate::at_rest::Keyring,
}

/// Expands `$body` once per backend with `$pool` bound to the read pool.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { reader: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}

/// Expands `$body` once per backend with `$pool` bound to the pool writes must use.
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite { writer: $pool, .. } => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use {with_pool, with_writer};

impl Store {
    /// Connects (creating an SQLite file if needed) and runs the migrations.
    pub async fn connect(database_url: &str, max_connections: u32) -> StoreResult<Self> {
        let acquire_timeout = Duration::from_secs(5);
        let backend = if database_url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(database_url)
                .map_err(StoreError::Database)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before it returns, so an acknowledged message
                // survives a power loss too. Group commit keeps the fsync count low.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(acquire_timeout)
                .connect_with(options.clone())
                .await?;
            shared(sqlx::migrate!("migrations/sqlite"))
                .run(&writer)
                .await?;
            let reader = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            Backend::Sqlite { reader, writer }
        } else {
            let options = PgConnectOptions::from_str(database_url).map_err(StoreError::Database)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            shared(sqlx::migrate!("migrations/postgres"))
                .run(&pool)
                .await?;
            Backend::Postgres(pool)
        };
        Ok(Store {
            backend,
            outbox_wake: Arc::new(Notify::new()),
            media_urls: None,
            keyring: crate::at_rest::Keyring::default(),
        })
    }

    /// This store, signing media URLs with `urls` (set once at start, before cloning).
    pub fn with_media_urls(mut self, urls: crate::media::MediaUrls) -> Self {
        self.media_urls = Some(Arc::new(urls));
        self
    }

    /// This store, encrypting message content and edit history with `keyring` (set once at
    /// start, before cloning).
    pub fn with_keyring(mut self, keyring: crate::at_rest::Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    /// The keys this store encrypts with.
    pub fn keyring(&self) -> &crate::at_rest::Keyring {
        &self.keyring
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// One round trip to the database, for health checks.
    pub async fn ping(&self) -> StoreResult<()> {
        with_writer!(self, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    /// Connections in use and idle, summed over the pools.
    pub fn pool_usage(&self) -> (u32, u32) {
        match &self.backend {
            Backend::Sqlite { reader, writer } => (
                reader.size() + writer.size()
                    - u32::try_from(reader.num_idle() + writer.num_idle()).unwrap_or(0),
                u32::try_from(reader.num_idle() + writer.num_idle()).unwrap_or(0),
            ),
            Backend::Postgres(pool) => {
                let idle = u32::try_from(pool.num_idle()).unwrap_or(0);
                (pool.size().saturating_sub(idle), idle)
            }
        }
    }

    /// Closes every connection (on shutdown, after the writers drained).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { reader, writer } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// The current time at the precision both databases keep (microseconds), so a value returned
/// from a write equals the value read back later.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The server and the notification service may share one database (and one
/// `_sqlx_migrations` table): the notifier's migrations are numbered from 1001, the server's
/// below 1000, and each side ignores the other's instead of refusing to start.
fn shared(mut migrator: sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    migrator.set_ignore_missing(true);
    migrator
}
