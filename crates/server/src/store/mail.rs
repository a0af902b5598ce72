//! E-mail: mails written to the outbox (with the change that causes them), address
//! verification codes and the unsubscribe switch.
//!
//! A mail is an outbox row like a membership notification: the relay moves it to RabbitMQ
//! (and `nebula-notifier` sends it) or sends it in-process, with the same retries, dead
//! letters and dedupe by `event_id`. Its `room_id` column holds the recipient's user id: the
//! relay's per-room ordering then keeps one person's mails in order.

use chrono::{DateTime, Utc};
use nebula_wire::Account;
use nebula_wire::notify::{MailContent, MailNotification, Notification};
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, with_writer};

/// How long a verification code is valid.
pub const VERIFICATION_TTL: chrono::Duration = chrono::Duration::minutes(30);

/// Wrong guesses allowed per code before it stops working.
pub const VERIFICATION_ATTEMPTS: i32 = 5;

/// Inside a transaction `$tx`: writes `$mail` (a [`MailContent`]) for `$user_id` to the outbox.
macro_rules! enqueue_mail {
    ($tx:ident, $user_id:expr, $mail:expr) => {{
        let (event_id, created_at, payload) = $crate::store::mail::mail_payload($user_id, $mail)?;
        sqlx::query(
            "INSERT INTO outbox (event_id, room_id, payload, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 0, $4, $4)",
        )
        .bind(event_id)
        .bind($user_id)
        .bind(payload)
        .bind(created_at)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use enqueue_mail;

/// The serialized [`MailNotification`] of a new mail: (event id, time, JSON).
pub(crate) fn mail_payload(
    user_id: Uuid,
    mail: &MailContent,
) -> StoreResult<(Uuid, DateTime<Utc>, String)> {
    mail_payload_with_id(user_id, mail, Uuid::now_v7())
}

/// [`mail_payload`] with a chosen `event_id`: an idempotency key, for a mail that must not go
/// out twice even if composed twice (the digest).
pub(crate) fn mail_payload_with_id(
    user_id: Uuid,
    mail: &MailContent,
    event_id: Uuid,
) -> StoreResult<(Uuid, DateTime<Utc>, String)> {
    let occurred_at = super::now();
    let notification = MailNotification {
        version: MailNotification::VERSION,
        event_id,
        user_id,
        mail: mail.clone(),
        occurred_at,
    };
    let event_id = notification.event_id;
    let payload = Notification::Mail(notification)
        .to_json()
        .map_err(|_| StoreError::Invariant("a mail notification must serialize"))?;
    Ok((event_id, occurred_at, payload))
}

/// A pending code: (sent to, code hash, wrong guesses, expires at, the account's address now).
type PendingCode = (String, String, i32, DateTime<Utc>, Option<String>);

/// What [`Store::confirm_email`] found.
#[derive(Debug)]
pub enum EmailConfirmation {
    Confirmed(Account),
    /// No live code, a wrong one, one sent to another address, or too many guesses.
    Invalid,
}

impl Store {
    /// Stores a verification code (its hash) for the account's current address, replacing
    /// any earlier one, and queues the mail carrying it, in one transaction.
    pub async fn start_email_verification(
        &self,
        user_id: Uuid,
        email: &str,
        code_hash: &str,
        mail: &MailContent,
    ) -> StoreResult<()> {
        let now = super::now();
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO email_verifications (user_id, email, code_hash, attempts, expires_at)
                 VALUES ($1, $2, $3, 0, $4)
                 ON CONFLICT (user_id) DO UPDATE SET email = excluded.email,
                     code_hash = excluded.code_hash, attempts = 0, expires_at = excluded.expires_at",
            )
            .bind(user_id)
            .bind(email)
            .bind(code_hash)
            .bind(now + VERIFICATION_TTL)
            .execute(&mut *tx)
            .await?;
            enqueue_mail!(tx, user_id, mail);
            tx.commit().await?;
        });
        self.wake_outbox_relay();
        Ok(())
    }

    /// Checks a verification code: the right one, in time, for the address the account still
    /// has, marks the address verified and uses the code up; a wrong one counts a guess.
    pub async fn confirm_email(
        &self,
        user_id: Uuid,
        code_hash: &str,
    ) -> StoreResult<EmailConfirmation> {
        let now = super::now();
        let confirmed = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<PendingCode> = sqlx::query_as(
                "SELECT v.email, v.code_hash, v.attempts, v.expires_at, u.email
                 FROM email_verifications v JOIN users u ON u.id = v.user_id
                 WHERE v.user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((sent_to, stored_hash, attempts, expires_at, current)) = row else {
                return Ok(EmailConfirmation::Invalid);
            };
            let usable = expires_at > now
                && attempts < VERIFICATION_ATTEMPTS
                && current.as_deref() == Some(sent_to.as_str());
            if usable && stored_hash == code_hash {
                sqlx::query("DELETE FROM email_verifications WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE users SET email_verified = TRUE WHERE id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                true
            } else {
                if usable {
                    sqlx::query(
                        "UPDATE email_verifications SET attempts = attempts + 1 WHERE user_id = $1",
                    )
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query("DELETE FROM email_verifications WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                false
            }
        });
        if !confirmed {
            return Ok(EmailConfirmation::Invalid);
        }
        Ok(match self.account(user_id).await? {
            Some(account) => EmailConfirmation::Confirmed(account),
            None => EmailConfirmation::Invalid,
        })
    }

    /// Turns notification e-mail off (the one-click unsubscribe); `false` for no such user.
    pub async fn unsubscribe_email(&self, user_id: Uuid) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("UPDATE users SET email_notifications = FALSE WHERE id = $1")
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }
}
