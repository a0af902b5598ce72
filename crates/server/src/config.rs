//! Runtime configuration: every setting is a CLI flag and an environment variable.
//!
//! `Config` is parsed once in `main` and validated into plain values before anything starts, so
//! a bad setting stops the process with a message naming it instead of failing later.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::http::client_ip::TrustedProxies;
use crate::http::security::AllowedOrigins;

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
    #[arg(
        long,
        env = "JWT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
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

    /// Failed logins per account (the username, whether or not it exists) per hour; the whole
    /// hour's allowance may be used at once (0 disables).
    #[arg(
        long,
        env = "RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR",
        default_value_t = 20
    )]
    pub rate_limit_login_failures_per_account_per_hour: u32,

    /// Password hashes (logins and sign-ups) that may wait for a hashing thread; beyond this
    /// they are refused with 503 and `Retry-After`.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 64)]
    pub password_hash_queue: usize,

    /// Comma-separated CIDRs of the reverse proxies in front of the server (e.g.
    /// `10.0.0.0/8,::1/128`). A request from one of them is attributed to the right-most
    /// `X-Forwarded-For` address that is not a trusted proxy. Empty: the TCP peer is the client.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        default_value = "",
        hide_default_value = true
    )]
    pub trusted_proxies: TrustedProxies,

    /// Replaced by TRUSTED_PROXIES; still read so that a deployment relying on it fails to
    /// start instead of silently seeing every client as its proxy.
    #[arg(long, env = "TRUST_PROXY_HEADERS", hide = true)]
    pub trust_proxy_headers: Option<String>,

    /// Comma-separated web origins (`https://chat.example.com`) whose pages may call the REST
    /// API and open WebSockets; `*` allows any. Empty: the server's own origin only.
    #[arg(
        long,
        env = "CORS_ALLOWED_ORIGINS",
        default_value = "",
        hide_default_value = true
    )]
    pub cors_allowed_origins: AllowedOrigins,

    /// Maximum message length in characters (Unicode scalar values).
    #[arg(long, env = "MESSAGE_MAX_CHARS", default_value_t = 4000)]
    pub message_max_chars: usize,

    /// Seconds after posting during which its sender may edit a message (0: no limit).
    #[arg(long, env = "MESSAGE_EDIT_WINDOW_SECONDS", default_value_t = 0)]
    pub message_edit_window_seconds: u64,

    /// Messages after a member's last read seq that `unread_count` examines: it is exact up
    /// to this many behind, and beyond counts only the first this many (bounded work per room).
    #[arg(long, env = "UNREAD_COUNT_MAX", default_value_t = 1000)]
    pub unread_count_max: u32,

    /// Who may open a direct room with a user: `everyone`, or only their `contacts`.
    #[arg(long, env = "DM_POLICY", value_enum, default_value_t = DmPolicy::Everyone)]
    pub dm_policy: DmPolicy,

    /// Maximum request body size in bytes; larger bodies get 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Maximum WebSocket message size in bytes; larger frames close the connection with 1009.
    #[arg(long, env = "WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,

    /// Events queued for one WebSocket client before it is disconnected as a slow consumer.
    #[arg(long, env = "WS_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub ws_outbound_queue: usize,

    /// Milliseconds a committed batch of messages waits for the next ones before they are
    /// written to the sockets together (0: no wait). In very busy rooms this trades that much
    /// latency for fewer writes: each socket takes every event of the window in one system
    /// call. Acknowledgements wait with their messages (a sender is answered after its
    /// message was published).
    #[arg(long, env = "WS_WRITE_DELAY_MS", default_value_t = 0)]
    pub ws_write_delay_ms: u64,

    /// Frames other than `message.send` (typing, read, subscribe, unsubscribe, ping) one
    /// WebSocket may send per second, bursts of 5× allowed (0 disables). Over it: `error`
    /// `rate_limited`; a client that keeps going is closed with 1008.
    #[arg(long, env = "WS_FRAMES_PER_SECOND", default_value_t = 20)]
    pub ws_frames_per_second: u32,

    /// The same budget per user, shared by all their connections on every node (0 disables).
    #[arg(long, env = "WS_USER_FRAMES_PER_SECOND", default_value_t = 50)]
    pub ws_user_frames_per_second: u32,

    /// Rooms one WebSocket may be subscribed to at once.
    #[arg(
        long,
        env = "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 500
    )]
    pub ws_max_subscriptions: usize,

    /// WebSockets one user may have open on one node (0: no cap); more get 429.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_USER", default_value_t = 20)]
    pub ws_max_connections_per_user: usize,

    /// Online users listed in a `subscribed` event (the first by username; `online_count`
    /// gives the total and `GET /rooms/{id}/online` pages through the rest). Small, because
    /// every subscriber of a busy room receives the list.
    #[arg(long, env = "SUBSCRIBED_ONLINE_MAX", default_value_t = 20)]
    pub subscribed_online_max: usize,

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

    /// `redis://…`: run as one node of a cluster. Real-time events, presence and rate limits
    /// are then shared through Redis. Unset: a single node with an in-process bus.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Usernames made server admins at start, comma-separated. Applied to the accounts that
    /// exist at that moment only: registering a listed name later grants nothing (or anyone
    /// could claim it). Grant and revoke later with `nebula admin grant|revoke USERNAME`.
    #[arg(long, env = "ADMIN_USERNAMES", value_delimiter = ',')]
    pub admin_usernames: Vec<String>,

    /// An operator's command instead of serving (see `nebula help admin`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Prefix of every Redis key and channel (several clusters may share one Redis).
    #[arg(long, env = "REDIS_PREFIX", default_value = "nebula")]
    pub redis_prefix: String,

    /// `nats://…` (or `tls://…`): run as one node of a cluster on NATS instead of Redis. Events
    /// go over core pub/sub, presence and rate limits live in JetStream key-value buckets, so
    /// the server needs JetStream enabled (`nats-server -js`). Not together with `REDIS_URL`.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,

    /// Prefix of every NATS subject and key-value bucket (several clusters may share one NATS);
    /// letters, digits, `-` and `_`.
    #[arg(long, env = "NATS_PREFIX", default_value = "nebula")]
    pub nats_prefix: String,

    /// Milliseconds a subscriber waits for a message that another node published out of order
    /// before reading it from the database.
    #[arg(long, env = "BUS_GAP_WAIT_MS", default_value_t = 250)]
    pub bus_gap_wait_ms: u64,

    /// Seconds between checks of every watched room against the database (repairs events
    /// lost between nodes, e.g. during a Redis outage).
    #[arg(long, env = "BUS_RECONCILE_SECONDS", default_value_t = 5)]
    pub bus_reconcile_seconds: u64,

    /// Seconds after which the users of a node that stopped heart-beating go offline.
    #[arg(long, env = "PRESENCE_TTL_SECONDS", default_value_t = 30)]
    pub presence_ttl_seconds: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Seconds to wait for in-flight work on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,

    /// `amqp://user:pass@host:5672/%2f`: publish membership notifications to RabbitMQ for
    /// `nebula-notifier`. Unset: deliver them in-process (embedded Web Push, no broker).
    #[arg(long, env = "RABBIT_URL", hide_env_values = true)]
    pub rabbit_url: Option<String>,

    /// Queue (and routing key) notifications are published to; the notifier consumes it.
    #[arg(
        long,
        env = "RABBIT_QUEUE",
        default_value = "room_member.notifications"
    )]
    pub rabbit_queue: String,

    /// VAPID public key, base64url (embedded mode). Optional: derived from the private key,
    /// and checked against it when given.
    #[arg(long, env = "WEBPUSH_VAPID_PUBLIC_KEY")]
    pub webpush_vapid_public_key: Option<String>,

    /// VAPID private key, base64url (embedded mode; `nebula-notifier generate-vapid-keys`).
    /// Without it, dev mode uses a throwaway key and production disables embedded Web Push.
    #[arg(
        long,
        env = "WEBPUSH_VAPID_PRIVATE_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub webpush_vapid_private_key: Option<String>,

    /// VAPID contact, `mailto:…` or `https://…` (embedded mode; required with the key
    /// unless dev mode).
    #[arg(long, env = "WEBPUSH_VAPID_SUBJECT")]
    pub webpush_vapid_subject: Option<String>,

    /// Also accept and push to endpoints on loopback, private, link-local and other
    /// non-public addresses, and over plain http (embedded mode). For local testing only.
    #[arg(
        long,
        env = "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub webpush_allow_private_endpoints: bool,

    /// Most push subscriptions (browsers, devices) one user may have (embedded mode).
    #[arg(
        long,
        env = "WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER",
        default_value_t = nebula_notifier::http::DEFAULT_MAX_SUBSCRIPTIONS_PER_USER
    )]
    pub webpush_max_subscriptions_per_user: u32,

    /// In-process delivery attempts per notification before it is dead-lettered.
    #[arg(long, env = "OUTBOX_MAX_ATTEMPTS", default_value_t = 10)]
    pub outbox_max_attempts: u32,

    /// Seconds a `call.invite` rings before the call ends with `call.hangup` `timeout`.
    #[arg(long, env = "CALL_RING_TIMEOUT_SECONDS", default_value_t = 60)]
    pub call_ring_timeout_seconds: u64,

    /// Comma-separated TURN/STUN URIs handed out by `GET /voip/turn`
    /// (e.g. `turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349`).
    /// Unset (or without `TURN_SECRET`): `GET /voip/turn` answers 404 `turn_not_configured`.
    #[arg(long, env = "TURN_URIS")]
    pub turn_uris: Option<String>,

    /// coturn's `static-auth-secret` (`use-auth-secret`): signs the time-limited TURN
    /// credentials.
    #[arg(
        long,
        env = "TURN_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub turn_secret: Option<String>,

    /// Lifetime of issued TURN credentials, in seconds.
    #[arg(long, env = "TURN_TTL_SECONDS", default_value_t = 86_400)]
    pub turn_ttl_seconds: u64,

    /// Where users reach this server (links in e-mail: password reset, unsubscribe), e.g.
    /// `https://chat.example.com`. Default: `http://localhost:<port>`.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

    /// SMTP relay for in-process e-mail (without `RABBIT_URL`; with it, `nebula-notifier`
    /// sends): `smtp://host:port` (plain), `smtp://host:587?tls=required` (STARTTLS),
    /// `smtps://user:password@host:465` (implicit TLS). Unset: no e-mail is sent.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Shortcut for Resend's relay (`smtps://resend:KEY@smtp.resend.com:465`) when `SMTP_URL`
    /// is unset.
    #[arg(long, env = "RESEND_API_KEY", hide_env_values = true)]
    pub resend_api_key: Option<String>,

    /// Sender of e-mail: `nebula@example.com` or `Nebula <nebula@example.com>`.
    #[arg(long, env = "FROM_EMAIL")]
    pub from_email: Option<String>,

    /// Default digest interval: a user with no open connection gets at most one e-mail digest
    /// of unread direct messages and mentions per this many minutes (1–10080; each user may
    /// choose their own with `PUT /me/notifications`).
    #[arg(long, env = "EMAIL_DIGEST_MINUTES", default_value_t = 15)]
    pub email_digest_minutes: u32,

    /// Overrides `EMAIL_DIGEST_MINUTES` with an interval in seconds for users who did not
    /// choose one (for tests and demos; 1–604800). Unset: minutes as above.
    #[arg(long, env = "EMAIL_DIGEST_SECONDS")]
    pub email_digest_seconds: Option<u64>,

    /// Where uploads are kept: `fs://path` (a directory, created on first start) or
    /// `s3://bucket[/prefix]` (with `S3_ENDPOINT`, `S3_REGION`, `S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY`). Every node of a cluster must name the same S3 bucket.
    #[arg(long, env = "MEDIA_STORE", default_value = "fs://./media")]
    pub media_store: String,

    /// S3 endpoint URL (e.g. `http://127.0.0.1:9000` for a local S3-compatible server); unset
    /// means AWS.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Largest upload, in bytes (413 `payload_too_large` as soon as a body passes it).
    #[arg(long, env = "MEDIA_MAX_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub media_max_bytes: u64,

    /// Bytes of uploads one user may keep (413 `quota_exceeded` beyond).
    #[arg(long, env = "MEDIA_QUOTA_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub media_quota_bytes: u64,

    /// Lifetime of the signed media URLs handed out on media objects (`url`), in seconds.
    /// A URL stays valid between one and two such periods (stable within one, so caches work).
    #[arg(long, env = "MEDIA_URL_TTL_SECONDS", default_value_t = 3600)]
    pub media_url_ttl_seconds: u64,

    /// Uploads referenced by no message or story are removed this long after upload.
    #[arg(long, env = "MEDIA_ORPHAN_SECONDS", default_value_t = 86_400)]
    pub media_orphan_seconds: u64,

    /// How often the media janitor removes orphaned uploads and expired stories, in seconds.
    #[arg(long, env = "MEDIA_SWEEP_SECONDS", default_value_t = 60)]
    pub media_sweep_seconds: u64,

    /// Lifetime of a story, in seconds.
    #[arg(long, env = "STORY_TTL_SECONDS", default_value_t = 86_400)]
    pub story_ttl_seconds: u64,

    /// Keys for encryption at rest of message content, edit history and stored files:
    /// `id:base64key,…` (32-byte AES-256 keys). The first encrypts; every listed key decrypts.
    /// Unset: stored in the clear. Rotate by listing a new key first, then `nebula rekey`.
    #[arg(long, env = "ENCRYPTION_KEYS", hide_env_values = true)]
    pub encryption_keys: Option<String>,
}

