//! `/admin/`: server administration, for the users `ADMIN_USERNAMES` or `nebula admin grant`
//! made admins. Everyone else gets 403 `admin_required`.
//!
//! Every action here is written to the audit log in the transaction that performs it.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use nebula_wire::{AdminListQuery, AdminUser, AdminUsers, AuditLog, AuditQuery, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::client_ip::ClientIp;
use super::extract::{Path, Query};
use crate::auth::AuthUser;
use crate::domain::{PageRequest, parse_limit};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Audit;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(deactivate))
        .routes(routes!(reactivate))
        .routes(routes!(audit_log))
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
