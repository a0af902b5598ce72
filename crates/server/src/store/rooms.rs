//! Rooms and memberships.

use chrono::{DateTime, Utc};
use nebula_wire::notify::MemberChange;
use nebula_wire::{Member, Role, Room, RoomKind, User};
use uuid::Uuid;

use super::outbox::enqueue_member_change;
use super::rows::{MemberRow, parse_role, role_str};
use super::{Store, StoreResult, with_pool, with_writer};

#[derive(Debug, sqlx::FromRow)]
pub(super) struct RoomRow {
    id: Uuid,
    name: String,
    description: Option<String>,
    is_private: bool,
    owner_id: Uuid,
    member_count: i64,
    last_seq: i64,
    created_at: DateTime<Utc>,
    viewer_role: Option<String>,
    kind: String,
    /// For direct rooms: the other user (`peer_join!`).
    peer_id: Option<Uuid>,
    peer_username: Option<String>,
    peer_created_at: Option<DateTime<Utc>>,
    /// Only in member views (`member_room_select!`).
    #[sqlx(default)]
    viewer_last_read_seq: Option<i64>,
    #[sqlx(default)]
    viewer_unread: Option<i64>,
    /// The viewer's notification level as stored (`NULL`: the room kind's default).
    #[sqlx(default)]
    viewer_notification_level: Option<String>,
}

impl RoomRow {
    pub(super) fn into_record(self) -> RoomRecord {
        let member_view = self.viewer_last_read_seq.is_some();
        let kind = if self.kind == "direct" {
            RoomKind::Direct
        } else {
            RoomKind::Group
        };
        let notification_level = self.viewer_role.is_some().then(|| {
            super::notification_settings::effective_level(
                kind,
                self.viewer_notification_level.as_deref(),
            )
        });
        RoomRecord {
            viewer_role: self.viewer_role.as_deref().map(parse_role),
            last_seq: self.last_seq,
            room: Room {
                id: self.id,
                name: self.name,
                description: self.description,
                is_private: self.is_private,
                owner_id: self.owner_id,
                member_count: self.member_count,
                created_at: self.created_at,
                last_seq: member_view.then_some(self.last_seq),
                last_read_seq: self.viewer_last_read_seq,
                unread_count: self.viewer_unread,
                kind,
                peer: match (self.peer_id, self.peer_username, self.peer_created_at) {
                    (Some(id), Some(username), Some(created_at)) => Some(User {
                        id,
                        username,
                        created_at,
                    }),
                    _ => None,
                },
                notification_level,
            },
        }
    }
}

/// The other user of a direct room as the viewer (`$1`) sees it; NULLs for group rooms.
/// `direct_rooms.room_id` is unique, so this adds one index lookup per room.
macro_rules! peer_join {
    () => {
        " LEFT JOIN direct_rooms d ON d.room_id = r.id \
         LEFT JOIN users p ON p.id = CASE WHEN d.user_low = $1 THEN d.user_high ELSE d.user_low END"
    };
}
pub(super) use peer_join;

/// `rooms` columns plus the viewer's role (`$1` is the viewer's id), as `RoomRow` expects.
/// A macro so queries are `concat!`ed into static strings.
macro_rules! room_select {
    () => {
        concat!(
            "SELECT r.id, r.name, r.description, r.is_private, r.owner_id, r.member_count, \
         r.last_seq, r.created_at, m.role AS viewer_role, r.kind, \
         m.notification_level AS viewer_notification_level, \
         p.id AS peer_id, p.username AS peer_username, p.created_at AS peer_created_at \
         FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $1",
            peer_join!()
        )
    };
}
pub(super) use room_select;

