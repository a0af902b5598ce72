//! `/rooms/{room_id}/online`: who is online in a room, a page at a time.

use axum::extract::State;
use nebula_wire::{OnlinePage, OnlineQuery};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Path, Query};
use crate::access::visible_room;
use crate::auth::AuthUser;
use crate::domain::parse_limit;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(online))
}

/// Members online in the room (on any node), by username, a page at a time; visible to whoever
/// may see the room's member list.
#[utoipa::path(get, path = "/rooms/{room_id}/online", tag = "members", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), OnlineQuery),
    responses(
        (status = 200, body = OnlinePage),
        (status = 404, body = nebula_wire::Problem, description = "`room_not_found`"),
    ))]
async fn online(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
    Query(query): Query<OnlineQuery>,
) -> Result<axum::Json<OnlinePage>, ApiError> {
    let limit = usize::try_from(parse_limit("limit", query.limit)?).unwrap_or(usize::MAX);
    let after = query.after.as_deref().filter(|after| !after.is_empty());
    if after.is_some_and(|after| {
        after.len() > 32
            || !after
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }) {
        return Err(ApiError::InvalidQuery(
            "after must be a username (the `next` of the previous page)".into(),
        ));
    }
    visible_room(&state.store, room_id, caller.id).await?;
    let page = state.presence.online(room_id, after, limit).await;
    let next = (page.users.len() == limit)
        .then(|| page.users.last().map(|user| user.username.clone()))
        .flatten();
    Ok(axum::Json(OnlinePage {
        users: page.users,
        online_count: page.total,
        next,
    }))
}
