//! The HTTP API: one module per resource, merged here with the cross-cutting layers.

mod account;
mod admin;
mod asyncapi;
mod auth;
mod changes;
pub mod client_ip;
pub mod compression;
mod contacts;
mod dms;
mod email;
mod erasure;
pub mod extract;
mod lifecycle;
mod media;
mod media_limits;
mod members;
mod messages;
mod meta;
mod notification_settings;
mod online;
mod openapi;
mod people;
mod reactions;
mod reports;
mod rooms;
pub mod security;
mod stories;
mod voip;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::track_http;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Nebula",
        // The WebSocket guide is part of the API page, so `/docs` documents both halves.
        description = include_str!("../../../../docs/WEBSOCKET.md")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "admin", description = "Server administration (server admins only)"),
        (name = "moderation", description = "Reporting messages and users to the server's admins"),
        (name = "rooms", description = "Public and private rooms"),
        (name = "members", description = "Joining, adding and leaving"),
        (name = "people", description = "Direct rooms, people search, contacts and blocks"),
        (name = "messages", description = "History, posting, replies, edits, deletes, reactions and the change feed"),
        (name = "realtime", description = "WebSocket endpoints"),
        (name = "media", description = "Uploads (disk or S3), served safely; attach them to messages and stories"),
        (name = "stories", description = "Posts that expire after STORY_TTL_SECONDS, seen by the author and their contacts"),
        (name = "calls", description = "Call set-up: TURN credentials (signalling is on the WebSocket)"),
        (name = "operations", description = "Health, metrics, service info"),
        (name = "webpush", description = "Browser push subscriptions (in-process notifications only)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The routes of the API and their OpenAPI document, as generated.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(asyncapi::routes())
        .merge(auth::routes())
        .merge(account::routes())
        .merge(erasure::routes())
        .merge(email::routes())
        .merge(notification_settings::routes())
        .merge(admin::routes())
        .merge(reports::routes())
        .merge(rooms::routes())
        .merge(members::routes())
        .merge(online::routes())
        .merge(messages::routes())
        .merge(lifecycle::routes())
        .merge(reactions::routes())
        .merge(changes::routes())
        .merge(dms::routes())
        .merge(people::routes())
        .merge(contacts::routes())
        .merge(media::routes())
        .merge(media_limits::routes())
        .merge(stories::routes())
        .merge(meta::routes())
        .merge(voip::routes())
        .merge(crate::gateway::routes())
        .split_for_parts()
}

/// The generated document with what every route of a kind can answer (see `openapi`). JSON
/// from here on: some constraints (`not`) have no place in utoipa's types.
fn refined(document: utoipa::openapi::OpenApi) -> serde_json::Value {
    // Serializing utoipa's plain structs cannot fail.
    let mut value = serde_json::to_value(&document).unwrap_or_default();
    openapi::refine(&mut value);
    value
}

/// The OpenAPI document (refined JSON) of a server that does or does not serve the Web Push
/// subscription API in-process.
pub fn openapi(with_webpush: bool) -> serde_json::Value {
    let mut document = api().1;
    if with_webpush {
        document.merge(nebula_notifier::WebPushApi::openapi());
    }
    refined(document)
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the server with its middleware.
pub fn router(state: AppState) -> Router {
    let api_routes = api().0;
    let openapi = openapi(state.outbox.serves_webpush());
    let body_limit = state.config.config.body_limit_bytes;
    let cors = state.config.allowed_origins().cors_layer();
    api_routes
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", openapi))
        .merge(crate::web::router())
        .merge(state.outbox.webpush_routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(track_http))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Inside the panic catcher, so a panic's problem JSON is compressed like any.
                .layer(compression::layer())
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
                }))
                .option_layer(cors),
        )
        // Outermost, so that every response gets them: CORS preflights and panics included.
        .layer(axum::middleware::from_fn(security::security_headers))
        .with_state(state)
}
