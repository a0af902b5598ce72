//! Runtime configuration: every setting is a CLI flag and an environment variable.
//!
//! `Config` is parsed once in `main` and validated into plain values before anything starts, so
//! a bad setting stops the process with a message naming it instead of failing later.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Nebula real-time chat server.
#[derive(Debug, Clone, Parser)]
#[command(name = "nebula", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long = "addr", env = "BACKEND_ADDR", default_value = "0.0.0.0:3838")]
    pub addr: SocketAddr,

    /// `sqlite://path/to/file.db` (embedded, created on first start) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://nebula.db")]
    pub database_url: String,

    /// Maximum database connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// HS256 signing secret for access tokens, at least 32 bytes. Required unless dev mode.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, env = "JWT_TTL_SECONDS", default_value_t = 86_400)]
    pub jwt_ttl_seconds: u64,

    /// Development mode: without JWT_SECRET a random one is generated (tokens die with the
    /// process). Set to false in production.
    #[arg(long, env = "DEV_MODE", default_value_t = true, action = clap::ArgAction::Set)]
    pub dev_mode: bool,

    /// Register + login attempts per client IP per minute (0 disables).
    #[arg(long, env = "RATE_LIMIT_AUTH_PER_MINUTE", default_value_t = 30)]
    pub rate_limit_auth_per_minute: u32,

    /// Messages per user per second, bursts of 3× allowed (0 disables).
    #[arg(long, env = "RATE_LIMIT_MESSAGES_PER_SECOND", default_value_t = 10)]
    pub rate_limit_messages_per_second: u32,

    /// Take the client IP from `X-Forwarded-For` (only behind a trusted reverse proxy).
    #[arg(long, env = "TRUST_PROXY_HEADERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_proxy_headers: bool,

    /// Maximum message length in characters (Unicode scalar values).
    #[arg(long, env = "MESSAGE_MAX_CHARS", default_value_t = 4000)]
    pub message_max_chars: usize,

    /// Maximum request body size in bytes; larger bodies get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Maximum WebSocket message size in bytes; larger frames close the connection with 1009.
    #[arg(long, env = "WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,

    /// Events queued for one WebSocket client before it is disconnected as a slow consumer.
    #[arg(long, env = "WS_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub ws_outbound_queue: usize,

    /// Seconds between server pings on an idle WebSocket.
    #[arg(long, env = "WS_PING_INTERVAL_SECONDS", default_value_t = 20)]
    pub ws_ping_interval_seconds: u64,

    /// Seconds without any frame from a client before it is considered dead.
    #[arg(long, env = "WS_IDLE_TIMEOUT_SECONDS", default_value_t = 60)]
    pub ws_idle_timeout_seconds: u64,

    /// Most messages committed in one database transaction (group commit).
    #[arg(long, env = "WRITE_BATCH_MAX", default_value_t = 512)]
    pub write_batch_max: usize,

    /// Parallel message writers; rooms are spread over them by id. 0 picks 1 for SQLite
    /// (one writer is all it allows) and 4 for PostgreSQL.
    #[arg(long, env = "WRITERS", default_value_t = 0)]
    pub writers: usize,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Seconds to wait for in-flight work on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// A setting that cannot work, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// Shortest JWT secret accepted: HS256 is only as strong as its key.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl Config {
    /// Checks every setting and resolves the JWT secret (generating one in dev mode).
    ///
    /// Returns the secret separately so `Config` itself never needs mutating.
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        let jwt_secret = match (&self.jwt_secret, self.dev_mode) {
            (Some(secret), _) if secret.len() >= MIN_JWT_SECRET_BYTES => secret.clone(),
            (Some(_), false) => {
                return Err(invalid(
                    "JWT_SECRET",
                    format!(
                        "must be at least {MIN_JWT_SECRET_BYTES} bytes (try `openssl rand -hex 32`)"
                    ),
                ));
            }
            (None, false) => {
                return Err(invalid(
                    "JWT_SECRET",
                    "is required when DEV_MODE=false (try `openssl rand -hex 32`)",
                ));
            }
            (_, true) => {
                tracing::warn!(
                    "DEV_MODE: JWT_SECRET missing or shorter than {MIN_JWT_SECRET_BYTES} bytes; \
                     using a random secret, so tokens stop working when the process restarts. \
                     Set JWT_SECRET and DEV_MODE=false in production."
                );
                random_secret()
            }
        };
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if self.database_max_connections == 0 {
            return Err(invalid("DATABASE_MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.jwt_ttl_seconds == 0 {
            return Err(invalid("JWT_TTL_SECONDS", "must be at least 1"));
        }
        if self.message_max_chars == 0 {
            return Err(invalid("MESSAGE_MAX_CHARS", "must be at least 1"));
        }
        if self.body_limit_bytes < 1024 {
            return Err(invalid("BODY_LIMIT_BYTES", "must be at least 1024"));
        }
        if self.ws_max_message_bytes < 1024 {
            return Err(invalid("WS_MAX_MESSAGE_BYTES", "must be at least 1024"));
        }
        if self.ws_outbound_queue == 0 {
            return Err(invalid("WS_OUTBOUND_QUEUE", "must be at least 1"));
        }
        if self.ws_ping_interval_seconds == 0
            || self.ws_idle_timeout_seconds <= self.ws_ping_interval_seconds
        {
            return Err(invalid(
                "WS_IDLE_TIMEOUT_SECONDS",
                "must be greater than WS_PING_INTERVAL_SECONDS, which must be at least 1",
            ));
        }
        if self.write_batch_max == 0 || self.write_batch_max > 4096 {
            return Err(invalid("WRITE_BATCH_MAX", "must be between 1 and 4096"));
        }
        Ok(ValidConfig {
            config: self.clone(),
            jwt_secret,
        })
    }

    /// Settings for tests and embedding: defaults, with the given database.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        let mut config = Config::parse_from(["nebula"]);
        config.database_url = database_url.into();
        config
    }
}

/// A configuration that passed validation, with its resolved secret.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub jwt_secret: String,
}

impl ValidConfig {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.config.ws_ping_interval_seconds)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.ws_idle_timeout_seconds)
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
