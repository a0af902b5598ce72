//! The local hub: which connections of this node are subscribed to which room, and fan-out to
//! them.
//!
//! An event is encoded once into a [`Frame`] whose bytes every recipient shares. Fan-out never
//! waits: each connection has a bounded queue, and a connection whose queue is full is told to
//! go (it resumes later with `since_seq`) instead of slowing the room down.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use metrics::Counter;
use nebula_wire::{Message, Rev, Seq, ServerEvent};
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
    /// Set on `message.new` and `message.updated`: the message's seq.
    pub seq: Option<Seq>,
    /// Set on `message.new` and `message.updated`: the room's change counter at this version
    /// of the message. Gap-free per room, so a connection delivers these frames in rev order,
    /// drops duplicates and spots gaps (`gateway::connection`).
    pub rev: Option<Rev>,
    /// Connections of this user skip the frame (a typing user does not see their own typing).
    pub skip_user: Option<Uuid>,
    /// Set on `member.left`: that user's connections drop their subscription to the room.
    pub member_left: Option<Uuid>,
    /// The room's membership revision the event was published at (see `bus::members`): a
    /// node whose subscribers were last checked at an older revision checks them again before
    /// delivering it. 0 when the room never lost a member.
    pub member_rev: i64,
    /// The event's `type` (a metrics label).
    pub kind: &'static str,
    /// Set on `message.new`: when the server received the message from its sender, for the
    /// end-to-end latency histogram. Wall-clock time, so it stays meaningful across nodes.
    pub received_at: Option<SystemTime>,
    /// The JSON text, shared by every recipient.
    pub text: Utf8Bytes,
}

impl Frame {
    /// `message.new` for a stored message, committed at membership revision `member_rev`;
    /// `received_at` is when its sender's request arrived (`None` when it is replayed from the
    /// database).
    pub fn message(message: Message, member_rev: i64, received_at: Option<SystemTime>) -> Frame {
        let (room_id, seq, rev) = (message.room_id, message.seq, message.rev);
        let event = ServerEvent::MessageNew { message };
        Frame::from(FrameData {
            room_id,
            seq: Some(seq),
            rev: Some(rev),
            skip_user: None,
            member_left: None,
            member_rev,
            kind: event.type_name(),
            received_at,
            text: encode(&event),
        })
    }

    /// `message.updated` for a changed message, committed at membership revision `member_rev`.
    pub fn updated(message: Message, member_rev: i64) -> Frame {
        let (room_id, seq, rev) = (message.room_id, message.seq, message.rev);
        let event = ServerEvent::MessageUpdated { message };
        Frame::from(FrameData {
            room_id,
            seq: Some(seq),
            rev: Some(rev),
            skip_user: None,
            member_left: None,
            member_rev,
            kind: event.type_name(),
            received_at: None,
            text: encode(&event),
        })
    }

    /// A message in the version the change feed found it at: `message.new` if that is its
    /// creation, else `message.updated` (reconciliation replays the feed).
    pub fn feed_entry(message: Message, is_creation: bool, member_rev: i64) -> Frame {
        if is_creation {
            Frame::message(message, member_rev, None)
        } else {
            Frame::updated(message, member_rev)
        }
    }

    /// Any other room event at membership revision `member_rev`; `skip_user`'s own
    /// connections do not receive it.
    pub fn event(
        room_id: Uuid,
        event: &ServerEvent,
        skip_user: Option<Uuid>,
        member_rev: i64,
    ) -> Frame {
        let member_left = match event {
            ServerEvent::MemberLeft { user, .. } => Some(user.id),
            _ => None,
        };
        Frame::from(FrameData {
            room_id,
            seq: None,
            rev: None,
            skip_user,
            member_left,
            member_rev,
            kind: event.type_name(),
            received_at: None,
            text: encode(event),
        })
    }
}

