//! Why the server closes a socket, and the close code it sends.

/// Close codes Nebula uses, as documented in the README's WebSocket guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 1000: the client closed, or asked to.
    Normal,
    /// 1001: no frame from the client within the idle timeout (a dead peer).
    IdleTimeout,
    /// 1008: too many invalid or rate-limited frames.
    Flooding,
    /// 1009: a frame over the size limit.
    TooBig,
    /// 1011: the server failed.
    ServerError,
    /// 1012: the server is restarting (graceful shutdown); reconnect with `since_seq`.
    Restarting,
    /// 4001: the access token expired; log in again.
    TokenExpired,
    /// 4001: the token was revoked (password change, logout everywhere) or the account
    /// deactivated; log in again.
    TokenRevoked,
    /// 4008: the client did not read fast enough and its outbound queue overflowed;
    /// reconnect with `since_seq`.
    SlowConsumer,
}

impl CloseReason {
    pub const ALL: [CloseReason; 9] = [
        CloseReason::Normal,
        CloseReason::IdleTimeout,
        CloseReason::Flooding,
        CloseReason::TooBig,
        CloseReason::ServerError,
        CloseReason::Restarting,
        CloseReason::TokenExpired,
        CloseReason::TokenRevoked,
        CloseReason::SlowConsumer,
    ];

    pub fn code(self) -> u16 {
        match self {
            CloseReason::Normal => 1000,
            CloseReason::IdleTimeout => 1001,
            CloseReason::Flooding => 1008,
            CloseReason::TooBig => 1009,
            CloseReason::ServerError => 1011,
            CloseReason::Restarting => 1012,
            CloseReason::TokenExpired | CloseReason::TokenRevoked => 4001,
            CloseReason::SlowConsumer => 4008,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Normal => "bye",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::Flooding => "too many invalid or rate-limited frames",
            CloseReason::TooBig => "frame too large",
            CloseReason::ServerError => "internal error",
            CloseReason::Restarting => "server restarting",
            CloseReason::TokenExpired => "token expired",
            CloseReason::TokenRevoked => "token revoked",
            CloseReason::SlowConsumer => "slow consumer",
        }
    }

    /// A label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Flooding => "flooding",
            CloseReason::TooBig => "too_big",
            CloseReason::ServerError => "server_error",
            CloseReason::Restarting => "restarting",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::TokenRevoked => "token_revoked",
            CloseReason::SlowConsumer => "slow_consumer",
        }
    }
}
