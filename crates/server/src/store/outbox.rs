//! The transactional outbox: membership notifications written with the change that caused
//! them, and the queries the relay (`crate::outbox`) moves them out with.
//!
//! Writing the event in the membership transaction is what makes notifications reliable: the
//! change and its event commit together or not at all, so a crash, a broker outage or a
//! notifier outage can delay an event but never lose one or invent one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nebula_notifier::PushStore;
use nebula_wire::notify::{
    CallNotification, DirectMessageNotification, MemberChange, MemberNotification,
    MentionNotification, Notification, UserRef,
};
use nebula_wire::{Message, User};
use sqlx::ConnectOptions as _;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Backend, Store, StoreError, StoreResult, with_pool, with_writer};

/// Inside a membership transaction `$tx`: reads the room's other members and, when there is
/// anyone to tell, writes the notification to the outbox.
///
/// A macro because the transaction's type differs per backend (it runs inside
/// `with_writer!`). Call it after the `UPDATE rooms` of the change: that statement locks the
/// room row until commit, so a room's events get outbox ids in commit order.
macro_rules! enqueue_member_change {
    ($tx:ident, $change:expr, $room_id:expr, $room_name:expr, $user:expr) => {{
        // Only members who want membership pushes: pushes on, and the room at level `all`,
        // or at no level chosen: the wire contract (Part 1) promises these pushes to every
        // member, so a member who never chose keeps getting them; choosing `mentions` or
        // `none` stops them. Decided here, in the change's transaction, so the notifier needs
        // no query per member.
        let recipients: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT m.user_id FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1 AND m.user_id <> $2 AND u.push_notifications
               AND COALESCE(m.notification_level, 'all') = 'all'
             ORDER BY m.joined_at, m.user_id",
        )
        .bind($room_id)
        .bind($user.id)
        .fetch_all(&mut *$tx)
        .await?;
        // Nobody left to tell (the last member left, or someone joined an empty room).
        if !recipients.is_empty() {
            let event = $crate::store::outbox::OutboxEvent::new(
                $change, $room_id, $room_name, $user, recipients,
            )?;
            $crate::store::outbox::insert_outbox_row!($tx, event, $room_id);
        }
    }};
}
pub(super) use enqueue_member_change;

