//! Who is online in which room.
//!
//! A user is online in a room while at least one of their connections, on any node, is
//! subscribed to it. Each node counts its own connections ([`NodePresence`]); only a node-level
//! transition (first connection in, last one out) goes further. In one process that is the
//! whole story; in a cluster the node-level transitions are merged in Redis
//! ([`cluster::ClusterPresence`]), which announces each cluster-wide transition exactly once and
//! expires the users of a node that stopped heart-beating.

pub mod cluster;

use std::collections::HashMap;
use std::sync::Mutex;

use nebula_wire::{PresenceStatus, ServerEvent, User};
use uuid::Uuid;

use crate::bus::Bus;

/// user → (the user, how many of their connections are subscribed to the room).
type RoomPresence = HashMap<Uuid, (User, usize)>;

/// One node's connections per room and user. Changes only on subscribe and unsubscribe, never
/// per delivered event, so one lock is enough.
#[derive(Debug, Default)]
pub struct NodePresence {
    rooms: Mutex<HashMap<Uuid, RoomPresence>>,
}

impl NodePresence {
    /// Counts one more subscribed connection; `true` if the user just came online in the room.
    pub fn join(&self, room_id: Uuid, user: &User) -> bool {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = rooms
            .entry(room_id)
            .or_default()
            .entry(user.id)
            .or_insert_with(|| (user.clone(), 0));
        entry.1 += 1;
        entry.1 == 1
    }

    /// Counts one connection fewer; `true` if the user just went offline in the room.
    pub fn leave(&self, room_id: Uuid, user_id: Uuid) -> bool {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(users) = rooms.get_mut(&room_id) else {
            return false;
        };
        let Some(entry) = users.get_mut(&user_id) else {
            return false;
        };
        entry.1 -= 1;
        if entry.1 > 0 {
            return false;
        }
        users.remove(&user_id);
        if users.is_empty() {
            rooms.remove(&room_id);
        }
        true
    }

    /// Users online in the room, by username.
    pub fn online(&self, room_id: Uuid) -> Vec<User> {
        let rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut users: Vec<User> = rooms
            .get(&room_id)
            .map(|users| users.values().map(|(user, _)| user.clone()).collect())
            .unwrap_or_default();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users
    }
}

/// Presence as the gateway uses it: record connections, announce transitions, list who is
/// online.
#[derive(Debug)]
pub struct Presence {
    node: NodePresence,
    bus: Bus,
    cluster: Option<cluster::ClusterPresence>,
}

impl Presence {
    pub fn new(bus: Bus, cluster: Option<cluster::ClusterPresence>) -> Self {
        Presence {
            node: NodePresence::default(),
            bus,
            cluster,
        }
    }

    /// A connection of `user` subscribed to the room.
    pub fn connected(&self, room_id: Uuid, user: &User) {
        if !self.node.join(room_id, user) {
            return;
        }
        match &self.cluster {
            Some(cluster) => cluster.joined(room_id, user.clone()),
            None => announce(&self.bus, room_id, user.clone(), PresenceStatus::Online),
        }
    }

    /// A connection of the user left the room (unsubscribed or closed). Returns whether it
    /// was the user's last one in the room on this node.
    pub fn disconnected(&self, room_id: Uuid, user: &User) -> bool {
        if !self.node.leave(room_id, user.id) {
            return false;
        }
        match &self.cluster {
            Some(cluster) => cluster.left(room_id, user.clone()),
            None => announce(&self.bus, room_id, user.clone(), PresenceStatus::Offline),
        }
        true
    }

    /// Who is online in the room, by username (this node's users at least, when Redis is
    /// unreachable).
    pub async fn online(&self, room_id: Uuid) -> Vec<User> {
        let mut users = self.node.online(room_id);
        if let Some(cluster) = &self.cluster {
            for user in cluster.online(room_id).await {
                if !users.iter().any(|known| known.id == user.id) {
                    users.push(user);
                }
            }
            users.sort_by(|a, b| a.username.cmp(&b.username));
        }
        users
    }
}

/// Publishes a presence event to the room; the user's own connections skip it.
pub(crate) fn announce(bus: &Bus, room_id: Uuid, user: User, status: PresenceStatus) {
    let user_id = user.id;
    let event = ServerEvent::Presence {
        room_id,
        user,
        status,
    };
    bus.publish(room_id, &event, Some(user_id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            id: Uuid::new_v4(),
            username: name.into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn transitions_are_reported_once_per_user() {
        let presence = NodePresence::default();
        let room = Uuid::new_v4();
        let (ann, bo) = (user("ann"), user("bo"));
        assert!(presence.join(room, &ann));
        assert!(
            !presence.join(room, &ann),
            "a second tab is not a transition"
        );
        assert!(presence.join(room, &bo));
        assert_eq!(presence.online(room).len(), 2);
        assert!(!presence.leave(room, ann.id));
        assert!(presence.leave(room, ann.id));
        assert!(
            !presence.leave(room, ann.id),
            "leaving twice is not a second transition"
        );
        assert_eq!(presence.online(room), [bo]);
    }
}
