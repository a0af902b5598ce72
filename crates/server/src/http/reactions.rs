//! `/rooms/{room_id}/messages/{message_id}/reactions`: reacting, and who reacted.

use axum::extract::State;
use axum::http::StatusCode;
use nebula_wire::{Problem, ReactionList, ReactionUsers};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::Path;
use super::lifecycle::change;
use crate::access::member_room;
use crate::auth::AuthUser;
use crate::domain::Emoji;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Action;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reactions))
        .routes(routes!(react, unreact))
}

/// React to a message with an emoji (percent-encoded in the path). Reacting twice with the same
/// emoji is one reaction.
#[utoipa::path(put, path = "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}",
    tag = "messages", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path), ("emoji" = String, Path,
        description = "1–16 characters, no whitespace or control characters",
        min_length = 1, max_length = 16,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+$")),
    responses(
        (status = 204, description = "reacted (also when the caller already had)"),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
        (status = 409, body = Problem, description = "`message_deleted`, or `too_many_reactions`: the message has 20 distinct emoji already"),
        (status = 422, body = Problem, description = "`validation_failed`: not a valid emoji"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, %message_id))]
async fn react(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id, emoji)): Path<(Uuid, Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    let emoji = Emoji::parse(&emoji)?.into_inner();
    change(&state, &caller, room_id, message_id, Action::React(emoji)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove the caller's reaction.
#[utoipa::path(delete, path = "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}",
    tag = "messages", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path), ("emoji" = String, Path,
        description = "1–16 characters, no whitespace or control characters",
        min_length = 1, max_length = 16,
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+$")),
    responses(
        (status = 204, description = "removed (also when the caller had not reacted so)"),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
        (status = 422, body = Problem, description = "`validation_failed`: not a valid emoji"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, %room_id, %message_id))]
async fn unreact(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id, emoji)): Path<(Uuid, Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    let emoji = Emoji::parse(&emoji)?.into_inner();
    change(&state, &caller, room_id, message_id, Action::Unreact(emoji)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A message's reactions with who reacted, in the order of `message.reactions`.
#[utoipa::path(get, path = "/rooms/{room_id}/messages/{message_id}/reactions", tag = "messages",
    security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 200, body = ReactionList),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found` / `message_not_found`"),
    ))]
async fn list_reactions(
    State(state): State<AppState>,
    caller: AuthUser,
    Path((room_id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<axum::Json<ReactionList>, ApiError> {
    member_room(&state.store, room_id, caller.id).await?;
    let message = state
        .store
        .message(room_id, message_id)
        .await?
        .ok_or(ApiError::MessageNotFound)?;
    let records = state.store.reactions(message_id).await?;
    // Grouped in the message's order of emoji; the users in the order they reacted. The two
    // reads are not one snapshot: counts follow the users listed.
    let mut reactions: Vec<ReactionUsers> = message
        .reactions
        .iter()
        .map(|reaction| ReactionUsers {
            emoji: reaction.emoji.clone(),
            count: 0,
            users: Vec::new(),
        })
        .collect();
    for record in records {
        let group = match reactions.iter().position(|r| r.emoji == record.emoji) {
            Some(index) => &mut reactions[index],
            None => {
                reactions.push(ReactionUsers {
                    emoji: record.emoji,
                    count: 0,
                    users: Vec::new(),
                });
                let last = reactions.len() - 1;
                &mut reactions[last]
            }
        };
        group.count += 1;
        group.users.push(record.user);
    }
    reactions.retain(|reaction| reaction.count > 0);
    Ok(axum::Json(ReactionList { reactions }))
}
