//! `/admin/`: server administration, for the users `ADMIN_USERNAMES` or `nebula admin grant`
//! made admins. Everyone else gets 403 `admin_required`.
//!
//! Every action here is written to the audit log in the transaction that performs it.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use nebula_wire::{
    AdminListQuery, AdminRooms, AdminUser, AdminUsers, AuditLog, AuditQuery, Problem, Report,
    ReportAction, ReportStatus, Reports, ReportsQuery, ResolveReportRequest,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::client_ip::ClientIp;
use super::extract::{Json, Path, Query};
use crate::auth::AuthUser;
use crate::domain::{PageRequest, parse_limit};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Action, Audit, NewChange, Refused};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(deactivate))
        .routes(routes!(reactivate))
        .routes(routes!(audit_log))
        .routes(routes!(list_rooms))
        .routes(routes!(delete_room))
        .routes(routes!(list_reports))
        .routes(routes!(resolve_report))
}

/// A caller who is a server admin (read from the database on each request: a revoked admin
/// loses access at once, on every node).
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        if state.store.is_admin(caller.id).await? {
            Ok(Admin(caller))
        } else {
            Err(ApiError::AdminRequired)
        }
    }
}

impl Admin {
    /// An audit entry of this admin's action on `target`.
    pub fn audit(&self, action: &'static str, target: String, ip: ClientIp) -> Audit {
        Audit {
            actor: Some(self.0.id),
            action,
            target: Some(target),
            ip: Some(ip.0.to_string()),
        }
    }
}

/// Accounts whose name starts with `q` (case-insensitive), by name, a page at a time.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("bearer" = [])),
    params(AdminListQuery),
    responses(
        (status = 200, body = AdminUsers),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
    ))]
async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<AdminListQuery>,
) -> Result<axum::Json<AdminUsers>, ApiError> {
    let page = PageRequest::parse(query.page, query.page_size)?;
    let prefix = query.q.unwrap_or_default().to_lowercase();
    if prefix.contains('\0') {
        return Err(ApiError::InvalidQuery("q must not contain NUL".into()));
    }
    let limit = i64::try_from(page.page_size).unwrap_or(100);
    let (users, total) = state
        .store
        .admin_users(&prefix, page.offset(), limit)
        .await?;
    Ok(axum::Json(AdminUsers { users, total }))
}

/// Deactivate an account: its logins fail with 401 `account_deactivated`, its tokens stop
/// working and its open WebSockets close with 4001, on every node, at once.
#[utoipa::path(post, path = "/admin/users/{user_id}/deactivate", tag = "admin", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses(
        (status = 200, body = AdminUser),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
        (status = 404, body = Problem, description = "`user_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(admin = %admin.0.id, %user_id))]
async fn deactivate(
    State(state): State<AppState>,
    ip: ClientIp,
    admin: Admin,
    Path(user_id): Path<Uuid>,
) -> Result<axum::Json<AdminUser>, ApiError> {
    set_deactivated(&state, &admin, ip, user_id, true).await
}

/// Reactivate an account: it may log in again (tokens from before the deactivation stay dead).
#[utoipa::path(post, path = "/admin/users/{user_id}/reactivate", tag = "admin", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses(
        (status = 200, body = AdminUser),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
        (status = 404, body = Problem, description = "`user_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(admin = %admin.0.id, %user_id))]
async fn reactivate(
    State(state): State<AppState>,
    ip: ClientIp,
    admin: Admin,
    Path(user_id): Path<Uuid>,
) -> Result<axum::Json<AdminUser>, ApiError> {
    set_deactivated(&state, &admin, ip, user_id, false).await
}

pub(super) async fn set_deactivated(
    state: &AppState,
    admin: &Admin,
    ip: ClientIp,
    user_id: Uuid,
    deactivate: bool,
) -> Result<axum::Json<AdminUser>, ApiError> {
    let action = if deactivate {
        "admin.user_deactivated"
    } else {
        "admin.user_reactivated"
    };
    let audit = admin.audit(action, format!("user:{user_id}"), ip);
    let (user, standing) = state
        .store
        .set_deactivated(user_id, deactivate, &audit)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    state.standings.changed(user_id, standing);
    Ok(axum::Json(user))
}

/// The audit log, newest first: logins (failed ones too), password and two-factor changes,
/// admin actions. Append-only: nothing here can change it.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditLog),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
    ))]
async fn audit_log(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditLog>, ApiError> {
    let limit = i64::try_from(parse_limit("limit", query.limit)?).unwrap_or(100);
    let entries = state.store.audit_log(query.before, limit).await?;
    Ok(axum::Json(AuditLog { entries }))
}

/// Every room, private and direct ones too, whose name starts with `q`, newest first.
#[utoipa::path(get, path = "/admin/rooms", tag = "admin", security(("bearer" = [])),
    params(AdminListQuery),
    responses(
        (status = 200, body = AdminRooms),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
    ))]
