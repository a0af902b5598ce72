//! Bearer-token authentication with the chat server's HS256 JWTs.
//!
//! The notifier does not issue tokens; it only checks the ones the server signed with the
//! shared `JWT_SECRET`, so a user who is logged in to the chat can subscribe here directly.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiState;
use crate::error::Error;

/// The claims the chat server puts in its tokens.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: Uuid,
    username: String,
}

/// Verifies tokens. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// Verifies HS256 tokens signed with `secret`.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Same rule as the server: one issuer, one clock, so an expired token is expired.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Authenticator {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    fn verify(&self, token: &str) -> Result<AuthUser, Error> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => Error::Unauthorized {
                        code: "token_expired",
                        detail: "the access token has expired",
                    },
                    _ => Error::Unauthorized {
                        code: "invalid_token",
                        detail: "the access token is invalid",
                    },
                }
            })?;
        Ok(AuthUser {
            id: data.claims.sub,
            username: data.claims.username,
        })
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// The caller, as proven by a valid `Authorization: Bearer <JWT>` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
    pub username: String,
}

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Error> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(Error::Unauthorized {
                code: "unauthorized",
                detail: "an `Authorization: Bearer <token>` header is required",
            })?;
        state.auth.verify(token)
    }
}
