//! Direct rooms: the one private room of a pair of users.

use nebula_wire::{Room, User};
use uuid::Uuid;

use super::contacts::{ARE_CONTACTS, BLOCKED_EITHER, lock_pair};
use super::rooms::{RoomRow, member_room_select, peer_join};
use super::{Store, StoreResult, with_pool, with_writer};

/// What [`Store::open_direct_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectRoom {
    /// The pair's room; `created` when this call made it.
    Opened { room_id: Uuid, created: bool },
    /// Not created: one of the two has blocked the other, or `contacts_only` was asked and
    /// they are not contacts.
    Refused,
}

/// A pair of users in the order `direct_rooms` keys them (lower id first).
fn ordered<'a>(a: &'a User, b: &'a User) -> (&'a User, &'a User) {
    if a.id < b.id { (a, b) } else { (b, a) }
}

impl Store {
    /// The direct room of `creator` and `peer`, created if they have none.
    ///
    /// Whether they may have one (no block either way; contacts, with `contacts_only`) is
    /// checked inside the creating transaction, after locking both users' rows the way
    /// blocking and contact changes do (`lock_pair!`): a block committed concurrently is
    /// either seen here or waits for this room and then applies to it. An existing room is
    /// returned as it is (the caller checks for it first; a room cannot be created twice).
    ///
    /// Race-free across processes: the room is inserted with its `direct_rooms` row in one
    /// transaction, and the pair's primary key lets only one such transaction commit. A loser
    /// (`ON CONFLICT DO NOTHING` waits for the winner on PostgreSQL; SQLite has one writer)
    /// rolls its room back and reads the winner's.
    #[tracing::instrument(skip_all, fields(user_id = %creator.id, peer_id = %peer.id))]
    pub async fn open_direct_room(
        &self,
        creator: &User,
        peer: &User,
        contacts_only: bool,
    ) -> StoreResult<DirectRoom> {
        let (low, high) = ordered(creator, peer);
        if let Some(existing) = self.direct_room_between(low.id, high.id).await? {
            return Ok(DirectRoom::Opened {
                room_id: existing,
                created: false,
            });
        }
        let room_id = Uuid::now_v7();
        let created_at = super::now();
        let name = format!("{}, {}", low.username, high.username);
        let inserted = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_pair!(tx, low.id, high.id);
            let blocked: bool = sqlx::query_scalar(BLOCKED_EITHER)
                .bind(low.id)
                .bind(high.id)
                .fetch_one(&mut *tx)
                .await?;
            let allowed = !blocked
                && (!contacts_only
                    || sqlx::query_scalar::<_, bool>(ARE_CONTACTS)
                        .bind(creator.id)
                        .bind(peer.id)
                        .fetch_one(&mut *tx)
                        .await?);
            if !allowed {
                tx.rollback().await?;
                return Ok(DirectRoom::Refused);
            }
            sqlx::query(
                "INSERT INTO rooms (id, name, name_key, description, is_private, owner_id, member_count,
                                    last_seq, created_at, kind)
                 VALUES ($1, $2, $3, NULL, $4, $5, 2, 0, $6, 'direct')",
            )
            .bind(room_id)
            .bind(&name)
            .bind(name.to_lowercase())
            .bind(true)
            .bind(creator.id)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            let claimed = sqlx::query(
                "INSERT INTO direct_rooms (user_low, user_high, room_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(low.id)
            .bind(high.id)
            .bind(room_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                // The creator owns it so that "a room with members has an owner" still holds;
                // no membership route applies to direct rooms, so the role grants nothing.
                for (user, role) in [(creator.id, "owner"), (peer.id, "member")] {
                    sqlx::query(
                        "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(room_id)
                    .bind(user)
                    .bind(role)
                    .bind(created_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            claimed
        });
        if inserted {
            return Ok(DirectRoom::Opened {
                room_id,
                created: true,
            });
        }
        // On the writer pool: on SQLite a reader could still be on a snapshot without the
        // winner's row.
        let winner: Option<Uuid> = with_writer!(self, pool => {
            sqlx::query_scalar("SELECT room_id FROM direct_rooms WHERE user_low = $1 AND user_high = $2")
                .bind(low.id)
                .bind(high.id)
                .fetch_optional(pool)
                .await?
        });
        let winner = winner.ok_or(super::StoreError::Invariant(
            "a direct room's pair conflicted but is missing",
        ))?;
        Ok(DirectRoom::Opened {
            room_id: winner,
            created: false,
        })
    }

    /// The direct room of two users, if they have one.
    pub async fn direct_room_between(&self, a: Uuid, b: Uuid) -> StoreResult<Option<Uuid>> {
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT room_id FROM direct_rooms WHERE user_low = $1 AND user_high = $2")
                .bind(low)
                .bind(high)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The caller's direct rooms as a member sees them, most recent message first (a room
    /// without messages counts from its creation).
    pub async fn direct_rooms_of(&self, user: Uuid, unread_window: i64) -> StoreResult<Vec<Room>> {
        let sql = concat!(
            member_room_select!(),
            " WHERE r.kind = 'direct'
             ORDER BY COALESCE((SELECT last.created_at FROM messages last
                                WHERE last.room_id = r.id AND last.seq = r.last_seq), r.created_at) DESC,
                      r.id DESC"
        );
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, RoomRow>(sql).bind(user).bind(unread_window).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|row| row.into_record().room).collect())
    }

    /// Whether a message into this room must be refused because it is a direct room whose two
    /// users are blocked (either way). Read from the database on every send, so a block made
    /// on any node applies at once.
    pub async fn direct_room_blocked(&self, room_id: Uuid) -> StoreResult<bool> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM direct_rooms d JOIN blocks b
                   ON (b.blocker_id = d.user_low AND b.blocked_id = d.user_high)
                   OR (b.blocker_id = d.user_high AND b.blocked_id = d.user_low)
                 WHERE d.room_id = $1)",
            )
            .bind(room_id)
            .fetch_one(pool)
            .await?
        }))
    }
}
