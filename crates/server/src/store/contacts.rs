//! Contacts, contact requests and blocks.

use chrono::{DateTime, Utc};
use nebula_wire::{Contact, ContactRequest, ContactRequestStatus, User};
use uuid::Uuid;

use super::{Store, StoreResult, with_pool, with_writer};

/// Makes two users contacts (a row each way) inside a transaction.
macro_rules! insert_contacts {
    ($tx:ident, $a:expr, $b:expr, $since:expr) => {
        for (user, contact) in [($a, $b), ($b, $a)] {
            sqlx::query(
                "INSERT INTO contacts (user_id, contact_id, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(contact)
            .bind($since)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// Serializes every change between two users (requests, accepting, blocking) on both
/// backends: a no-op update of their two `users` rows, lower id first so two transactions
/// never wait on each other crosswise. SQLite has one writer anyway; on PostgreSQL this is what
/// keeps two users asking each other at once from leaving two pending requests, or a request
/// from slipping in beside a block.
macro_rules! lock_pair {
    ($tx:ident, $a:expr, $b:expr) => {
        let (low, high) = if $a < $b { ($a, $b) } else { ($b, $a) };
        for id in [low, high] {
            sqlx::query("UPDATE users SET username = username WHERE id = $1")
                .bind(id)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

pub(super) use lock_pair;

/// What asking `to` to become a contact did.
#[derive(Debug)]
pub enum RequestOutcome {
    /// A new pending request.
    Created(ContactRequest),
    /// The same request was already pending: it is returned unchanged.
    AlreadyPending(ContactRequest),
    /// `to` had already asked: the two are contacts now.
    Accepted(ContactRequest),
    AlreadyContacts,
    /// One of the two has blocked the other.
    Blocked,
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: Uuid,
    created_at: DateTime<Utc>,
    from_id: Uuid,
    from_username: String,
    from_created_at: DateTime<Utc>,
    to_id: Uuid,
    to_username: String,
    to_created_at: DateTime<Utc>,
}

impl From<RequestRow> for ContactRequest {
    fn from(row: RequestRow) -> Self {
        ContactRequest {
            id: row.id,
            from: User {
                id: row.from_id,
                username: row.from_username,
                created_at: row.from_created_at,
            },
            to: User {
                id: row.to_id,
                username: row.to_username,
                created_at: row.to_created_at,
            },
            status: ContactRequestStatus::Pending,
            created_at: row.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: Uuid,
    username: String,
    created_at: DateTime<Utc>,
    since: DateTime<Utc>,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Contact {
            user: User {
                id: row.id,
                username: row.username,
                created_at: row.created_at,
            },
            since: row.since,
        }
    }
}

macro_rules! request_select {
    () => {
        "SELECT c.id, c.created_at, f.id AS from_id, f.username AS from_username,
                f.created_at AS from_created_at, t.id AS to_id, t.username AS to_username,
                t.created_at AS to_created_at
         FROM contact_requests c JOIN users f ON f.id = c.from_id JOIN users t ON t.id = c.to_id"
    };
}

/// Whether either of `$a`, `$b` (bound as `$1`, `$2`) has blocked the other.
pub(super) const BLOCKED_EITHER: &str = "SELECT EXISTS (SELECT 1 FROM blocks
    WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1))";

pub(super) const ARE_CONTACTS: &str =
    "SELECT EXISTS (SELECT 1 FROM contacts WHERE user_id = $1 AND contact_id = $2)";

impl Store {
    /// Whether either user has blocked the other.
    pub async fn blocked_either(&self, a: Uuid, b: Uuid) -> StoreResult<bool> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar(BLOCKED_EITHER).bind(a).bind(b).fetch_one(pool).await?
        }))
    }

    pub async fn are_contacts(&self, a: Uuid, b: Uuid) -> StoreResult<bool> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar(ARE_CONTACTS).bind(a).bind(b).fetch_one(pool).await?
        }))
    }

    /// `from` asks `to` to become contacts; if `to` already asked `from`, they become contacts
    /// at once. Checked and written in one transaction.
    #[tracing::instrument(skip_all, fields(user_id = %from.id, to = %to.id))]
    pub async fn request_contact(&self, from: &User, to: &User) -> StoreResult<RequestOutcome> {
        let now = super::now();
        let new_id = Uuid::now_v7();
        let outcome = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_pair!(tx, from.id, to.id);
            let blocked: bool = sqlx::query_scalar(BLOCKED_EITHER).bind(from.id).bind(to.id).fetch_one(&mut *tx).await?;
            let contacts: bool = sqlx::query_scalar(ARE_CONTACTS).bind(from.id).bind(to.id).fetch_one(&mut *tx).await?;
            let reverse: Option<Uuid> = sqlx::query_scalar(
                "DELETE FROM contact_requests WHERE from_id = $1 AND to_id = $2 RETURNING id",
            )
            .bind(to.id)
            .bind(from.id)
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = if blocked {
                RequestOutcome::Blocked
            } else if contacts {
                RequestOutcome::AlreadyContacts
            } else if let Some(id) = reverse {
                insert_contacts!(tx, from.id, to.id, now);
                RequestOutcome::Accepted(ContactRequest {
                    id,
                    from: from.clone(),
                    to: to.clone(),
                    status: ContactRequestStatus::Accepted,
                    created_at: now,
                })
            } else {
                let inserted = sqlx::query(
                    "INSERT INTO contact_requests (id, from_id, to_id, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(new_id)
                .bind(from.id)
                .bind(to.id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                let row: RequestRow = sqlx::query_as(concat!(request_select!(), " WHERE c.from_id = $1 AND c.to_id = $2"))
                    .bind(from.id)
                    .bind(to.id)
                    .fetch_one(&mut *tx)
                    .await?;
                if inserted {
                    RequestOutcome::Created(row.into())
                } else {
                    RequestOutcome::AlreadyPending(row.into())
                }
            };
            if matches!(outcome, RequestOutcome::Blocked | RequestOutcome::AlreadyContacts) {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            outcome
        });
        Ok(outcome)
    }

    /// Pending requests to and from `user`, oldest first.
    pub async fn contact_requests_of(
        &self,
        user: Uuid,
    ) -> StoreResult<(Vec<ContactRequest>, Vec<ContactRequest>)> {
        let (incoming, outgoing): (Vec<RequestRow>, Vec<RequestRow>) = with_pool!(self, pool => {
            let incoming = sqlx::query_as(concat!(request_select!(), " WHERE c.to_id = $1 ORDER BY c.created_at, c.id"))
                .bind(user)
                .fetch_all(pool)
                .await?;
            let outgoing = sqlx::query_as(concat!(request_select!(), " WHERE c.from_id = $1 ORDER BY c.created_at, c.id"))
                .bind(user)
                .fetch_all(pool)
                .await?;
            (incoming, outgoing)
        });
        Ok((
            incoming.into_iter().map(Into::into).collect(),
            outgoing.into_iter().map(Into::into).collect(),
        ))
    }

    /// The recipient accepts a request: the two become contacts. `None` if there is no such
    /// pending request to `recipient`.
    #[tracing::instrument(skip(self))]
    pub async fn accept_contact_request(
        &self,
        request_id: Uuid,
        recipient: Uuid,
    ) -> StoreResult<Option<Contact>> {
        let now = super::now();
        let contact = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let sender: Option<Uuid> =
                sqlx::query_scalar("SELECT from_id FROM contact_requests WHERE id = $1 AND to_id = $2")
                    .bind(request_id)
                    .bind(recipient)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(sender) = sender else { return Ok(None) };
            lock_pair!(tx, sender, recipient);
            // Again under the lock: a block may have ended the request meanwhile.
            let from: Option<Uuid> = sqlx::query_scalar(
                "DELETE FROM contact_requests WHERE id = $1 AND to_id = $2 RETURNING from_id",
            )
            .bind(request_id)
            .bind(recipient)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(from) = from else { return Ok(None) };
            insert_contacts!(tx, from, recipient, now);
            let row: ContactRow = sqlx::query_as(
                "SELECT u.id, u.username, u.created_at, c.since FROM contacts c JOIN users u ON u.id = c.contact_id
                 WHERE c.user_id = $1 AND c.contact_id = $2",
            )
            .bind(recipient)
            .bind(from)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            row
        });
        Ok(Some(contact.into()))
    }

    /// The recipient declines a request; `false` if there is no such pending request to them.
    pub async fn decline_contact_request(
        &self,
        request_id: Uuid,
        recipient: Uuid,
    ) -> StoreResult<bool> {
        Ok(with_writer!(self, pool => {
            sqlx::query("DELETE FROM contact_requests WHERE id = $1 AND to_id = $2")
                .bind(request_id)
                .bind(recipient)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    /// `user`'s contacts, by username.
    pub async fn contacts_of(&self, user: Uuid) -> StoreResult<Vec<Contact>> {
        let rows: Vec<ContactRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.id, u.username, u.created_at, c.since FROM contacts c JOIN users u ON u.id = c.contact_id
                 WHERE c.user_id = $1 ORDER BY u.username_key",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Ends a contact (both directions); nothing happens if there was none.
    pub async fn remove_contact(&self, user: Uuid, other: Uuid) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "DELETE FROM contacts WHERE (user_id = $1 AND contact_id = $2) OR (user_id = $2 AND contact_id = $1)",
            )
            .bind(user)
            .bind(other)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// `blocker` blocks `blocked`: any contact between them and any pending request either way
    /// end in the same transaction.
    #[tracing::instrument(skip(self))]
    pub async fn block(&self, blocker: Uuid, blocked: Uuid) -> StoreResult<()> {
        let now = super::now();
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_pair!(tx, blocker, blocked);
            sqlx::query(
                "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(blocker)
            .bind(blocked)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM contacts WHERE (user_id = $1 AND contact_id = $2) OR (user_id = $2 AND contact_id = $1)",
            )
            .bind(blocker)
            .bind(blocked)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM contact_requests WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)",
            )
            .bind(blocker)
            .bind(blocked)
            .execute(&mut *tx)
            .await?;
            // Their direct room's membership revision moves, under the room row's lock: every
            // writer's cached "is a member" for it is void, and a message commit of the room
            // either finished before this one or sees the block (`check_senders!`).
            let (low, high) = if blocker < blocked { (blocker, blocked) } else { (blocked, blocker) };
            sqlx::query(
                "UPDATE rooms SET member_rev = member_rev + 1
                 WHERE id = (SELECT room_id FROM direct_rooms WHERE user_low = $1 AND user_high = $2)",
            )
            .bind(low)
            .bind(high)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn unblock(&self, blocker: Uuid, blocked: Uuid) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
                .bind(blocker)
                .bind(blocked)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The users `blocker` has blocked, by username.
    pub async fn blocked_by(&self, blocker: Uuid) -> StoreResult<Vec<User>> {
        let rows: Vec<super::rows::UserRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.id, u.username, u.created_at FROM blocks b JOIN users u ON u.id = b.blocked_id
                 WHERE b.blocker_id = $1 ORDER BY u.username_key",
            )
            .bind(blocker)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// Up to `limit` users whose lowercased username starts with `prefix_key`, by username.
    ///
    /// A range on `username_key` in byte order, so an index serves it on both backends (the
    /// UNIQUE index on SQLite, `users_username_prefix` on PostgreSQL): usernames are
    /// `[a-z0-9_.-]` once lowercased, all below `~`, so `prefix~` bounds every match.
    pub async fn search_users(&self, prefix_key: &str, limit: i64) -> StoreResult<Vec<User>> {
        let upper = format!("{prefix_key}~");
        let rows: Vec<super::rows::UserRow> = match &self.backend {
            super::Backend::Sqlite { reader, .. } => {
                sqlx::query_as(
                    "SELECT id, username, created_at FROM users
                     WHERE username_key >= $1 AND username_key < $2
                       AND deactivated_at IS NULL AND deleted_at IS NULL
                     ORDER BY username_key LIMIT $3",
                )
                .bind(prefix_key)
                .bind(&upper)
                .bind(limit)
                .fetch_all(reader)
                .await?
            }
            super::Backend::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT id, username, created_at FROM users
                     WHERE username_key COLLATE \"C\" >= $1 AND username_key COLLATE \"C\" < $2
                       AND deactivated_at IS NULL AND deleted_at IS NULL
                     ORDER BY username_key COLLATE \"C\" LIMIT $3",
                )
                .bind(prefix_key)
                .bind(&upper)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows.into_iter().map(User::from).collect())
    }
}
