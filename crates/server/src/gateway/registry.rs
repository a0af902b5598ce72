//! How many WebSocket connections each user has open on this node, with a cap.
//!
//! A permit is taken before the upgrade and held by the connection until it ends (released
//! on `Drop`, whatever way the task ends), so the count cannot drift.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Open connections per user on this node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct UserConnections {
    counts: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open connection of a user; gives its place back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    counts: Arc<Mutex<HashMap<Uuid, usize>>>,
    user_id: Uuid,
}

impl UserConnections {
    /// A permit for one more connection of `user_id`, or `None` when they already have `max`
    /// (0: no cap).
    pub fn acquire(&self, user_id: Uuid, max: usize) -> Option<ConnectionPermit> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(user_id).or_default();
        if max > 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionPermit {
            counts: self.counts.clone(),
            user_id,
        })
    }

    /// The user's open connections on this node.
    pub fn count(&self, user_id: Uuid) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&user_id)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_capped_and_given_back() {
        let connections = UserConnections::default();
        let user = Uuid::new_v4();
        let first = connections.acquire(user, 2);
        let second = connections.acquire(user, 2);
        assert!(first.is_some() && second.is_some());
        assert!(connections.acquire(user, 2).is_none());
        assert!(connections.acquire(Uuid::new_v4(), 2).is_some());
        drop(first);
        assert_eq!(connections.count(user), 1);
        assert!(connections.acquire(user, 2).is_some());
        drop(second);
        assert!(connections.acquire(user, 0).is_some(), "0 means no cap");
    }
}
