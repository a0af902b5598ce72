//! Who is online in which room.
//!
//! A user is online in a room while at least one of their connections, on any node, is
//! subscribed to it. Each node counts its own connections ([`NodePresence`]); only a node-level
//! transition (first connection in, last one out) goes further. In one process that is the
//! whole story; in a cluster the node-level transitions are merged in the cluster engine
//! ([`cluster::ClusterPresence`]), which announces each cluster-wide transition exactly once and
//! expires the users of a node that stopped heart-beating.
//!
//! The same machinery also answers "does this user have an open connection anywhere?" (for
//! Web Push of direct messages and calls): every connection, subscribed to rooms or not, is
//! counted in the user's own scope, a pseudo-room whose id is the user's id ([`UserPresence`]).
//! Transitions of that scope are announced to nobody.

pub mod cluster;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use nebula_wire::{PresenceStatus, ServerEvent, User};
use uuid::Uuid;

use crate::bus::Bus;

/// A room's online users in the order lists show them: by lowercased username (unique), then
/// id; each with how many of their connections here are subscribed to the room. Ordered so a
/// page of the list costs its own length, not the room's.
type RoomPresence = BTreeMap<OnlineKey, (User, usize)>;

/// Where a user sorts in online lists.
type OnlineKey = (String, Uuid);

fn online_key(user: &User) -> OnlineKey {
    (user.username.to_ascii_lowercase(), user.id)
}

/// One page of a room's online users: `users` in list order, and how many are online in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlinePage {
    pub users: Vec<User>,
    pub total: u64,
}

/// One node's connections per room and user. Changes only on subscribe and unsubscribe, never
/// per delivered event, so one lock is enough.
#[derive(Debug, Default)]
pub struct NodePresence {
    rooms: Mutex<HashMap<Uuid, RoomPresence>>,
    /// Users' own scopes (see [`UserPresence`]): only counted, never listed. Kept apart from
    /// the rooms' ordered lists, whose first node for a single user cost 1.1 KiB per connection
    /// (measured with heaptrack).
    scopes: Mutex<HashMap<Uuid, usize>>,
}

impl NodePresence {
    /// Counts one more subscribed connection; `true` if the user just came online in the room.
    pub fn join(&self, room_id: Uuid, user: &User) -> bool {
        if room_id == user.id {
            let mut scopes = self.scopes();
            let count = scopes.entry(user.id).or_default();
            *count += 1;
            return *count == 1;
        }
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = rooms
            .entry(room_id)
            .or_default()
            .entry(online_key(user))
            .or_insert_with(|| (user.clone(), 0));
        entry.1 += 1;
        entry.1 == 1
    }

    /// Counts one connection fewer; `true` if the user just went offline in the room.
    pub fn leave(&self, room_id: Uuid, user: &User) -> bool {
        if room_id == user.id {
            let mut scopes = self.scopes();
            let Some(count) = scopes.get_mut(&user.id) else {
                return false;
            };
            *count -= 1;
            if *count > 0 {
                return false;
            }
            scopes.remove(&user.id);
            return true;
        }
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(users) = rooms.get_mut(&room_id) else {
            return false;
        };
        let key = online_key(user);
        let Some(entry) = users.get_mut(&key) else {
            return false;
        };
        entry.1 -= 1;
        if entry.1 > 0 {
            return false;
        }
        users.remove(&key);
        if users.is_empty() {
            rooms.remove(&room_id);
        }
        true
    }

    /// Whether the user has a connection on this node (in their own scope).
    pub fn has_connections(&self, user_id: Uuid) -> bool {
        self.scopes().contains_key(&user_id)
    }