impl FrameData {
    /// Events worth less than a subscriber's connection: dropped for a subscriber whose queue
    /// is past its high-water mark, so the room's messages are never put at risk by them.
    pub fn is_sheddable(&self) -> bool {
        matches!(self.kind, "typing" | "presence" | "read")
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
    /// The highest rev published here (or known stored when the room was first watched): how
    /// a node notices, against the database, messages and changes it never received.
    last_rev: AtomicI64,
    /// Every subscriber here was a member of the room at this membership revision or a later
    /// one. An event of a newer revision is delivered only after they are checked again.
    member_rev: AtomicI64,
    /// Bumped by every new subscriber: a membership check that saw a different generation
    /// when it started did not cover everyone, and must not raise `member_rev`.
    generation: u64,
}

/// A watched room as reconciliation sees it.
#[derive(Debug, Clone, Copy)]
pub struct WatchedRoom {
    pub room_id: Uuid,
    /// Highest rev published here.
    pub last_rev: Rev,
    /// Membership revision the local subscribers were last checked at.
    pub member_rev: i64,
}

/// Who is subscribed to a room on this node, for a membership check.
#[derive(Debug, Clone)]
pub struct LocalSubscribers {
    pub users: Vec<Uuid>,
    pub generation: u64,
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

/// Low-value events dropped for subscribers past their queue's high-water mark.
static SHED: LazyLock<Counter> = LazyLock::new(|| metrics::counter!("nebula_ws_events_shed_total"));

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

    /// Adds a connection to a room. Returns whether the room had no local subscriber before,
    /// and the room's generation after this subscriber joined.
    pub fn subscribe(&self, room_id: Uuid, conn: ConnId, subscriber: Subscriber) -> (bool, u64) {
        let mut table = self
            .shard(room_id)
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = table.entry(room_id).or_default();
        let first = room.subscribers.is_empty();
        room.subscribers.insert(conn, subscriber);
        room.generation += 1;
        (first, room.generation)
    }

    /// The membership revision the room's local subscribers were last checked at; `None`
    /// when the room has none.
    pub fn member_rev(&self, room_id: Uuid) -> Option<i64> {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table
            .get(&room_id)
            .map(|room| room.member_rev.load(Ordering::Acquire))
    }

    /// The users subscribed to the room here (each once), and the room's generation.
    pub fn local_subscribers(&self, room_id: Uuid) -> Option<LocalSubscribers> {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = table.get(&room_id)?;
        let mut users: Vec<Uuid> = room.subscribers.values().map(|s| s.user_id).collect();
        users.sort_unstable();
        users.dedup();
        Some(LocalSubscribers {
            users,
            generation: room.generation,
        })
    }

