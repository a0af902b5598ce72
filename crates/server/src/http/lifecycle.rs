//! `/rooms/{room_id}/messages/{message_id}`: one message, its edits and its deletion.
//!
//! Changes go through the room's writer like new messages: checked, applied and given their
//! rev in the commit, answered after it, and published to every subscriber as
//! `message.updated`.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{EditMessageRequest, Message, MessageHistory, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path};
use crate::access::member_room;
use crate::auth::AuthUser;
use crate::domain::MessageContent;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Action, Applied, NewChange, Refused};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_message, edit_message, delete_message))
        .routes(routes!(message_history))
}

/// One message of the room.
#[utoipa::path(get, path = "/rooms/{room_id}/messages/{message_id}", tag = "messages",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 200, body = Message),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
    ))]
async fn get_message(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<axum::Json<Message>, ApiError> {
    member_room(&state.store, room_id, caller.id).await?;
    let message = state.store.message(room_id, message_id).await?;
    message.map(axum::Json).ok_or(ApiError::MessageNotFound)
}

/// Edit a message (its sender only). Its earlier content goes to its edit history; editing to
/// the same content changes nothing.
#[utoipa::path(patch, path = "/rooms/{room_id}/messages/{message_id}", tag = "messages",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    request_body = EditMessageRequest,
    responses(
        (status = 200, body = Message, description = "the message as edited"),
        (status = 403, body = Problem, description = "`not_a_member`, `not_message_author`, or `edit_window_expired` (older than `MESSAGE_EDIT_WINDOW_SECONDS`)"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
        (status = 409, body = Problem, description = "`message_deleted`"),
        (status = 422, body = Problem, description = "`validation_failed`: the content limits of posting"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, %message_id))]
async fn edit_message(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
    Json(request): Json<EditMessageRequest>,
) -> Result<axum::Json<Message>, ApiError> {
    let content = MessageContent::parse(&request.content, state.config.config.message_max_chars)?
        .into_inner();
    let mentions = crate::mentions::resolve(&state.store, room_id, &content).await?;
    let action = Action::Edit {
        content,
        window: state.config.edit_window(),
        mentions,
    };
    let applied = change(&state, &caller, room_id, message_id, action).await?;
    Ok(axum::Json(applied.message().clone()))
}

/// Delete a message: its sender, or the room's owner or an admin. It stays in history with its
/// `seq`, with empty `content` and `deleted_at` set; its reactions, attachments and edit history
/// are gone (attached files are removed from storage unless another message or story uses them).
#[utoipa::path(delete, path = "/rooms/{room_id}/messages/{message_id}", tag = "messages",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted (also when it already was)"),
        (status = 403, body = Problem, description = "`not_a_member`, or `forbidden`: someone else's message, and not the room's owner or an admin"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, %message_id))]
async fn delete_message(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    change(&state, &caller, room_id, message_id, Action::Delete).await?;
    // Its attachments are unreferenced now unless used elsewhere: collect them at once.
    state.media_janitor.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// A message's earlier contents, oldest first.
#[utoipa::path(get, path = "/rooms/{room_id}/messages/{message_id}/history", tag = "messages",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 200, body = MessageHistory),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
    ))]
async fn message_history(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<axum::Json<MessageHistory>, ApiError> {
    member_room(&state.store, room_id, caller.id).await?;
    if state.store.message(room_id, message_id).await?.is_none() {
        return Err(ApiError::MessageNotFound);
    }
    let versions = state.store.message_versions(room_id, message_id).await?;
    Ok(axum::Json(MessageHistory { versions }))
}

/// Submits a change by the caller to the room's writer and waits for its commit. Membership
/// is checked here for the caller's answer (`room_not_found` for a private room they cannot
/// see) and again in the commit.
pub(super) async fn change(
    state: &AppState,
    caller: &AuthUser,
    room_id: Uuid,
    message_id: Uuid,
    action: Action,
) -> Result<Applied, ApiError> {
    member_room(&state.store, room_id, caller.id).await?;
    let outcome = state
        .writers
        .change(NewChange {
            room_id,
            message_id,
            actor: caller.id,
            action,
        })
        .await?;
    Ok(outcome?)
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::MessageNotFound => ApiError::MessageNotFound,
            Refused::NotAMember => ApiError::NotAMember {
                status: StatusCode::FORBIDDEN,
            },
            Refused::NotAuthor => ApiError::NotMessageAuthor,
            Refused::Forbidden => ApiError::Forbidden(
                "only its sender, or the room's owner or an admin, may delete a message",
            ),
            Refused::EditWindowExpired => ApiError::EditWindowExpired,
            Refused::Deleted => ApiError::MessageDeleted,
            Refused::TooManyReactions => ApiError::TooManyReactions,
        }
    }
}
