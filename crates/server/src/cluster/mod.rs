//! Running several nodes as one cluster: the shared engine connection and this node's identity.
//!
//! The engine carries what must be shared between nodes and is cheap to lose: real-time events
//! (pub/sub), who is online, and rate-limit buckets. Nothing durable lives there — messages,
//! seqs and memberships are in the database — so an engine restart costs at most a short
//! degradation, repaired from the database (see `bus`).
//!
//! Two engines, chosen at start from the URL: Redis (`REDIS_URL`) and NATS with JetStream
//! (`NATS_URL`). [`Engine`] is a closed enum; each feature that shares state (bus, presence,
//! rate limits, calls) has one implementation per engine and the same tests run against both.

pub mod channel;
mod nats_conn;
mod redis_conn;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use uuid::Uuid;

pub use nats_conn::{Connection, NatsEngine, Swap, compare_and_swap, list, timed};
pub use redis_conn::RedisEngine;

/// A failure of the cluster engine (never shown to clients: callers fall back to local
/// behaviour or log it).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("NATS: {0}")]
    Nats(String),
}

impl EngineError {
    /// Any NATS client error, by its message (their kinds differ per call).
    pub fn nats(err: impl fmt::Display) -> Self {
        EngineError::Nats(err.to_string())
    }
}

/// Which engine this cluster runs on.
#[derive(Clone)]
pub enum Engine {
    Redis(RedisEngine),
    Nats(Arc<NatsEngine>),
}

/// The cluster as this node sees it. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    /// Random per process: a restarted node is a new node (its old presence expires).
    pub node_id: Uuid,
    prefix: Arc<str>,
    engine: Engine,
    /// Whether the event stream (pub/sub) is currently connected; reported by `/health`.
    bus_connected: Arc<AtomicBool>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .field("engine", &self.engine_name())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Prepares the engine's connection without waiting for it, so a node starts (and serves
    /// its local clients) even while the engine is down. `redis://`/`rediss://` picks Redis,
    /// `nats://`/`tls://` NATS.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EngineError> {
        let engine = if url.starts_with("nats://") || url.starts_with("tls://") {
            Engine::Nats(Arc::new(NatsEngine::connect(url, prefix).await?))
        } else {
            Engine::Redis(RedisEngine::new(url)?)
        };
        Ok(Cluster {
            node_id: Uuid::new_v4(),
            prefix: prefix.into(),
            engine,
            bus_connected: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// "redis" or "nats", for logs.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Redis(_) => "redis",
            Engine::Nats(_) => "nats",
        }
    }

    /// A key or channel name under this cluster's prefix. Both engines accept it as a channel
    /// (NATS subjects may contain `:`); NATS key-value keys are built by its own modules.
    pub fn key(&self, name: fmt::Arguments<'_>) -> String {
        format!("{}:{name}", self.prefix)
    }

    pub fn set_bus_connected(&self, connected: bool) {
        self.bus_connected.store(connected, Ordering::Relaxed);
        metrics::gauge!("nebula_bus_connected").set(if connected { 1.0 } else { 0.0 });
    }

    pub fn bus_connected(&self) -> bool {
        self.bus_connected.load(Ordering::Relaxed)
    }

    /// Round trip to the engine, for `/health`.
    pub async fn ping(&self) -> Result<(), String> {
        match &self.engine {
            Engine::Redis(redis) => redis.ping().await,
            Engine::Nats(nats) => nats.ping().await,
        }
    }

    /// Publishes one message on a channel (fire and forget: nobody listening is not an error).
    pub async fn publish(&self, channel: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        match &self.engine {
            Engine::Redis(redis) => redis.publish(channel, bytes).await,
            Engine::Nats(nats) => nats.publish(channel, bytes).await,
        }
    }

    /// Subscribes to one channel; returns once the engine confirmed the subscription. The
    /// stream ends when the subscription is lost (Redis: its connection dropped) — the caller
    /// subscribes again. A NATS subscription survives reconnects by itself and only ends when
    /// the client closes.
    pub async fn subscribe(&self, channel: &str) -> Result<BoxStream<'static, Bytes>, EngineError> {
        match &self.engine {
            Engine::Redis(redis) => redis.subscribe(channel).await,
            Engine::Nats(nats) => nats.subscribe(channel).await,
        }
    }
}
