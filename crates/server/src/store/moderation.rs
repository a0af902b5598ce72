//! Moderation: reports of messages and users, their resolution, and rooms deleted by admins.

use chrono::{DateTime, Utc};
use nebula_wire::{Report, ReportAction, ReportReceipt, ReportStatus, Room, User};
use uuid::Uuid;

use super::accounts::append_audit;
use super::rooms::{RoomRow, escape_like, peer_join, room_select};
use super::{Audit, Store, StoreResult, with_pool, with_writer};

/// What a report is about.
#[derive(Debug, Clone, Copy)]
pub enum ReportSubject {
    Message { room_id: Uuid, message_id: Uuid },
    User,
}

#[derive(Debug, sqlx::FromRow)]
struct ReportRow {
    id: Uuid,
    kind: String,
    room_id: Option<Uuid>,
    message_id: Option<Uuid>,
    reason: String,
    status: String,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    action: Option<String>,
    note: Option<String>,
    reporter_id: Uuid,
    reporter_username: String,
    reporter_created_at: DateTime<Utc>,
    target_id: Uuid,
    target_username: String,
    target_created_at: DateTime<Utc>,
}

impl From<ReportRow> for Report {
    fn from(row: ReportRow) -> Self {
        Report {
            id: row.id,
            kind: row.kind,
            reporter: User {
                id: row.reporter_id,
                username: row.reporter_username,
                created_at: row.reporter_created_at,
            },
            target_user: User {
                id: row.target_id,
                username: row.target_username,
                created_at: row.target_created_at,
            },
            room_id: row.room_id,
            message_id: row.message_id,
            reason: row.reason,
            status: if row.status == "resolved" {
                ReportStatus::Resolved
            } else {
                ReportStatus::Open
            },
            created_at: row.created_at,
            resolved_at: row.resolved_at,
            action: row.action.as_deref().map(|action| match action {
                "delete_message" => ReportAction::DeleteMessage,
                "deactivate_user" => ReportAction::DeactivateUser,
                _ => ReportAction::None,
            }),
            note: row.note,
        }
    }
}

macro_rules! report_select {
    () => {
        "SELECT r.id, r.kind, r.room_id, r.message_id, r.reason, r.status,
        r.created_at, r.resolved_at, r.action, r.note,
        a.id AS reporter_id, a.username AS reporter_username, a.created_at AS reporter_created_at,
        t.id AS target_id, t.username AS target_username, t.created_at AS target_created_at
    FROM reports r JOIN users a ON a.id = r.reporter_id JOIN users t ON t.id = r.target_user_id "
    };
}

/// How many reports the queue shows at once (oldest first: the longest waiting on top).
const QUEUE_LIMIT: i64 = 200;

pub fn action_name(action: ReportAction) -> &'static str {
    match action {
        ReportAction::None => "none",
        ReportAction::DeleteMessage => "delete_message",
        ReportAction::DeactivateUser => "deactivate_user",
    }
}