    /// Records that every subscriber of the room was a member at `member_rev`, unless a
    /// subscriber arrived since `generation` (then the check did not cover it).
    pub fn checked_members(&self, room_id: Uuid, generation: u64, member_rev: i64) {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(room) = table.get(&room_id)
            && room.generation == generation
        {
            room.member_rev.fetch_max(member_rev, Ordering::AcqRel);
        }
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

    /// Rooms with at least one local subscriber.
    pub fn rooms(&self) -> Vec<WatchedRoom> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let table = shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                table
                    .iter()
                    .map(|(room_id, entry)| WatchedRoom {
                        room_id: *room_id,
                        last_rev: entry.last_rev.load(Ordering::Relaxed),
                        member_rev: entry.member_rev.load(Ordering::Acquire),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Records that changes up to `rev` are stored (and were delivered or replayed by the
    /// subscribers' own reads), so later reconciliation only looks beyond it.
    pub fn raise_rev(&self, room_id: Uuid, rev: Rev) {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(room) = table.get(&room_id) {
            room.last_rev.fetch_max(rev, Ordering::Relaxed);
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
        if let Some(rev) = frame.rev {
            room.last_rev.fetch_max(rev, Ordering::Relaxed);
        }
        let sheddable = frame.is_sheddable();
        let mut delivered = 0;
        for subscriber in room.subscribers.values() {
            if frame.skip_user == Some(subscriber.user_id) {
                continue;
            }
            // At the high-water mark (half the queue used), typing, presence and read events are
            // dropped for this subscriber: the room's messages keep the other half.
            if sheddable && subscriber.queue.capacity() <= subscriber.queue.max_capacity() / 2 {
                SHED.increment(1);
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
        // A removal announced right after the revision the subscribers were checked at is
        // exactly the one change between them: delivering it (its user's connections drop
        // the room on reading it) brings everyone here up to its revision.
        if frame.member_left.is_some() && frame.member_rev > 0 {
            let _ = room.member_rev.compare_exchange(
                frame.member_rev - 1,
                frame.member_rev,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use nebula_wire::{TypingState, User};

    use super::*;

    fn message(room_id: Uuid, seq: Seq) -> Frame {
        Frame::message(
            Message {
                id: Uuid::new_v4(),
                room_id,
                seq,
                sender_id: Uuid::nil(),
                sender_username: "s".into(),
                content: "c".into(),
                client_msg_id: None,
                created_at: chrono::Utc::now(),
                reply_to: None,
                edited_at: None,
                deleted_at: None,
                reactions: vec![],
                rev: seq,
                attachments: vec![],
            },
            0,
            None,
        )
    }

    fn typing(room_id: Uuid) -> Frame {
        let event = ServerEvent::Typing {
            room_id,
            user_id: Uuid::nil(),
            username: "t".into(),
            state: TypingState::Start,
        };
        Frame::event(room_id, &event, None, 0)
    }

    #[test]
    fn low_value_events_are_shed_before_messages_are_at_risk() {
        let hub = Hub::default();
        let room = Uuid::new_v4();
        let (queue, mut received) = mpsc::channel(8);
        let overflowed = CancellationToken::new();
        hub.subscribe(
            room,
            1,
            Subscriber {
                user_id: Uuid::new_v4(),
                queue,
                overflowed: overflowed.clone(),
            },
        );
        // Below the high-water mark (half the queue) everything is delivered.
        assert_eq!(hub.publish(&message(room, 1)), 1);
        assert_eq!(hub.publish(&typing(room)), 1);
        assert_eq!(hub.publish(&message(room, 2)), 1);
        assert_eq!(hub.publish(&message(room, 3)), 1);
        // Four queued of eight: typing is shed, messages still fit.
        assert_eq!(hub.publish(&typing(room)), 0);
        for seq in 4..=7 {
            assert_eq!(hub.publish(&message(room, seq)), 1);
        }
        assert!(!overflowed.is_cancelled());
        // Only a reader too slow for the messages themselves is let go.
        assert_eq!(hub.publish(&message(room, 8)), 0);
        assert!(overflowed.is_cancelled());
        let mut kinds = Vec::new();
        while let Ok(frame) = received.try_recv() {
            kinds.push(frame.kind);
        }
        assert_eq!(kinds.iter().filter(|k| **k == "typing").count(), 1);
        assert_eq!(kinds.iter().filter(|k| **k == "message.new").count(), 7);
    }

    #[test]
    fn a_check_that_missed_a_new_subscriber_raises_nothing() {
        let hub = Hub::default();
        let room = Uuid::new_v4();
        let subscriber = |user_id| {
            let (queue, _) = mpsc::channel(8);
            Subscriber {
                user_id,
                queue,
                overflowed: CancellationToken::new(),
            }
        };
        hub.subscribe(room, 1, subscriber(Uuid::new_v4()));
        let before = hub.local_subscribers(room).expect("watched");
        hub.subscribe(room, 2, subscriber(Uuid::new_v4()));
        hub.checked_members(room, before.generation, 5);
        assert_eq!(hub.member_rev(room), Some(0));
        let now = hub.local_subscribers(room).expect("watched");
        assert_eq!(now.users.len(), 2);
        hub.checked_members(room, now.generation, 5);
        assert_eq!(hub.member_rev(room), Some(5));
        // The removal right after the checked revision moves it by one; a later one does not.
        let user = User {
            id: Uuid::new_v4(),
            username: "u".into(),
            created_at: chrono::Utc::now(),
        };
        let left = |rev| {
            let event = ServerEvent::MemberLeft {
                room_id: room,
                user: user.clone(),
            };
            Frame::event(room, &event, None, rev)
        };
        hub.publish(&left(7));
        assert_eq!(hub.member_rev(room), Some(5));
        hub.publish(&left(6));
        assert_eq!(hub.member_rev(room), Some(6));
    }
}
