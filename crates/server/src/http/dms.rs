//! `/dms`: direct rooms, the one private room of two users.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{DirectRoomList, Problem, Room, ServerEvent, UserRef};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Json;
use super::people::other_user;
use crate::auth::AuthUser;
use crate::config::DmPolicy;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::DirectRoom;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(open_direct_room, direct_rooms))
}

/// The direct room with another user (by `user_id` or `username`), created on first request
/// by either of them: two requests for the same pair, at once on any nodes, get one room.
#[utoipa::path(post, path = "/dms", tag = "people", request_body = UserRef, security(("bearer" = [])),
    responses(
        (status = 201, body = Room, description = "created"),
        (status = 200, body = Room, description = "the pair's existing room"),
        (status = 403, body = Problem, description = "`cannot_message_user`: either blocked the other, or `DM_POLICY=contacts` and they are not contacts"),
        (status = 404, body = Problem, description = "`user_not_found`"),
        (status = 422, body = Problem, description = "`validation_failed`: yourself, or no user named"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn open_direct_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(request): Json<UserRef>,
) -> Result<(StatusCode, axum::Json<Room>), ApiError> {
    let peer = other_user(&state.store, &caller, &request).await?;
    let contacts_only = state.config.config.dm_policy == DmPolicy::Contacts;
    // For a pair that already has a room; a new room is checked again in its own transaction
    // (see `Store::open_direct_room`), so a block that races the request cannot be missed.
    if state.store.blocked_either(caller.id, peer.id).await?
        || (contacts_only && !state.store.are_contacts(caller.id, peer.id).await?)
    {
        return Err(ApiError::CannotMessageUser);
    }
    let me = caller.load(&state.store).await?;
    let (room_id, created) = match state
        .store
        .open_direct_room(&me, &peer, contacts_only)
        .await?
    {
        DirectRoom::Opened { room_id, created } => (room_id, created),
        DirectRoom::Refused => return Err(ApiError::CannotMessageUser),
    };
    let room = state
        .store
        .room_of_member(room_id, caller.id, state.config.unread_window())
        .await?
        .ok_or(ApiError::RoomNotFound)?;
    if created {
        tracing::info!(%room_id, peer_id = %peer.id, "direct room created");
        // Both users' open clients (the caller's other devices too) learn of the room now.
        if let Some(theirs) = state
            .store
            .room_of_member(room_id, peer.id, state.config.unread_window())
            .await?
        {
            state
                .user_events
                .send(peer.id, &ServerEvent::DmOpened { room: theirs });
        }
        state
            .user_events
            .send(caller.id, &ServerEvent::DmOpened { room: room.clone() });
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(room)))
}

/// The caller's direct rooms, most recent message first.
#[utoipa::path(get, path = "/dms", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = DirectRoomList), (status = 401, body = Problem)))]
async fn direct_rooms(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<DirectRoomList>, ApiError> {
    let rooms = state
        .store
        .direct_rooms_of(caller.id, state.config.unread_window())
        .await?;
    Ok(axum::Json(DirectRoomList { rooms }))
}