/// Operator commands: run against the database, then exit (the server need not be running).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Server admins.
    Admin {
        #[command(subcommand)]
        action: AdminCommand,
    },
    /// Re-encrypt every message, edit-history version and stored file not under the first
    /// key of ENCRYPTION_KEYS (plaintext included), while the server runs; then the older
    /// keys can be removed. Resumable: run it again after an interruption.
    Rekey {
        /// Rows per batch (each batch is one short transaction).
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Make an existing account a server admin.
    Grant { username: String },
    /// Take server admin rights away from an account.
    Revoke { username: String },
}

/// Who may open a direct room (`POST /dms`) with whom. Blocks apply under either policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DmPolicy {
    /// Any user who has not blocked (and is not blocked by) the other.
    Everyone,
    /// Only users who are each other's contacts.
    Contacts,
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
    /// The cluster engine's URL and key prefix, when this node is part of a cluster.
    pub fn cluster_url(&self) -> Option<(&str, &str)> {
        match (&self.redis_url, &self.nats_url) {
            (Some(url), _) => Some((url, &self.redis_prefix)),
            (None, Some(url)) => Some((url, &self.nats_prefix)),
            (None, None) => None,
        }
    }

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
        if !(1..=crate::digest::MAX_MINUTES).contains(&self.email_digest_minutes) {
            return Err(invalid(
                "EMAIL_DIGEST_MINUTES",
                format!("must be 1-{}", crate::digest::MAX_MINUTES),
            ));
        }
        if self
            .email_digest_seconds
            .is_some_and(|seconds| !(1..=604_800).contains(&seconds))
        {
            return Err(invalid("EMAIL_DIGEST_SECONDS", "must be 1-604800"));
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
        if self.unread_count_max == 0 {
            return Err(invalid("UNREAD_COUNT_MAX", "must be at least 1"));
        }
        if self.body_limit_bytes < 1024 {
            return Err(invalid("BODY_LIMIT_BYTES", "must be at least 1024"));
        }
        if self.ws_max_message_bytes < 1024 {
            return Err(invalid("WS_MAX_MESSAGE_BYTES", "must be at least 1024"));
        }
        // One committed batch reaches a subscriber as one burst; a queue smaller than a batch
        // would drop clients that read perfectly well.
        if self.ws_outbound_queue < self.write_batch_max {
            return Err(invalid(
                "WS_OUTBOUND_QUEUE",
                "must be at least WRITE_BATCH_MAX",
            ));
        }
        if self.ws_write_delay_ms > 1000 {
            return Err(invalid("WS_WRITE_DELAY_MS", "must be at most 1000"));
        }
        if self.ws_max_subscriptions == 0 {
            return Err(invalid(
                "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
                "must be at least 1",
            ));
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
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }
        if let Some(url) = &self.nats_url {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return Err(invalid("NATS_URL", "must start with nats:// or tls://"));
            }
            // Subjects split on `.` and treat `*`/`>` as wildcards; bucket names allow only these.
            if self.nats_prefix.is_empty()
                || !self
                    .nats_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "NATS_PREFIX",
                    "must be letters, digits, '-' and '_' only",
                ));
            }
            if self.redis_url.is_some() {
                return Err(invalid(
                    "NATS_URL",
                    "set either REDIS_URL or NATS_URL, not both: a cluster runs on one engine",
                ));
            }
        }
        if self.password_hash_queue == 0 {
            return Err(invalid("PASSWORD_HASH_QUEUE", "must be at least 1"));
        }
        if self.bus_reconcile_seconds == 0 {
            return Err(invalid("BUS_RECONCILE_SECONDS", "must be at least 1"));
        }
        if !(3..=60).contains(&self.presence_ttl_seconds) {
            return Err(invalid("PRESENCE_TTL_SECONDS", "must be between 3 and 60"));
        }
        if let Some(value) = &self.trust_proxy_headers
            && !matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false"
            )
        {
            return Err(invalid(
                "TRUST_PROXY_HEADERS",
                "was replaced by TRUSTED_PROXIES: list your proxies' addresses \
                 (e.g. TRUSTED_PROXIES=10.0.0.0/8) and unset TRUST_PROXY_HEADERS",
            ));
        }
        if !(1..=3600).contains(&self.call_ring_timeout_seconds) {
            return Err(invalid(
                "CALL_RING_TIMEOUT_SECONDS",
                "must be between 1 and 3600",
            ));
        }
        if self.media_max_bytes == 0 {
            return Err(invalid("MEDIA_MAX_BYTES", "must be at least 1"));
        }
        // At most ten years: times are computed as now ± these, which must stay dates.
        const TEN_YEARS: u64 = 10 * 366 * 86_400;
        for (name, value) in [
            ("MEDIA_URL_TTL_SECONDS", self.media_url_ttl_seconds),
            ("MEDIA_SWEEP_SECONDS", self.media_sweep_seconds),
            ("STORY_TTL_SECONDS", self.story_ttl_seconds),
            ("MEDIA_ORPHAN_SECONDS", self.media_orphan_seconds.max(1)),
        ] {
            if !(1..=TEN_YEARS).contains(&value) {
                return Err(invalid(name, "must be between 1 and 316224000 (ten years)"));
            }
        }
        crate::media::StoreLocation::parse(&self.media_store)
            .map_err(|reason| invalid("MEDIA_STORE", &reason))?;
        let turn = self.turn()?;
        crate::outbox::validate_settings(self)?;
        let vapid = crate::outbox::embedded_vapid_keys(self)?;
        let keyring = self.keyring()?;
        Ok(ValidConfig {
            config: self.clone(),
            jwt_secret,
            vapid,
            turn,
            keyring,
        })
    }

    /// The keys of `ENCRYPTION_KEYS` (none when unset).
    pub fn keyring(&self) -> Result<crate::at_rest::Keyring, ConfigError> {
        crate::at_rest::Keyring::parse(self.encryption_keys.as_deref().unwrap_or(""))
            .map_err(|reason| invalid("ENCRYPTION_KEYS", reason))
    }

    /// The TURN settings, when both `TURN_URIS` and `TURN_SECRET` are set (only one of them is
    /// refused: it is a half-done configuration, not a choice).
    fn turn(&self) -> Result<Option<TurnSettings>, ConfigError> {
        let uris: Vec<String> = self
            .turn_uris
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|uri| !uri.is_empty())
            .map(str::to_owned)
            .collect();
        let secret = self.turn_secret.clone().filter(|secret| !secret.is_empty());
        let secret = match (uris.is_empty(), secret) {
            (true, None) => return Ok(None),
            (false, Some(secret)) => secret,
            (true, Some(_)) => {
                return Err(invalid(
                    "TURN_URIS",
                    "TURN_SECRET is set: list the TURN URIs too",
                ));
            }
            (false, None) => {
                return Err(invalid(
                    "TURN_SECRET",
                    "TURN_URIS is set: the shared secret is required",
                ));
            }
        };
        if let Some(uri) = uris.iter().find(|uri| {
            !["turn:", "turns:", "stun:", "stuns:"]
                .iter()
                .any(|scheme| uri.starts_with(scheme))
        }) {
            return Err(invalid(
                "TURN_URIS",
                format!("`{uri}` is not a turn:, turns:, stun: or stuns: URI"),
            ));
        }
        if !(60..=7 * 86_400).contains(&self.turn_ttl_seconds) {
            return Err(invalid("TURN_TTL_SECONDS", "must be between 60 and 604800"));
        }
        Ok(Some(TurnSettings {
            uris,
            secret,
            ttl_seconds: self.turn_ttl_seconds,
        }))
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
    /// Web Push keys for in-process delivery; `None` with `RABBIT_URL` (the notifier signs)
    /// or when embedded Web Push is disabled (see `outbox::embedded_vapid_keys`).
    pub vapid: Option<nebula_notifier::VapidKeys>,
    /// `GET /voip/turn`'s settings; `None` when TURN is not configured.
    pub turn: Option<TurnSettings>,
    /// Keys for encryption at rest (empty: none).
    pub keyring: crate::at_rest::Keyring,
}

