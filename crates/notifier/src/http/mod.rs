//! The notifier's HTTP API: Web Push subscriptions of logged-in users.
//!
//! [`router`] is what the chat server merges into its own app when it runs the pipeline
//! in-process; the standalone binary wraps it with `/health`, `/metrics` and fallbacks
//! (see `crate::app`).

mod auth;
mod json;
mod subscriptions;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::endpoint::EndpointPolicy;
use crate::store::PushStore;

pub use auth::{AuthUser, Authenticator};
pub use json::JsonBody;
pub use subscriptions::{
    SubscribeRequest, SubscriptionKeys, SubscriptionResponse, UnsubscribeRequest, VapidPublicKey,
};

/// The OpenAPI description of [`router`]'s routes (the chat server merges it into its own
/// document when it serves them; security scheme `bearer`).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        subscriptions::subscribe,
        subscriptions::unsubscribe,
        subscriptions::vapid_public_key
    ),
    tags((name = "webpush", description = "Browser push subscriptions"))
)]
pub struct WebPushApi;

/// A subscription is well under 1 KiB; anything near this limit is not one.
const BODY_LIMIT: usize = 16 * 1024;

/// What the handlers need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    store: PushStore,
    auth: Arc<Authenticator>,
    vapid_public_key: Arc<str>,
    rules: SubscriptionRules,
}

/// What a browser may subscribe.
#[derive(Debug, Clone)]
pub struct SubscriptionRules {
    /// Which endpoints are accepted (`WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`); the push sender must
    /// use the same policy, or it refuses what was accepted here.
    pub endpoints: EndpointPolicy,
    /// Most subscriptions one user may have (`WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER`).
    pub max_per_user: u32,
}

/// `WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER` unless configured: a user's browsers and devices.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_USER: u32 = 10;

impl Default for SubscriptionRules {
    /// Public https endpoints only, [`DEFAULT_MAX_SUBSCRIPTIONS_PER_USER`] per user.
    fn default() -> Self {
        SubscriptionRules {
            endpoints: EndpointPolicy::default(),
            max_per_user: DEFAULT_MAX_SUBSCRIPTIONS_PER_USER,
        }
    }
}

impl ApiState {
    /// State over `store`, accepting tokens signed with `jwt_secret`, handing out
    /// `vapid_public_key` (base64url) to browsers, with the default [`SubscriptionRules`].
    pub fn new(store: PushStore, jwt_secret: &str, vapid_public_key: &str) -> Self {
        ApiState {
            store,
            auth: Arc::new(Authenticator::new(jwt_secret)),
            vapid_public_key: Arc::from(vapid_public_key),
            rules: SubscriptionRules::default(),
        }
    }

    /// The same state with other rules for subscriptions.
    pub fn with_rules(mut self, rules: SubscriptionRules) -> Self {
        self.rules = rules;
        self
    }
}

/// `POST /webpush/subscribe`, `DELETE /webpush/subscribe`, `GET /webpush/vapid-public-key`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/webpush/subscribe",
            post(subscriptions::subscribe).delete(subscriptions::unsubscribe),
        )
        .route(
            "/webpush/vapid-public-key",
            get(subscriptions::vapid_public_key),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
