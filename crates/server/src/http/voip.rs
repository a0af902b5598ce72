//! `/voip/turn`: TURN credentials for calls (the signalling itself is on the WebSocket).

use axum::extract::State;
use nebula_wire::TurnCredentials;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::AuthUser;
use crate::calls::turn_credentials;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(turn))
}

/// Time-limited TURN credentials (coturn's REST API): valid for `ttl` seconds on the servers
/// of `uris`, which share `TURN_SECRET` with this server.
#[utoipa::path(get, path = "/voip/turn", tag = "calls", security(("bearer" = [])),
    responses(
        (status = 200, body = TurnCredentials),
        (status = 401, body = nebula_wire::Problem, description = "missing, invalid or expired token"),
        (status = 404, body = nebula_wire::Problem, description = "`turn_not_configured`: TURN_URIS and TURN_SECRET are not set"),
    ))]
async fn turn(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<axum::Json<TurnCredentials>, ApiError> {
    let turn = state
        .config
        .turn
        .as_ref()
        .ok_or(ApiError::TurnNotConfigured)?;
    let ttl = i64::try_from(turn.ttl_seconds).unwrap_or(i64::MAX);
    let expires_at = chrono::Utc::now().timestamp().saturating_add(ttl);
    let (username, password) = turn_credentials(&turn.secret, caller.id, expires_at);
    Ok(axum::Json(TurnCredentials {
        uris: turn.uris.clone(),
        username,
        password,
        ttl: turn.ttl_seconds,
    }))
}
