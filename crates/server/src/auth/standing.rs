//! Whether an account's tokens still count: its token generation and whether it is
//! deactivated, checked on every REST request and held against every open socket.
//!
//! Why a cache: the check runs on every request, so it must not be a database round trip.
//! Each node keeps the standing of the accounts it has seen recently (`CACHE_TTL`); a change
//! (password change, logout-all, deactivation, deletion) is written to the database first,
//! then applied here and announced to the other nodes over the cluster engine (`{prefix}:accounts`, Redis or NATS), where
//! it updates their caches and closes their sockets of that account with 4001.
//!
//! Why a TTL on top of the announcements: pub/sub is fire-and-forget. A node that was
//! disconnected from the engine while a change was announced forgets its whole cache when it
//! reconnects, and any entry is re-read at the latest `CACHE_TTL` after it was cached, so a
//! lost announcement delays a revocation by at most that long instead of forever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::{Cluster, channel};
use crate::store::{Store, StoreResult};

/// How long a cached standing is trusted without a database read.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Cached accounts beyond which the cache is emptied (it refills from the database).
const CACHE_MAX: usize = 100_000;

/// What decides whether an account's tokens are honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// Tokens of a lower generation are revoked.
    #[serde(rename = "g")]
    pub generation: i64,
    /// Deactivated by an admin or deleted: no token of any generation works.
    #[serde(rename = "d")]
    pub deactivated: bool,
}

impl Standing {
    /// Why a token of `generation` is refused, if it is.
    pub fn refuses(&self, generation: i64) -> Option<Refusal> {
        if self.deactivated {
            Some(Refusal::Deactivated)
        } else if generation < self.generation {
            Some(Refusal::Revoked)
        } else {
            None
        }
    }
}

/// Why an account's token is no longer honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Revoked,
    Deactivated,
}

#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    /// The announcing node, which applied it already.
    o: Uuid,
    u: Uuid,
    s: Standing,
}

/// An open socket's claim on its account's standing.
#[derive(Debug)]
struct Watcher {
    id: u64,
    generation: i64,
    revoked: CancellationToken,
}

#[derive(Debug, Default)]
struct Inner {
    cache: HashMap<Uuid, (Standing, Instant)>,
    sockets: HashMap<Uuid, Vec<Watcher>>,
}

