//! The event bus: how an event published on one node reaches the subscribers of every node.
//!
//! A closed enum chosen at start. `Local` delivers straight to this node's hub (one process,
//! the default). `Redis` and `Nats` also deliver locally at once and carry the event to the
//! other nodes over the engine's pub/sub, one channel per room that has local subscribers;
//! ordering and repair are shared (`remote`). The gateway only sees [`Bus`].

mod envelope;
mod members;
mod nats;
mod redis;
mod remote;

use std::sync::Arc;

use bytes::Bytes;
use nebula_wire::{ServerEvent, User};
use uuid::Uuid;

pub use self::nats::NatsBus;
pub use self::redis::RedisBus;
use crate::hub::{ConnId, Frame, Hub, Subscriber};
use crate::store::{Store, StoreError, SubscriptionState};

/// Publishes room events and manages which rooms this node listens to.
#[derive(Debug, Clone)]
pub enum Bus {
    Local(Arc<Hub>),
    Redis(Arc<RedisBus>),
    Nats(Arc<NatsBus>),
}

impl Bus {
    pub fn local(hub: Arc<Hub>) -> Self {
        Bus::Local(hub)
    }

    /// The hub of this node.
    pub fn hub(&self) -> &Arc<Hub> {
        match self {
            Bus::Local(hub) => hub,
            Bus::Redis(bus) => bus.hub(),
            Bus::Nats(bus) => bus.hub(),
        }
    }

    /// Adds a connection of `user_id` to a room's local fan-out and returns the room's last
    /// stored seq and rev, read *after* the node is listening to the room everywhere: any
    /// change with a higher rev reaches the connection live (or via gap repair), so replaying
    /// up to this point and then going live misses nothing.
    ///
    /// Membership is checked again in that same read: a user removed while subscribing is not
    /// left registered (`Ok(None)`; the caller's subscription is already undone).
    pub async fn subscribe(
        &self,
        store: &Store,
        room_id: Uuid,
        conn: ConnId,
        subscriber: Subscriber,
    ) -> Result<Option<SubscriptionState>, StoreError> {
        let user_id = subscriber.user_id;
        let (first, generation) = self.hub().subscribe(room_id, conn, subscriber);
        if first {
            match self {
                Bus::Local(_) => {}
                Bus::Redis(bus) => bus.watch(room_id).await,
                Bus::Nats(bus) => bus.watch(room_id).await,
            }
        }
        let state = match store.subscription_state(room_id, user_id).await {
            Ok(Some(state)) if state.is_member => state,
            Ok(_) => {
                self.unsubscribe(room_id, conn);
                return Ok(None);
            }
            Err(err) => {
                self.unsubscribe(room_id, conn);
                return Err(err);
            }
        };
        self.hub().raise_rev(room_id, state.last_rev);
        // This subscriber was a member at `state.member_rev`; if it is alone in the room (no
        // one joined since), that is true of everyone here.
        if first {
            self.hub()
                .checked_members(room_id, generation, state.member_rev);
        }
        Ok(Some(state))
    }

    /// Removes a connection from a room's local fan-out.
    pub fn unsubscribe(&self, room_id: Uuid, conn: ConnId) {
        let empty = self.hub().unsubscribe(room_id, conn);
        if empty {
            match self {
                Bus::Local(_) => {}
                Bus::Redis(bus) => bus.unwatch(room_id),
                Bus::Nats(bus) => bus.unwatch(room_id),
            }
        }
    }

    /// Publishes a committed batch's events (`message.new`, `message.updated`), in order
    /// within each room. Each socket takes its share of the batch in one write; a frame that
    /// needs its room's subscribers checked first (see [`members`]) is published after
    /// everything before it, exactly as one by one.
    pub async fn publish_all(&self, store: &Store, frames: Vec<Frame>) {
        let mut ready: Vec<Frame> = Vec::with_capacity(frames.len());
        for frame in frames {
            if members::needs_check(self.hub(), &frame) {
                self.publish_frames(&ready);
                ready.clear();
                members::check_members(self.hub(), store, frame.room_id).await;
            }
            ready.push(frame);
        }
        self.publish_frames(&ready);
    }

    /// Announces that `user` left the room (or was removed), which took the room to
    /// membership revision `member_rev`. The user's connections on every node drop the room.
    pub async fn publish_member_left(
        &self,
        store: &Store,
        room_id: Uuid,
        user: User,
        member_rev: i64,
    ) {
        let event = ServerEvent::MemberLeft { room_id, user };
        let frame = Frame::event(room_id, &event, None, member_rev);
        members::admit(self.hub(), store, &frame).await;
        self.publish_frame(frame);
    }

    /// Publishes any other room event; `skip_user`'s own connections do not receive it.
    ///
    /// Stamped with the membership revision this node knows, so a node that knows less
    /// checks its subscribers before delivering it.
    pub fn publish(&self, room_id: Uuid, event: &ServerEvent, skip_user: Option<Uuid>) {
        let member_rev = self.hub().member_rev(room_id).unwrap_or(0);
        self.publish_frame(Frame::event(room_id, event, skip_user, member_rev));
    }

    fn publish_frames(&self, frames: &[Frame]) {
        match self {
            Bus::Local(hub) => {
                hub.publish_all(frames);
            }
            Bus::Redis(bus) => bus.publish_all(frames),
            Bus::Nats(bus) => bus.publish_all(frames),
        }
    }

    fn publish_frame(&self, frame: Frame) {
        match self {
            Bus::Local(hub) => {
                hub.publish(&frame);
            }
            Bus::Redis(bus) => bus.publish(frame),
            Bus::Nats(bus) => bus.publish(frame),
        }
    }

    /// `None` when there is nothing between nodes to check (a single process).
    pub async fn health(&self) -> Option<Result<(), String>> {
        match self {
            Bus::Local(_) => None,
            Bus::Redis(bus) => Some(bus.health().await),
            Bus::Nats(bus) => Some(bus.health().await),
        }
    }
}

/// Serializes an event once; the resulting bytes are shared by every recipient.
pub fn encode(event: &ServerEvent) -> Bytes {
    // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
    Bytes::from(serde_json::to_vec(event).unwrap_or_default())
}
