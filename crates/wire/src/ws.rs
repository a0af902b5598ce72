//! WebSocket events: one JSON object per text frame, tagged by `type`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Message, Seq, User};

/// Typing indicator state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypingState {
    Start,
    Stop,
}

/// Online status carried by `presence` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    #[serde(rename = "subscribe")]
    Subscribe {
        room_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_seq: Option<Seq>,
    },
    #[serde(rename = "unsubscribe")]
    Unsubscribe { room_id: Uuid },
    #[serde(rename = "message.send")]
    MessageSend {
        room_id: Uuid,
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
    },
    #[serde(rename = "typing")]
    Typing { room_id: Uuid, state: TypingState },
    #[serde(rename = "read")]
    Read { room_id: Uuid, seq: Seq },
    #[serde(rename = "ping")]
    Ping,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    #[serde(rename = "subscribed")]
    Subscribed {
        room_id: Uuid,
        last_seq: Seq,
        online: Vec<User>,
    },
    #[serde(rename = "unsubscribed")]
    Unsubscribed { room_id: Uuid },
    #[serde(rename = "message.new")]
    MessageNew { message: Message },
    #[serde(rename = "message.ack")]
    MessageAck {
        client_msg_id: Option<String>,
        message: Message,
    },
    #[serde(rename = "typing")]
    Typing {
        room_id: Uuid,
        user_id: Uuid,
        username: String,
        state: TypingState,
    },
    #[serde(rename = "read")]
    Read {
        room_id: Uuid,
        user_id: Uuid,
        seq: Seq,
    },
    #[serde(rename = "member.joined")]
    MemberJoined { room_id: Uuid, user: User },
    #[serde(rename = "member.left")]
    MemberLeft { room_id: Uuid, user: User },
    #[serde(rename = "presence")]
    Presence {
        room_id: Uuid,
        user: User,
        status: PresenceStatus,
    },
    #[serde(rename = "error")]
    Error {
        code: String,
        message: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    #[serde(rename = "pong")]
    Pong,
}

impl ServerEvent {
    /// The room an event belongs to, if any.
    pub fn room_id(&self) -> Option<Uuid> {
        match self {
            ServerEvent::Subscribed { room_id, .. }
            | ServerEvent::Unsubscribed { room_id }
            | ServerEvent::Typing { room_id, .. }
            | ServerEvent::Read { room_id, .. }
            | ServerEvent::MemberJoined { room_id, .. }
            | ServerEvent::MemberLeft { room_id, .. }
            | ServerEvent::Presence { room_id, .. } => Some(*room_id),
            ServerEvent::MessageNew { message } | ServerEvent::MessageAck { message, .. } => {
                Some(message.room_id)
            }
            ServerEvent::Error { .. } | ServerEvent::Pong => None,
        }
    }
}
