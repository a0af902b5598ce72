//! Presence across nodes, kept in the cluster engine (Redis or NATS key-value).
//!
//! Each engine records, per room and user, the nodes where the user is connected, and changes
//! that atomically (Redis: scripts; NATS: compare-and-swap per room and user): the first node
//! to add a user, and the last node to remove them, get the transition — so each cluster-wide
//! online/offline is announced exactly once, by exactly one node.
//!
//! Nodes heart-beat with an entry that expires after `ttl`. Every node checks the others on each
//! beat; a node whose entry expired (it crashed or lost its network) is swept: its entries are
//! removed the same way, announcing whoever went offline with it. Users of a dead node are
//! offline within `ttl` plus one beat (`ttl / 3`). A node that was only paused past `ttl`
//! (stopped, starved of CPU, cut off) finds its own liveness lapsed on its next beat and adds
//! its users back for a while (`2 × ttl`, past any sweep still running), announcing online
//! whoever a sweep took offline: the room saw them leave, so it sees them come back.
//!
//! After the engine lost its state (a Redis restart; a NATS without its store), each node
//! re-registers its users without announcing them (nobody's state changed; only the engine
//! forgot).

mod nats;
mod redis;

use std::collections::HashMap;
use std::time::Duration;

use nebula_wire::{PresenceStatus, User};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::nats::NatsPresence;
use self::redis::RedisPresence;
use super::{OnlinePage, announce};
use crate::bus::Bus;
use crate::cluster::{Cluster, Engine, EngineError};

enum Op {
    Joined(Uuid, User),
    Left(Uuid, User),
}

/// Presence operations, one implementation per engine.
enum Backend {
    // Boxed: the Redis side holds its two scripts (their source and hash) inline.
    Redis(Box<RedisPresence>),
    Nats(NatsPresence),
}

impl Backend {
    fn new(cluster: &Cluster, ttl: Duration) -> Self {
        match cluster.engine() {
            Engine::Redis(redis) => {
                Backend::Redis(Box::new(RedisPresence::new(cluster.clone(), redis.clone())))
            }
            Engine::Nats(nats) => Backend::Nats(NatsPresence::new(nats.clone(), ttl)),
        }
    }

    /// Records that `user` is connected to the room on `node`; `true` when the user just
    /// came online cluster-wide.
    async fn join(&self, node: Uuid, room_id: Uuid, user: &User) -> Result<bool, EngineError> {
        match self {
            Backend::Redis(redis) => redis.join(node, room_id, user).await,
            Backend::Nats(nats) => nats.join(node, room_id, user).await,
        }
    }

    /// Records that `user` left the room on `node`; the user when they just went offline
    /// cluster-wide.
    async fn leave(
        &self,
        node: Uuid,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<User>, EngineError> {
        match self {
            Backend::Redis(redis) => redis.leave(node, room_id, user_id).await,
            Backend::Nats(nats) => nats.leave(node, room_id, user_id).await,
        }
    }

    /// Refreshes `node`'s liveness for `ttl` and lists it among the known nodes; `true` when
    /// its liveness had lapsed before (its first beat, or it missed beats for `ttl`).
    async fn beat(&self, node: Uuid, ttl: Duration) -> Result<bool, EngineError> {
        match self {
            Backend::Redis(redis) => redis.beat(node, ttl).await,
            Backend::Nats(nats) => nats.beat(node).await,
        }
    }

    async fn nodes(&self) -> Result<Vec<Uuid>, EngineError> {
        match self {
            Backend::Redis(redis) => redis.nodes().await,
            Backend::Nats(nats) => nats.nodes().await,
        }
    }

    async fn alive(&self, node: Uuid) -> Result<bool, EngineError> {
        match self {
            Backend::Redis(redis) => redis.alive(node).await,
            Backend::Nats(nats) => nats.alive(node).await,
        }
    }

    /// The (room, user) entries `node` registered.
    async fn entries(&self, node: Uuid) -> Result<Vec<(Uuid, Uuid)>, EngineError> {
        match self {
            Backend::Redis(redis) => redis.entries(node).await,
            Backend::Nats(nats) => nats.entries(node).await,
        }
    }

    /// Drops what is left of a swept node.
    async fn forget(&self, node: Uuid) -> Result<(), EngineError> {
        match self {
            Backend::Redis(redis) => redis.forget(node).await,
            Backend::Nats(nats) => nats.forget(node).await,
        }
    }

    /// Whether the user is online in the room on any node.
    async fn is_online(&self, room_id: Uuid, user_id: Uuid) -> Result<bool, EngineError> {
        match self {
            Backend::Redis(redis) => redis.is_online(room_id, user_id).await,
            Backend::Nats(nats) => nats.is_online(room_id, user_id).await,
        }
    }

    async fn online(
        &self,
        room_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OnlinePage, EngineError> {
        match self {
            Backend::Redis(redis) => redis.online(room_id, after, limit).await,
            Backend::Nats(nats) => nats.online(room_id, after, limit).await,
        }
    }
}

/// Handle to the presence task of this node.
#[derive(Clone)]
pub struct ClusterPresence {
    backend: std::sync::Arc<Backend>,
    ops: mpsc::UnboundedSender<Op>,
}

impl std::fmt::Debug for ClusterPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPresence").finish_non_exhaustive()
    }
}

