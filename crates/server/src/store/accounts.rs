//! One's own account: standing (token generation, deactivation), e-mail, password, two-factor,
//! and the audit log every such change is written to in its own transaction.

use chrono::{DateTime, Utc};
use nebula_wire::{Account, AuditEntry, User};
use uuid::Uuid;

use super::{Store, StoreResult, with_pool, with_writer};
use crate::auth::Standing;

/// An audit-log entry, written in the same transaction as the action it records.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: Option<Uuid>,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
}

impl Audit {
    /// `actor` did `action` to their own account.
    pub fn own(actor: Uuid, action: &'static str, ip: Option<String>) -> Self {
        Audit {
            actor: Some(actor),
            action,
            target: Some(format!("user:{actor}")),
            ip,
        }
    }
}

/// Appends `$audit` inside the transaction `$tx`.
macro_rules! append_audit {
    ($tx:ident, $audit:expr) => {{
        let audit: &$crate::store::Audit = $audit;
        sqlx::query(
            "INSERT INTO audit_log (at, actor_id, action, target, ip) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($crate::store::now())
        .bind(audit.actor)
        .bind(audit.action)
        .bind(audit.target.as_deref())
        .bind(audit.ip.as_deref())
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use append_audit;

#[derive(Debug, sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    username: String,
    created_at: DateTime<Utc>,
    email: Option<String>,
    is_admin: bool,
    totp_secret: Option<String>,
}

impl From<AccountRow> for Account {
    fn from(row: AccountRow) -> Self {
        Account {
            id: row.id,
            username: row.username,
            created_at: row.created_at,
            email: row.email,
            is_admin: row.is_admin,
            totp_enabled: row.totp_secret.is_some(),
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor_id: Option<Uuid>,
    actor_username: Option<String>,
    actor_created_at: Option<DateTime<Utc>>,
    action: String,
    target: Option<String>,
    ip: Option<String>,
}

impl Store {
    /// The account's token generation and whether it may use tokens at all.
    pub async fn standing(&self, user_id: Uuid) -> StoreResult<Option<Standing>> {
        let row: Option<(i64, bool)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT token_generation, (deactivated_at IS NOT NULL OR deleted_at IS NOT NULL)
                 FROM users WHERE id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(generation, deactivated)| Standing {
            generation,
            deactivated,
        }))
    }

    pub async fn account(&self, user_id: Uuid) -> StoreResult<Option<Account>> {
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, AccountRow>(
                "SELECT id, username, created_at, email, is_admin, totp_secret FROM users WHERE id = $1",
            )
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Account::from))
    }

    /// Sets (or with `None` removes) the account's e-mail address.
    pub async fn set_email(
        &self,
        user_id: Uuid,
        email: Option<&str>,
    ) -> StoreResult<Option<Account>> {
        let row = with_writer!(self, pool => {
            sqlx::query_as::<_, AccountRow>(
                "UPDATE users SET email = $2 WHERE id = $1
                 RETURNING id, username, created_at, email, is_admin, totp_secret",
            )
            .bind(user_id)
            .bind(email)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(Account::from))
    }

    /// Revokes every token issued so far (optionally setting a new password hash at the
    /// same time) and records why; returns the new standing.
    #[tracing::instrument(skip(self, new_hash, audit))]
    pub async fn revoke_tokens(
        &self,
        user_id: Uuid,
        new_hash: Option<&str>,
        audit: &Audit,
    ) -> StoreResult<Standing> {
        let (generation, deactivated): (i64, bool) = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as(
                "UPDATE users SET token_generation = token_generation + 1,
                        password_hash = COALESCE($2, password_hash)
                 WHERE id = $1
                 RETURNING token_generation, (deactivated_at IS NOT NULL OR deleted_at IS NOT NULL)",
            )
            .bind(user_id)
            .bind(new_hash)
            .fetch_one(&mut *tx)
            .await?;
            append_audit!(tx, audit);
            tx.commit().await?;
            row
        });
        Ok(Standing {
            generation,
            deactivated,
        })
    }

    /// Records an action that changes nothing else (a login, a failed login).
    pub async fn audit(&self, audit: &Audit) -> StoreResult<()> {
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            append_audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The 2FA secret being set up and whether 2FA is on.
    pub async fn totp_state(&self, user_id: Uuid) -> StoreResult<(Option<String>, Option<String>)> {
        let row: Option<(Option<String>, Option<String>)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT totp_pending_secret, totp_secret FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.unwrap_or((None, None)))
    }

    /// Stores a secret being set up (replacing an earlier one), unless 2FA is on already.
    pub async fn set_pending_totp(&self, user_id: Uuid, secret: &str) -> StoreResult<bool> {
        let updated = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE users SET totp_pending_secret = $2 WHERE id = $1 AND totp_secret IS NULL",
            )
            .bind(user_id)
            .bind(secret)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    /// Turns 2FA on with the pending secret `secret` whose code of `step` was just shown,
    /// replacing any recovery codes with `code_hashes`. `false` if the pending secret changed
    /// meanwhile or 2FA is on already.
    #[tracing::instrument(skip_all, fields(%user_id))]
    pub async fn enable_totp(
        &self,
        user_id: Uuid,
        secret: &str,
        step: i64,
        code_hashes: &[String],
        audit: &Audit,
    ) -> StoreResult<bool> {
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE users SET totp_secret = totp_pending_secret, totp_pending_secret = NULL,
                        totp_last_step = $3
                 WHERE id = $1 AND totp_pending_secret = $2 AND totp_secret IS NULL",
            )
            .bind(user_id)
            .bind(secret)
            .bind(step)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for hash in code_hashes {
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
            }
            append_audit!(tx, audit);
            tx.commit().await?;
            true
        }))
    }

    /// Turns 2FA off and forgets its recovery codes.
    pub async fn disable_totp(&self, user_id: Uuid, audit: &Audit) -> StoreResult<()> {
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE users SET totp_secret = NULL, totp_pending_secret = NULL, totp_last_step = NULL
                 WHERE id = $1",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            append_audit!(tx, audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Accepts the TOTP code of `step` if no code of this or a later step was accepted before:
    /// a code is accepted once.
    pub async fn accept_totp_step(&self, user_id: Uuid, step: i64) -> StoreResult<bool> {
        let updated = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE users SET totp_last_step = $2
                 WHERE id = $1 AND totp_secret IS NOT NULL
                   AND (totp_last_step IS NULL OR totp_last_step < $2)",
            )
            .bind(user_id)
            .bind(step)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    /// Uses up an unused recovery code; `false` if there is no such unused code.
    pub async fn use_recovery_code(&self, user_id: Uuid, code_hash: &str) -> StoreResult<bool> {
        let updated = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE recovery_codes SET used_at = $3
                 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            )
            .bind(user_id)
            .bind(code_hash)
            .bind(super::now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(updated == 1)
    }

    /// Audit entries, newest first, with ids below `before`.
    pub async fn audit_log(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, AuditRow>(
                "SELECT a.id, a.at, a.actor_id, u.username AS actor_username,
                        u.created_at AS actor_created_at, a.action, a.target, a.ip
                 FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
                 WHERE a.id < $1 ORDER BY a.id DESC LIMIT $2",
            )
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|row| AuditEntry {
                id: row.id,
                at: row.at,
                actor: match (row.actor_id, row.actor_username, row.actor_created_at) {
                    (Some(id), Some(username), Some(created_at)) => Some(User {
                        id,
                        username,
                        created_at,
                    }),
                    _ => None,
                },
                action: row.action,
                target: row.target,
                ip: row.ip,
            })
            .collect())
    }
}
