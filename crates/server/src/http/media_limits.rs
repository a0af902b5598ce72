//! `GET /media/limits`: the upload limits and the caller's use of their quota, so a client can
//! refuse a file that is too large before sending it.

use axum::extract::State;
use nebula_wire::{MediaLimits, Problem};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(limits))
}

/// The largest upload (`MEDIA_MAX_BYTES`), the per-user quota (`MEDIA_QUOTA_BYTES`) and how
/// much of it the caller's uploads take.
#[utoipa::path(get, path = "/media/limits", tag = "media", security(("bearer" = [])),
    responses(
        (status = 200, body = MediaLimits),
        (status = 401, body = Problem),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn limits(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<MediaLimits>, ApiError> {
    let config = &state.config.config;
    let used_bytes = state.store.media_bytes_of(caller.id).await?;
    Ok(axum::Json(MediaLimits {
        max_bytes: i64::try_from(config.media_max_bytes).unwrap_or(i64::MAX),
        quota_bytes: i64::try_from(config.media_quota_bytes).unwrap_or(i64::MAX),
        used_bytes,
    }))
}
