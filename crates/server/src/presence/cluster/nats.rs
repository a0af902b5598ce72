//! Presence kept in NATS JetStream key-value buckets.
//!
//! Bucket `{prefix}_presence` (no expiry):
//! - `online.{room}.{user}`: `{"user": …, "nodes": [node, …]}`, changed by compare-and-swap,
//!   so exactly one node adds the first node and exactly one removes the last;
//! - `entry.{node}.{room}.{user}`: the index a sweep of a dead node reads;
//! - `node.{node}`: the known nodes.
//!
//! Bucket `{prefix}_alive` expires its values `ttl` after their last write (JetStream's
//! `max_age`; the nats-server 2.9 packaged here has no per-key TTL): `{node}` is rewritten on
//! every beat, so it disappears `ttl` after a node's last beat.
//!
//! A paged online list reads the room's whole online set (one consumer over
//! `online.{room}.*`) and sorts it: a page costs the room's online count, where Redis's sorted
//! set costs the page's length. Deleted keys leave a small marker each in the bucket (the
//! nats-server here cannot expire markers).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nebula_wire::User;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::super::OnlinePage;
use crate::cluster::{EngineError, NatsEngine, Swap, compare_and_swap, list, timed};

const PRESENCE: &str = "presence";
const ALIVE: &str = "alive";

#[derive(Serialize, Deserialize)]
struct Online {
    user: User,
    nodes: BTreeSet<Uuid>,
}

/// Presence operations on NATS key-value.
pub(super) struct NatsPresence {
    nats: Arc<NatsEngine>,
    ttl: Duration,
}

impl NatsPresence {
    pub(super) fn new(nats: Arc<NatsEngine>, ttl: Duration) -> Self {
        NatsPresence { nats, ttl }
    }

    /// The presence bucket; fails at once while disconnected (the worker then goes on with
    /// what this node knows, as after a timeout, without waiting for one per operation).
    async fn presence(&self) -> Result<async_nats::jetstream::kv::Store, EngineError> {
        if !self.nats.connected() {
            return Err(EngineError::Nats("disconnected".to_owned()));
        }
        self.nats.bucket(PRESENCE, Duration::ZERO).await
    }

    /// Runs `operation`, forgetting the bucket handles when it fails (see `cluster`).
    fn checked<T>(&self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        if result.is_err() {
            self.nats.forget_bucket(PRESENCE);
            self.nats.forget_bucket(ALIVE);
        }
        result
    }

    pub(super) async fn join(
        &self,
        node: Uuid,
        room_id: Uuid,
        user: &User,
    ) -> Result<bool, EngineError> {
        let result = async {
            let kv = self.presence().await?;
            // The index first: a node dying between the two leaves nothing unsweepable.
            timed(kv.put(format!("entry.{node}.{room_id}.{}", user.id), Bytes::new())).await?;
            compare_and_swap(&kv, &format!("online.{room_id}.{}", user.id), |value| {
                let mut online =
                    match value.and_then(|value| serde_json::from_slice::<Online>(value).ok()) {
                        Some(online) => online,
                        None => {
                            let online = Online {
                                user: user.clone(),
                                nodes: BTreeSet::from([node]),
                            };
                            return Swap::Put(encode(&online), true);
                        }
                    };
                if !online.nodes.insert(node) {
                    return Swap::Keep(false);
                }
                Swap::Put(encode(&online), false)
            })
            .await
        }
        .await;
        self.checked(result)
    }

    pub(super) async fn leave(
        &self,
        node: Uuid,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<User>, EngineError> {
        let result = async {
            let kv = self.presence().await?;
            let gone = compare_and_swap(&kv, &format!("online.{room_id}.{user_id}"), |value| {
                let Some(mut online) =
                    value.and_then(|value| serde_json::from_slice::<Online>(value).ok())
                else {
                    return Swap::Keep(None);
                };
                if !online.nodes.remove(&node) {
                    return Swap::Keep(None);
                }
                if online.nodes.is_empty() {
                    return Swap::Delete(Some(online.user));
                }
                Swap::Put(encode(&online), None)
            })
            .await?;
            timed(kv.delete(format!("entry.{node}.{room_id}.{user_id}"))).await?;
            Ok(gone)
        }
        .await;
        self.checked(result)
    }

    /// Returns whether the node's liveness had lapsed before this beat.
    pub(super) async fn beat(&self, node: Uuid) -> Result<bool, EngineError> {
        let result = async {
            let alive = self.nats.bucket(ALIVE, self.ttl).await?;
            let lapsed = timed(alive.get(node.to_string())).await?.is_none();
            timed(alive.put(node.to_string(), Bytes::from_static(b"1"))).await?;
            let kv = self.presence().await?;
            timed(kv.put(format!("node.{node}"), Bytes::new())).await?;
            Ok(lapsed)
        }
        .await;
        self.checked(result)
    }

    pub(super) async fn nodes(&self) -> Result<Vec<Uuid>, EngineError> {
        let kv = self.presence().await?;
        let keys = list(&self.nats, &kv, "node.*").await?;
        Ok(keys
            .iter()
            .filter_map(|(key, _)| key.strip_prefix("node.")?.parse().ok())
            .collect())
    }

    pub(super) async fn is_online(
        &self,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<bool, EngineError> {
        let result = async {
            let kv = self.presence().await?;
            Ok(timed(kv.get(format!("online.{room_id}.{user_id}")))
                .await?
                .is_some())
        }
        .await;
        self.checked(result)
    }

    pub(super) async fn alive(&self, node: Uuid) -> Result<bool, EngineError> {
        let alive = self.nats.bucket(ALIVE, self.ttl).await?;
        Ok(timed(alive.get(node.to_string())).await?.is_some())
    }

    pub(super) async fn entries(&self, node: Uuid) -> Result<Vec<(Uuid, Uuid)>, EngineError> {
        let kv = self.presence().await?;
        let prefix = format!("entry.{node}.");
        let keys = list(&self.nats, &kv, &format!("{prefix}*.*")).await?;
        Ok(keys
            .iter()
            .filter_map(|(key, _)| {
                let (room, user) = key.strip_prefix(&prefix)?.split_once('.')?;
                Some((room.parse().ok()?, user.parse().ok()?))
            })
            .collect())
    }

    pub(super) async fn forget(&self, node: Uuid) -> Result<(), EngineError> {
        let kv = self.presence().await?;
        timed(kv.delete(format!("node.{node}"))).await?;
        if let Ok(alive) = self.nats.bucket(ALIVE, self.ttl).await {
            let _ = timed(alive.delete(node.to_string())).await;
        }
        Ok(())
    }

    pub(super) async fn online(
        &self,
        room_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OnlinePage, EngineError> {
        let kv = self.presence().await?;
        let values = list(&self.nats, &kv, &format!("online.{room_id}.*")).await?;
        let mut users: Vec<User> = values
            .iter()
            .filter_map(|(_, value)| serde_json::from_slice::<Online>(value).ok())
            .map(|online| online.user)
            .collect();
        let total = users.len() as u64;
        users.sort_by_cached_key(|user| (user.username.to_ascii_lowercase(), user.id));
        let after = after.map(str::to_ascii_lowercase);
        Ok(OnlinePage {
            users: users
                .into_iter()
                .filter(|user| {
                    after
                        .as_deref()
                        .is_none_or(|after| user.username.to_ascii_lowercase().as_str() > after)
                })
                .take(limit)
                .collect(),
            total,
        })
    }
}

fn encode(online: &Online) -> Bytes {
    Bytes::from(serde_json::to_vec(online).unwrap_or_default())
}
