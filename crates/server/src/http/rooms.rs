//! `/rooms`, `/rooms/public`, `/rooms/{room_id}`.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{CreateRoomRequest, Problem, PublicRoomPage, PublicRoomQuery, Room, RoomList};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Json, Path, Query};
use crate::access::visible_room;
use crate::auth::AuthUser;
use crate::domain::{PageRequest, RoomName, parse_description};
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_rooms, create_room))
        .routes(routes!(public_rooms))
        .routes(routes!(get_room))
}

/// Public rooms, newest first, optionally filtered by name.
#[utoipa::path(get, path = "/rooms/public", tag = "rooms", params(PublicRoomQuery), security(("bearer" = [])),
    responses((status = 200, body = PublicRoomPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn public_rooms(
    State(state): State<AppState>,
    _caller: AuthUser,
    Query(query): Query<PublicRoomQuery>,
) -> Result<axum::Json<PublicRoomPage>, ApiError> {
    let page = PageRequest::parse(query.page, query.page_size)?;
    let filter = query.q.as_deref().filter(|q| !q.is_empty());
    if filter.is_some_and(|q| q.contains('\0') || q.chars().count() > 100) {
        return Err(ApiError::InvalidQuery(
            "q must be at most 100 characters".into(),
        ));
    }
    let limit = i64::try_from(page.page_size).unwrap_or(i64::MAX);
    let (rooms, total) = state
        .store
        .public_rooms(filter, limit, page.offset())
        .await?;
    Ok(axum::Json(PublicRoomPage { rooms, total }))
}

/// Rooms the caller is a member of, public and private, each with the caller's `last_seq`,
/// `last_read_seq` and `unread_count`.
#[utoipa::path(get, path = "/rooms", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = RoomList), (status = 401, body = Problem)))]
async fn my_rooms(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<RoomList>, ApiError> {
    let window = state.config.unread_window();
    Ok(axum::Json(RoomList {
        rooms: state.store.rooms_of(caller.id, window).await?,
    }))
}

/// Create a room; the creator becomes its owner.
#[utoipa::path(post, path = "/rooms", tag = "rooms", request_body = CreateRoomRequest, security(("bearer" = [])),
    responses((status = 201, body = Room), (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn create_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(request): Json<CreateRoomRequest>,
) -> Result<(StatusCode, axum::Json<Room>), ApiError> {
    let name = RoomName::parse(&request.name)?;
    let description = parse_description(request.description.as_deref())?;
    let owner = caller.load(&state.store).await?;
    let room = state
        .store
        .create_room(
            &owner,
            &name.into_inner(),
            description.as_deref(),
            request.is_private.unwrap_or(false),
        )
        .await?;
    tracing::info!(room_id = %room.id, "room created");
    Ok((StatusCode::CREATED, axum::Json(room)))
}

/// A room's details (public rooms: anyone; private rooms: members only); for a member with
/// their `last_seq`, `last_read_seq` and `unread_count`.
#[utoipa::path(get, path = "/rooms/{room_id}", tag = "rooms", security(("bearer" = [])),
    params(("room_id" = Uuid, Path)),
    responses((status = 200, body = Room), (status = 404, body = Problem, description = "`room_not_found`")))]
async fn get_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
) -> Result<axum::Json<Room>, ApiError> {
    let record = visible_room(&state.store, room_id, caller.id).await?;
    if record.viewer_role.is_some() {
        let window = state.config.unread_window();
        // A member who left in between sees the room as an outsider.
        if let Some(room) = state
            .store
            .room_of_member(room_id, caller.id, window)
            .await?
        {
            return Ok(axum::Json(room));
        }
    }
    Ok(axum::Json(record.room))
}
