//! Presence kept in Redis.
//!
//! Per room, a hash `room:{id}:online` maps each online user to their JSON, a sorted set
//! `room:{id}:online:list` orders them by username for paged lists, and per room and user a
//! set lists the nodes where they are connected. Two scripts change them atomically: the first
//! node to add a user, and the last node to remove them, get the transition. Liveness is a key
//! per node with a TTL (`node:{id}:alive`), the known nodes a set (`nodes`), each node's
//! entries a set (`node:{id}:presence`).

use std::time::Duration;

use nebula_wire::User;
use redis::Script;
use uuid::Uuid;

use super::super::OnlinePage;
use super::{entry, parse_entry};
use crate::cluster::{Cluster, EngineError, RedisEngine};

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

/// Presence operations on Redis.
pub(super) struct RedisPresence {
    keys: Keys,
    redis: RedisEngine,
    join: Script,
    leave: Script,
}

impl RedisPresence {
    pub(super) fn new(cluster: Cluster, redis: RedisEngine) -> Self {
        RedisPresence {
            keys: Keys(cluster),
            redis,
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
        }
    }

    pub(super) async fn join(
        &self,
        node: Uuid,
        room_id: Uuid,
        user: &User,
    ) -> Result<bool, EngineError> {
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
            .invoke_async(&mut self.redis.commands())
            .await?;
        Ok(added == 1)
    }

    pub(super) async fn leave(
        &self,
        node: Uuid,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<User>, EngineError> {
        let json: Option<String> = self
            .leave
            .key(self.keys.online(room_id))
            .key(self.keys.user_nodes(room_id, user_id))
            .key(self.keys.node_entries(node))
            .key(self.keys.online_list(room_id))
            .arg(node.to_string())
            .arg(user_id.to_string())
            .arg(entry(room_id, user_id))
            .invoke_async(&mut self.redis.commands())
            .await?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Returns whether the node's liveness had lapsed before this beat.
    pub(super) async fn beat(&self, node: Uuid, ttl: Duration) -> Result<bool, EngineError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let (alive,): (bool,) = redis::pipe()
            .atomic()
            .cmd("EXISTS")
            .arg(self.keys.node_alive(node))
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
            .query_async(&mut self.redis.commands())
            .await?;
        Ok(!alive)
    }

    pub(super) async fn nodes(&self) -> Result<Vec<Uuid>, EngineError> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.nodes())
            .query_async(&mut self.redis.commands())
            .await?;
        Ok(nodes.iter().filter_map(|id| id.parse().ok()).collect())
    }

    pub(super) async fn alive(&self, node: Uuid) -> Result<bool, EngineError> {
        Ok(redis::cmd("EXISTS")
            .arg(self.keys.node_alive(node))
            .query_async(&mut self.redis.commands())
            .await?)
    }

    pub(super) async fn entries(&self, node: Uuid) -> Result<Vec<(Uuid, Uuid)>, EngineError> {
        let entries: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_entries(node))
            .query_async(&mut self.redis.commands())
            .await?;
        Ok(entries.iter().filter_map(|raw| parse_entry(raw)).collect())
    }

    pub(super) async fn forget(&self, node: Uuid) -> Result<(), EngineError> {
        redis::pipe()
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
            .query_async::<()>(&mut self.redis.commands())
            .await?;
        Ok(())
    }

    pub(super) async fn is_online(
        &self,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<bool, EngineError> {
        Ok(redis::cmd("HEXISTS")
            .arg(self.keys.online(room_id))
            .arg(user_id.to_string())
            .query_async(&mut self.redis.commands())
            .await?)
    }

    /// A range of the room's sorted online list, so a page costs its own length whatever the
    /// room's.
    pub(super) async fn online(
        &self,
        room_id: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OnlinePage, EngineError> {
        let mut conn = self.redis.commands();
        let keys = &self.keys;
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
