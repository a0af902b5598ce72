//! Events addressed to a user rather than to a room: a direct room opened with them, a room
//! they were added to, a contact request to them, their request accepted. Each reaches every
//! open connection of the user, on any node, whatever the connection subscribed to: it is how
//! a client hears of a room it does not know yet, without polling.
//!
//! Nothing is stored or replayed. The facts behind these events are in `GET /dms`, `GET /rooms`,
//! `GET /contacts/requests` and `GET /contacts`, which a client reads when it (re)connects; the
//! events only spare it the polling in between.
//!
//! In a cluster, every event goes over one channel of the cluster engine
//! (`{prefix}:user-events`) as `node id ‖ user id ‖ event JSON`. The sending node writes to its
//! own connections at once; every other node writes to its connections of that user and
//! ignores the rest. These are a few small frames per social action, so one shared channel
//! costs less than a channel per user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nebula_wire::ServerEvent;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::{Cluster, channel};
use crate::gateway::outbound::Outbound;
use crate::hub::ConnId;

/// This node's connections per user, and the way to the other nodes. Cheap to clone.
#[derive(Clone)]
pub struct UserEvents(Arc<Inner>);

struct Inner {
    node: Uuid,
    conns: Mutex<HashMap<Uuid, HashMap<ConnId, Arc<Outbound>>>>,
    /// Payloads for the cluster channel; `None` on a single node.
    outgoing: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl std::fmt::Debug for UserEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEvents").finish_non_exhaustive()
    }
}

impl UserEvents {
    /// Starts the service; with a cluster, also the tasks that carry events between nodes
    /// (returns once the channel subscription is confirmed, or after a short wait).
    pub async fn start(
        cluster: Option<&Cluster>,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> UserEvents {
        let node = cluster.map_or_else(Uuid::new_v4, |cluster| cluster.node_id);
        let Some(cluster) = cluster else {
            return UserEvents(Arc::new(Inner {
                node,
                conns: Mutex::default(),
                outgoing: None,
            }));
        };
        let (outgoing, queue) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            node,
            conns: Mutex::default(),
            outgoing: Some(outgoing),
        });
        let receiver = Arc::downgrade(&inner);
        channel::open(
            cluster,
            cluster.key(format_args!("user-events")),
            "user events",
            queue,
            || {},
            move |payload| {
                let Some(inner) = receiver.upgrade() else {
                    return false;
                };
                inner.receive(payload);
                true
            },
            shutdown,
            tasks,
        )
        .await;
        UserEvents(inner)
    }

    /// A connection opened: events for its user are written to it from now on.
    pub fn register(&self, user_id: Uuid, conn: ConnId, out: Arc<Outbound>) {
        self.0.lock().entry(user_id).or_default().insert(conn, out);
    }

    /// A connection closed.
    pub fn unregister(&self, user_id: Uuid, conn: ConnId) {
        let mut conns = self.0.lock();
        if let Some(mine) = conns.get_mut(&user_id) {
            mine.remove(&conn);
            if mine.is_empty() {
                conns.remove(&user_id);
            }
        }
    }

    /// Writes `event` to every open connection of `user_id`, on every node.
    pub fn send(&self, user_id: Uuid, event: &ServerEvent) {
        let json = match serde_json::to_vec(event) {
            Ok(json) => json,
            Err(err) => {
                tracing::error!(error = %err, "a server event did not serialize");
                return;
            }
        };
        if let Some(outgoing) = &self.0.outgoing {
            let mut payload = Vec::with_capacity(32 + json.len());
            payload.extend_from_slice(self.0.node.as_bytes());
            payload.extend_from_slice(user_id.as_bytes());
            payload.extend_from_slice(&json);
            let _ = outgoing.send(payload);
        }
        self.0.deliver(user_id, &Bytes::from(json));
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HashMap<ConnId, Arc<Outbound>>>> {
        self.conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deliver(&self, user_id: Uuid, event: &Bytes) {
        let conns = self.lock();
        let Some(mine) = conns.get(&user_id) else {
            return;
        };
        for out in mine.values() {
            out.send(event);
        }
        // Counted with the other events that are not about a room (`type="other"`).
        crate::gateway::outbound::count_delivered("other", mine.len() as u64);
    }

    /// A payload from the channel: delivered here unless this node sent it (it already did).
    fn receive(&self, payload: &[u8]) {
        let Some((node, rest)) = split_uuid(payload) else {
            return;
        };
        let Some((user_id, json)) = split_uuid(rest) else {
            return;
        };
        if node == self.node {
            return;
        }
        self.deliver(user_id, &Bytes::copy_from_slice(json));
    }
}

fn split_uuid(bytes: &[u8]) -> Option<(Uuid, &[u8])> {
    let (id, rest) = bytes.split_at_checked(16)?;
    Some((Uuid::from_slice(id).ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_into_node_user_and_event() {
        let (node, user) = (Uuid::new_v4(), Uuid::new_v4());
        let mut payload = node.as_bytes().to_vec();
        payload.extend_from_slice(user.as_bytes());
        payload.extend_from_slice(b"{}");
        let (n, rest) = split_uuid(&payload).unwrap();
        let (u, json) = split_uuid(rest).unwrap();
        assert_eq!((n, u, json), (node, user, &b"{}"[..]));
        assert!(split_uuid(&payload[..15]).is_none(), "too short");
    }
}