/// A validated TURN configuration (coturn's REST API / `use-auth-secret`).
#[derive(Clone)]
pub struct TurnSettings {
    pub uris: Vec<String>,
    pub secret: String,
    pub ttl_seconds: u64,
}

impl std::fmt::Debug for TurnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSettings")
            .field("uris", &self.uris)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl ValidConfig {
    /// `PUBLIC_URL`, or `http://localhost:<port>`.
    pub fn public_url(&self) -> String {
        match crate::outbox::non_empty(&self.config.public_url) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://localhost:{}", self.config.addr.port()),
        }
    }

    /// Origins whose pages may call the API besides the server's own (`CORS_ALLOWED_ORIGINS`).
    pub fn allowed_origins(&self) -> &AllowedOrigins {
        &self.config.cors_allowed_origins
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.config.ws_ping_interval_seconds)
    }

    pub fn gap_wait(&self) -> Duration {
        Duration::from_millis(self.config.bus_gap_wait_ms)
    }

    pub fn call_ring_timeout(&self) -> Duration {
        Duration::from_secs(self.config.call_ring_timeout_seconds)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.ws_idle_timeout_seconds)
    }

    /// How long after posting a message may be edited; `None`: no limit.
    pub fn edit_window(&self) -> Option<Duration> {
        match self.config.message_edit_window_seconds {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        }
    }

    /// See `UNREAD_COUNT_MAX`.
    pub fn unread_window(&self) -> i64 {
        i64::from(self.config.unread_count_max)
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["nebula"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).expect("flags parse")
    }

    fn refusal(args: &[&str]) -> String {
        parse(args)
            .validate()
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn dm_policy_is_everyone_unless_set_and_refuses_other_values() {
        assert_eq!(parse(&[]).dm_policy, DmPolicy::Everyone);
        assert_eq!(
            parse(&["--dm-policy", "contacts"]).dm_policy,
            DmPolicy::Contacts
        );
        let err = Config::try_parse_from(["nebula", "--dm-policy", "friends"])
            .expect_err("must be refused");
        assert!(err.to_string().contains("friends"), "{err}");
    }

    #[test]
    fn production_without_a_strong_secret_refuses_to_start() {
        let message = refusal(&["--dev-mode", "false"]);
        assert!(message.contains("JWT_SECRET"), "{message}");
        let message = refusal(&["--dev-mode", "false", "--jwt-secret", "short"]);
        assert!(message.contains("JWT_SECRET"), "{message}");
    }

    #[test]
    fn dev_mode_generates_a_secret() {
        let config = parse(&["--dev-mode", "true"]).validate().unwrap();
        assert!(config.jwt_secret.len() >= MIN_JWT_SECRET_BYTES);
    }

    /// Random secrets and base64url keys can begin with `-`; as flag values they are still
    /// values, not options (a generated VAPID key did this in CI).
    #[test]
    fn secrets_may_start_with_a_hyphen() {
        let secret = "-secret-that-is-long-enough-for-hs256-0123";
        let key = "-ZQ5S9mF0p0hGxr3wvsbQ2uWm7sJ5rW9Pp2y2Q1vX9c";
        let config = parse(&["--jwt-secret", secret, "--webpush-vapid-private-key", key]);
        assert_eq!(config.jwt_secret.as_deref(), Some(secret));
        assert_eq!(config.webpush_vapid_private_key.as_deref(), Some(key));
    }

    #[test]
    fn each_invalid_setting_is_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--database-url", "mysql://x"], "DATABASE_URL"),
            (
                &["--database-max-connections", "0"],
                "DATABASE_MAX_CONNECTIONS",
            ),
            (&["--ws-max-message-bytes", "10"], "WS_MAX_MESSAGE_BYTES"),
            (&["--ws-outbound-queue", "8"], "WS_OUTBOUND_QUEUE"),
            (&["--ws-write-delay-ms", "1001"], "WS_WRITE_DELAY_MS"),
            (&["--media-store", "ftp://x"], "MEDIA_STORE"),
            (&["--media-store", "s3://"], "MEDIA_STORE"),
            (&["--media-max-bytes", "0"], "MEDIA_MAX_BYTES"),
            (&["--story-ttl-seconds", "0"], "STORY_TTL_SECONDS"),
            (
                &["--media-orphan-seconds", "99999999999"],
                "MEDIA_ORPHAN_SECONDS",
            ),
            (&["--media-url-ttl-seconds", "0"], "MEDIA_URL_TTL_SECONDS"),
            (
                &["--ws-idle-timeout-seconds", "5"],
                "WS_IDLE_TIMEOUT_SECONDS",
            ),
            (
                &["--write-batch-max", "0", "--ws-outbound-queue", "8"],
                "WRITE_BATCH_MAX",
            ),
            (&["--trust-proxy-headers", "true"], "TRUSTED_PROXIES"),
            (&["--password-hash-queue", "0"], "PASSWORD_HASH_QUEUE"),
            (&["--nats-url", "redis://x"], "NATS_URL"),
            (
                &["--nats-url", "nats://x", "--nats-prefix", "a.b"],
                "NATS_PREFIX",
            ),
            (
                &["--nats-url", "nats://x", "--redis-url", "redis://x"],
                "NATS_URL",
            ),
        ];
        for (args, setting) in cases {
            let message = refusal(args);
            assert!(message.contains(setting), "{args:?} → {message}");
        }
    }

    #[test]
    fn the_cluster_engine_is_redis_or_nats_with_its_own_prefix() {
        assert_eq!(parse(&[]).cluster_url(), None);
        let redis = parse(&["--redis-url", "redis://h:6379", "--redis-prefix", "r"]);
        assert_eq!(redis.cluster_url(), Some(("redis://h:6379", "r")));
        let nats = parse(&["--nats-url", "nats://h:4222", "--nats-prefix", "n"]);
        assert!(nats.validate().is_ok());
        assert_eq!(nats.cluster_url(), Some(("nats://h:4222", "n")));
    }

    #[test]
    fn proxies_and_origins_are_parsed_and_checked_at_start() {
        let config = parse(&[
            "--trusted-proxies",
            "10.0.0.0/8, ::1/128",
            "--cors-allowed-origins",
            "https://chat.example.com",
        ]);
        assert!(!config.trusted_proxies.is_empty());
        assert_eq!(
            config.cors_allowed_origins,
            AllowedOrigins::List(vec!["https://chat.example.com".into()])
        );
        assert!(parse(&[]).trusted_proxies.is_empty());
        assert_eq!(parse(&[]).cors_allowed_origins, AllowedOrigins::SameOrigin);
        for args in [
            ["--trusted-proxies", "10.0.0.0/33"],
            ["--cors-allowed-origins", "chat.example.com"],
        ] {
            let err = Config::try_parse_from(["nebula", args[0], args[1]]).unwrap_err();
            assert!(err.to_string().contains(args[0]), "{err}");
        }
        // The old switch off is harmless; on, it stops the start and names its replacement.
        assert!(
            parse(&["--trust-proxy-headers", "false"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_malformed_value_is_a_parse_error_naming_the_flag() {
        let err = Config::try_parse_from(["nebula", "--addr", "not-an-address"]).unwrap_err();
        assert!(err.to_string().contains("--addr"), "{err}");
    }
}