/// Inserts an [`OutboxEvent`] inside transaction `$tx`, ordered with the other rows of
/// `$room_id` (the key in-process delivery keeps in order).
macro_rules! insert_outbox_row {
    ($tx:ident, $event:expr, $room_id:expr) => {{
        let event = $event;
        sqlx::query(
            "INSERT INTO outbox (event_id, room_id, payload, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 0, $4, $4)",
        )
        .bind(event.event_id)
        .bind($room_id)
        .bind(&event.payload)
        .bind(event.created_at)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(super) use insert_outbox_row;

/// A notification ready to be inserted: its id, time and serialized payload.
pub(crate) struct OutboxEvent {
    pub event_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub payload: String,
}

impl OutboxEvent {
    /// Builds the version-1 `MemberNotification` of `user`'s `change` in the room.
    pub(crate) fn new(
        change: MemberChange,
        room_id: Uuid,
        room_name: String,
        user: &User,
        recipients: Vec<Uuid>,
    ) -> StoreResult<Self> {
        let created_at = super::now();
        let notification = MemberNotification {
            version: MemberNotification::VERSION,
            event_id: Uuid::now_v7(),
            change,
            room_id,
            room_name,
            user: user.clone(),
            recipients,
            occurred_at: created_at,
        };
        Self::of(&Notification::Member(notification), created_at)
    }

    /// The notification of a new message in a direct room, for its other user.
    pub(crate) fn direct_message(message: &Message, recipient: Uuid) -> StoreResult<Self> {
        let created_at = super::now();
        let notification = DirectMessageNotification {
            version: DirectMessageNotification::VERSION,
            event_id: Uuid::now_v7(),
            room_id: message.room_id,
            message_id: message.id,
            seq: message.seq,
            sender: UserRef {
                id: message.sender_id,
                username: message.sender_username.clone(),
            },
            recipient,
            preview: DirectMessageNotification::preview_of(&message.content),
            occurred_at: message.created_at,
        };
        Self::of(&Notification::DirectMessage(notification), created_at)
    }

    /// The notification of `recipient`'s mention in a message of the group room `room_name`.
    pub(crate) fn mention(
        message: &Message,
        room_name: &str,
        recipient: Uuid,
    ) -> StoreResult<Self> {
        let created_at = super::now();
        let notification = MentionNotification {
            version: MentionNotification::VERSION,
            event_id: Uuid::now_v7(),
            room_id: message.room_id,
            room_name: room_name.to_owned(),
            message_id: message.id,
            seq: message.seq,
            sender: UserRef {
                id: message.sender_id,
                username: message.sender_username.clone(),
            },
            recipient,
            preview: DirectMessageNotification::preview_of(&message.content),
            occurred_at: message.created_at,
        };
        Self::of(&Notification::Mention(notification), created_at)
    }

    fn of(notification: &Notification, created_at: DateTime<Utc>) -> StoreResult<Self> {
        let payload = notification
            .to_json()
            .map_err(|_| StoreError::Invariant("a notification must serialize"))?;
        Ok(OutboxEvent {
            event_id: notification.event_id(),
            created_at,
            payload,
        })
    }
}

/// One live outbox row, as the relay reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// Publication order.
    pub id: i64,
    pub event_id: Uuid,
    pub room_id: Uuid,
    /// The notification's JSON (`nebula_wire::notify::Notification`).
    pub payload: String,
    /// Failed delivery attempts so far (in-process delivery only).
    pub attempts: i32,
}

/// The right to relay the outbox, held by one node at a time.
///
/// On PostgreSQL it is a session-level advisory lock on a connection of its own (outside the
/// pool, so it is never handed to a request and never returned with the lock still held): if
/// this process dies or loses the connection, the database releases the lock and another
/// node takes over. SQLite is single-node, so its lease is implicit.
pub struct OutboxLease {
    connection: Option<PgConnection>,
}

/// The advisory lock key, in PostgreSQL's two-`int4` key space, which never overlaps the
/// single-`bigint` space sqlx's migration lock uses. The lock is per database.
const LEASE_KEY: (i32, i32) = (0x6e65_6275, 0x6f75_7462); // "nebu", "outb"

/// How long a lease check may take before the lease is considered lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl OutboxLease {
    /// Whether the lease is still ours: its connection answers, so its session (and the
    /// lock) is alive. A connection that does not answer in time counts as lost.
    pub async fn still_held(&mut self) -> bool {
        let Some(connection) = self.connection.as_mut() else {
            return true;
        };
        let ping = sqlx::query("SELECT 1").execute(&mut *connection);
        matches!(
            tokio::time::timeout(LEASE_CHECK_TIMEOUT, ping).await,
            Ok(Ok(_))
        )
    }

    /// Gives the lease up at once (instead of when the connection times out).
    pub async fn release(self) {
        if let Some(connection) = self.connection {
            use sqlx::Connection as _;
            let _ = connection.close().await;
        }
    }
}

impl Store {
    /// Queues the Web Push of an incoming call for a callee with no open connection (see
    /// `crate::calls`). Its own small transaction: a call is not stored anywhere else. Rows
    /// are keyed (for in-process ordering) by the callee.
    pub async fn enqueue_incoming_call(&self, event: CallNotification) -> StoreResult<()> {
        let callee = event.callee;
        let event = OutboxEvent::of(&Notification::IncomingCall(event), super::now())?;
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_outbox_row!(tx, &event, callee);
            tx.commit().await?;
        });
        self.wake_outbox_relay();
        Ok(())
    }

    /// Tells this node's relay that an outbox row was just committed, so it need not wait for
    /// its next poll. Rows committed by other nodes are found by polling.
    pub(super) fn wake_outbox_relay(&self) {
        // `notify_one` keeps a permit when the relay is busy, so no wake-up is lost.
        self.outbox_wake.notify_one();
    }

    /// The signal [`Store::add_member`] and [`Store::remove_member`] raise after committing.
    pub fn outbox_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.outbox_wake)
    }

    /// Tries to become the node that relays the outbox; `None` if another node is.
    pub async fn try_outbox_lease(&self) -> StoreResult<Option<OutboxLease>> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(Some(OutboxLease { connection: None }));
        };
        let mut connection = pool.connect_options().connect().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LEASE_KEY.0)
            .bind(LEASE_KEY.1)
            .fetch_one(&mut connection)
            .await?;
        if locked {
            return Ok(Some(OutboxLease {
                connection: Some(connection),
            }));
        }
        use sqlx::Connection as _;
        let _ = connection.close().await;
        Ok(None)
    }

    /// Up to `limit` live rows in publication order, whatever their schedule: the broker
    /// relay publishes strictly in order and retries the head until it goes out.
    pub async fn outbox_head(&self, limit: i64) -> StoreResult<Vec<OutboxRow>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, OutboxRow>(
                "SELECT id, event_id, room_id, payload, attempts FROM outbox
                 WHERE dead_at IS NULL ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Up to `limit` live rows due by `now`, in publication order: in-process delivery skips
    /// rows waiting for a retry instead of blocking on them.
    pub async fn outbox_due(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<Vec<OutboxRow>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as::<_, OutboxRow>(
                "SELECT id, event_id, room_id, payload, attempts FROM outbox
                 WHERE dead_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Removes a row that is out (confirmed by the broker, or delivered).
    pub async fn outbox_done(&self, id: i64) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub async fn outbox_retry_at(
        &self,
        id: i64,
        attempts: i32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(attempts)
            .bind(next_attempt_at)
            .bind(error)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Gives up on a row: it stays in the table, marked dead, for an operator.
    pub async fn outbox_dead(&self, id: i64, attempts: i32, error: &str) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "UPDATE outbox SET attempts = $2, last_error = $3, dead_at = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(attempts)
            .bind(error)
            .bind(super::now())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Live rows waiting to go out (the `nebula_outbox_backlog` gauge).
    pub async fn outbox_backlog(&self) -> StoreResult<i64> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE dead_at IS NULL")
                .fetch_one(pool)
                .await?
        }))
    }

    /// The notification service's store on this database and its pools (migrating its
    /// tables), for in-process delivery. On SQLite it shares the single writer connection,
    /// since it writes (claims, dedupe) and SQLite admits one writer.
    pub async fn push_store(&self) -> nebula_notifier::Result<PushStore> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => PushStore::from_sqlite(writer.clone()).await,
            Backend::Postgres(pool) => PushStore::from_postgres(pool.clone()).await,
        }
    }
}