/// `room_select!` plus what a member sees of their reading: `$2` is the unread window
/// (`UNREAD_COUNT_MAX`). The count is one range scan of the (room_id, seq) key over at most
/// that many rows after the member's last read seq, whatever the depth of history.
macro_rules! member_room_select {
    () => {
        concat!(
            "SELECT r.id, r.name, r.description, r.is_private, r.owner_id, r.member_count, \
         r.last_seq, r.created_at, m.role AS viewer_role, m.last_read_seq AS viewer_last_read_seq, \
         (SELECT COUNT(*) FROM messages msg WHERE msg.room_id = r.id \
            AND msg.seq > m.last_read_seq AND msg.seq <= m.last_read_seq + $2 \
            AND msg.sender_id <> $1 AND msg.deleted_at IS NULL) AS viewer_unread, r.kind, \
         m.notification_level AS viewer_notification_level, \
         p.id AS peer_id, p.username AS peer_username, p.created_at AS peer_created_at \
         FROM rooms r JOIN room_members m ON m.room_id = r.id AND m.user_id = $1",
            peer_join!()
        )
    };
}

pub(super) use member_room_select;

/// A room as one user sees it.
#[derive(Debug, Clone)]
pub struct RoomRecord {
    pub room: Room,
    /// Highest seq in the room, which is also its message count (seq has no gaps).
    pub last_seq: i64,
    /// The viewer's role, `None` if not a member.
    pub viewer_role: Option<Role>,
}

/// What the viewer may do with a room, derived from one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAccess {
    /// A private room the viewer is not in: it does not exist for them.
    Invisible,
    /// A public room the viewer has not joined: its details and members are readable.
    Outsider,
    Member(Role),
}

impl RoomRecord {
    pub fn access(&self) -> RoomAccess {
        match (self.viewer_role, self.room.is_private) {
            (Some(role), _) => RoomAccess::Member(role),
            (None, true) => RoomAccess::Invisible,
            (None, false) => RoomAccess::Outsider,
        }
    }
}

/// Result of adding a member.
#[derive(Debug, Clone)]
pub enum AddOutcome {
    Added(Member),
    AlreadyMember(Member),
}

impl Store {
    /// Creates a room with its creator as the owner member.
    #[tracing::instrument(skip(self, description))]
    pub async fn create_room(
        &self,
        owner: &User,
        name: &str,
        description: Option<&str>,
        is_private: bool,
    ) -> StoreResult<Room> {
        let room = Room {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            description: description.map(str::to_owned),
            is_private,
            owner_id: owner.id,
            member_count: 1,
            created_at: super::now(),
            // Its creator is a member, who has read everything there is.
            last_seq: Some(0),
            last_read_seq: Some(0),
            unread_count: Some(0),
            kind: RoomKind::Group,
            peer: None,
            notification_level: Some(nebula_wire::NotificationLevel::Mentions),
        };
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO rooms (id, name, name_key, description, is_private, owner_id, member_count, last_seq, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, 0, $7)",
            )
            .bind(room.id)
            .bind(&room.name)
            .bind(room.name.to_lowercase())
            .bind(&room.description)
            .bind(room.is_private)
            .bind(room.owner_id)
            .bind(room.created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)")
                .bind(room.id)
                .bind(owner.id)
                .bind(room.created_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(room)
    }

