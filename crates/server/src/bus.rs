//! The event bus: how an event published on one node reaches the subscribers of every node.
//!
//! A closed enum chosen at start: `Local` delivers straight to this node's hub (one process,
//! the default). Further engines (Redis, NATS) plug in here without touching the gateway.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use nebula_wire::{Message, ServerEvent};
use uuid::Uuid;

use crate::hub::{Frame, Hub};

/// Publishes room events.
#[derive(Debug, Clone)]
pub enum Bus {
    Local(Arc<Hub>),
}

impl Bus {
    pub fn local(hub: Arc<Hub>) -> Self {
        Bus::Local(hub)
    }

    /// The hub of this node.
    pub fn hub(&self) -> &Arc<Hub> {
        match self {
            Bus::Local(hub) => hub,
        }
    }

    /// Publishes a stored message as `message.new`.
    pub fn publish_message(&self, message: &Message) {
        let event = ServerEvent::MessageNew {
            message: message.clone(),
        };
        self.publish_frame(Frame {
            room_id: message.room_id,
            seq: Some(message.seq),
            skip_user: None,
            text: encode(&event),
        });
    }

    /// Publishes any other room event; `skip_user`'s own connections do not receive it.
    pub fn publish(&self, room_id: Uuid, event: &ServerEvent, skip_user: Option<Uuid>) {
        self.publish_frame(Frame {
            room_id,
            seq: None,
            skip_user,
            text: encode(event),
        });
    }

    fn publish_frame(&self, frame: Frame) {
        match self {
            Bus::Local(hub) => {
                hub.publish(&frame);
            }
        }
    }
}

/// Serializes an event once; the resulting bytes are shared by every recipient.
pub fn encode(event: &ServerEvent) -> Utf8Bytes {
    // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
    Utf8Bytes::from(serde_json::to_string(event).unwrap_or_default())
}
