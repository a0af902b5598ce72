//! `/users`: finding people, and naming another user in a request body.

use axum::extract::State;
use nebula_wire::{Problem, User, UserList, UserRef, UserSearchQuery};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{Path, Query};
use crate::auth::AuthUser;
use crate::domain::Username;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Store;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_users))
        .routes(routes!(get_user))
}

/// Most users one search returns.
const SEARCH_LIMIT: i64 = 20;

/// Users whose username starts with `q`, ignoring case, by username; at most 20.
#[utoipa::path(get, path = "/users", tag = "people", params(UserSearchQuery), security(("bearer" = [])),
    responses(
        (status = 200, body = UserList),
        (status = 400, body = Problem, description = "`invalid_query`: `q` missing, empty or longer than 32 characters"),
        (status = 401, body = Problem),
    ))]
async fn search_users(
    State(state): State<AppState>,
    _caller: AuthUser,
    Query(query): Query<UserSearchQuery>,
) -> Result<axum::Json<UserList>, ApiError> {
    let q = query.q;
    if q.is_empty() || q.chars().count() > 32 {
        return Err(ApiError::InvalidQuery("q must be 1–32 characters".into()));
    }
    // Usernames are `[A-Za-z0-9_.-]`: any other character matches nobody (and never reaches
    // the database, so `%`, `~` or NUL mean nothing there).
    let valid = q
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let users = if valid {
        state
            .store
            .search_users(&q.to_ascii_lowercase(), SEARCH_LIMIT)
            .await?
    } else {
        Vec::new()
    };
    Ok(axum::Json(UserList { users }))
}

/// One user.
#[utoipa::path(get, path = "/users/{user_id}", tag = "people", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses(
        (status = 200, body = User),
        (status = 404, body = Problem, description = "`user_not_found`"),
    ))]
async fn get_user(
    State(state): State<AppState>,
    _caller: AuthUser,
    Path(user_id): Path<Uuid>,
) -> Result<axum::Json<User>, ApiError> {
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    Ok(axum::Json(user))
}

/// The other user a body names (`user_id`, else `username`), who must not be the caller
/// (422 `validation_failed`) and must exist (404 `user_not_found`).
pub async fn other_user(
    store: &Store,
    caller: &AuthUser,
    named: &UserRef,
) -> Result<User, ApiError> {
    let user = match (named.user_id, named.username.as_deref()) {
        (Some(id), _) => store.user_by_id(id).await?,
        (None, Some(name)) => match Username::parse(name) {
            Ok(username) => store.user_by_username(&username.key()).await?,
            // No account can have a malformed name.
            Err(_) => None,
        },
        (None, None) => {
            return Err(ApiError::validation("user_id", "give user_id or username"));
        }
    };
    let user = user.ok_or(ApiError::UserNotFound)?;
    if user.id == caller.id {
        return Err(ApiError::validation(
            "user_id",
            "must be another user than yourself",
        ));
    }
    Ok(user)
}

/// The other user a path names, as [`other_user`].
pub async fn other_user_by_id(
    store: &Store,
    caller: &AuthUser,
    user_id: Uuid,
) -> Result<User, ApiError> {
    other_user(
        store,
        caller,
        &UserRef {
            user_id: Some(user_id),
            username: None,
        },
    )
    .await
}
