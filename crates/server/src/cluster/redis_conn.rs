//! The Redis engine's connections: one multiplexed command connection (reconnecting by itself)
//! and a client for pub/sub connections.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::EngineError;

/// How long one Redis command may take before the caller falls back to local behaviour.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct RedisEngine {
    client: redis::Client,
    commands: ConnectionManager,
}

impl RedisEngine {
    /// Prepares the connection without connecting.
    pub fn new(url: &str) -> Result<Self, EngineError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(RedisEngine { client, commands })
    }

    /// The multiplexed command connection (reconnects by itself).
    pub fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

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

    pub async fn publish(&self, channel: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        let mut conn = self.commands();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(bytes)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// A pub/sub connection of its own, subscribed to `channel`.
    pub async fn subscribe(&self, channel: &str) -> Result<BoxStream<'static, Bytes>, EngineError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub
            .into_on_message()
            .map(|message| Bytes::copy_from_slice(message.get_payload_bytes()))
            .boxed())
    }
}
