//! The one extractor that authenticates REST requests.

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use nebula_wire::User;
use uuid::Uuid;

use super::TokenError;
use super::standing::Refusal;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Store;

/// The caller, proven by a valid `Authorization: Bearer` token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub username: String,
    /// Unix time the token expires at (the gateway closes sockets then).
    pub expires_at: i64,
    /// The account's token generation the token was issued in.
    pub generation: i64,
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl AuthUser {
    /// The caller's account. A valid token whose account no longer exists is refused like a
    /// bad token.
    pub async fn load(&self, store: &Store) -> Result<User, ApiError> {
        store
            .user_by_id(self.id)
            .await?
            .ok_or(ApiError::Unauthorized {
                code: "invalid_token",
                detail: "the account of this token does not exist",
            })
    }

    /// Verifies a raw token (from a header or the WebSocket `token` query parameter),
    /// signature, expiry and the account's standing (revoked generations, deactivation).
    pub async fn authenticate(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let caller = Self::from_token(state, token)?;
        let standing =
            state
                .standings
                .get(&state.store, caller.id)
                .await?
                .ok_or(ApiError::Unauthorized {
                    code: "invalid_token",
                    detail: "the account of this token does not exist",
                })?;
        match standing.refuses(caller.generation) {
            None => Ok(caller),
            Some(Refusal::Revoked) => Err(ApiError::Unauthorized {
                code: "token_revoked",
                detail: "this token was revoked (password change or logout everywhere); log in again",
            }),
            Some(Refusal::Deactivated) => Err(ApiError::AccountDeactivated),
        }
    }

    /// Verifies a token's signature and expiry only.
    fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        match state.tokens.verify(token) {
            Ok(claims) => Ok(AuthUser {
                id: claims.sub,
                username: claims.username,
                expires_at: claims.exp,
                generation: claims.generation,
            }),
            Err(TokenError::Expired) => Err(ApiError::Unauthorized {
                code: "token_expired",
                detail: "the access token has expired",
            }),
            Err(TokenError::Invalid) => Err(ApiError::Unauthorized {
                code: "invalid_token",
                detail: "the access token is invalid",
            }),
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized {
            code: "unauthorized",
            detail: "an Authorization: Bearer token is required",
        })?;
        AuthUser::authenticate(state, token).await
    }
}