    fn scopes(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.scopes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to `limit` users online in the room whose lowercased username sorts after `after`.
    pub fn page(&self, room_id: Uuid, after: Option<&str>, limit: usize) -> OnlinePage {
        let rooms = self
            .rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(users) = rooms.get(&room_id) else {
            return OnlinePage::default();
        };
        let from = match after {
            Some(name) => Bound::Excluded((name.to_ascii_lowercase(), Uuid::max())),
            None => Bound::Unbounded,
        };
        OnlinePage {
            users: users
                .range((from, Bound::Unbounded))
                .take(limit)
                .map(|(_, (user, _))| user.clone())
                .collect(),
            total: users.len() as u64,
        }
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
        if self.count_connected(room_id, user) {
            self.announce_online(room_id, user);
        }
    }

    /// Counts a connection of `user` in the room without telling anyone yet; `true` if the
    /// user just came online here, and [`Presence::announce_online`] must follow. A subscriber
    /// answers its own `subscribed` in between: the announcement goes to every subscriber of
    /// the room, and its cost (one write per subscriber) is not the new subscriber's to wait on.
    pub fn count_connected(&self, room_id: Uuid, user: &User) -> bool {
        self.node.join(room_id, user)
    }

    /// Announces the transition [`Presence::count_connected`] reported.
    pub fn announce_online(&self, room_id: Uuid, user: &User) {
        match &self.cluster {
            Some(cluster) => cluster.joined(room_id, user.clone()),
            None => announce(&self.bus, room_id, user.clone(), PresenceStatus::Online),
        }
    }

    /// A connection of the user left the room (unsubscribed or closed). Returns whether it
    /// was the user's last one in the room on this node.
    pub fn disconnected(&self, room_id: Uuid, user: &User) -> bool {
        if !self.node.leave(room_id, user) {
            return false;
        }
        match &self.cluster {
            Some(cluster) => cluster.left(room_id, user.clone()),
            None => announce(&self.bus, room_id, user.clone(), PresenceStatus::Offline),
        }
        true
    }

    /// Whether `user_id` has an open connection on any node (see [`UserPresence`]). When Redis
    /// is unreachable, whether they have one on this node: a push to a user connected
    /// elsewhere is the lesser harm than a message nobody is told about.
    pub async fn user_connected(&self, user_id: Uuid) -> bool {
        if self.node.has_connections(user_id) {
            return true;
        }
        let Some(cluster) = &self.cluster else {
            return false;
        };
        match cluster.is_online(user_id, user_id).await {
            Ok(online) => online,
            Err(err) => {
                tracing::debug!(error = %err, "connection check from this node only");
                false
            }
        }
    }

    /// Up to `limit` users online in the room (on any node) whose lowercased username sorts
    /// after `after`, and how many are online in all. When the engine is unreachable, this node's
    /// users at least.
    pub async fn online(&self, room_id: Uuid, after: Option<&str>, limit: usize) -> OnlinePage {
        let local = self.node.page(room_id, after, limit);
        let Some(cluster) = &self.cluster else {
            return local;
        };
        match cluster.online(room_id, after, limit).await {
            Ok(shared) => merge_pages(local, shared, limit),
            Err(err) => {
                tracing::debug!(error = %err, "online list from this node only");
                local
            }
        }
    }
}

/// The union of two pages in list order (the cluster's may lag this node's by a moment).
fn merge_pages(local: OnlinePage, shared: OnlinePage, limit: usize) -> OnlinePage {
    let mut users: BTreeMap<OnlineKey, User> = BTreeMap::new();
    for user in local.users.into_iter().chain(shared.users) {
        users.entry(online_key(&user)).or_insert(user);
    }
    OnlinePage {
        users: users.into_values().take(limit).collect(),
        total: local.total.max(shared.total),
    }
}

/// One open connection of a user, counted in the user's own presence scope until dropped:
/// what [`Presence::user_connected`] reads. Held by the connection, so an aborted task
/// cannot leave it counted.
#[derive(Debug)]
pub struct UserPresence {
    presence: std::sync::Arc<Presence>,
    user: User,
}

impl UserPresence {
    pub fn open(presence: std::sync::Arc<Presence>, user: &User) -> Self {
        presence.connected(user.id, user);
        UserPresence {
            presence,
            user: user.clone(),
        }
    }
}

impl Drop for UserPresence {
    fn drop(&mut self) {
        self.presence.disconnected(self.user.id, &self.user);
    }
}

/// Publishes a presence event to the room; the user's own connections skip it.
pub(crate) fn announce(bus: &Bus, room_id: Uuid, user: User, status: PresenceStatus) {
    let user_id = user.id;
    // A user's own scope (see `UserPresence`) is not a room: nobody listens there.
    if room_id == user_id {
        return;
    }
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
        assert_eq!(presence.page(room, None, 10).total, 2);
        assert!(!presence.leave(room, &ann));
        assert!(presence.leave(room, &ann));
        assert!(
            !presence.leave(room, &ann),
            "leaving twice is not a second transition"
        );
        assert_eq!(presence.page(room, None, 10).users, [bo]);
    }

    #[test]
    fn a_users_own_scope_counts_connections_and_lists_nobody() {
        let presence = NodePresence::default();
        let ann = user("ann");
        assert!(!presence.has_connections(ann.id));
        assert!(presence.join(ann.id, &ann), "the first connection");
        assert!(!presence.join(ann.id, &ann), "a second one");
        assert!(presence.has_connections(ann.id));
        assert_eq!(presence.page(ann.id, None, 10), OnlinePage::default());
        assert!(!presence.leave(ann.id, &ann));
        assert!(presence.has_connections(ann.id));
        assert!(presence.leave(ann.id, &ann), "the last one");
        assert!(!presence.has_connections(ann.id));
        assert!(!presence.leave(ann.id, &ann));
    }

    #[test]
    fn online_lists_are_paged_by_username() {
        let presence = NodePresence::default();
        let room = Uuid::new_v4();
        let users: Vec<User> = ["Cy", "ann", "bo", "dee"].into_iter().map(user).collect();
        for user in &users {
            presence.join(room, user);
        }
        let first = presence.page(room, None, 2);
        assert_eq!(first.total, 4);
        let names: Vec<_> = first.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["ann", "bo"]);
        let next = presence.page(room, Some("BO"), 10);
        let names: Vec<_> = next.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["Cy", "dee"]);
        assert!(presence.page(room, Some("dee"), 10).users.is_empty());
    }
}
