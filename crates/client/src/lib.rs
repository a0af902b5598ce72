//! A client for Nebula, in three layers:
//!
//! - [`Client`]: typed calls of every REST route of `/openapi.json` ([`routes::ALL`]), and
//!   [`Client::request`] for anything else;
//! - [`Connection`]: one WebSocket, typed events in and out, `subscribe` → `subscribed`;
//! - [`Session`]: a WebSocket session that resumes with `since_seq`/`since_rev` after any
//!   disconnect (backoff with jitter), delivers each room's messages once and in `seq` order,
//!   applies `message.updated` by `rev`, and re-sends unacked messages with the same
//!   `client_msg_id` so they are stored once. The same semantics as the TypeScript client in
//!   `clients/typescript`.
//!
//! reqwest is built without a TLS provider in this workspace: install one (e.g.
//! `rustls::crypto::ring::default_provider().install_default()`) before the first client.

mod calls;
mod rest;
pub mod routes;
mod session;
mod socket;

pub use nebula_wire as wire;
pub use rest::Client;
pub use session::{Session, SessionEvent};
pub use socket::{Connection, Socket, Subscribed};
pub use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use nebula_wire::Problem;
use tokio_tungstenite::tungstenite;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error status; `problem` is its RFC 9457 document.
    #[error("{status} {}: {}", .problem.code, .problem.detail)]
    Api { status: u16, problem: Box<Problem> },
    /// A typed call got a 2xx that the OpenAPI document does not give for its route (e.g. 200
    /// where creating answers 201): client and server disagree about what happened.
    #[error("{method} {path} answered {status}, not one of {expected:?}")]
    UnexpectedStatus {
        method: &'static str,
        path: &'static str,
        status: u16,
        expected: &'static [u16],
    },
    /// An `error` event answered a WebSocket request.
    #[error("the server refused the event: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("WebSocket: {0}")]
    Socket(Box<tungstenite::Error>),
    /// The server closed the WebSocket with a close frame.
    #[error("the server closed the socket ({code:?}): {reason}")]
    ClosedByServer { code: Option<u16>, reason: String },
    /// A frame that is not an event of the protocol.
    #[error("unreadable frame ({reason}): {frame}")]
    Unreadable { frame: String, reason: String },
    /// The session or socket has ended.
    #[error("the session is closed")]
    Closed,
}

impl From<tungstenite::Error> for Error {
    fn from(err: tungstenite::Error) -> Self {
        Error::Socket(Box::new(err))
    }
}

impl Error {
    /// The problem's `code` of an API refusal, or the `code` of a refused event.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { problem, .. } => Some(&problem.code),
            Error::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
