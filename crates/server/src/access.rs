//! Who may see and use a room: the one place the visibility rules live.
//!
//! A private room does not exist for non-members: every path answers exactly as for a missing
//! room. A public room is visible to all; reading or posting needs membership.

use axum::http::StatusCode;
use nebula_wire::{ReplyTo, Role, RoomKind};
use uuid::Uuid;

use crate::error::ApiError;
use crate::store::{Posted, RoomAccess, RoomRecord, Store};
use crate::writer::WriteError;

/// The room as `viewer` sees it, or `room_not_found` if it is missing or private to them.
pub async fn visible_room(
    store: &Store,
    room_id: Uuid,
    viewer: Uuid,
) -> Result<RoomRecord, ApiError> {
    match store.room_for(room_id, viewer).await? {
        Some(record) if record.access() != RoomAccess::Invisible => Ok(record),
        _ => Err(ApiError::RoomNotFound),
    }
}

/// The room and the viewer's role, for actions that need membership (403 `not_a_member`).
pub async fn member_room(
    store: &Store,
    room_id: Uuid,
    viewer: Uuid,
) -> Result<(RoomRecord, Role), ApiError> {
    let record = visible_room(store, room_id, viewer).await?;
    match record.access() {
        RoomAccess::Member(role) => Ok((record, role)),
        _ => Err(ApiError::NotAMember {
            status: StatusCode::FORBIDDEN,
        }),
    }
}

/// Refuses membership changes (join, add, leave, remove, role) in a direct room: it has
/// exactly its two users for as long as it exists (409 `direct_room`).
pub fn fixed_membership(record: &RoomRecord) -> Result<(), ApiError> {
    if record.room.kind == RoomKind::Direct {
        return Err(ApiError::DirectRoom);
    }
    Ok(())
}

/// Refuses a message into a direct room whose two users are blocked (either way) before it is
/// queued (no query for group rooms). Not the guarantee: the commit itself checks blocks under
/// the room's lock (`check_senders!` in the store), and [`explain_refusal`] names what it
/// refused; the WebSocket path relies on that alone, to keep its hot path query-free.
pub async fn may_post(store: &Store, record: &RoomRecord) -> Result<(), ApiError> {
    if record.room.kind == RoomKind::Direct && store.direct_room_blocked(record.room.id).await? {
        return Err(ApiError::CannotMessageUser);
    }
    Ok(())
}

/// A commit refuses a sender who is not a member, and also one whose direct room got blocked
/// after [`may_post`] passed (a block that raced the send): the latter is told
/// `cannot_message_user`, like a send after the block.
pub async fn explain_refusal(
    store: &Store,
    room_id: Uuid,
    result: Result<Posted, WriteError>,
) -> Result<Posted, WriteError> {
    match result {
        Err(WriteError::NotAMember)
            if store.direct_room_blocked(room_id).await.unwrap_or(false) =>
        {
            Err(WriteError::Blocked)
        }
        other => other,
    }
}

/// Whether a role may add other users to its room.
pub fn can_add_members(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

/// What a reply names: a message of the same room (`raw` is its id), else `invalid_reply`.
pub async fn resolve_reply(store: &Store, room_id: Uuid, raw: &str) -> Result<ReplyTo, ApiError> {
    let refused = || ApiError::InvalidReply(format!("{raw:?} is not a message of this room"));
    let id = Uuid::parse_str(raw).map_err(|_| refused())?;
    store.reply_target(room_id, id).await?.ok_or_else(refused)
}
