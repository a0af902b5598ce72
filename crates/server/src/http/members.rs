//! `/rooms/{room_id}/members`: list, join or add, leave.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{
    AddMemberRequest, Member, MemberList, Problem, Role, ServerEvent, UpdateMemberRequest, User,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::client_ip::ClientIp;
use super::extract::{Json, JsonOrEmpty, Path};
use crate::access::{can_add_members, fixed_membership, member_room, visible_room};
use crate::auth::AuthUser;
use crate::domain::Username;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AddOutcome, Audit};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members, add_member))
        .routes(routes!(leave_room))
        .routes(routes!(remove_member, update_member))
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
        (status = 409, body = Problem, description = "`direct_room`: a direct room's members never change"),
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
            fixed_membership(&visible_room(&state.store, room_id, caller.id).await?)?;
            caller.load(&state.store).await?
        }
        Some(target) => {
            let (record, role) = member_room(&state.store, room_id, caller.id).await?;
            fixed_membership(&record)?;
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
            let added_by_other = user.id != caller.id;
            let user_id = user.id;
            state
                .bus
                .publish(room_id, &ServerEvent::MemberJoined { room_id, user }, None);
            if added_by_other {
                // The room may be private: this is how the added user's client learns of it.
                if let Some(room) = state
                    .store
                    .room_of_member(room_id, user_id, state.config.unread_window())
                    .await?
                {
                    state
                        .user_events
                        .send(user_id, &ServerEvent::RoomAdded { room });
                }
            }
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
        (status = 409, body = Problem, description = "`direct_room`: a direct room's members never change"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id))]
async fn leave_room(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    leave(&state, &caller, room_id).await
}

async fn leave(state: &AppState, caller: &AuthUser, room_id: Uuid) -> Result<StatusCode, ApiError> {
    fixed_membership(&visible_room(&state.store, room_id, caller.id).await?)?;
    // Loaded first: the departure's notification, written with it, names the user.
    let user: User = caller.load(&state.store).await?;
    let member_rev = state
        .store
        .remove_member(room_id, &user, None)
        .await?
        .ok_or(ApiError::NotAMember {
            status: StatusCode::NOT_FOUND,
        })?;
    state
        .bus
        .publish_member_left(&state.store, room_id, user, member_rev)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a member: the room's owner removes anyone, an admin removes members (not the owner or
/// other admins). The removed user's sockets get `member.left` and stop receiving the room at
/// once. Removing yourself is leaving.
#[utoipa::path(delete, path = "/rooms/{room_id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses(
        (status = 204, description = "removed"),
        (status = 403, body = Problem, description = "`not_a_member` (the caller) / `forbidden` (not the owner or an admin, or an admin removing the owner or an admin)"),
        (status = 404, body = Problem, description = "`room_not_found` / `member_not_found`"),
        (status = 409, body = Problem, description = "`direct_room`: a direct room's members never change"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, target = %user_id))]
async fn remove_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Path((room_id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    if user_id == caller.id {
        return leave(&state, &caller, room_id).await;
    }
    let (record, role) = member_room(&state.store, room_id, caller.id).await?;
    fixed_membership(&record)?;
    let target_role = state
        .store
        .member_role(room_id, user_id)
        .await?
        .ok_or(ApiError::MemberNotFound)?;
    let allowed = match role {
        Role::Owner => true,
        Role::Admin => target_role == Role::Member,
        Role::Member => false,
    };
    if !allowed {
        return Err(ApiError::Forbidden(
            "only the room's owner, or an admin for members, can remove someone",
        ));
    }
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(ApiError::MemberNotFound)?;
    let audit = Audit {
        actor: Some(caller.id),
        action: "member_removed",
        target: Some(format!("room:{room_id}/user:{user_id}")),
        ip: Some(ip.to_string()),
    };
    let member_rev = state
        .store
        .remove_member(room_id, &user, Some(&audit))
        .await?
        .ok_or(ApiError::MemberNotFound)?;
    state
        .bus
        .publish_member_left(&state.store, room_id, user, member_rev)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a member's role (`admin` or `member`); the room's owner only. Subscribers get
/// `member.updated`.
#[utoipa::path(patch, path = "/rooms/{room_id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMemberRequest,
    responses(
        (status = 200, body = Member),
        (status = 403, body = Problem, description = "`not_a_member` / `forbidden` (not the owner, or the owner's own role)"),
        (status = 404, body = Problem, description = "`room_not_found` / `member_not_found`"),
        (status = 409, body = Problem, description = "`direct_room`: a direct room's roles never change"),
        (status = 422, body = Problem, description = "`invalid_body` (`role` must be `admin` or `member`)"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, target = %user_id))]
async fn update_member(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    caller: AuthUser,
    Path((room_id, user_id)): Path<(Uuid, Uuid)>,
    Json(request): Json<UpdateMemberRequest>,
) -> Result<axum::Json<Member>, ApiError> {
    let (record, role) = member_room(&state.store, room_id, caller.id).await?;
    fixed_membership(&record)?;
    if role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only the room's owner can change roles",
        ));
    }
    if user_id == caller.id {
        return Err(ApiError::Forbidden(
            "the owner's own role cannot be changed",
        ));
    }
    let member = state
        .store
        .set_member_role(
            room_id,
            user_id,
            request.role.into(),
            &Audit {
                actor: Some(caller.id),
                action: "member_role_changed",
                target: Some(format!("room:{room_id}/user:{user_id}")),
                ip: Some(ip.to_string()),
            },
        )
        .await?
        .ok_or(ApiError::MemberNotFound)?;
    state.bus.publish(
        room_id,
        &ServerEvent::MemberUpdated {
            room_id,
            member: member.clone(),
        },
        None,
    );
    Ok(axum::Json(member))
}
