//! The local hub: which connections of this node are subscribed to which room, and fan-out to
//! them.
//!
//! An event is encoded once into a [`Frame`] whose bytes every recipient shares. Fan-out never
//! waits: each connection has a bounded queue, and a connection whose queue is full is told to
//! go (it resumes later with `since_seq`) instead of slowing the room down.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use nebula_wire::{Message, Seq, ServerEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::encode;

/// A connection's id, unique within this process.
pub type ConnId = u64;

/// One encoded event on its way to sockets: a pointer to the [`FrameData`] every recipient
/// shares. Kept one word wide on purpose: each connection's queue allocates its first block of
/// 32 slots up front, which cost 4.3 KiB per idle connection when a slot held the whole frame.
#[derive(Debug, Clone)]
pub struct Frame(Arc<FrameData>);

impl From<FrameData> for Frame {
    fn from(data: FrameData) -> Self {
        Frame(Arc::new(data))
    }
}

impl std::ops::Deref for Frame {
    type Target = FrameData;

    fn deref(&self) -> &FrameData {
        &self.0
    }
}

/// An encoded event and what routing it needs.
#[derive(Debug)]
pub struct FrameData {
    pub room_id: Uuid,
    /// Set on `message.new`: lets a connection drop duplicates and spot gaps during replay.
    pub seq: Option<Seq>,
    /// Connections of this user skip the frame (a typing user does not see their own typing).
    pub skip_user: Option<Uuid>,
    /// Set on `member.left`: that user's connections drop their subscription to the room.
    pub member_left: Option<Uuid>,
    /// The event's `type` (a metrics label).
    pub kind: &'static str,
    /// Set on `message.new`: when the server received the message from its sender, for the
    /// end-to-end latency histogram. Wall-clock time, so it stays meaningful across nodes.
    pub received_at: Option<SystemTime>,
    /// The JSON text, shared by every recipient.
    pub text: Utf8Bytes,
}

impl Frame {
    /// `message.new` for a stored message; `received_at` is when its sender's request arrived
    /// (`None` when it is replayed from the database).
    pub fn message(message: Message, received_at: Option<SystemTime>) -> Frame {
        let (room_id, seq) = (message.room_id, message.seq);
        let event = ServerEvent::MessageNew { message };
        Frame::from(FrameData {
            room_id,
            seq: Some(seq),
            skip_user: None,
            member_left: None,
            kind: event.type_name(),
            received_at,
            text: encode(&event),
        })
    }

    /// Any other room event; `skip_user`'s own connections do not receive it.
    pub fn event(room_id: Uuid, event: &ServerEvent, skip_user: Option<Uuid>) -> Frame {
        let member_left = match event {
            ServerEvent::MemberLeft { user, .. } => Some(user.id),
            _ => None,
        };
        Frame::from(FrameData {
            room_id,
            seq: None,
            skip_user,
            member_left,
            kind: event.type_name(),
            received_at: None,
            text: encode(event),
        })
    }
}

/// A connection's entry in a room.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub user_id: Uuid,
    pub queue: mpsc::Sender<Frame>,
    /// Cancelled when the queue overflows: the connection closes itself as a slow consumer.
    pub overflowed: CancellationToken,
}

/// One room's local subscribers.
#[derive(Debug, Default)]
struct RoomEntry {
    subscribers: HashMap<ConnId, Subscriber>,
    /// The highest `message.new` seq published here (or known stored when the room was first
    /// watched): how a node notices, against the database, messages it never received.
    last_seq: AtomicI64,
}

type RoomTable = HashMap<Uuid, RoomEntry>;

/// Room → subscribers, split into shards so rooms on different shards never contend.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[RwLock<RoomTable>]>,
    hasher: RandomState,
    next_conn: AtomicU64,
}

const SHARDS: usize = 64;

impl Default for Hub {
    fn default() -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            next_conn: AtomicU64::new(1),
        }
    }
}

impl Hub {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

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
        let first = room.subscribers.is_empty();
        room.subscribers.insert(conn, subscriber);
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
        room.subscribers.remove(&conn);
        let empty = room.subscribers.is_empty();
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

    /// Rooms with at least one local subscriber, with the highest seq published in each.
    pub fn rooms(&self) -> Vec<(Uuid, Seq)> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let table = shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                table
                    .iter()
                    .map(|(room_id, entry)| (*room_id, entry.last_seq.load(Ordering::Relaxed)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Records that messages up to `seq` are stored (and were delivered or replayed by the
    /// subscribers' own reads), so later reconciliation only looks beyond it.
    pub fn raise_seq(&self, room_id: Uuid, seq: Seq) {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(room) = table.get(&room_id) {
            room.last_seq.fetch_max(seq, Ordering::Relaxed);
        }
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
        if let Some(seq) = frame.seq {
            room.last_seq.fetch_max(seq, Ordering::Relaxed);
        }
        let mut delivered = 0;
        for subscriber in room.subscribers.values() {
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
