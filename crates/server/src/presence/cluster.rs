//! Presence across nodes, kept in Redis.
//!
//! Per room, a hash `room:{id}:online` maps each online user to their JSON, a sorted set
//! `room:{id}:online:list` orders them by username for paged lists, and per room and user a
//! set lists the nodes where they are connected. Two scripts change them atomically:
//! the first node to add a user, and the last node to remove them, get the transition — so
//! each cluster-wide online/offline is announced exactly once, by exactly one node.
//!
//! Nodes heart-beat with a key that expires after `ttl`. Every node checks the others on each
//! beat; a node whose key expired (it crashed or lost its network) is swept: its entries are
//! removed with the same script, announcing whoever went offline with it. Users of a dead
//! node are offline within `ttl` plus one beat (`ttl / 3`).
//!
//! Redis keeps nothing on disk here: after a Redis restart each node re-registers its users
//! without announcing them (nobody's state changed; only Redis forgot).

use std::collections::HashMap;
use std::time::Duration;

use nebula_wire::{PresenceStatus, User};
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{OnlinePage, announce};
use crate::bus::Bus;
use crate::cluster::Cluster;

/// KEYS: online hash, user's node set, node's entry index, online list. ARGV: node, user id,
/// user JSON, entry, list member. Returns 1 when the user just came online cluster-wide.
const JOIN: &str = r"
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
local added = redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
if added == 1 then
  redis.call('ZADD', KEYS[4], 0, ARGV[5])
end
return added
";

/// KEYS as for JOIN. ARGV: node, user id, entry. Returns the user's JSON when they just went
/// offline cluster-wide, else nil.
const LEAVE: &str = r"
redis.call('SREM', KEYS[3], ARGV[3])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  local user = redis.call('HGET', KEYS[1], ARGV[2])
  if user then
    redis.call('HDEL', KEYS[1], ARGV[2])
    local name = cjson.decode(user)['username']
    redis.call('ZREM', KEYS[4], string.lower(name) .. '\0' .. ARGV[2])
    return user
  end
end
return false
";

/// The online list's member for a user: lowercased username, NUL, id. Usernames are ASCII
/// `[A-Za-z0-9_.-]`, so Redis's byte order is the list order and Lua's `string.lower` agrees.
fn list_member(user: &User) -> String {
    format!("{}\0{}", user.username.to_ascii_lowercase(), user.id)
}

enum Op {
    Joined(Uuid, User),
    Left(Uuid, User),
}

/// Handle to the presence task of this node.
#[derive(Debug, Clone)]
pub struct ClusterPresence {
    cluster: Cluster,
    ops: mpsc::UnboundedSender<Op>,
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
        let worker = Worker {
            keys: Keys(cluster.clone()),
            conn: cluster.commands(),
            bus,
            ttl,
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            here: HashMap::new(),
            registered: false,
        };
        tasks.spawn(worker.run(queue, shutdown));
        ClusterPresence { cluster, ops }
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
    pub async fn is_online(&self, room_id: Uuid, user_id: Uuid) -> redis::RedisResult<bool> {
        let mut conn = self.cluster.commands();
        redis::cmd("HEXISTS")
            .arg(Keys(self.cluster.clone()).online(room_id))
            .arg(user_id.to_string())
            .query_async(&mut conn)
            .await
    }

    /// Up to `limit` users online in the room on any node whose lowercased username sorts
    /// after `after`, and how many are online in all: a range of the room's sorted online
    /// list, so a page costs its own length whatever the room's.
    pub async fn online(
        &self,
        room_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<OnlinePage> {
        let mut conn = self.cluster.commands();
        let keys = Keys(self.cluster.clone());
        // Members are `name\0id`: everything of `name` itself sorts below `name\x01`, and
        // every longer name above it.
        let from = match after {
            Some(name) => format!("[{}\u{1}", name.to_ascii_lowercase()),
            None => "-".to_owned(),
        };
        let (members, total): (Vec<String>, u64) = redis::pipe()
            .cmd("ZRANGE")
            .arg(keys.online_list(room_id))
            .arg(from)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .cmd("HLEN")
            .arg(keys.online(room_id))
            .query_async(&mut conn)
            .await?;
        let ids: Vec<&str> = members
            .iter()
            .filter_map(|member| member.split_once('\0').map(|(_, id)| id))
            .collect();
        if ids.is_empty() {
            return Ok(OnlinePage {
                users: Vec::new(),
                total,
            });
        }
        let users: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(keys.online(room_id))
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        Ok(OnlinePage {
            users: users
                .into_iter()
                .flatten()
                .filter_map(|json| serde_json::from_str(&json).ok())
                .collect(),
            total,
        })
    }
}

/// Key names, all under the cluster's prefix.
struct Keys(Cluster);

impl Keys {
    fn online(&self, room_id: Uuid) -> String {
        self.0.key(format_args!("room:{room_id}:online"))
    }
    fn online_list(&self, room_id: Uuid) -> String {
        self.0.key(format_args!("room:{room_id}:online:list"))
    }
    fn user_nodes(&self, room_id: Uuid, user_id: Uuid) -> String {
        self.0
            .key(format_args!("room:{room_id}:user:{user_id}:nodes"))
    }
    fn node_entries(&self, node: Uuid) -> String {
        self.0.key(format_args!("node:{node}:presence"))
    }
    fn node_alive(&self, node: Uuid) -> String {
        self.0.key(format_args!("node:{node}:alive"))
    }
    fn nodes(&self) -> String {
        self.0.key(format_args!("nodes"))
    }
}

struct Worker {
    keys: Keys,
    conn: ConnectionManager,
    bus: Bus,
    ttl: Duration,
    join: Script,
    leave: Script,
    /// This node's (room, user) entries: what to re-register after Redis forgot them.
    here: HashMap<(Uuid, Uuid), User>,
    /// Whether our entries are known to be in Redis (false after a failure).
    registered: bool,
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
        let node = self.keys.0.node_id;
        self.sweep(node).await;
    }

