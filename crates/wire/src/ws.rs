//! WebSocket events: one JSON object per text frame, tagged by `type`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{Contact, ContactRequest, Member, Message, Rev, Room, Seq, User};

/// Typing indicator state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TypingState {
    Start,
    Stop,
}

/// Online status carried by `presence` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// The media of a call (`call.invite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallMedia {
    Audio,
    Video,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum ClientEvent {
    #[serde(rename = "subscribe")]
    Subscribe {
        room_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_seq: Option<Seq>,
        /// With it, messages changed after this rev (and with `seq <= since_seq`) are replayed
        /// as `message.updated` after the new ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_rev: Option<Rev>,
    },
    #[serde(rename = "unsubscribe")]
    Unsubscribe { room_id: Uuid },
    #[serde(rename = "message.send")]
    MessageSend {
        room_id: Uuid,
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<String>,
        /// The id of a message of the same room this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        /// Ids of uploaded media (none can be attached yet).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachments: Option<Vec<String>>,
    },
    #[serde(rename = "typing")]
    Typing { room_id: Uuid, state: TypingState },
    #[serde(rename = "read")]
    Read { room_id: Uuid, seq: Seq },
    #[serde(rename = "ping")]
    Ping,
    /// Rings `to_user_id` (a user sharing a room with the caller); `call_id` is chosen by the
    /// caller and names the call in every later event.
    #[serde(rename = "call.invite")]
    CallInvite {
        call_id: Uuid,
        to_user_id: Uuid,
        media: CallMedia,
        sdp: String,
    },
    #[serde(rename = "call.answer")]
    CallAnswer { call_id: Uuid, sdp: String },
    /// An ICE candidate (the browser's `RTCIceCandidateInit`, relayed as is).
    #[serde(rename = "call.candidate")]
    CallCandidate {
        call_id: Uuid,
        candidate: serde_json::Value,
    },
    #[serde(rename = "call.reject")]
    CallReject { call_id: Uuid },
    #[serde(rename = "call.hangup")]
    CallHangup { call_id: Uuid },
}

impl ClientEvent {
    /// The `type` of every client event, as `type_name` gives it (the AsyncAPI document's
    /// messages are checked against this list).
    pub const TYPES: [&'static str; 11] = [
        "subscribe",
        "unsubscribe",
        "message.send",
        "typing",
        "read",
        "ping",
        "call.invite",
        "call.answer",
        "call.candidate",
        "call.reject",
        "call.hangup",
    ];

