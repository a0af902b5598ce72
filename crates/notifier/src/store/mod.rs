//! Persistence of push subscriptions and of which events were already pushed.
//!
//! One [`PushStore`] over SQLite or PostgreSQL, chosen from the `DATABASE_URL` scheme. Queries
//! are runtime `query_as` + `FromRow` written once in SQL both dialects accept (`$n`
//! placeholders, `ON CONFLICT`, `RETURNING`), so one behavioural test suite covers both.
//!
//! The schema lives in `migrations/{sqlite,postgres}` with versions from 1001: the notifier
//! shares the database and the `_sqlx_migrations` table with the chat server (versions
//! 1..999), so each side runs its migrator with `ignore_missing` and never sees the other's
//! versions as unknown.

mod chat;
mod events;
mod subscriptions;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::{Error, Result};

pub use chat::Suppressed;
pub use events::Claim;
pub use subscriptions::{NewSubscription, Subscription};

/// Runs one expression against whichever pool the store holds.
///
/// The SQL is identical for both backends; only the pool type differs, and sqlx infers the
/// database from it, so each arm type-checks the same body against its own driver.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Which database the store talks to. Closed: these are the two the project supports.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Subscriptions and dedupe state. Cheap to clone: it is a pool handle.
#[derive(Debug, Clone)]
pub struct PushStore {
    backend: Backend,
}

impl PushStore {
    /// Connects to `database_url` (`sqlite://…` or `postgres://…`) and applies the
    /// notifier's migrations. A missing SQLite file is created.
    #[tracing::instrument(skip_all)]
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Self> {
        let store = if database_url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(database_url)?
                .create_if_missing(true)
                // WAL lets the HTTP API read while the consumer writes; the busy timeout
                // turns brief writer contention into waiting instead of SQLITE_BUSY errors.
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            // Every connection to `sqlite::memory:` is a different database.
            let max = if database_url.contains(":memory:") {
                1
            } else {
                max_connections
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(max.max(1))
                .connect_with(options)
                .await?;
            PushStore {
                backend: Backend::Sqlite(pool),
            }
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .connect(database_url)
                .await?;
            PushStore {
                backend: Backend::Postgres(pool),
            }
        } else {
            return Err(Error::config(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Uses a pool the chat server already has (and migrates it), so both share connections.
    pub async fn from_sqlite(pool: SqlitePool) -> Result<Self> {
        let store = PushStore {
            backend: Backend::Sqlite(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Uses a pool the chat server already has (and migrates it), so both share connections.
    pub async fn from_postgres(pool: PgPool) -> Result<Self> {
        let store = PushStore {
            backend: Backend::Postgres(pool),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the notifier's migrations; idempotent, safe to run from several processes.
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                tolerant(sqlx::migrate!("./migrations/sqlite"))
                    .run(pool)
                    .await?
            }
            Backend::Postgres(pool) => {
                tolerant(sqlx::migrate!("./migrations/postgres"))
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Which backend this is, for logs and health output.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// The embedded migrator, told to tolerate applied versions it does not know: the server's.
fn tolerant(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}
