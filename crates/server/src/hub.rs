//! The local hub: which connections of this node are subscribed to which room, and fan-out to
//! them.
//!
//! An event is encoded once into a [`Frame`] whose bytes every recipient shares. Fan-out never
//! waits: each connection has a bounded queue, and a connection whose queue is full is told to
//! go (it resumes later with `since_seq`) instead of slowing the room down.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;

use axum::extract::ws::Utf8Bytes;
use nebula_wire::Seq;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A connection's id, unique within this process.
pub type ConnId = u64;

/// One encoded event on its way to sockets.
#[derive(Debug, Clone)]
pub struct Frame {
    pub room_id: Uuid,
    /// Set on `message.new`: lets a connection drop duplicates and spot gaps during replay.
    pub seq: Option<Seq>,
    /// Connections of this user skip the frame (a typing user does not see their own typing).
    pub skip_user: Option<Uuid>,
    /// The JSON text, shared by every recipient.
    pub text: Utf8Bytes,
}

/// A connection's entry in a room.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub user_id: Uuid,
    pub queue: mpsc::Sender<Frame>,
    /// Cancelled when the queue overflows: the connection closes itself as a slow consumer.
    pub overflowed: CancellationToken,
}

type RoomTable = HashMap<Uuid, HashMap<ConnId, Subscriber>>;

/// Room → subscribers, split into shards so rooms on different shards never contend.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[RwLock<RoomTable>]>,
    hasher: RandomState,
}

const SHARDS: usize = 64;

impl Default for Hub {
    fn default() -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Hub {
    fn shard(&self, room_id: Uuid) -> &RwLock<RoomTable> {
        let index = usize::try_from(self.hasher.hash_one(room_id) % SHARDS as u64).unwrap_or(0);
        &self.shards[index]
    }

    /// Adds a connection to a room. Returns whether the room had no local subscriber before.
    pub fn subscribe(&self, room_id: Uuid, conn: ConnId, subscriber: Subscriber) -> bool {
        let mut table = self
            .shard(room_id)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = table.entry(room_id).or_default();
        let first = room.is_empty();
        room.insert(conn, subscriber);
        first
    }

    /// Removes a connection from a room. Returns whether the room has no local subscriber left.
    pub fn unsubscribe(&self, room_id: Uuid, conn: ConnId) -> bool {
        let mut table = self
            .shard(room_id)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(room) = table.get_mut(&room_id) else {
            return false;
        };
        room.remove(&conn);
        let empty = room.is_empty();
        if empty {
            table.remove(&room_id);
        }
        empty
    }

    /// Whether any connection of this node listens to the room.
    pub fn has_subscribers(&self, room_id: Uuid) -> bool {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.contains_key(&room_id)
    }

    /// Rooms with at least one local subscriber.
    pub fn rooms(&self) -> Vec<Uuid> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let table = shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                table.keys().copied().collect::<Vec<_>>()
            })
            .collect()
    }

    /// Queues the frame for every subscriber of its room; returns how many got it.
    ///
    /// Holds the shard's read lock only for the loop of `try_send`s, which never block.
    pub fn publish(&self, frame: &Frame) -> usize {
        let table = self
            .shard(frame.room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(room) = table.get(&frame.room_id) else {
            return 0;
        };
        let mut delivered = 0;
        for subscriber in room.values() {
            if frame.skip_user == Some(subscriber.user_id) {
                continue;
            }
            match subscriber.queue.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if !subscriber.overflowed.is_cancelled() {
                        metrics::counter!("nebula_ws_outbound_overflows_total").increment(1);
                    }
                    subscriber.overflowed.cancel();
                }
                // The connection is closing; its guard removes the entry.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }
}
