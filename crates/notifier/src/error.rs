//! The crate's one error type and its single mapping to RFC 9457 problem responses.
//!
//! HTTP handlers, the store, the push sender and the consumer all return [`Error`]. Client
//! errors carry a stable `code`; everything else is logged with its cause and answered with a
//! generic body that leaks nothing about the database, the broker or the push services.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nebula_wire::Problem;

/// Everything the notification service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- client errors (4xx) ----
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body does not match the expected shape: {0}")]
    InvalidBody(String),
    #[error("{field}: {reason}")]
    Validation { field: &'static str, reason: String },
    /// A push endpoint this service will not push to (see `crate::endpoint`).
    #[error("endpoint {0}")]
    InvalidSubscription(String),
    #[error("a user may have at most {max} push subscriptions; unsubscribe a browser first")]
    TooManySubscriptions { max: u32 },
    #[error("{detail}")]
    Unauthorized {
        code: &'static str,
        detail: &'static str,
    },
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,

    // ---- delivery outcomes the consumer acts on ----
    /// Some pushes of an event failed transiently; the event is not marked processed, so a
    /// retry pushes only to the subscriptions that have not received it yet.
    #[error("{failed} of {attempted} pushes failed transiently")]
    Incomplete { failed: usize, attempted: usize },
    /// A broker message that is not a notification this version understands: retrying cannot
    /// help, so it goes straight to the dead-letter queue.
    #[error("malformed notification: {0}")]
    MalformedEvent(String),

    // ---- operator and infrastructure errors ----
    #[error("invalid setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    #[error("invalid VAPID key: {0}")]
    VapidKey(String),
    #[error("could not build the push request: {0}")]
    PushBuild(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message: {0}")]
    BrokerNack(String),
    #[error("HTTP client error: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 422 naming the offending field.
    pub fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Validation {
            field,
            reason: reason.into(),
        }
    }

    /// A setting that cannot work, named so the operator knows what to fix.
    pub fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            setting,
            reason: reason.into(),
        }
    }

    /// HTTP status, stable code and title of this error.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use Error::*;
        match self {
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            InvalidBody(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "Invalid request body",
            ),
            Validation { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            InvalidSubscription(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_subscription",
                "Invalid subscription",
            ),
            TooManySubscriptions { .. } => (
                StatusCode::CONFLICT,
                "too_many_subscriptions",
                "Too many subscriptions",
            ),
            Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code, "Unauthorized"),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            // A pool that cannot hand out a connection is an outage, not a bug: say so, so
            // clients and load balancers retry instead of reporting a server fault.
            Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
            ),
        }
    }

    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The problem document for this error; server-side causes are never exposed.
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = if status.is_server_error() {
            "the service could not complete the request; the cause has been logged".to_owned()
        } else {
            self.to_string()
        };
        Problem {
            kind: format!("/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, code = problem.code, "request failed");
        }
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
