//! Leaving: password resets, deleting one's account, and exporting what the server holds.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use nebula_wire::notify::MailContent;

use super::accounts::append_audit;
use super::mail::enqueue_mail;
use super::{Audit, Store, StoreResult, with_pool, with_writer};
use crate::auth::Standing;

/// A password reset's lifetime.
pub const RESET_TTL: chrono::Duration = chrono::Duration::hours(1);

impl Store {
    /// Accounts (not deleted) with this username key or this e-mail address, with their
    /// e-mail addresses.
    pub async fn reset_recipients(
        &self,
        username_key: Option<&str>,
        email: Option<&str>,
    ) -> StoreResult<Vec<(Uuid, String, Option<String>)>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, username, email FROM users
                 WHERE deleted_at IS NULL AND (username_key = $1 OR lower(email) = lower($2))",
            )
            .bind(username_key)
            .bind(email)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Stores a reset token (its hash) valid for `RESET_TTL` and queues the mail carrying it,
    /// in one transaction.
    pub async fn create_password_reset(
        &self,
        user_id: Uuid,
        token_hash: &str,
        mail: &MailContent,
    ) -> StoreResult<()> {
        let now = super::now();
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(now + RESET_TTL)
            .execute(&mut *tx)
            .await?;
            enqueue_mail!(tx, user_id, mail);
            tx.commit().await?;
        });
        self.wake_outbox_relay();
        Ok(())
    }

    /// Uses a reset token: sets the new password hash, revokes every access token and every
    /// other reset token of the account. `None` for an unknown, used or expired token.
    pub async fn confirm_password_reset(
        &self,
        token_hash: &str,
        new_hash: &str,
    ) -> StoreResult<Option<(Uuid, Standing)>> {
        let now = super::now();
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let user_id: Option<Uuid> = sqlx::query_scalar(
                "UPDATE password_resets SET used_at = $2
                 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
                 RETURNING user_id",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(user_id) = user_id else { return Ok(None) };
            sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL")
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (generation, deactivated): (i64, bool) = sqlx::query_as(
                "UPDATE users SET password_hash = $2, token_generation = token_generation + 1
                 WHERE id = $1
                 RETURNING token_generation, (deactivated_at IS NOT NULL OR deleted_at IS NOT NULL)",
            )
            .bind(user_id)
            .bind(new_hash)
            .fetch_one(&mut *tx)
            .await?;
            append_audit!(tx, &Audit::own(user_id, "password_reset", None));
            tx.commit().await?;
            Some((user_id, Standing { generation, deactivated }))
        }))
    }

    /// Deletes an account: it can no longer log in, its name becomes `deleted-…` (in its
    /// messages too), its e-mail, two-factor and memberships of contacts and blocks go. Its
    /// messages are then deleted by the caller, as by `DELETE …/messages/{id}`.
    pub async fn delete_account(&self, user_id: Uuid, audit: &Audit) -> StoreResult<Standing> {
        let name = format!("deleted-{}", user_id.simple());
        let now = super::now();
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let (generation,): (i64,) = sqlx::query_as(
                "UPDATE users SET username = $2, username_key = $2, email = NULL,
                        totp_secret = NULL, totp_pending_secret = NULL, is_admin = FALSE,
                        deleted_at = $3, token_generation = token_generation + 1
                 WHERE id = $1 RETURNING token_generation",
            )
            .bind(user_id)
            .bind(&name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for sql in [
                "UPDATE messages SET sender_username = $2 WHERE sender_id = $1",
            ] {
                sqlx::query(sql).bind(user_id).bind(&name).execute(&mut *tx).await?;
            }
            for sql in [
                "DELETE FROM recovery_codes WHERE user_id = $1",
                "DELETE FROM password_resets WHERE user_id = $1",
                "DELETE FROM contacts WHERE user_id = $1 OR contact_id = $1",
                "DELETE FROM contact_requests WHERE from_id = $1 OR to_id = $1",
                "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
            ] {
                sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
            }
            append_audit!(tx, audit);
            tx.commit().await?;
            Standing { generation, deactivated: true }
        }))
    }

    /// The (room, message) ids of the account's messages not deleted yet.
    pub async fn undeleted_messages_of(&self, user_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT room_id, id FROM messages WHERE sender_id = $1 AND deleted_at IS NULL
                 ORDER BY room_id, seq",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// What the server holds about an account beyond its rooms and contacts (which the
    /// caller adds): its messages, its reports and its audit entries.
    pub async fn export_of(&self, user_id: Uuid) -> StoreResult<Value> {
        type MessageRow = (
            Uuid,
            Uuid,
            i64,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        type ReportRow = (
            Uuid,
            String,
            Option<Uuid>,
            Option<Uuid>,
            Uuid,
            String,
            String,
            DateTime<Utc>,
        );
        type AuditRow = (i64, DateTime<Utc>, String, Option<String>, Option<String>);
        let target = format!("user:{user_id}");
        let (messages, reports, audit) = with_pool!(self, pool => {
            let messages: Vec<MessageRow> = sqlx::query_as(
                "SELECT room_id, id, seq, content, created_at, edited_at, deleted_at FROM messages
                 WHERE sender_id = $1 ORDER BY created_at, id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            let reports: Vec<ReportRow> = sqlx::query_as(
                "SELECT id, kind, room_id, message_id, target_user_id, reason, status, created_at
                 FROM reports WHERE reporter_id = $1 ORDER BY created_at, id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            let audit: Vec<AuditRow> = sqlx::query_as(
                "SELECT id, at, action, target, ip FROM audit_log
                 WHERE actor_id = $1 OR target = $2 ORDER BY id",
            )
            .bind(user_id)
            .bind(&target)
            .fetch_all(pool)
            .await?;
            (messages, reports, audit)
        });
        let messages = messages
            .into_iter()
            .map(
                |(room_id, id, seq, stored, created_at, edited_at, deleted_at)| {
                    let content = self.open_content(room_id, id, stored)?;
                    Ok(json!({
                        "room_id": room_id, "id": id, "seq": seq, "content": content,
                        "created_at": created_at, "edited_at": edited_at, "deleted_at": deleted_at,
                    }))
                },
            )
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(json!({
            "messages": messages,
            "reports": reports.into_iter().map(|(id, kind, room_id, message_id, target_user_id, reason, status, created_at)| json!({
                "id": id, "kind": kind, "room_id": room_id, "message_id": message_id,
                "target_user_id": target_user_id, "reason": reason, "status": status,
                "created_at": created_at,
            })).collect::<Vec<_>>(),
            "audit": audit.into_iter().map(|(id, at, action, target, ip)| json!({
                "id": id, "at": at, "action": action, "target": target, "ip": ip,
            })).collect::<Vec<_>>(),
        }))
    }
}
