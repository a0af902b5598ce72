//! The server's one error type and its single mapping to RFC 9457 problem responses.
//!
//! Handlers return `Result<_, ApiError>`. Client errors carry a stable `code` from the
//! contract; internal errors are logged with their cause chain and answered with a generic
//! 500 that leaks nothing. The same mapping gives WebSocket `error` events
//! ([`ApiError::ws_error`]): a code and message identical to the REST problem's.
//!
//! `Display` is for logs and may carry causes (database or broker errors); what clients see
//! comes from [`ApiError::public_detail`] only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nebula_wire::{Problem, ServerEvent};

use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("request body does not match the expected shape: {0}")]
    InvalidBody(String),
    #[error("{field}: {reason}")]
    Validation { field: &'static str, reason: String },
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("invalid path parameter: {0}")]
    InvalidPath(String),
    #[error("{detail}")]
    Unauthorized {
        code: &'static str,
        detail: &'static str,
    },
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("this username is already taken")]
    UsernameTaken,
    #[error("room not found")]
    RoomNotFound,
    #[error("user not found")]
    UserNotFound,
    #[error("that user is not a member of this room")]
    MemberNotFound,
    /// 403 for a public room the caller has not joined; 404 when leaving one.
    #[error("you are not a member of this room")]
    NotAMember { status: StatusCode },
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("message not found")]
    MessageNotFound,
    /// Blocked (either way), or `DM_POLICY=contacts` and not contacts.
    #[error("you cannot message this user")]
    CannotMessageUser,
    /// A membership change in a direct room.
    #[error("the members of a direct room cannot change")]
    DirectRoom,
    #[error("you are already contacts")]
    AlreadyContacts,
    /// No pending request with this id to the caller.
    #[error("contact request not found")]
    RequestNotFound,
    #[error("only the sender of a message may edit it")]
    NotMessageAuthor,
    #[error("this message can no longer be edited")]
    EditWindowExpired,
    #[error("this message was deleted")]
    MessageDeleted,
    #[error("this message already has the most distinct reactions allowed")]
    TooManyReactions,
    /// `reply_to` is not a message of the room.
    #[error("reply_to: {0}")]
    InvalidReply(String),
    /// An attachment that is not media the sender uploaded.
    #[error("attachments: {0}")]
    InvalidAttachment(String),
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    /// An upload that would take the uploader past `MEDIA_QUOTA_BYTES`.
    #[error("this upload would exceed your storage quota")]
    QuotaExceeded,
    /// No media with this id that the caller may read (or a bad or expired signed URL).
    #[error("media not found")]
    MediaNotFound,
    /// No unexpired story with this id that the caller may see.
    #[error("story not found")]
    StoryNotFound,
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many open WebSocket connections for this user; close one first")]
    TooManyConnections,
    /// A WebSocket frame that is not a known event (`error` event only).
    #[error("{0}")]
    InvalidEvent(String),
    /// A WebSocket holds `WS_MAX_SUBSCRIPTIONS_PER_CONNECTION` rooms already (`error` event only).
    #[error("this connection has too many subscriptions; unsubscribe from some rooms")]
    TooManySubscriptions,
    #[error("this endpoint needs a WebSocket upgrade: {0}")]
    NotWebSocket(String),
    /// A browser page of an origin not in `CORS_ALLOWED_ORIGINS` tried to open a WebSocket.
    #[error("pages of this origin may not open WebSockets on this server")]
    OriginNotAllowed,
    #[error("no such endpoint")]
    NotFound,
    /// A call event naming a call this connection is not part of (`error` event only).
    #[error("no call with this call_id is ringing or connected on this connection")]
    CallNotFound,
    /// A `call.invite` reusing the id of a call still going on.
    #[error("a call with this call_id is already in progress")]
    CallExists,
    /// A call event that does not fit the call's state (answering one's own call, …).
    #[error("{0}")]
    CallState(&'static str),
    #[error("TURN is not configured on this server (TURN_URIS and TURN_SECRET)")]
    TurnNotConfigured,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A dependency (the database) is unreachable; the cause is for the log only.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Too much work queued (password hashing): shed, with a time to come back.
    #[error("the server is busy; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &'static str, reason: impl Into<String>) -> Self {
        ApiError::Validation {
            field,
            reason: reason.into(),
        }
    }

    /// HTTP status, stable code and title of this error.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
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
            InvalidQuery(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "Invalid query parameters",
            ),
            InvalidPath(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "Invalid path parameter",
            ),
            Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code, "Unauthorized"),
            InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            ),
            UsernameTaken => (StatusCode::CONFLICT, "username_taken", "Username taken"),
            RoomNotFound => (StatusCode::NOT_FOUND, "room_not_found", "Room not found"),
            UserNotFound => (StatusCode::NOT_FOUND, "user_not_found", "User not found"),
            MemberNotFound => (
                StatusCode::NOT_FOUND,
                "member_not_found",
                "Member not found",
            ),
            NotAMember { status } => (*status, "not_a_member", "Not a member"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            CannotMessageUser => (
                StatusCode::FORBIDDEN,
                "cannot_message_user",
                "Cannot message user",
            ),
            DirectRoom => (StatusCode::CONFLICT, "direct_room", "Direct room"),
            AlreadyContacts => (StatusCode::CONFLICT, "already_contacts", "Already contacts"),
            RequestNotFound => (
                StatusCode::NOT_FOUND,
                "request_not_found",
                "Contact request not found",
            ),
            MessageNotFound => (
                StatusCode::NOT_FOUND,
                "message_not_found",
                "Message not found",
            ),
            NotMessageAuthor => (
                StatusCode::FORBIDDEN,
                "not_message_author",
                "Not the message's author",
            ),
            EditWindowExpired => (
                StatusCode::FORBIDDEN,
                "edit_window_expired",
                "Edit window expired",
            ),
            MessageDeleted => (StatusCode::CONFLICT, "message_deleted", "Message deleted"),
            TooManyReactions => (
                StatusCode::CONFLICT,
                "too_many_reactions",
                "Too many reactions",
            ),
            InvalidReply(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_reply",
                "Invalid reply",
            ),
            InvalidAttachment(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_attachment",
                "Invalid attachment",
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            QuotaExceeded => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "quota_exceeded",
                "Quota exceeded",
            ),
            MediaNotFound => (StatusCode::NOT_FOUND, "media_not_found", "Media not found"),
            StoryNotFound => (StatusCode::NOT_FOUND, "story_not_found", "Story not found"),
            RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            ),
            InvalidEvent(_) => (StatusCode::BAD_REQUEST, "invalid_event", "Invalid event"),
            TooManySubscriptions => (
                StatusCode::CONFLICT,
                "too_many_subscriptions",
                "Too many subscriptions",
            ),
            TooManyConnections => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                "Too many connections",
            ),
            NotWebSocket(_) => (
                StatusCode::UPGRADE_REQUIRED,
                "websocket_upgrade_required",
                "WebSocket upgrade required",
            ),
            OriginNotAllowed => (
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "Origin not allowed",
            ),
            NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            CallNotFound => (StatusCode::NOT_FOUND, "call_not_found", "Call not found"),
            CallExists => (StatusCode::CONFLICT, "call_exists", "Call already exists"),
            CallState(_) => (
                StatusCode::CONFLICT,
                "invalid_call_state",
                "Invalid call state",
            ),
            TurnNotConfigured => (
                StatusCode::NOT_FOUND,
                "turn_not_configured",
                "TURN not configured",
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Unavailable(_) | Busy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
            ),
        }
    }

    /// The stable code, also used for WebSocket `error` events.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// What a client may read about this error: client errors describe the client's input;
    /// the server's own failures say only what kind they are, never their cause.
    pub fn public_detail(&self) -> String {
        match self {
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".to_owned(),
            ApiError::Unavailable(_) => {
                "the service is temporarily unavailable; retry shortly".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The problem document for this error; internal causes are never exposed.
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        Problem {
            kind: format!("/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.public_detail(),
            code: code.to_owned(),
        }
    }

    /// The WebSocket `error` event for this error (`reference`: the `client_msg_id` or room it
    /// is about). The cause of a server failure is logged here, in the connection's span,
    /// which carries the upgrade's request id.
    pub fn ws_error(&self, reference: Option<String>) -> ServerEvent {
        self.log_cause();
        ServerEvent::Error {
            code: self.code().to_owned(),
            message: self.public_detail(),
            reference,
        }
    }

    /// Logs what clients are not told (in the current span: the request's or connection's).
    fn log_cause(&self) {
        match self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(error = %cause, "service unavailable"),
            _ => {}
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_cause();
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::NotWebSocket(_) = self {
            // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        if let ApiError::RateLimited { retry_after_secs } | ApiError::Busy { retry_after_secs } =
            self
        {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_failures_reach_clients_as_the_same_fixed_text_on_both_transports() {
        let cause = "error returned from database: relation \"room_members\" does not exist";
        for err in [
            ApiError::Internal(anyhow::anyhow!(cause)),
            ApiError::Unavailable(cause.to_owned()),
            ApiError::from(StoreError::Unavailable(cause.to_owned())),
        ] {
            let problem = err.problem();
            assert!(!problem.detail.contains("room_members"), "{problem:?}");
            let ServerEvent::Error { code, message, .. } = err.ws_error(None) else {
                panic!("an error event");
            };
            assert_eq!((code, message), (problem.code, problem.detail));
        }
        // Client errors keep their explanation.
        let err = ApiError::validation("content", "must not be empty");
        assert_eq!(err.public_detail(), "content: must not be empty");
    }
}