    /// The room as `viewer` sees it (with their role), or `None` if no such room exists.
    pub async fn room_for(&self, room_id: Uuid, viewer: Uuid) -> StoreResult<Option<RoomRecord>> {
        let sql = concat!(room_select!(), " WHERE r.id = $2");
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, RoomRow>(sql).bind(viewer).bind(room_id).fetch_optional(pool).await?
        });
        Ok(row.map(RoomRow::into_record))
    }

    /// One page of public rooms, newest first, optionally filtered by a name substring.
    pub async fn public_rooms(
        &self,
        name_contains: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<Room>, i64)> {
        let pattern = name_contains.map(|q| format!("%{}%", escape_like(&q.to_lowercase())));
        let list_sql = concat!(
            room_select!(),
            " WHERE NOT r.is_private AND ($2 IS NULL OR r.name_key LIKE $2 ESCAPE '\\')
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        );
        let count_sql = "SELECT COUNT(*) FROM rooms r
                         WHERE NOT r.is_private AND ($1 IS NULL OR r.name_key LIKE $1 ESCAPE '\\')";
        let (rows, total) = with_pool!(self, pool => {
            // Public listings have no viewer; the nil id matches no membership.
            let rows = sqlx::query_as::<_, RoomRow>(list_sql)
                .bind(Uuid::nil())
                .bind(&pattern)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(count_sql).bind(&pattern).fetch_one(pool).await?;
            (rows, total)
        });
        Ok((
            rows.into_iter().map(|row| row.into_record().room).collect(),
            total,
        ))
    }

    /// Every room `user` is a member of, most recently joined first, with their unread counts
    /// (exact within `unread_window` messages after their last read seq).
    pub async fn rooms_of(&self, user: Uuid, unread_window: i64) -> StoreResult<Vec<Room>> {
        let sql = concat!(
            member_room_select!(),
            " ORDER BY m.joined_at DESC, r.id DESC"
        );
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, RoomRow>(sql).bind(user).bind(unread_window).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|row| row.into_record().room).collect())
    }

    /// The room as a member sees it, with their unread count (see `rooms_of`); `None` if they
    /// are not a member.
    pub async fn room_of_member(
        &self,
        room_id: Uuid,
        user: Uuid,
        unread_window: i64,
    ) -> StoreResult<Option<Room>> {
        let sql = concat!(member_room_select!(), " WHERE r.id = $3");
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, RoomRow>(sql)
                .bind(user)
                .bind(unread_window)
                .bind(room_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|row| row.into_record().room))
    }

    /// The room's members in the order they joined.
    pub async fn members(&self, room_id: Uuid) -> StoreResult<Vec<Member>> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, MemberRow>(
                "SELECT m.user_id, u.username, m.role, m.joined_at
                 FROM room_members m JOIN users u ON u.id = m.user_id
                 WHERE m.room_id = $1 ORDER BY m.joined_at, m.user_id",
            )
            .bind(room_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(Member::from).collect())
    }

    /// Ids of the room's members.
    pub async fn member_ids(&self, room_id: Uuid) -> StoreResult<Vec<Uuid>> {
        Ok(with_pool!(self, pool => {
            sqlx::query_scalar("SELECT user_id FROM room_members WHERE room_id = $1")
                .bind(room_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Adds `user` with `role`; an existing membership is returned unchanged.
    #[tracing::instrument(skip(self, user), fields(user_id = %user.id))]
    pub async fn add_member(
        &self,
        room_id: Uuid,
        user: &User,
        role: Role,
    ) -> StoreResult<AddOutcome> {
        let joined_at = super::now();
        let added = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO room_members (room_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (room_id, user_id) DO NOTHING",
            )
            .bind(room_id)
            .bind(user.id)
            .bind(role_str(role))
            .bind(joined_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                // Locks the room row until commit, which keeps the room's outbox ids in
                // commit order (see the outbox migration).
                let room_name: String = sqlx::query_scalar(
                    "UPDATE rooms SET member_count = member_count + 1 WHERE id = $1 RETURNING name",
                )
                .bind(room_id)
                .fetch_one(&mut *tx)
                .await?;
                enqueue_member_change!(tx, MemberChange::Joined, room_id, room_name, user);
            }
            let row = sqlx::query_as::<_, MemberRow>(
                "SELECT m.user_id, u.username, m.role, m.joined_at
                 FROM room_members m JOIN users u ON u.id = m.user_id
                 WHERE m.room_id = $1 AND m.user_id = $2",
            )
            .bind(room_id)
            .bind(user.id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            (inserted, Member::from(row))
        });
        if added.0 {
            self.wake_outbox_relay();
        }
        Ok(match added {
            (true, member) => AddOutcome::Added(member),
            (false, member) => AddOutcome::AlreadyMember(member),
        })
    }

    /// Removes `user` from the room and returns the room's new membership revision, or `None`
    /// if they were not a member.
    ///
    /// When the owner leaves, ownership passes to the longest-standing admin, or else the
    /// longest-standing member, so a room with members always has an owner. The remaining
    /// members' notification goes to the outbox in the same transaction.
    #[tracing::instrument(skip(self, user), fields(user_id = %user.id))]
    /// `audit`: for a removal by someone else, its audit-log entry (written in the same
    /// transaction).
    pub async fn remove_member(
        &self,
        room_id: Uuid,
        user: &User,
        audit: Option<&super::Audit>,
    ) -> StoreResult<Option<i64>> {
        let user_id = user.id;
        let member_rev = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let removed_role: Option<String> =
                sqlx::query_scalar("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2 RETURNING role")
                    .bind(room_id)
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(role) = removed_role else { return Ok(None) };
            // Locks the room row until commit (outbox order, as in `add_member`; and message
            // commits of the room, which check their senders against `member_rev`).
            let (room_name, member_rev): (String, i64) = sqlx::query_as(
                "UPDATE rooms SET member_count = member_count - 1, member_rev = member_rev + 1
                 WHERE id = $1 RETURNING name, member_rev",
            )
            .bind(room_id)
            .fetch_one(&mut *tx)
            .await?;
            enqueue_member_change!(tx, MemberChange::Left, room_id, room_name, user);
            if let Some(audit) = audit {
                super::accounts::append_audit!(tx, audit);
            }
            if role == "owner" {
                let successor: Option<Uuid> = sqlx::query_scalar(
                    "SELECT user_id FROM room_members WHERE room_id = $1
                     ORDER BY CASE role WHEN 'admin' THEN 0 ELSE 1 END, joined_at, user_id LIMIT 1",
                )
                .bind(room_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(successor) = successor {
                    sqlx::query("UPDATE room_members SET role = 'owner' WHERE room_id = $1 AND user_id = $2")
                        .bind(room_id)
                        .bind(successor)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE rooms SET owner_id = $2 WHERE id = $1")
                        .bind(room_id)
                        .bind(successor)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            member_rev
        });
        self.wake_outbox_relay();
        Ok(Some(member_rev))
    }

    /// Changes a member's role; `None` if they are not a member. The owner's role is not
    /// changed here (callers refuse that before).
    #[tracing::instrument(skip(self))]
    pub async fn set_member_role(
        &self,
        room_id: Uuid,
        user_id: Uuid,
        role: Role,
        audit: &super::Audit,
    ) -> StoreResult<Option<Member>> {
        let row = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE room_members SET role = $3 WHERE room_id = $1 AND user_id = $2 AND role <> 'owner'",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(role_str(role))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let row = if changed == 1 {
                super::accounts::append_audit!(tx, audit);
                sqlx::query_as::<_, MemberRow>(
                    "SELECT m.user_id, u.username, m.role, m.joined_at
                     FROM room_members m JOIN users u ON u.id = m.user_id
                     WHERE m.room_id = $1 AND m.user_id = $2",
                )
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
            } else {
                None
            };
            tx.commit().await?;
            row
        });
        Ok(row.map(Member::from))
    }

    /// A member's role, `None` if they are not a member.
    pub async fn member_role(&self, room_id: Uuid, user_id: Uuid) -> StoreResult<Option<Role>> {
        let role: Option<String> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2")
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(role.as_deref().map(parse_role))
    }

    /// What a new subscription needs, read in one statement *after* the subscriber was
    /// registered: the room's last seq and rev, its membership revision, and whether the user is
    /// (still) a member. `None` for a room that does not exist.
    pub async fn subscription_state(
        &self,
        room_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<SubscriptionState>> {
        let row: Option<(i64, i64, i64, bool)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT r.last_seq, r.last_rev, r.member_rev,
                        EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = $2)
                 FROM rooms r WHERE r.id = $1",
            )
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(last_seq, last_rev, member_rev, is_member)| SubscriptionState {
                last_seq,
                last_rev,
                member_rev,
                is_member,
            },
        ))
    }

    /// Which of `users` are still members of the room, with the membership revision that
    /// answer is valid at: one statement, so both come from the same snapshot.
    pub async fn check_members(
        &self,
        room_id: Uuid,
        users: &[Uuid],
    ) -> StoreResult<MembershipCheck> {
        let mut check = MembershipCheck {
            member_rev: 0,
            members: Vec::new(),
            former: Vec::new(),
        };
        if users.is_empty() {
            check.member_rev = with_pool!(self, pool => {
                sqlx::query_scalar::<_, i64>("SELECT member_rev FROM rooms WHERE id = $1")
                    .bind(room_id)
                    .fetch_optional(pool)
                    .await?
                    .unwrap_or(0)
            });
            return Ok(check);
        }
        for chunk in users.chunks(MEMBERSHIP_CHUNK) {
            // Built per backend: a query builder is typed by its database.
            let rows: Vec<MembershipRow> = with_pool!(self, pool => {
                let mut query = sqlx::QueryBuilder::new(
                    "SELECT u.id, u.username, u.created_at,
                            EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = ",
                );
                query.push_bind(room_id);
                query.push(
                    " AND m.user_id = u.id) AS is_member, \
                     COALESCE((SELECT member_rev FROM rooms WHERE id = ",
                );
                query.push_bind(room_id);
                query.push("), 0) AS member_rev FROM users u WHERE u.id IN (");
                let mut ids = query.separated(", ");
                for user in chunk {
                    ids.push_bind(*user);
                }
                query.push(")");
                query.build_query_as().fetch_all(pool).await?
            });
            for row in rows {
                // Chunks are separate snapshots: the oldest revision is the one every answer
                // is valid at (a later check only ever finds more removals).
                check.member_rev = if check.member_rev == 0 {
                    row.member_rev
                } else {
                    check.member_rev.min(row.member_rev)
                };
                let user = User {
                    id: row.id,
                    username: row.username,
                    created_at: row.created_at,
                };
                if row.is_member {
                    check.members.push(user.id);
                } else {
                    check.former.push(user);
                }
            }
        }
        Ok(check)
    }

    /// The room's last rev and membership revision (0, 0 for no such room).
    pub async fn room_revisions(&self, room_id: Uuid) -> StoreResult<(i64, i64)> {
        let row: Option<(i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT last_rev, member_rev FROM rooms WHERE id = $1")
                .bind(room_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.unwrap_or((0, 0)))
    }

    /// Records that `user_id` has read up to `seq` (never moving backwards).
    pub async fn mark_read(&self, room_id: Uuid, user_id: Uuid, seq: i64) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "UPDATE room_members SET last_read_seq = $3
                 WHERE room_id = $1 AND user_id = $2 AND last_read_seq < $3",
            )
            .bind(room_id)
            .bind(user_id)
            .bind(seq)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// Users checked per membership query (bound parameters stay well under SQLite's limit).
