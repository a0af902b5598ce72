//! Server administration: who is an admin, the users list, deactivation.

use chrono::{DateTime, Utc};
use nebula_wire::AdminUser;
use uuid::Uuid;

use super::accounts::append_audit;
use super::{Audit, Store, StoreResult, with_pool, with_writer};
use crate::auth::Standing;

#[derive(Debug, sqlx::FromRow)]
struct AdminUserRow {
    id: Uuid,
    username: String,
    created_at: DateTime<Utc>,
    is_admin: bool,
    deactivated_at: Option<DateTime<Utc>>,
}

impl From<AdminUserRow> for AdminUser {
    fn from(row: AdminUserRow) -> Self {
        AdminUser {
            id: row.id,
            username: row.username,
            created_at: row.created_at,
            is_admin: row.is_admin,
            deactivated_at: row.deactivated_at,
        }
    }
}

/// The account after a (de)activation, with its new generation and standing.
type DeactivationRow = (
    Uuid,
    String,
    DateTime<Utc>,
    bool,
    Option<DateTime<Utc>>,
    i64,
    bool,
);

impl Store {
    /// Makes the account with this (lowercased) username an admin or not; `None` when there
    /// is no such account (deleted accounts included).
    #[tracing::instrument(skip(self, audit))]
    pub async fn set_admin(
        &self,
        username_key: &str,
        is_admin: bool,
        audit: &Audit,
    ) -> StoreResult<Option<Uuid>> {
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let id: Option<Uuid> = sqlx::query_scalar(
                "UPDATE users SET is_admin = $2 WHERE username_key = $1 AND deleted_at IS NULL
                 RETURNING id",
            )
            .bind(username_key)
            .bind(is_admin)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = id {
                let audit = Audit {
                    target: Some(format!("user:{id}")),
                    ..audit.clone()
                };
                append_audit!(tx, &audit);
                tx.commit().await?;
            }
            id
        }))
    }

    pub async fn is_admin(&self, user_id: Uuid) -> StoreResult<bool> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar::<_, bool>("SELECT is_admin FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        })
        .unwrap_or(false))
    }

    /// Accounts whose (lowercased) name starts with `prefix`, by name, one page, and how many
    /// there are in all. Deleted accounts are not listed.
    pub async fn admin_users(
        &self,
        prefix: &str,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AdminUser>, i64)> {
        // A range on the name's index in byte order, as in `search_users`: usernames are
        // `[a-z0-9_.-]` once lowercased, all below `~`.
        let high = format!("{prefix}~");
        let (list_sql, count_sql) = match &self.backend {
            super::Backend::Sqlite { .. } => (
                "SELECT id, username, created_at, is_admin, deactivated_at FROM users
                 WHERE deleted_at IS NULL AND username_key >= $1 AND username_key < $2
                 ORDER BY username_key LIMIT $3 OFFSET $4",
                "SELECT COUNT(*) FROM users
                 WHERE deleted_at IS NULL AND username_key >= $1 AND username_key < $2",
            ),
            super::Backend::Postgres(_) => (
                "SELECT id, username, created_at, is_admin, deactivated_at FROM users
                 WHERE deleted_at IS NULL
                   AND username_key COLLATE \"C\" >= $1 AND username_key COLLATE \"C\" < $2
                 ORDER BY username_key COLLATE \"C\" LIMIT $3 OFFSET $4",
                "SELECT COUNT(*) FROM users
                 WHERE deleted_at IS NULL
                   AND username_key COLLATE \"C\" >= $1 AND username_key COLLATE \"C\" < $2",
            ),
        };
        let (rows, total) = with_pool!(self, pool => {
            let rows = sqlx::query_as::<_, AdminUserRow>(list_sql)
                .bind(prefix)
                .bind(&high)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(count_sql)
                .bind(prefix)
                .bind(&high)
                .fetch_one(pool)
                .await?;
            (rows, total)
        });
        Ok((rows.into_iter().map(AdminUser::from).collect(), total))
    }

    /// Deactivates (revoking every token) or reactivates an account; `None` when there is no
    /// such account.
    #[tracing::instrument(skip(self, audit))]
    pub async fn set_deactivated(
        &self,
        user_id: Uuid,
        deactivate: bool,
        audit: &Audit,
    ) -> StoreResult<Option<(AdminUser, Standing)>> {
        let at = deactivate.then(super::now);
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            // Deactivation also moves the generation on: tokens from before it stay dead
            // after a reactivation.
            let row: Option<DeactivationRow> =
                sqlx::query_as(
                    "UPDATE users SET deactivated_at = $2,
                            token_generation = token_generation + CASE WHEN $3 THEN 1 ELSE 0 END
                     WHERE id = $1 AND deleted_at IS NULL
                     RETURNING id, username, created_at, is_admin, deactivated_at, token_generation,
                               deactivated_at IS NOT NULL",
                )
                .bind(user_id)
                .bind(at)
                .bind(deactivate)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((id, username, created_at, is_admin, deactivated_at, generation, deactivated)) =
                row
            else {
                return Ok(None);
            };
            append_audit!(tx, audit);
            tx.commit().await?;
            Some((
                AdminUser { id, username, created_at, is_admin, deactivated_at },
                Standing { generation, deactivated },
            ))
        }))
    }
}
