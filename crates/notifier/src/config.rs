//! Configuration of the `nebula-notifier` binary: every setting is a flag and an env var.
//!
//! Parsed once in `main` and validated into [`ValidConfig`] before anything starts, so a bad
//! setting stops the process with a message naming it instead of failing on the first push.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::consumer::ConsumerConfig;
use crate::endpoint::EndpointPolicy;
use crate::error::{Error, Result};
use crate::http::{DEFAULT_MAX_SUBSCRIPTIONS_PER_USER, SubscriptionRules};
use crate::topology::QUEUE;
use crate::vapid::VapidKeys;

/// Nebula's notification service: Web Push for room membership changes.
#[derive(Debug, Clone, Parser)]
#[command(name = "nebula-notifier", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// What to do; serving is the default.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the RabbitMQ consumer (the default).
    Serve,
    /// Print a new VAPID key pair as `WEBPUSH_VAPID_*` environment lines, then exit.
    GenerateVapidKeys,
}

/// Every runtime setting.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Port of the HTTP API, `/health` and `/metrics` (listening on 0.0.0.0).
    #[arg(long, env = "HTTP_PORT", default_value_t = 3010)]
    pub http_port: u16,

    /// `sqlite://path/to/file.db` or `postgres://…`; usually the chat server's database.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://nebula.db")]
    pub database_url: String,

    /// Maximum database connections in the pool.
    #[arg(long, env = "NOTIFIER_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,

    /// HS256 secret the chat server signs access tokens with. Required unless dev mode.
    #[arg(
        long,
        env = "JWT_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub jwt_secret: Option<String>,

    /// Development mode: missing JWT secret or VAPID keys are replaced by random ones.
    #[arg(long, env = "DEV_MODE", default_value_t = true, action = clap::ArgAction::Set)]
    pub dev_mode: bool,

    /// RabbitMQ URL (vhost `/` is `%2f`).
    #[arg(
        long,
        env = "RABBIT_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub rabbit_url: String,

    /// Queue to consume; its retry and dead-letter queues are named after it.
    #[arg(long, env = "RABBIT_QUEUE", default_value = QUEUE)]
    pub rabbit_queue: String,

    /// Unacked messages (and so events pushed concurrently) per consumer.
    #[arg(long, env = "NOTIFIER_PREFETCH", default_value_t = 16)]
    pub prefetch: u16,

    /// Attempts per event before it goes to the dead-letter queue.
    #[arg(long, env = "NOTIFIER_MAX_ATTEMPTS", default_value_t = 10)]
    pub max_attempts: u32,

    /// Wait before the second attempt, in ms; doubles per attempt.
    #[arg(long, env = "NOTIFIER_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,

    /// Longest wait between attempts, in ms.
    #[arg(long, env = "NOTIFIER_RETRY_MAX_MS", default_value_t = 300_000)]
    pub retry_max_ms: u64,

    /// VAPID public key, base64url (checked against the private key).
    #[arg(long, env = "WEBPUSH_VAPID_PUBLIC_KEY")]
    pub vapid_public_key: Option<String>,

    /// VAPID private key, base64url. Required unless dev mode.
    #[arg(
        long,
        env = "WEBPUSH_VAPID_PRIVATE_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub vapid_private_key: Option<String>,

    /// Contact push services can reach: `mailto:…` or `https://…`. Required unless dev mode.
    #[arg(long, env = "WEBPUSH_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,

    /// How long a push service may hold an undelivered push (TTL header), in seconds.
    #[arg(long, env = "WEBPUSH_TTL_SECONDS", default_value_t = 86_400)]
    pub push_ttl_seconds: u64,

    /// Also accept and push to endpoints on loopback, private, link-local and other
    /// non-public addresses, and over plain http. For local testing only: with it, anyone who
    /// can subscribe can make this service send requests into its own network.
    #[arg(
        long,
        env = "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub allow_private_endpoints: bool,

    /// Most push subscriptions (browsers, devices) one user may have.
    #[arg(
        long,
        env = "WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER",
        default_value_t = DEFAULT_MAX_SUBSCRIPTIONS_PER_USER
    )]
    pub max_subscriptions_per_user: u32,

    /// Days to remember processed event ids for dedupe.
    #[arg(long, env = "NOTIFIER_PROCESSED_RETENTION_DAYS", default_value_t = 30)]
    pub processed_retention_days: u32,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// SMTP relay for e-mail: `smtp://host:port` (plain), `…?tls=required` (STARTTLS),
    /// `smtps://user:password@host:465` (implicit TLS). Unset: e-mail events are dropped.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// Shortcut for Resend's relay (`smtps://resend:KEY@smtp.resend.com:465`) when `SMTP_URL`
    /// is unset.
    #[arg(long, env = "RESEND_API_KEY", hide_env_values = true)]
    pub resend_api_key: Option<String>,

    /// Sender of e-mail: `nebula@example.com` or `Nebula <nebula@example.com>`.
    #[arg(long, env = "FROM_EMAIL")]
    pub from_email: Option<String>,

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