async fn list_rooms(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<AdminListQuery>,
) -> Result<axum::Json<AdminRooms>, ApiError> {
    let page = PageRequest::parse(query.page, query.page_size)?;
    let prefix = query.q.unwrap_or_default().to_lowercase();
    if prefix.contains('\0') {
        return Err(ApiError::InvalidQuery("q must not contain NUL".into()));
    }
    let limit = i64::try_from(page.page_size).unwrap_or(100);
    let (rooms, total) = state
        .store
        .admin_rooms(&prefix, limit, page.offset())
        .await?;
    Ok(axum::Json(AdminRooms { rooms, total }))
}

/// Delete a room and its whole history. Its members' sockets get `member.left` and stop
/// receiving it, on every node.
#[utoipa::path(delete, path = "/admin/rooms/{room_id}", tag = "admin", security(("bearer" = [])),
    params(("room_id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
        (status = 404, body = Problem, description = "`room_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(admin = %admin.0.id, %room_id))]
async fn delete_room(
    State(state): State<AppState>,
    ip: ClientIp,
    admin: Admin,
    Path(room_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let audit = admin.audit("admin.room_deleted", format!("room:{room_id}"), ip);
    let (members, member_rev) = state
        .store
        .delete_room(room_id, &audit)
        .await?
        .ok_or(ApiError::RoomNotFound)?;
    // One departure per member, each at the deletion's revision: every node drops its
    // subscribers of the room (a node that misses one checks the database, where nobody is
    // a member any more).
    for user in members {
        state
            .bus
            .publish_member_left(&state.store, room_id, user, member_rev)
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The reports queue: `open` ones (the default) oldest first, or `resolved` ones newest first.
#[utoipa::path(get, path = "/admin/reports", tag = "admin", security(("bearer" = [])),
    params(ReportsQuery),
    responses(
        (status = 200, body = Reports),
        (status = 400, body = Problem, description = "`invalid_query`"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
    ))]
async fn list_reports(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<ReportsQuery>,
) -> Result<axum::Json<Reports>, ApiError> {
    let status = query.status.unwrap_or(ReportStatus::Open);
    let reports = state.store.reports(status).await?;
    Ok(axum::Json(Reports { reports }))
}

/// Resolve a report: do nothing, delete the reported message (as a moderator: it stays in
/// history, emptied), or deactivate the reported user.
#[utoipa::path(post, path = "/admin/reports/{report_id}/resolve", tag = "admin", security(("bearer" = [])),
    params(("report_id" = Uuid, Path)),
    request_body = ResolveReportRequest,
    responses(
        (status = 200, body = Report),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`admin_required`"),
        (status = 404, body = Problem, description = "`report_not_found`"),
        (status = 409, body = Problem, description = "`report_resolved`"),
        (status = 422, body = Problem, description = "`validation_failed` (`delete_message` on a user report, a note over 1000 characters) / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(admin = %admin.0.id, %report_id))]
async fn resolve_report(
    State(state): State<AppState>,
    ip: ClientIp,
    admin: Admin,
    Path(report_id): Path<Uuid>,
    Json(request): Json<ResolveReportRequest>,
) -> Result<axum::Json<Report>, ApiError> {
    if let Some(note) = &request.note
        && (note.chars().count() > 1000 || note.contains('\0'))
    {
        return Err(ApiError::validation(
            "note",
            "must be at most 1000 characters",
        ));
    }
    let report = state
        .store
        .report(report_id)
        .await?
        .ok_or(ApiError::ReportNotFound)?;
    if report.status == ReportStatus::Resolved {
        return Err(ApiError::ReportResolved);
    }
    match request.action {
        ReportAction::None => {}
        ReportAction::DeleteMessage => {
            let (Some(room_id), Some(message_id)) = (report.room_id, report.message_id) else {
                return Err(ApiError::validation(
                    "action",
                    "delete_message needs a message report",
                ));
            };
            let outcome = state
                .writers
                .change(NewChange {
                    room_id,
                    message_id,
                    actor: admin.0.id,
                    action: Action::DeleteAsModerator,
                })
                .await?;
            match outcome {
                // Gone with its room already: nothing left to delete.
                Ok(_) | Err(Refused::MessageNotFound) => {}
                Err(refused) => return Err(refused.into()),
            }
        }
        ReportAction::DeactivateUser => {
            let _user = set_deactivated(&state, &admin, ip, report.target_user.id, true).await?;
        }
    }
    let audit = admin.audit("admin.report_resolved", format!("report:{report_id}"), ip);
    let resolved = state
        .store
        .resolve_report(
            report_id,
            admin.0.id,
            request.action,
            request.note.as_deref(),
            &audit,
        )
        .await?;
    if !resolved {
        return Err(ApiError::ReportResolved);
    }
    let report = state
        .store
        .report(report_id)
        .await?
        .ok_or(ApiError::ReportNotFound)?;
    Ok(axum::Json(report))
}
