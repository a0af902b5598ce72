//! Running several nodes as one cluster: the shared Redis connection and this node's identity.
//!
//! Redis carries what must be shared between nodes and is cheap to lose: real-time events
//! (pub/sub), who is online, and rate-limit buckets. Nothing durable lives there — messages,
//! seqs and memberships are in the database — so a Redis restart costs at most a short
//! degradation, repaired from the database (see `bus::redis`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

/// How long one Redis command may take before the caller falls back to local behaviour.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// The cluster as this node sees it. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    /// Random per process: a restarted node is a new node (its old presence expires).
    pub node_id: Uuid,
    prefix: Arc<str>,
    client: redis::Client,
    commands: ConnectionManager,
    /// Whether the event stream (pub/sub) is currently connected; reported by `/health`.
    bus_connected: Arc<AtomicBool>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Prepares the connection without connecting, so a node starts (and serves its local
    /// clients) even while Redis is down.
    pub fn new(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Cluster {
            node_id: Uuid::new_v4(),
            prefix: prefix.into(),
            client,
            commands,
            bus_connected: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A key or channel name under this cluster's prefix.
    pub fn key(&self, name: fmt::Arguments<'_>) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The multiplexed command connection (reconnects by itself).
    pub fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn set_bus_connected(&self, connected: bool) {
        self.bus_connected.store(connected, Ordering::Relaxed);
        metrics::gauge!("nebula_bus_connected").set(if connected { 1.0 } else { 0.0 });
    }

    pub fn bus_connected(&self) -> bool {
        self.bus_connected.load(Ordering::Relaxed)
    }

    /// Round trip to Redis, for `/health`.
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.commands();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut conn);
        match tokio::time::timeout(COMMAND_TIMEOUT * 2, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}
