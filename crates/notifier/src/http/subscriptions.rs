//! `POST/DELETE /webpush/subscribe` and `GET /webpush/vapid-public-key`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use nebula_wire::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use web_push_native::p256;

use super::auth::AuthUser;
use super::json::JsonBody;
use super::{ApiState, SubscriptionRules};
use crate::endpoint::normalize;
use crate::error::{Error, Result};
use crate::store::NewSubscription;
use crate::vapid::decode_base64url;

/// A browser `PushSubscription` as `subscription.toJSON()` gives it. Other fields
/// (`expirationTime`) are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscribeRequest {
    /// The push service URL: `https` and a public host (unless
    /// `WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`), at most 2048 bytes.
    #[schema(max_length = 2048, pattern = "^https?://")]
    pub endpoint: String,
    pub keys: SubscriptionKeys,
}

/// The subscription's encryption keys, base64url.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's uncompressed P-256 public key (65 bytes).
    #[schema(pattern = "^[A-Za-z0-9_-]{87}=?$")]
    pub p256dh: String,
    /// The 16-byte authentication secret.
    #[schema(pattern = "^[A-Za-z0-9_-]{22}(==)?$")]
    pub auth: String,
}

/// `DELETE /webpush/subscribe` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UnsubscribeRequest {
    /// 1–2048 bytes; any spelling of a stored endpoint.
    #[schema(min_length = 1, max_length = 2048)]
    pub endpoint: String,
}

/// What a stored subscription looks like to its owner.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionResponse {
    pub id: Uuid,
    pub endpoint: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /webpush/vapid-public-key` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VapidPublicKey {
    /// Pass to `pushManager.subscribe({applicationServerKey})`.
    pub public_key: String,
}

/// Longest endpoint accepted; real push service URLs are a few hundred bytes.
const MAX_ENDPOINT_LEN: usize = 2048;

/// Stores (or refreshes) the caller's browser subscription.
///
/// 422 `invalid_subscription` for an endpoint that may not be pushed to; 409
/// `too_many_subscriptions` for a new endpoint beyond the per-user limit.
#[utoipa::path(post, path = "/webpush/subscribe", tag = "webpush", security(("bearer" = [])),
    request_body = SubscribeRequest,
    responses(
        (status = 201, body = SubscriptionResponse, description = "stored, or refreshed"),
        (status = 409, body = Problem, description = "`too_many_subscriptions`: `WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER` other browsers are subscribed"),
        (status = 422, body = Problem, description = "`invalid_subscription` (an endpoint that may not be pushed to) / `validation_failed` (keys that are not a P-256 key and a 16-byte secret) / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn subscribe(
    State(state): State<ApiState>,
    user: AuthUser,
    JsonBody(body): JsonBody<SubscribeRequest>,
) -> Result<impl IntoResponse> {
    let new = validate(body, &state.rules)?;
    let max = state.rules.max_per_user;
    let stored = state
        .store
        .upsert_subscription_within(user.id, &new, max)
        .await?
        .ok_or(Error::TooManySubscriptions { max })?;
    let response = SubscriptionResponse {
        id: stored.id,
        endpoint: stored.endpoint,
        created_at: stored.created_at,
    };
    Ok((StatusCode::CREATED, Json(response)))
}

/// Forgets the caller's subscription for an endpoint. 204 whether or not it existed, so a
/// client can always retry it.
#[utoipa::path(delete, path = "/webpush/subscribe", tag = "webpush", security(("bearer" = [])),
    request_body = UnsubscribeRequest,
    responses(
        (status = 204, description = "forgotten (or never stored)"),
        (status = 422, body = Problem, description = "`validation_failed` / `invalid_body`"),
    ))]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn unsubscribe(
    State(state): State<ApiState>,
    user: AuthUser,
    JsonBody(body): JsonBody<UnsubscribeRequest>,
) -> Result<StatusCode> {
    if body.endpoint.is_empty() || body.endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(Error::validation(
            "endpoint",
            format!("must be 1 to {MAX_ENDPOINT_LEN} bytes"),
        ));
    }
    state
        .store
        .remove_subscription(user.id, &body.endpoint)
        .await?;
    // Stored endpoints are normalised; rows from before that are as the browser gave them.
    if let Ok(normal) = normalize(&body.endpoint)
        && normal.as_str() != body.endpoint
    {
        state
            .store
            .remove_subscription(user.id, normal.as_str())
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The key browsers must subscribe with. Public, so a page can fetch it before login.
#[utoipa::path(get, path = "/webpush/vapid-public-key", tag = "webpush",
    responses((status = 200, body = VapidPublicKey)))]
pub async fn vapid_public_key(State(state): State<ApiState>) -> Json<VapidPublicKey> {
    Json(VapidPublicKey {
        public_key: state.vapid_public_key.to_string(),
    })
}

/// Checks everything a push will need, so bad input fails here with a 422 instead of
/// failing every push later; the endpoint is stored normalised (so two spellings of one URL
/// are one subscription), keys as base64url without padding.
fn validate(body: SubscribeRequest, rules: &SubscriptionRules) -> Result<NewSubscription> {
    if body.endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(Error::InvalidSubscription(format!(
            "must be at most {MAX_ENDPOINT_LEN} bytes"
        )));
    }
    let endpoint = rules
        .endpoints
        .check(&body.endpoint)
        .map_err(|refused| Error::InvalidSubscription(refused.to_string()))?;

    let p256dh = decode_base64url(&body.keys.p256dh)
        .ok_or_else(|| Error::validation("keys.p256dh", "must be base64url"))?;
    if p256dh.len() != 65 || p256::PublicKey::from_sec1_bytes(&p256dh).is_err() {
        return Err(Error::validation(
            "keys.p256dh",
            "must be an uncompressed P-256 public key (65 bytes)",
        ));
    }
    let auth = decode_base64url(&body.keys.auth)
        .ok_or_else(|| Error::validation("keys.auth", "must be base64url"))?;
    if auth.len() != 16 {
        return Err(Error::validation("keys.auth", "must be 16 bytes"));
    }

    use base64::Engine as _;
    let encode = |raw: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    Ok(NewSubscription {
        endpoint: endpoint.into(),
        p256dh: encode(&p256dh),
        auth: encode(&auth),
    })
}