    /// The event's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientEvent::Subscribe { .. } => "subscribe",
            ClientEvent::Unsubscribe { .. } => "unsubscribe",
            ClientEvent::MessageSend { .. } => "message.send",
            ClientEvent::Typing { .. } => "typing",
            ClientEvent::Read { .. } => "read",
            ClientEvent::Ping => "ping",
            ClientEvent::CallInvite { .. } => "call.invite",
            ClientEvent::CallAnswer { .. } => "call.answer",
            ClientEvent::CallCandidate { .. } => "call.candidate",
            ClientEvent::CallReject { .. } => "call.reject",
            ClientEvent::CallHangup { .. } => "call.hangup",
        }
    }

    /// The call an event is about, if any.
    pub fn call_id(&self) -> Option<Uuid> {
        match self {
            ClientEvent::CallInvite { call_id, .. }
            | ClientEvent::CallAnswer { call_id, .. }
            | ClientEvent::CallCandidate { call_id, .. }
            | ClientEvent::CallReject { call_id }
            | ClientEvent::CallHangup { call_id } => Some(*call_id),
            _ => None,
        }
    }

    /// The room an event is about, if any.
    pub fn room_id(&self) -> Option<Uuid> {
        match self {
            ClientEvent::Subscribe { room_id, .. }
            | ClientEvent::Unsubscribe { room_id }
            | ClientEvent::MessageSend { room_id, .. }
            | ClientEvent::Typing { room_id, .. }
            | ClientEvent::Read { room_id, .. } => Some(*room_id),
            ClientEvent::Ping
            | ClientEvent::CallInvite { .. }
            | ClientEvent::CallAnswer { .. }
            | ClientEvent::CallCandidate { .. }
            | ClientEvent::CallReject { .. }
            | ClientEvent::CallHangup { .. } => None,
        }
    }
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum ServerEvent {
    #[serde(rename = "subscribed")]
    Subscribed {
        room_id: Uuid,
        last_seq: Seq,
        /// The room's latest `rev` when the subscription started.
        #[serde(default)]
        last_rev: Rev,
        /// The first online users by username (at most `SUBSCRIBED_ONLINE_MAX`); the rest
        /// page through `GET /rooms/{room_id}/online`.
        online: Vec<User>,
        /// How many members are online in all.
        #[serde(default)]
        online_count: u64,
    },
    #[serde(rename = "unsubscribed")]
    Unsubscribed { room_id: Uuid },
    #[serde(rename = "message.new")]
    MessageNew { message: Message },
    /// A message was edited, deleted or reacted to: its whole current version.
    #[serde(rename = "message.updated")]
    MessageUpdated { message: Message },
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
    /// A member's role changed.
    #[serde(rename = "member.updated")]
    MemberUpdated { room_id: Uuid, member: Member },
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
    /// Another user rings this user.
    #[serde(rename = "call.invite")]
    CallInvite {
        call_id: Uuid,
        from: User,
        media: CallMedia,
        sdp: String,
    },
    /// The callee answered (on this connection's call).
    #[serde(rename = "call.answer")]
    CallAnswer {
        call_id: Uuid,
        from: User,
        sdp: String,
    },
    #[serde(rename = "call.candidate")]
    CallCandidate {
        call_id: Uuid,
        from: User,
        candidate: serde_json::Value,
    },
    /// The callee declined.
    #[serde(rename = "call.reject")]
    CallReject { call_id: Uuid, from: User },
    /// The call ended: `from` is the party that hung up; without it the server ended it and
    /// `reason` says why (`timeout`, `answered_elsewhere`, `rejected_elsewhere`,
    /// `disconnected`).
    #[serde(rename = "call.hangup")]
    CallHangup {
        call_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<User>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// To both users' connections (whatever they subscribed to): a direct room was opened
    /// between them, as each of them sees it (`peer` is the other one).
    #[serde(rename = "dm.opened")]
    DmOpened { room: Room },
    /// To the user's connections: someone else added them to a room.
    #[serde(rename = "room.added")]
    RoomAdded { room: Room },
    /// To the recipient's connections: a contact request to them.
    #[serde(rename = "contact.requested")]
    ContactRequested { request: ContactRequest },
    /// To the connections of the user whose request was accepted (by `contact.user`), or of the
    /// user who had asked first when the other asked back.
    #[serde(rename = "contact.accepted")]
    ContactAccepted { contact: Contact },
}

impl ServerEvent {
    /// The event's `type` on the wire (also a metrics label).
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerEvent::Subscribed { .. } => "subscribed",
            ServerEvent::Unsubscribed { .. } => "unsubscribed",
            ServerEvent::MessageNew { .. } => "message.new",
            ServerEvent::MessageUpdated { .. } => "message.updated",
            ServerEvent::MessageAck { .. } => "message.ack",
            ServerEvent::Typing { .. } => "typing",
            ServerEvent::Read { .. } => "read",
            ServerEvent::MemberJoined { .. } => "member.joined",
            ServerEvent::MemberLeft { .. } => "member.left",
            ServerEvent::MemberUpdated { .. } => "member.updated",
            ServerEvent::Presence { .. } => "presence",
            ServerEvent::Error { .. } => "error",
            ServerEvent::Pong => "pong",
            ServerEvent::CallInvite { .. } => "call.invite",
            ServerEvent::CallAnswer { .. } => "call.answer",
            ServerEvent::CallCandidate { .. } => "call.candidate",
            ServerEvent::CallReject { .. } => "call.reject",
            ServerEvent::CallHangup { .. } => "call.hangup",
            ServerEvent::DmOpened { .. } => "dm.opened",
            ServerEvent::RoomAdded { .. } => "room.added",
            ServerEvent::ContactRequested { .. } => "contact.requested",
            ServerEvent::ContactAccepted { .. } => "contact.accepted",
        }
    }

    /// The `type` of every server event, as `type_name` gives it (the AsyncAPI document's
    /// messages are checked against this list).
    pub const TYPES: [&'static str; 22] = [
        "subscribed",
        "unsubscribed",
        "message.new",
        "message.updated",
        "message.ack",
        "typing",
        "read",
        "member.joined",
        "member.left",
        "member.updated",
        "presence",
        "error",
        "pong",
        "call.invite",
        "call.answer",
        "call.candidate",
        "call.reject",
        "call.hangup",
        "dm.opened",
        "room.added",
        "contact.requested",
        "contact.accepted",
    ];

    /// The `type`s of the events a room's fan-out carries to its subscribers (metrics labels).
    pub const ROOM_EVENT_TYPES: [&'static str; 8] = [
        "message.new",
        "message.updated",
        "typing",
        "read",
        "presence",
        "member.joined",
        "member.left",
        "member.updated",
    ];

    /// The room an event belongs to, if any.
    pub fn room_id(&self) -> Option<Uuid> {
        match self {
            ServerEvent::Subscribed { room_id, .. }
            | ServerEvent::Unsubscribed { room_id }
            | ServerEvent::Typing { room_id, .. }
            | ServerEvent::Read { room_id, .. }
            | ServerEvent::MemberJoined { room_id, .. }
            | ServerEvent::MemberLeft { room_id, .. }
            | ServerEvent::MemberUpdated { room_id, .. }
            | ServerEvent::Presence { room_id, .. } => Some(*room_id),
            ServerEvent::MessageNew { message }
            | ServerEvent::MessageUpdated { message }
            | ServerEvent::MessageAck { message, .. } => Some(message.room_id),
            ServerEvent::Error { .. }
            | ServerEvent::Pong
            | ServerEvent::CallInvite { .. }
            | ServerEvent::CallAnswer { .. }
            | ServerEvent::CallCandidate { .. }
            | ServerEvent::CallReject { .. }
            | ServerEvent::CallHangup { .. }
            // About a room, but addressed to a user, not carried by the room's fan-out.
            | ServerEvent::DmOpened { .. }
            | ServerEvent::RoomAdded { .. }
            | ServerEvent::ContactRequested { .. }
            | ServerEvent::ContactAccepted { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_the_serialized_types_and_listed() {
        let user = User {
            id: Uuid::nil(),
            username: "u".into(),
            created_at: chrono::Utc::now(),
        };
        let message = Message {
            id: Uuid::nil(),
            room_id: Uuid::nil(),
            seq: 1,
            sender_id: Uuid::nil(),
            sender_username: "u".into(),
            content: "c".into(),
            client_msg_id: None,
            created_at: chrono::Utc::now(),
            reply_to: None,
            edited_at: None,
            deleted_at: None,
            reactions: vec![],
            rev: 1,
            attachments: vec![],
            mentions: vec![],
        };
        let room_id = Uuid::nil();
        let room = Room {
            id: room_id,
            name: "r".into(),
            description: None,
            is_private: true,
            owner_id: user.id,
            member_count: 2,
            created_at: chrono::Utc::now(),
            last_seq: None,
            last_read_seq: None,
            unread_count: None,
            kind: crate::RoomKind::Direct,
            peer: Some(user.clone()),
            notification_level: None,
        };
        let events = [
            ServerEvent::Subscribed {
                room_id,
                last_seq: 0,
                last_rev: 0,
                online: vec![],
                online_count: 0,
            },
            ServerEvent::Unsubscribed { room_id },
            ServerEvent::MessageNew {
                message: message.clone(),
            },
            ServerEvent::MessageUpdated {
                message: message.clone(),
            },
            ServerEvent::MessageAck {
                client_msg_id: None,
                message,
            },
            ServerEvent::Typing {
                room_id,
                user_id: user.id,
                username: "u".into(),
                state: TypingState::Start,
            },
            ServerEvent::Read {
                room_id,
                user_id: user.id,
                seq: 1,
            },
            ServerEvent::MemberJoined {
                room_id,
                user: user.clone(),
            },
            ServerEvent::MemberLeft {
                room_id,
                user: user.clone(),
            },
            ServerEvent::MemberUpdated {
                room_id,
                member: crate::Member {
                    user_id: user.id,
                    username: "u".into(),
                    role: crate::Role::Admin,
                    joined_at: chrono::Utc::now(),
                },
            },
            ServerEvent::Presence {
                room_id,
                user: user.clone(),
                status: PresenceStatus::Online,
            },
            ServerEvent::Error {
                code: "x".into(),
                message: "y".into(),
                reference: None,
            },
            ServerEvent::Pong,
            ServerEvent::CallInvite {
                call_id: room_id,
                from: user.clone(),
                media: CallMedia::Audio,
                sdp: "v=0".into(),
            },
            ServerEvent::CallAnswer {
                call_id: room_id,
                from: user.clone(),
                sdp: "v=0".into(),
            },
            ServerEvent::CallCandidate {
                call_id: room_id,
                from: user.clone(),
                candidate: serde_json::json!({"candidate": "c"}),
            },
            ServerEvent::CallReject {
                call_id: room_id,
                from: user.clone(),
            },
            ServerEvent::CallHangup {
                call_id: room_id,
                from: None,
                reason: Some("timeout".into()),
            },
            ServerEvent::DmOpened { room: room.clone() },
            ServerEvent::RoomAdded { room },
            ServerEvent::ContactRequested {
                request: crate::ContactRequest {
                    id: room_id,
                    from: user.clone(),
                    to: user.clone(),
                    status: crate::ContactRequestStatus::Pending,
                    created_at: chrono::Utc::now(),
                },
            },
            ServerEvent::ContactAccepted {
                contact: crate::Contact {
                    user: user.clone(),
                    since: chrono::Utc::now(),
                },
            },
        ];
        assert_eq!(events.len(), ServerEvent::TYPES.len());
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.type_name());
            assert!(ServerEvent::TYPES.contains(&event.type_name()));
        }
        for name in ServerEvent::ROOM_EVENT_TYPES {
            assert!(ServerEvent::TYPES.contains(&name), "{name}");
        }
        let call_id = Uuid::nil();
        let client_events = [
            ClientEvent::Subscribe {
                room_id,
                since_seq: None,
                since_rev: None,
            },
            ClientEvent::Unsubscribe { room_id },
            ClientEvent::MessageSend {
                room_id,
                content: "c".into(),
                client_msg_id: None,
                reply_to: None,
                attachments: None,
            },
            ClientEvent::Typing {
                room_id,
                state: TypingState::Stop,
            },
            ClientEvent::Read { room_id, seq: 1 },
            ClientEvent::Ping,
            ClientEvent::CallInvite {
                call_id,
                to_user_id: user.id,
                media: CallMedia::Video,
                sdp: "v=0".into(),
            },
            ClientEvent::CallAnswer {
                call_id,
                sdp: "v=0".into(),
            },
            ClientEvent::CallCandidate {
                call_id,
                candidate: serde_json::json!({}),
            },
            ClientEvent::CallReject { call_id },
            ClientEvent::CallHangup { call_id },
        ];
        assert_eq!(client_events.len(), ClientEvent::TYPES.len());
        for event in client_events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.type_name());
            assert!(ClientEvent::TYPES.contains(&event.type_name()));
        }
    }
}
