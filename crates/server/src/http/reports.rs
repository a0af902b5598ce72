//! Reports of messages and users, for the admins' queue (`/admin/reports`).

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{Problem, ReportReceipt, ReportRequest};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path};
use crate::access::member_room;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ReportSubject;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(report_message))
        .routes(routes!(report_user))
}

/// 1–1000 characters, not blank, no NUL.
fn parse_reason(raw: &str) -> Result<&str, ApiError> {
    if raw.trim().is_empty() || raw.chars().count() > 1000 || raw.contains('\0') {
        return Err(ApiError::validation(
            "reason",
            "must be 1–1000 characters, not blank",
        ));
    }
    Ok(raw)
}

/// Report a message to the server's admins. Members only: a private room stays invisible
/// (404) to others.
#[utoipa::path(post, path = "/rooms/{room_id}/messages/{message_id}/report", tag = "moderation",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    request_body = ReportRequest,
    responses(
        (status = 201, body = ReportReceipt),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
        (status = 422, body = Problem, description = "`validation_failed` / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, %message_id))]
async fn report_message(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
    Json(request): Json<ReportRequest>,
) -> Result<(StatusCode, axum::Json<ReportReceipt>), ApiError> {
    member_room(&state.store, room_id, caller.id).await?;
    let reason = parse_reason(&request.reason)?;
    let message = state
        .store
        .message(room_id, message_id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let subject = ReportSubject::Message {
        room_id,
        message_id,
    };
    let receipt = state
        .store
        .create_report(caller.id, subject, message.sender_id, reason)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(receipt)))
}

/// Report a user to the server's admins.
#[utoipa::path(post, path = "/users/{user_id}/report", tag = "moderation",
    security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    request_body = ReportRequest,
    responses(
        (status = 201, body = ReportReceipt),
        (status = 401, body = Problem),
        (status = 404, body = Problem, description = "`user_not_found`"),
        (status = 422, body = Problem, description = "`validation_failed` (also: reporting yourself) / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, target = %user_id))]
async fn report_user(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(user_id): Path<Uuid>,
    Json(request): Json<ReportRequest>,
) -> Result<(StatusCode, axum::Json<ReportReceipt>), ApiError> {
    let reason = parse_reason(&request.reason)?;
    if user_id == caller.id {
        return Err(ApiError::validation(
            "user_id",
            "you cannot report yourself",
        ));
    }
    if state.store.user_by_id(user_id).await?.is_none() {
        return Err(ApiError::UserNotFound);
    }
    let receipt = state
        .store
        .create_report(caller.id, ReportSubject::User, user_id, reason)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(receipt)))
}