/// Shortest JWT secret accepted outside dev mode (same rule as the server).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Used in dev mode when no subject is configured.
const DEV_VAPID_SUBJECT: &str = "mailto:dev@nebula.invalid";

/// A configuration that passed validation, with its resolved secrets.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub config: Config,
    pub jwt_secret: String,
    pub vapid: VapidKeys,
}

impl Config {
    /// Checks every setting and resolves the secrets (random ones in dev mode).
    pub fn validate(&self) -> Result<ValidConfig> {
        let dev = self.dev_mode;
        let jwt_secret = match &self.jwt_secret {
            Some(secret) if secret.len() >= MIN_JWT_SECRET_BYTES || (dev && !secret.is_empty()) => {
                secret.clone()
            }
            _ if !dev => {
                return Err(Error::config(
                    "JWT_SECRET",
                    format!(
                        "is required, at least {MIN_JWT_SECRET_BYTES} bytes, and must match the chat server's"
                    ),
                ));
            }
            _ => {
                tracing::warn!(
                    "DEV_MODE: no JWT_SECRET; using a random one, so no token will be accepted"
                );
                uuid::Uuid::new_v4().simple().to_string()
            }
        };
        let subject = match (&self.vapid_subject, dev) {
            (Some(subject), _) => subject.clone(),
            (None, true) => DEV_VAPID_SUBJECT.to_owned(),
            (None, false) => {
                return Err(Error::config(
                    "WEBPUSH_VAPID_SUBJECT",
                    "is required (mailto:… or https://…)",
                ));
            }
        };
        let vapid = match (&self.vapid_private_key, dev) {
            (Some(private), _) => {
                VapidKeys::from_base64(private, self.vapid_public_key.as_deref(), &subject)?
            }
            (None, true) => {
                tracing::warn!(
                    "DEV_MODE: no WEBPUSH_VAPID_PRIVATE_KEY; using a throwaway key pair, so \
                     subscriptions stop working on restart (see `nebula-notifier generate-vapid-keys`)"
                );
                VapidKeys::ephemeral(&subject)?
            }
            (None, false) => {
                return Err(Error::config(
                    "WEBPUSH_VAPID_PRIVATE_KEY",
                    "is required (create one with `nebula-notifier generate-vapid-keys`)",
                ));
            }
        };
        if self.max_attempts == 0 {
            return Err(Error::config("NOTIFIER_MAX_ATTEMPTS", "must be at least 1"));
        }
        if self.prefetch == 0 {
            return Err(Error::config("NOTIFIER_PREFETCH", "must be at least 1"));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(Error::config(
                "NOTIFIER_RETRY_MAX_MS",
                "must be at least NOTIFIER_RETRY_BASE_MS, which must be at least 1",
            ));
        }
        if self.max_subscriptions_per_user == 0 {
            return Err(Error::config(
                "WEBPUSH_MAX_SUBSCRIPTIONS_PER_USER",
                "must be at least 1",
            ));
        }
        if self.allow_private_endpoints {
            tracing::warn!(
                "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS=true: push endpoints on private and loopback \
                 addresses and plain http are accepted; never set it in production"
            );
        }
        if self.processed_retention_days == 0 {
            return Err(Error::config(
                "NOTIFIER_PROCESSED_RETENTION_DAYS",
                "must be at least 1",
            ));
        }
        Ok(ValidConfig {
            config: self.clone(),
            jwt_secret,
            vapid,
        })
    }

    /// Defaults (as if started with no flags or env) for tests and embedding.
    pub fn defaults() -> Self {
        Cli::parse_from(["nebula-notifier"]).config
    }
}

impl ValidConfig {
    /// The SMTP mailer, if e-mail is configured (call inside the runtime: it owns a pool).
    pub fn mailer(&self) -> Result<Option<crate::mail::Mailer>> {
        let c = &self.config;
        crate::mail::Mailer::from_settings(
            c.smtp_url.as_deref(),
            c.resend_api_key.as_deref(),
            c.from_email.as_deref(),
        )
    }

    /// The consumer's settings.
    pub fn consumer(&self) -> ConsumerConfig {
        let c = &self.config;
        let mut consumer = ConsumerConfig::new(c.rabbit_url.clone(), c.rabbit_queue.clone());
        consumer.prefetch = c.prefetch;
        consumer.max_attempts = c.max_attempts;
        consumer.retry_base = Duration::from_millis(c.retry_base_ms);
        consumer.retry_max = Duration::from_millis(c.retry_max_ms);
        consumer.shutdown_grace = Duration::from_secs(c.shutdown_grace_seconds);
        consumer
    }

    /// The push TTL.
    pub fn push_ttl(&self) -> Duration {
        Duration::from_secs(self.config.push_ttl_seconds)
    }

    /// Where pushes may go.
    pub fn endpoint_policy(&self) -> EndpointPolicy {
        EndpointPolicy::new(self.config.allow_private_endpoints)
    }

    /// What browsers may subscribe.
    pub fn subscription_rules(&self) -> SubscriptionRules {
        SubscriptionRules {
            endpoints: self.endpoint_policy(),
            max_per_user: self.config.max_subscriptions_per_user,
        }
    }
}