const MEMBERSHIP_CHUNK: usize = 500;

/// See [`Store::subscription_state`].
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionState {
    pub last_seq: i64,
    pub last_rev: i64,
    pub member_rev: i64,
    pub is_member: bool,
}

/// See [`Store::check_members`].
#[derive(Debug, Clone, Default)]
pub struct MembershipCheck {
    /// The room's membership revision the answer is valid at.
    pub member_rev: i64,
    /// Users still in the room.
    pub members: Vec<Uuid>,
    /// Users no longer in the room (or never were).
    pub former: Vec<User>,
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    id: Uuid,
    username: String,
    created_at: DateTime<Utc>,
    is_member: bool,
    member_rev: i64,
}

/// Escapes LIKE wildcards so a search for `50%` means the characters, not a pattern.
pub(super) fn escape_like(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl Store {
    /// Whether two users are both members of at least one room (served by the primary key
    /// of `room_members` and `room_members_by_user`).
    pub async fn share_a_room(&self, a: Uuid, b: Uuid) -> StoreResult<bool> {
        let shared: bool = with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT EXISTS (
                     SELECT 1 FROM room_members mine
                     JOIN room_members theirs
                       ON theirs.room_id = mine.room_id AND theirs.user_id = $2
                     WHERE mine.user_id = $1
                 )",
            )
            .bind(a)
            .bind(b)
            .fetch_one(pool)
            .await?
        });
        Ok(shared)
    }
}
