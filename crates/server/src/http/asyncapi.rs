//! `/asyncapi.json`: the WebSocket protocol as an AsyncAPI 3.0 document, generated from the
//! wire types (`nebula_wire::asyncapi`) next to the OpenAPI document of the REST API.

use std::sync::LazyLock;

use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(|| {
    nebula_wire::asyncapi::document(
        env!("CARGO_PKG_VERSION"),
        include_str!("../../../../docs/WEBSOCKET.md"),
    )
});

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(asyncapi))
}

/// The WebSocket protocol (`/ws`, `/ws/rooms/{room_id}`) as an AsyncAPI 3.0 document: one
/// message per client and server event type.
#[utoipa::path(get, path = "/asyncapi.json", tag = "realtime",
    responses((status = 200, body = Object, description = "an AsyncAPI 3.0 document")))]
async fn asyncapi() -> Json<serde_json::Value> {
    Json(DOCUMENT.clone())
}