    async fn apply(&mut self, op: Op) {
        let node = self.keys.0.node_id;
        match op {
            Op::Joined(room_id, user) => {
                self.here.insert((room_id, user.id), user.clone());
                match self.run_join(node, room_id, &user).await {
                    Ok(true) => announce(&self.bus, room_id, user, PresenceStatus::Online),
                    Ok(false) => {}
                    Err(err) => {
                        // Redis is away: tell the room what this node knows.
                        self.registered = false;
                        tracing::debug!(error = %err, "presence join not recorded in Redis");
                        announce(&self.bus, room_id, user, PresenceStatus::Online);
                    }
                }
            }
            Op::Left(room_id, user) => {
                self.here.remove(&(room_id, user.id));
                match self.run_leave(node, room_id, user.id).await {
                    Ok(Some(_)) => announce(&self.bus, room_id, user, PresenceStatus::Offline),
                    Ok(None) => {}
                    Err(err) => {
                        self.registered = false;
                        tracing::debug!(error = %err, "presence leave not recorded in Redis");
                        announce(&self.bus, room_id, user, PresenceStatus::Offline);
                    }
                }
            }
        }
    }

    async fn run_join(
        &mut self,
        node: Uuid,
        room_id: Uuid,
        user: &User,
    ) -> redis::RedisResult<bool> {
        let user_json = serde_json::to_string(user).unwrap_or_default();
        let added: i64 = self
            .join
            .key(self.keys.online(room_id))
            .key(self.keys.user_nodes(room_id, user.id))
            .key(self.keys.node_entries(node))
            .key(self.keys.online_list(room_id))
            .arg(node.to_string())
            .arg(user.id.to_string())
            .arg(user_json)
            .arg(entry(room_id, user.id))
            .arg(list_member(user))
            .invoke_async(&mut self.conn)
            .await?;
        Ok(added == 1)
    }

    async fn run_leave(
        &mut self,
        node: Uuid,
        room_id: Uuid,
        user_id: Uuid,
    ) -> redis::RedisResult<Option<String>> {
        self.leave
            .key(self.keys.online(room_id))
            .key(self.keys.user_nodes(room_id, user_id))
            .key(self.keys.node_entries(node))
            .key(self.keys.online_list(room_id))
            .arg(node.to_string())
            .arg(user_id.to_string())
            .arg(entry(room_id, user_id))
            .invoke_async(&mut self.conn)
            .await
    }

    /// Refreshes this node's liveness, re-registers its users if Redis lost them, and sweeps
    /// nodes whose liveness expired.
    async fn heartbeat(&mut self) {
        let node = self.keys.0.node_id;
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let alive: redis::RedisResult<()> = redis::pipe()
            .cmd("SET")
            .arg(self.keys.node_alive(node))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(self.keys.nodes())
            .arg(node.to_string())
            .ignore()
            .query_async(&mut self.conn)
            .await;
        if let Err(err) = alive {
            self.registered = false;
            tracing::debug!(error = %err, "presence heartbeat failed");
            return;
        }
        if !self.registered {
            let entries: Vec<(Uuid, User)> = self
                .here
                .iter()
                .map(|((room_id, _), user)| (*room_id, user.clone()))
                .collect();
            let mut ok = true;
            for (room_id, user) in entries {
                ok &= self.run_join(node, room_id, &user).await.is_ok();
            }
            self.registered = ok;
        }
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.nodes())
            .query_async(&mut self.conn)
            .await
            .unwrap_or_default();
        for other in nodes.iter().filter_map(|id| id.parse::<Uuid>().ok()) {
            if other == node {
                continue;
            }
            let exists: bool = redis::cmd("EXISTS")
                .arg(self.keys.node_alive(other))
                .query_async(&mut self.conn)
                .await
                .unwrap_or(true);
            if !exists {
                tracing::info!(%other, "node stopped heart-beating; its users go offline");
                self.sweep(other).await;
            }
        }
    }

    /// Removes every entry of `node`, announcing the users who thereby went offline.
    async fn sweep(&mut self, node: Uuid) {
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_entries(node))
            .query_async(&mut self.conn)
            .await
            .unwrap_or_default();
        for raw in entries {
            let Some((room_id, user_id)) = parse_entry(&raw) else {
                continue;
            };
            if let Ok(Some(json)) = self.run_leave(node, room_id, user_id).await
                && let Ok(user) = serde_json::from_str::<User>(&json)
            {
                announce(&self.bus, room_id, user, PresenceStatus::Offline);
            }
        }
        let _: redis::RedisResult<()> = redis::pipe()
            .cmd("DEL")
            .arg(self.keys.node_entries(node))
            .ignore()
            .cmd("DEL")
            .arg(self.keys.node_alive(node))
            .ignore()
            .cmd("SREM")
            .arg(self.keys.nodes())
            .arg(node.to_string())
            .ignore()
            .query_async(&mut self.conn)
            .await;
    }
}

fn entry(room_id: Uuid, user_id: Uuid) -> String {
    format!("{room_id}/{user_id}")
}

fn parse_entry(raw: &str) -> Option<(Uuid, Uuid)> {
    let (room, user) = raw.split_once('/')?;
    Some((room.parse().ok()?, user.parse().ok()?))
}
