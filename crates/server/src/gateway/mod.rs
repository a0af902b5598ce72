//! The WebSocket gateway: `/ws` and `/ws/rooms/{room_id}`.
//!
//! The page's origin (see `http::security`), authentication and, for the room endpoint,
//! membership are checked before the upgrade, so a refused client gets an ordinary
//! 401/403/404 problem response and no socket. After the
//! upgrade each socket is one [`connection::Connection`] task.

mod budget;
mod close;
mod connection;
mod events;
pub mod outbound;
pub mod registry;
mod transport;
pub mod typing;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use nebula_wire::{Problem, Rev, Seq};
use serde::Deserialize;
use tracing::Instrument;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub use close::CloseReason;
use transport::WsUpgrade;
use tungstenite::protocol::WebSocketConfig;

use crate::access::member_room;
use crate::auth::{AuthUser, bearer_token};
use crate::error::ApiError;
use crate::http::extract::{Path, Query};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(connect))
        .routes(routes!(connect_to_room))
}

/// Query of the WebSocket endpoints.
#[derive(Debug, Deserialize, IntoParams)]
pub struct WsQuery {
    /// The access token (browsers cannot set headers on WebSockets); `Authorization: Bearer`
    /// works too.
    token: Option<String>,
    /// `/ws/rooms/{room_id}` only: replay messages after this seq before live ones.
    since_seq: Option<Seq>,
    /// `/ws/rooms/{room_id}` only: then replay changes after this rev of the older messages.
    since_rev: Option<Rev>,
}

/// Open a WebSocket; subscribe to rooms with `subscribe` events.
#[utoipa::path(get, path = "/ws", tag = "realtime", params(WsQuery),
    responses(
        (status = 101, description = "switching to the WebSocket protocol (see the README's protocol guide)"),
        (status = 401, body = Problem, description = "missing, invalid or expired token"),
        (status = 403, body = Problem, description = "`origin_not_allowed`: a browser page of an origin not in `CORS_ALLOWED_ORIGINS`"),
        (status = 426, body = Problem, description = "`websocket_upgrade_required`: a plain HTTP request (send the WebSocket upgrade headers)"),
        (status = 429, body = Problem, description = "`too_many_connections`: the user has `WS_MAX_CONNECTIONS_PER_USER` sockets open on this node"),
    ))]
async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    upgrade: Result<WsUpgrade, ApiError>,
) -> Result<Response, ApiError> {
    state.config.allowed_origins().check_websocket(&headers)?;
    let caller = authenticate(&state, &headers, query.token.as_deref()).await?;
    accept(state, caller, upgrade?, None).await
}

/// Open a WebSocket already subscribed to one room.
#[utoipa::path(get, path = "/ws/rooms/{room_id}", tag = "realtime",
    params(("room_id" = Uuid, Path), WsQuery),
    responses(
        (status = 101, description = "switching to the WebSocket protocol, subscribed to the room"),
        (status = 401, body = Problem),
        (status = 403, body = Problem, description = "`not_a_member`, or `origin_not_allowed` (see `/ws`)"),
        (status = 404, body = Problem, description = "`room_not_found`"),
        (status = 426, body = Problem, description = "`websocket_upgrade_required`"),
        (status = 429, body = Problem, description = "`too_many_connections`"),
    ))]
async fn connect_to_room(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(room_id): Path<Uuid>,
    Query(query): Query<WsQuery>,
    upgrade: Result<WsUpgrade, ApiError>,
) -> Result<Response, ApiError> {
    state.config.allowed_origins().check_websocket(&headers)?;
    let caller = authenticate(&state, &headers, query.token.as_deref()).await?;
    member_room(&state.store, room_id, caller.id).await?;
    let initial = (room_id, query.since_seq, query.since_rev);
    accept(state, caller, upgrade?, Some(initial)).await
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<AuthUser, ApiError> {
    let token = query_token
        .or_else(|| bearer_token(headers))
        .ok_or(ApiError::Unauthorized {
            code: "unauthorized",
            detail: "a token is required (?token= or Authorization: Bearer)",
        })?;
    AuthUser::authenticate(state, token).await
}

/// Bytes read from a socket per read call; also what an idle connection keeps allocated.
const READ_BUFFER_BYTES: usize = 1024;

/// tungstenite's settings for reading a connection. Its defaults (128 KiB read buffer, 64 MiB
/// messages) would cost ~134 KiB per idle connection and let one client make the server buffer
/// huge frames. The read buffer stays allocated for the connection's life, so it is sized for
/// chat traffic: several ordinary messages per read call; a larger frame grows it while it is
/// read. (Measured at 10k idle sockets: 2 KiB cost 8.5 KiB of RSS per connection, 1 KiB 7.5.)
/// tungstenite only writes control frames, straight into the connection's outbound.
pub(super) fn ws_config(state: &AppState) -> WebSocketConfig {
    let limit = state.config.config.ws_max_message_bytes;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

async fn accept(
    state: AppState,
    caller: AuthUser,
    upgrade: WsUpgrade,
    initial_room: Option<(Uuid, Option<Seq>, Option<Rev>)>,
) -> Result<Response, ApiError> {
    let permit = state
        .user_connections
        .acquire(caller.id, state.config.config.ws_max_connections_per_user)
        .ok_or(ApiError::TooManyConnections)?;
    let user = caller.load(&state.store).await?;
    // Registered before the upgrade: a revocation from now on closes this socket with 4001.
    let standing = state.standings.watch(caller.id, caller.generation);
    let tracker = state.connections.clone();
    // A child of the upgrade request's span, so the session's logs carry its request id.
    let span = tracing::info_span!("ws", user_id = %user.id);
    Ok(upgrade.on_upgrade(move |io| {
        tracker.track_future(
            connection::Connection::run(
                io,
                state,
                user,
                (permit, standing),
                caller.expires_at,
                initial_room,
            )
            .instrument(span),
        )
    }))
}