impl ClusterPresence {
    /// Starts the task that applies this node's transitions in order and heart-beats.
    pub fn start(
        cluster: Cluster,
        bus: Bus,
        ttl: Duration,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let (ops, queue) = mpsc::unbounded_channel();
        let backend = std::sync::Arc::new(Backend::new(&cluster, ttl));
        let worker = Worker {
            node: cluster.node_id,
            backend: backend.clone(),
            bus,
            ttl,
            here: HashMap::new(),
            registered: false,
            recheck_until: None,
        };
        tasks.spawn(worker.run(queue, shutdown));
        ClusterPresence { backend, ops }
    }

    /// The user's first connection to the room on this node opened.
    pub fn joined(&self, room_id: Uuid, user: User) {
        let _ = self.ops.send(Op::Joined(room_id, user));
    }

    /// The user's last connection to the room on this node closed.
    pub fn left(&self, room_id: Uuid, user: User) {
        let _ = self.ops.send(Op::Left(room_id, user));
    }

    /// Whether the user is online in the room on any node.
    pub async fn is_online(&self, room_id: Uuid, user_id: Uuid) -> Result<bool, EngineError> {
        self.backend.is_online(room_id, user_id).await
    }

    /// Up to `limit` users online in the room on any node whose lowercased username sorts
    /// after `after`, and how many are online in all.
    pub async fn online(
        &self,
        room_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OnlinePage, EngineError> {
        self.backend.online(room_id, after, limit).await
    }
}

struct Worker {
    node: Uuid,
    backend: std::sync::Arc<Backend>,
    bus: Bus,
    ttl: Duration,
    /// This node's (room, user) entries: what to re-register after the engine forgot them.
    here: HashMap<(Uuid, Uuid), User>,
    /// Whether our entries are known to be in the engine (false after a failure).
    registered: bool,
    /// After this node's liveness lapsed, until when each beat re-registers its entries and
    /// announces whoever a sweep by another node took offline meanwhile.
    recheck_until: Option<Instant>,
}

impl Worker {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Op>, shutdown: CancellationToken) {
        let mut beat = tokio::time::interval((self.ttl / 3).max(Duration::from_millis(200)));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(op) = queue.recv() => self.apply(op).await,
                _ = beat.tick() => self.heartbeat().await,
            }
        }
        // A clean stop: leave now rather than waiting for the sweep.
        self.sweep(self.node).await;
    }

    async fn apply(&mut self, op: Op) {
        let node = self.node;
        match op {
            Op::Joined(room_id, user) => {
                self.here.insert((room_id, user.id), user.clone());
                match self.backend.join(node, room_id, &user).await {
                    Ok(true) => announce(&self.bus, room_id, user, PresenceStatus::Online),
                    Ok(false) => {}
                    Err(err) => {
                        // The engine is away: tell the room what this node knows.
                        self.registered = false;
                        tracing::warn!(error = %err, "presence join not recorded in the cluster");
                        announce(&self.bus, room_id, user, PresenceStatus::Online);
                    }
                }
            }
            Op::Left(room_id, user) => {
                self.here.remove(&(room_id, user.id));
                match self.backend.leave(node, room_id, user.id).await {
                    Ok(Some(_)) => announce(&self.bus, room_id, user, PresenceStatus::Offline),
                    Ok(None) => {}
                    Err(err) => {
                        self.registered = false;
                        tracing::warn!(error = %err, "presence leave not recorded in the cluster");
                        announce(&self.bus, room_id, user, PresenceStatus::Offline);
                    }
                }
            }
        }
    }

    /// Refreshes this node's liveness, re-registers its users if the engine lost them or
    /// another node swept them, and sweeps nodes whose liveness expired.
    async fn heartbeat(&mut self) {
        let node = self.node;
        let lapsed = match self.backend.beat(node, self.ttl).await {
            Ok(lapsed) => lapsed,
            Err(err) => {
                self.registered = false;
                tracing::debug!(error = %err, "presence heartbeat failed");
                return;
            }
        };
        if lapsed && !self.here.is_empty() {
            // This process was alive but did not beat for `ttl` (paused, starved of CPU, cut
            // off): another node may be sweeping our users offline right now. Re-register them
            // on this beat and the next ones, until any such sweep must have finished.
            tracing::warn!(
                "this node missed its presence heart-beats; re-registering its users in case \
                 another node swept them"
            );
            self.recheck_until = Some(Instant::now() + self.ttl * 2);
        }
        if let Some(until) = self.recheck_until {
            if Instant::now() >= until {
                self.recheck_until = None;
            } else if self.registered {
                self.recheck().await;
            }
        }
        if !self.registered {
            let entries: Vec<(Uuid, User)> = self
                .here
                .iter()
                .map(|((room_id, _), user)| (*room_id, user.clone()))
                .collect();
            let mut ok = true;
            for (room_id, user) in entries {
                ok &= self.backend.join(node, room_id, &user).await.is_ok();
            }
            self.registered = ok;
        }
        let nodes = self.backend.nodes().await.unwrap_or_default();
        for other in nodes {
            if other == node {
                continue;
            }
            if !self.backend.alive(other).await.unwrap_or(true) {
                tracing::info!(%other, "node stopped heart-beating; its users go offline");
                self.sweep(other).await;
            }
        }
    }

    /// Adds back every entry of this node, announcing the users that a sweep took offline.
    async fn recheck(&mut self) {
        let entries: Vec<(Uuid, User)> = self
            .here
            .iter()
            .map(|((room_id, _), user)| (*room_id, user.clone()))
            .collect();
        for (room_id, user) in entries {
            match self.backend.join(self.node, room_id, &user).await {
                Ok(true) => announce(&self.bus, room_id, user, PresenceStatus::Online),
                Ok(false) => {}
                Err(err) => {
                    self.registered = false;
                    tracing::debug!(error = %err, "presence re-registration failed");
                    return;
                }
            }
        }
    }

    /// Removes every entry of `node`, announcing the users who thereby went offline.
    async fn sweep(&mut self, node: Uuid) {
        let entries = self.backend.entries(node).await.unwrap_or_default();
        for (room_id, user_id) in entries {
            if let Ok(Some(user)) = self.backend.leave(node, room_id, user_id).await {
                announce(&self.bus, room_id, user, PresenceStatus::Offline);
            }
        }
        if let Err(err) = self.backend.forget(node).await {
            tracing::debug!(error = %err, "forgetting a swept node failed");
        }
    }
}

fn entry(room_id: Uuid, user_id: Uuid) -> String {
    format!("{room_id}/{user_id}")
}

fn parse_entry(raw: &str) -> Option<(Uuid, Uuid)> {
    let (room, user) = raw.split_once('/')?;
    Some((room.parse().ok()?, user.parse().ok()?))
}
