//! `/me/notifications` (the caller's switches: push, e-mail, digest interval) and
//! `/rooms/{room_id}/notifications` (the caller's level in one room).

use axum::extract::State;
use nebula_wire::{
    NotificationSettings, NotificationSettingsUpdate, Problem, RoomNotificationSettings,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path};
use crate::access::member_room;
use crate::auth::AuthUser;
use crate::digest::{DigestTiming, MAX_MINUTES};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::notification_settings::SettingsChange;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(put_room_level))
}

/// The caller's notification switches.
#[utoipa::path(get, path = "/me/notifications", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = NotificationSettings), (status = 401, body = Problem)))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn get_settings(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<NotificationSettings>, ApiError> {
    Ok(axum::Json(current(&state, caller.id).await?))
}

/// Change the caller's notification switches: `push` (every Web Push), `email` (notification
/// mail, i.e. the digest; never password-reset or verification mail) and
/// `email_digest_minutes` (at most one digest per this many minutes). Omitted fields stay.
#[utoipa::path(put, path = "/me/notifications", tag = "notifications", security(("bearer" = [])),
    request_body = NotificationSettingsUpdate,
    responses(
        (status = 200, body = NotificationSettings),
        (status = 401, body = Problem),
        (status = 422, body = Problem, description = "`validation_failed`: `email_digest_minutes` outside 1–10080"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn put_settings(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(request): Json<NotificationSettingsUpdate>,
) -> Result<axum::Json<NotificationSettings>, ApiError> {
    if let Some(minutes) = request.email_digest_minutes
        && !(1..=MAX_MINUTES).contains(&minutes)
    {
        return Err(ApiError::validation(
            "email_digest_minutes",
            format!("must be 1-{MAX_MINUTES}"),
        ));
    }
    let change = SettingsChange {
        push: request.push,
        email: request.email,
        digest_minutes: request.email_digest_minutes,
    };
    state
        .store
        .change_notification_settings(caller.id, change)
        .await?;
    Ok(axum::Json(current(&state, caller.id).await?))
}

/// Set which of a room's events reach the caller while away: `all` (also members joining and
/// leaving), `mentions` (the default of group rooms) or `none`. Direct rooms default to `all`.
/// The room object shows it as `notification_level`.
#[utoipa::path(put, path = "/rooms/{room_id}/notifications", tag = "notifications",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path)),
    request_body = RoomNotificationSettings,
    responses(
        (status = 200, body = RoomNotificationSettings),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`not_a_member` (a public room)"),
        (status = 404, body = Problem, description = "`room_not_found` (also a private room the caller is not in)"),
        (status = 422, body = Problem, description = "`invalid_body`: `level` is not one of all, mentions, none"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id))]
async fn put_room_level(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
    Json(request): Json<RoomNotificationSettings>,
) -> Result<axum::Json<RoomNotificationSettings>, ApiError> {
    member_room(&state.store, room_id, caller.id).await?;
    if !state
        .store
        .set_notification_level(room_id, caller.id, request.level)
        .await?
    {
        // Left between the check and the update.
        return Err(ApiError::NotAMember {
            status: axum::http::StatusCode::FORBIDDEN,
        });
    }
    Ok(axum::Json(request))
}

async fn current(state: &AppState, user_id: Uuid) -> Result<NotificationSettings, ApiError> {
    let stored =
        state
            .store
            .notification_settings(user_id)
            .await?
            .ok_or(ApiError::Unauthorized {
                code: "invalid_token",
                detail: "the account of this token does not exist",
            })?;
    let timing = DigestTiming::from_config(&state.config.config);
    Ok(NotificationSettings {
        push: stored.push,
        email: stored.email,
        email_digest_minutes: stored
            .digest_minutes
            .unwrap_or_else(|| timing.default_minutes()),
    })
}
