//! `/rooms/{room_id}/members`: list, join or add, leave.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{AddMemberRequest, Member, MemberList, Problem, Role, ServerEvent, User};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{JsonOrEmpty, Path};
use crate::access::{can_add_members, member_room, visible_room};
use crate::auth::AuthUser;
use crate::domain::Username;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AddOutcome;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member))
        .routes(routes!(leave_room))
}

/// Members of a room, in the order they joined.
#[utoipa::path(get, path = "/rooms/{room_id}/members", tag = "members", security(("bearer" = [])),
    params(("room_id" = Uuid, Path)),
    responses((status = 200, body = MemberList), (status = 404, body = Problem, description = "`room_not_found`")))]
async fn list_members(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
) -> Result<axum::Json<MemberList>, ApiError> {
    visible_room(&state.store, room_id, caller.id).await?;
    Ok(axum::Json(MemberList {
        members: state.store.members(room_id).await?,
    }))
}

/// Join a public room (empty body), or, as its owner or an admin, add a user by `user_id` or
/// `username` (the only way into a private room).
#[utoipa::path(post, path = "/rooms/{room_id}/members", tag = "members", security(("bearer" = [])),
    params(("room_id" = Uuid, Path)), request_body(content = AddMemberRequest, description = "`{}` to join yourself"),
    responses(
        (status = 201, body = Member, description = "joined or added"),
        (status = 200, body = Member, description = "already a member"),
        (status = 403, body = Problem, description = "`not_a_member` / `forbidden`"),
        (status = 404, body = Problem, description = "`room_not_found` / `user_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id))]
async fn add_member(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
    JsonOrEmpty(request): JsonOrEmpty<AddMemberRequest>,
) -> Result<(StatusCode, axum::Json<Member>), ApiError> {
    let target = match (request.user_id, request.username.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "user_id",
                "give user_id or username, not both",
            ));
        }
        (Some(id), None) if id != caller.id => Some(state.store.user_by_id(id).await?),
        (None, Some(name)) if !name.eq_ignore_ascii_case(&caller.username) => {
            match Username::parse(name) {
                Ok(username) => Some(state.store.user_by_username(&username.key()).await?),
                Err(_) => Some(None),
            }
        }
        _ => None,
    };
    let user = match target {
        // Joining yourself: public rooms only (a private room stays invisible to outsiders).
        None => {
            visible_room(&state.store, room_id, caller.id).await?;
            caller.load(&state.store).await?
        }
        Some(target) => {
            let (_, role) = member_room(&state.store, room_id, caller.id).await?;
            if !can_add_members(role) {
                return Err(ApiError::Forbidden(
                    "only the room's owner or an admin can add members",
                ));
            }
            target.ok_or(ApiError::UserNotFound)?
        }
    };
    match state.store.add_member(room_id, &user, Role::Member).await? {
        AddOutcome::Added(member) => {
            state
                .bus
                .publish(room_id, &ServerEvent::MemberJoined { room_id, user }, None);
            Ok((StatusCode::CREATED, axum::Json(member)))
        }
        AddOutcome::AlreadyMember(member) => Ok((StatusCode::OK, axum::Json(member))),
    }
}

/// Leave a room.
#[utoipa::path(delete, path = "/rooms/{room_id}/members/me", tag = "members", security(("bearer" = [])),
    params(("room_id" = Uuid, Path)),
    responses(
        (status = 204, description = "left"),
        (status = 404, body = Problem, description = "`not_a_member` (public room) / `room_not_found`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id))]
async fn leave_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    visible_room(&state.store, room_id, caller.id).await?;
    // Loaded first: the departure's notification, written with it, names the user.
    let user: User = caller.load(&state.store).await?;
    if !state.store.remove_member(room_id, &user).await? {
        return Err(ApiError::NotAMember {
            status: StatusCode::NOT_FOUND,
        });
    }
    state
        .bus
        .publish(room_id, &ServerEvent::MemberLeft { room_id, user }, None);
    Ok(StatusCode::NO_CONTENT)
}
