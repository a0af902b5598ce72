//! A JSON body extractor whose failures are this crate's problem responses.
//!
//! axum's `Json` answers bad bodies with plain-text errors; clients of Nebula get RFC 9457
//! documents with a stable `code` instead: 400 for broken JSON, 422 for the wrong shape,
//! 413 over the body limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Parses the request body as JSON into `T`, whatever the `Content-Type`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge
                } else {
                    Error::InvalidBody(rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| match err.classify() {
                serde_json::error::Category::Data => Error::InvalidBody(err.to_string()),
                _ => Error::MalformedJson(err.to_string()),
            })
    }
}
