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

use bytes::Bytes;
use metrics::Counter;
use nebula_wire::{Message, Rev, Seq, ServerEvent};
use uuid::Uuid;

use crate::bus::encode;
use crate::gateway::outbound::{self, Offered, Outbound};

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
    /// The JSON text (valid UTF-8), shared by every recipient.
    pub text: Bytes,
    /// W3C `traceparent` of the span that published it, when traces are exported (see
    /// `nebula_notifier::otel`): the fan-out's span and other nodes' continue that trace.
    pub trace: Option<String>,
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
            trace: current_trace(),
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
            trace: current_trace(),
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
            trace: current_trace(),
        })
    }
}

/// The current span's `traceparent` (`None`, at the cost of one atomic load, when no traces
/// are exported).
fn current_trace() -> Option<String> {
    if nebula_notifier::otel::enabled() {
        nebula_notifier::otel::traceparent(&tracing::Span::current())
    } else {
        None
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
    /// Where its events go: straight to its socket, or to its task (see `gateway::outbound`).
    pub out: Arc<Outbound>,
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

    /// Delivers the frame to every subscriber of its room; returns how many took it.
    ///
    /// The subscribers are copied out under the shard's read lock and written to after it is
    /// released: writes are system calls, and a big room's would otherwise hold up every
    /// subscribe and unsubscribe on the shard.
    pub fn publish(&self, frame: &Frame) -> usize {
        // The recipients' writes, as one span of the frame's trace (only for traced frames).
        let span = match &frame.trace {
            Some(parent) => {
                let span = tracing::info_span!(
                    "hub.fanout",
                    kind = frame.kind,
                    recipients = tracing::field::Empty
                );
                nebula_notifier::otel::set_parent_from(&span, parent);
                span
            }
            None => tracing::Span::none(),
        };
        let _entered = span.enter();
        let recipients = self.fan_out(frame);
        span.record("recipients", recipients);
        recipients
    }

    /// Delivers several frames, in order within each room, each socket taking its share of a
    /// room's frames in one write (see [`Outbound::offer_all`]); returns how many deliveries
    /// were made. A room whose frames carry a trace or a `member.left` is published frame by
    /// frame, as [`Hub::publish`] would.
    pub fn publish_all(&self, frames: &[Frame]) -> usize {
        match frames {
            [] => return 0,
            [frame] => return self.publish(frame),
            _ => {}
        }
        let mut rooms: Vec<Uuid> = Vec::new();
        for frame in frames {
            if !rooms.contains(&frame.room_id) {
                rooms.push(frame.room_id);
            }
        }
        let mut delivered = 0;
        let mut group = Vec::new();
        for room_id in rooms {
            group.clear();
            group.extend(
                frames
                    .iter()
                    .filter(|frame| frame.room_id == room_id)
                    .cloned(),
            );
            if group
                .iter()
                .any(|frame| frame.trace.is_some() || frame.member_left.is_some())
            {
                delivered += group.iter().map(|frame| self.publish(frame)).sum::<usize>();
            } else {
                delivered += self.fan_out_all(room_id, &group);
            }
        }
        delivered
    }

    /// One room's frames (none traced, none a removal) to its subscribers.
    fn fan_out_all(&self, room_id: Uuid, frames: &[Frame]) -> usize {
        let mut recipients: Vec<(Uuid, Arc<Outbound>)> = {
            let table = self
                .shard(room_id)
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(room) = table.get(&room_id) else {
                return 0;
            };
            if let Some(rev) = frames.iter().filter_map(|frame| frame.rev).max() {
                room.last_rev.fetch_max(rev, Ordering::Relaxed);
            }
            room.subscribers
                .values()
                .map(|subscriber| (subscriber.user_id, subscriber.out.clone()))
                .collect()
        };
        let mut written = vec![0; frames.len()];
        let (mut delivered, mut shed) = (0, 0);
        for (user_id, out) in recipients.drain(..) {
            let offered = out.offer_all(frames, user_id, &mut written);
            delivered += offered.written + offered.queued;
            shed += offered.shed;
        }
        SHED.increment(shed as u64);
        for (frame, written) in frames.iter().zip(written) {
            if written > 0 {
                // What the connections' tasks write is counted there.
                outbound::count_delivered(frame.kind, written as u64);
                outbound::record_latency(frame);
            }
        }
        delivered
    }

    fn fan_out(&self, frame: &Frame) -> usize {
        RECIPIENTS.with_borrow_mut(|recipients| {
            recipients.clear();
            {
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
                recipients.extend(
                    room.subscribers
                        .values()
                        .filter(|subscriber| frame.skip_user != Some(subscriber.user_id))
                        .map(|subscriber| subscriber.out.clone()),
                );
            }
            let (mut delivered, mut written) = (0, 0);
            for out in recipients.drain(..) {
                match out.offer(frame) {
                    Offered::Written => written += 1,
                    Offered::Queued => delivered += 1,
                    Offered::Shed => SHED.increment(1),
                    Offered::Dropped | Offered::Overflowed => {}
                }
            }
            if written > 0 {
                // Counted once per publication; what the connections' tasks write is counted
                // there.
                outbound::count_delivered(frame.kind, written as u64);
                outbound::record_latency(frame);
            }
            if frame.member_left.is_some() && frame.member_rev > 0 {
                self.removal_delivered(frame.room_id, frame.member_rev);
            }
            delivered + written
        })
    }

    /// A removal announced right after the revision the subscribers were checked at is
    /// exactly the one change between them: once it is handed to every subscriber (its user's
    /// connections drop the room on handling it, before anything published after it), everyone
    /// here is up to its revision.
    fn removal_delivered(&self, room_id: Uuid, member_rev: i64) {
        let table = self
            .shard(room_id)
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(room) = table.get(&room_id) {
            let _ = room.member_rev.compare_exchange(
                member_rev - 1,
                member_rev,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

thread_local! {
    /// The recipients of the frame being published, reused so a publish allocates nothing.
    static RECIPIENTS: std::cell::RefCell<Vec<Arc<Outbound>>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use nebula_wire::User;

    use super::*;
    use crate::gateway::outbound::testing;

    fn subscriber(out: &Arc<Outbound>) -> Subscriber {
        Subscriber {
            user_id: Uuid::new_v4(),
            out: out.clone(),
        }
    }

    #[tokio::test]
    async fn a_check_that_missed_a_new_subscriber_raises_nothing() {
        let hub = Hub::default();
        let room = Uuid::new_v4();
        let (first, _c1, _q1) = testing::outbound(8).await;
        let (second, _c2, _q2) = testing::outbound(8).await;
        hub.subscribe(room, 1, subscriber(&first));
        let before = hub.local_subscribers(room).expect("watched");
        hub.subscribe(room, 2, subscriber(&second));
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

    #[tokio::test]
    async fn a_publish_reaches_every_subscriber_but_the_skipped_user() {
        let hub = Hub::default();
        let room = Uuid::new_v4();
        let mut outs = Vec::new();
        for conn in 0..3 {
            let (out, client, queue) = testing::outbound(8).await;
            out.open_room(room);
            out.set_direct(room, true);
            let subscriber = subscriber(&out);
            hub.subscribe(room, conn, subscriber.clone());
            outs.push((subscriber, client, queue));
        }
        let typing = ServerEvent::Typing {
            room_id: room,
            user_id: outs[0].0.user_id,
            username: "t".into(),
            state: nebula_wire::TypingState::Start,
        };
        let frame = Frame::event(room, &typing, Some(outs[0].0.user_id), 0);
        assert_eq!(hub.publish(&frame), 2);
        let mut buf = [0u8; 512];
        for (n, (_, client, _)) in outs.iter().enumerate().skip(1) {
            client.readable().await.expect("readable");
            let read = client.try_read(&mut buf).expect("read");
            // A server text frame (FIN, opcode 1, no mask, 16-bit length) holding exactly the
            // event's JSON.
            assert_eq!(buf[0], 0x81, "subscriber {n}");
            assert_eq!(buf[1], 126);
            assert_eq!(
                usize::from(u16::from_be_bytes([buf[2], buf[3]])),
                frame.text.len()
            );
            assert_eq!(&buf[4..read], &frame.text[..]);
        }
        assert!(
            outs[0].1.try_read(&mut buf).is_err(),
            "the typist hears nothing"
        );
    }
}