impl Store {
    /// Files a report by `reporter` about `target_user` (and, for a message, which one).
    pub async fn create_report(
        &self,
        reporter: Uuid,
        subject: ReportSubject,
        target_user: Uuid,
        reason: &str,
    ) -> StoreResult<ReportReceipt> {
        let receipt = ReportReceipt {
            id: Uuid::now_v7(),
            status: ReportStatus::Open,
            created_at: super::now(),
        };
        let (kind, room_id, message_id) = match subject {
            ReportSubject::Message {
                room_id,
                message_id,
            } => ("message", Some(room_id), Some(message_id)),
            ReportSubject::User => ("user", None, None),
        };
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO reports (id, reporter_id, kind, room_id, message_id, target_user_id,
                                      reason, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8)",
            )
            .bind(receipt.id)
            .bind(reporter)
            .bind(kind)
            .bind(room_id)
            .bind(message_id)
            .bind(target_user)
            .bind(reason)
            .bind(receipt.created_at)
            .execute(pool)
            .await?;
        });
        Ok(receipt)
    }

    /// Reports of one status: open ones oldest first, resolved ones newest first.
    pub async fn reports(&self, status: ReportStatus) -> StoreResult<Vec<Report>> {
        let sql = match status {
            ReportStatus::Open => concat!(
                report_select!(),
                "WHERE r.status = 'open' ORDER BY r.created_at, r.id LIMIT $1"
            ),
            ReportStatus::Resolved => concat!(
                report_select!(),
                "WHERE r.status = 'resolved' ORDER BY r.resolved_at DESC, r.id DESC LIMIT $1"
            ),
        };
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, ReportRow>(sql).bind(QUEUE_LIMIT).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(Report::from).collect())
    }

    pub async fn report(&self, id: Uuid) -> StoreResult<Option<Report>> {
        let sql = concat!(report_select!(), "WHERE r.id = $1");
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, ReportRow>(sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(Report::from))
    }

    /// Marks an open report resolved; `false` if it was resolved already.
    pub async fn resolve_report(
        &self,
        id: Uuid,
        admin: Uuid,
        action: ReportAction,
        note: Option<&str>,
        audit: &Audit,
    ) -> StoreResult<bool> {
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE reports SET status = 'resolved', resolved_at = $2, resolved_by = $3,
                        action = $4, note = $5
                 WHERE id = $1 AND status = 'open'",
            )
            .bind(id)
            .bind(super::now())
            .bind(admin)
            .bind(action_name(action))
            .bind(note)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                return Ok(false);
            }
            append_audit!(tx, audit);
            tx.commit().await?;
            true
        }))
    }

    /// Every room (private and direct ones too) whose name starts with `prefix`, newest first.
    pub async fn admin_rooms(
        &self,
        prefix: &str,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(Vec<Room>, i64)> {
        let pattern = format!("{}%", escape_like(prefix));
        let list_sql = concat!(
            room_select!(),
            " WHERE r.name_key LIKE $2 ESCAPE '\\'
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        );
        let count_sql = "SELECT COUNT(*) FROM rooms r WHERE r.name_key LIKE $1 ESCAPE '\\'";
        let (rows, total) = with_pool!(self, pool => {
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

    /// Deletes a room with its whole history; returns its members then and its membership
    /// revision, or `None` if there is no such room.
    #[tracing::instrument(skip(self, audit))]
    pub async fn delete_room(
        &self,
        room_id: Uuid,
        audit: &Audit,
    ) -> StoreResult<Option<(Vec<User>, i64)>> {
        Ok(with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            // Locks the room: no message commits into it from here on.
            let member_rev: Option<i64> = sqlx::query_scalar(
                "UPDATE rooms SET member_rev = member_rev + 1 WHERE id = $1 RETURNING member_rev",
            )
            .bind(room_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(member_rev) = member_rev else { return Ok(None) };
            let members: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT u.id, u.username, u.created_at FROM room_members m
                 JOIN users u ON u.id = m.user_id WHERE m.room_id = $1",
            )
            .bind(room_id)
            .fetch_all(&mut *tx)
            .await?;
            for sql in [
                "DELETE FROM message_versions WHERE message_id IN (SELECT id FROM messages WHERE room_id = $1)",
                "DELETE FROM message_reactions WHERE message_id IN (SELECT id FROM messages WHERE room_id = $1)",
                "DELETE FROM message_mentions WHERE room_id = $1",
                "DELETE FROM messages WHERE room_id = $1",
                "DELETE FROM rooms WHERE id = $1",
            ] {
                sqlx::query(sql).bind(room_id).execute(&mut *tx).await?;
            }
            append_audit!(tx, audit);
            tx.commit().await?;
            let members = members
                .into_iter()
                .map(|(id, username, created_at)| User { id, username, created_at })
                .collect();
            Some((members, member_rev))
        }))
    }
}
