//! The event bus: how an event published on one node reaches the subscribers of every node.
//!
//! A closed enum chosen at start. `Local` delivers straight to this node's hub (one process,
//! the default). `Redis` also delivers locally at once and carries the event to the other
//! nodes over Redis pub/sub, one channel per room that has local subscribers. Another engine
//! (NATS, say) is one more variant here; the gateway only sees [`Bus`].

mod envelope;
mod redis;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use nebula_wire::{Message, Seq, ServerEvent};
use uuid::Uuid;

pub use self::redis::RedisBus;
use crate::hub::{ConnId, Frame, Hub, Subscriber};
use crate::store::{Store, StoreError};

/// Publishes room events and manages which rooms this node listens to.
#[derive(Debug, Clone)]
pub enum Bus {
    Local(Arc<Hub>),
    Redis(Arc<RedisBus>),
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
        }
    }

    /// Adds a connection to a room's local fan-out and returns the room's last stored seq,
    /// read *after* the node is listening to the room everywhere: any message with a higher
    /// seq reaches the connection live (or via gap repair), so replaying up to this seq and
    /// then going live misses nothing.
    pub async fn subscribe(
        &self,
        store: &Store,
        room_id: Uuid,
        conn: ConnId,
        subscriber: Subscriber,
    ) -> Result<Seq, StoreError> {
        let first = self.hub().subscribe(room_id, conn, subscriber);
        if first && let Bus::Redis(bus) = self {
            bus.watch(room_id).await;
        }
        let last_seq = store.last_seq(room_id).await?;
        self.hub().raise_seq(room_id, last_seq);
        Ok(last_seq)
    }

    /// Removes a connection from a room's local fan-out.
    pub fn unsubscribe(&self, room_id: Uuid, conn: ConnId) {
        let empty = self.hub().unsubscribe(room_id, conn);
        if empty && let Bus::Redis(bus) = self {
            bus.unwatch(room_id);
        }
    }

    /// Publishes a stored message as `message.new`; `received_at` is when its sender's
    /// request arrived.
    pub fn publish_message(&self, message: &Message, received_at: SystemTime) {
        self.publish_frame(Frame::message(message.clone(), Some(received_at)));
    }

    /// Publishes any other room event; `skip_user`'s own connections do not receive it.
    pub fn publish(&self, room_id: Uuid, event: &ServerEvent, skip_user: Option<Uuid>) {
        self.publish_frame(Frame::event(room_id, event, skip_user));
    }

    fn publish_frame(&self, frame: Frame) {
        match self {
            Bus::Local(hub) => {
                hub.publish(&frame);
            }
            Bus::Redis(bus) => bus.publish(frame),
        }
    }

    /// `None` when there is nothing between nodes to check (a single process).
    pub async fn health(&self) -> Option<Result<(), String>> {
        match self {
            Bus::Local(_) => None,
            Bus::Redis(bus) => Some(bus.health().await),
        }
    }
}

/// Serializes an event once; the resulting bytes are shared by every recipient.
pub fn encode(event: &ServerEvent) -> Utf8Bytes {
    // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
    Utf8Bytes::from(serde_json::to_string(event).unwrap_or_default())
}