#[derive(Debug)]
struct Shared {
    node: Uuid,
    inner: Mutex<Inner>,
    next_watcher: AtomicU64,
    outgoing: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

/// This node's view of account standings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Standings(Arc<Shared>);

/// Held by an open socket: cancelled when its token stops counting; unregisters on drop.
#[derive(Debug)]
pub struct SocketWatch {
    standings: Weak<Shared>,
    user_id: Uuid,
    id: u64,
    revoked: CancellationToken,
}

impl SocketWatch {
    /// Cancelled when the socket must close with 4001.
    pub fn revoked(&self) -> &CancellationToken {
        &self.revoked
    }
}

impl Drop for SocketWatch {
    fn drop(&mut self) {
        if let Some(shared) = self.standings.upgrade() {
            let mut inner = shared.lock();
            if let Some(watchers) = inner.sockets.get_mut(&self.user_id) {
                watchers.retain(|watcher| watcher.id != self.id);
                if watchers.is_empty() {
                    inner.sockets.remove(&self.user_id);
                }
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Caches `standing` and closes the sockets it refuses.
    fn apply(&self, user_id: Uuid, standing: Standing) {
        let mut inner = self.lock();
        if inner.cache.len() >= CACHE_MAX {
            inner.cache.clear();
        }
        inner.cache.insert(user_id, (standing, Instant::now()));
        if let Some(watchers) = inner.sockets.get(&user_id) {
            for watcher in watchers {
                if standing.refuses(watcher.generation).is_some() {
                    watcher.revoked.cancel();
                }
            }
        }
    }

    fn receive(&self, payload: &[u8]) {
        match serde_json::from_slice::<Announcement>(payload) {
            Ok(announcement) if announcement.o == self.node => {}
            Ok(announcement) => self.apply(announcement.u, announcement.s),
            Err(err) => tracing::warn!(error = %err, "unreadable account announcement"),
        }
    }
}

impl Standings {
    /// Starts the service; with a cluster, also the tasks that carry announcements over the engine
    /// (returns once the channel subscription is confirmed, or after a short wait).
    pub async fn start(
        cluster: Option<&Cluster>,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Standings {
        let node = cluster.map_or_else(Uuid::new_v4, |cluster| cluster.node_id);
        let (outgoing, outgoing_rx) = match cluster {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            node,
            inner: Mutex::new(Inner::default()),
            next_watcher: AtomicU64::new(0),
            outgoing,
        });
        if let (Some(cluster), Some(outgoing_rx)) = (cluster, outgoing_rx) {
            let standings = Arc::downgrade(&shared);
            let receiver = standings.clone();
            // Every (re)subscription forgets the cache: announcements may have been missed.
            channel::open(
                cluster,
                cluster.key(format_args!("accounts")),
                "accounts",
                outgoing_rx,
                move || {
                    if let Some(shared) = standings.upgrade() {
                        Standings::forget_all(&shared);
                    }
                },
                move |payload| {
                    let Some(shared) = receiver.upgrade() else {
                        return false;
                    };
                    shared.receive(payload);
                    true
                },
                shutdown,
                tasks,
            )
            .await;
        }
        Standings(shared)
    }

    /// The account's standing: from the cache while it is fresh, else from the database.
    /// `None` when the account does not exist.
    pub async fn get(&self, store: &Store, user_id: Uuid) -> StoreResult<Option<Standing>> {
        {
            let inner = self.0.lock();
            if let Some((standing, at)) = inner.cache.get(&user_id)
                && at.elapsed() < CACHE_TTL
            {
                return Ok(Some(*standing));
            }
        }
        let Some(standing) = store.standing(user_id).await? else {
            return Ok(None);
        };
        // Applied, not just cached: a socket registered meanwhile is held to it too.
        self.0.apply(user_id, standing);
        Ok(Some(standing))
    }

    /// Applies a change committed to the database on this node and announces it to the others.
    pub fn changed(&self, user_id: Uuid, standing: Standing) {
        self.0.apply(user_id, standing);
        if let Some(outgoing) = &self.0.outgoing {
            let announcement = Announcement {
                o: self.0.node,
                u: user_id,
                s: standing,
            };
            // Serializing this plain struct cannot fail.
            let _ = outgoing.send(serde_json::to_vec(&announcement).unwrap_or_default());
        }
    }

    /// Registers a socket authenticated with a token of `generation`. The watch is cancelled
    /// at once if the cached standing already refuses it (a change that arrived between the
    /// token check and this registration).
    pub fn watch(&self, user_id: Uuid, generation: i64) -> SocketWatch {
        let id = self.0.next_watcher.fetch_add(1, Ordering::Relaxed);
        let revoked = CancellationToken::new();
        let mut inner = self.0.lock();
        if let Some((standing, _)) = inner.cache.get(&user_id)
            && standing.refuses(generation).is_some()
        {
            revoked.cancel();
        }
        inner.sockets.entry(user_id).or_default().push(Watcher {
            id,
            generation,
            revoked: revoked.clone(),
        });
        SocketWatch {
            standings: Arc::downgrade(&self.0),
            user_id,
            id,
            revoked,
        }
    }

    /// Forgets every cached standing (after missing announcements).
    fn forget_all(shared: &Shared) {
        shared.lock().cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_closes_older_sockets_and_spares_newer_ones() {
        let mut tasks = JoinSet::new();
        let standings = Standings::start(None, CancellationToken::new(), &mut tasks).await;
        let user = Uuid::new_v4();
        let old = standings.watch(user, 0);
        let new = standings.watch(user, 1);
        standings.changed(
            user,
            Standing {
                generation: 1,
                deactivated: false,
            },
        );
        assert!(old.revoked().is_cancelled());
        assert!(!new.revoked().is_cancelled());
        // A socket of a revoked generation registered afterwards is refused at once.
        assert!(standings.watch(user, 0).revoked().is_cancelled());
        standings.changed(
            user,
            Standing {
                generation: 1,
                deactivated: true,
            },
        );
        assert!(new.revoked().is_cancelled());
        drop((old, new));
        assert!(
            standings.0.lock().sockets.is_empty(),
            "watches unregister on drop"
        );
    }
}
