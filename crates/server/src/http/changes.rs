//! `/rooms/{room_id}/changes`: the change feed, for clients that were away.

use axum::extract::State;
use nebula_wire::{ChangesPage, ChangesQuery, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Path, Query};
use crate::access::member_room;
use crate::auth::AuthUser;
use crate::domain::parse_limit;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(changes))
}

/// Every message created or changed after `since_rev`, each in its current version, in
/// ascending `rev` (a message changed several times appears once, at its latest `rev`). One
/// index range scan at any depth of history.
#[utoipa::path(get, path = "/rooms/{room_id}/changes", tag = "messages", security(("bearer" = [])),
    params(("room_id" = Uuid, Path), ChangesQuery),
    responses(
        (status = 200, body = ChangesPage),
        (status = 403, body = Problem, description = "`not_a_member`"),
        (status = 404, body = Problem, description = "`room_not_found`"),
    ))]
async fn changes(
    State(state): State<AppState>,
    caller: AuthUser,
    Path(room_id): Path<Uuid>,
    Query(query): Query<ChangesQuery>,
) -> Result<axum::Json<ChangesPage>, ApiError> {
    let limit = i64::try_from(parse_limit("limit", query.limit)?).unwrap_or(i64::MAX);
    member_room(&state.store, room_id, caller.id).await?;
    // Read before the page: every rev up to it is committed, so the page holds all of them
    // above `since_rev` (when it is not cut by `limit`).
    let (_, last_rev) = state.store.room_positions(room_id).await?;
    let since = query.since_rev.unwrap_or(0);
    // One extra row answers `has_more` without a second query.
    let mut entries = state
        .store
        .changes(room_id, since, i64::MAX, None, limit.saturating_add(1))
        .await?;
    let has_more = i64::try_from(entries.len()).unwrap_or(i64::MAX) > limit;
    entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(axum::Json(ChangesPage {
        messages: entries.into_iter().map(|entry| entry.message).collect(),
        last_rev,
        has_more,
    }))
}
