//! Row shapes as both drivers decode them, and their conversion to wire types.

use chrono::{DateTime, Utc};
use nebula_wire::{Member, Message, Role, User};
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            username: row.username,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct MemberRow {
    pub user_id: Uuid,
    pub username: String,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

impl From<MemberRow> for Member {
    fn from(row: MemberRow) -> Self {
        Member {
            user_id: row.user_id,
            username: row.username,
            role: parse_role(&row.role),
            joined_at: row.joined_at,
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct MessageRow {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub sender_username: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            id: row.id,
            room_id: row.room_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_username: row.sender_username,
            content: row.content,
            client_msg_id: row.client_msg_id,
            created_at: row.created_at,
        }
    }
}

/// Columns of `messages` in `MessageRow` order. A macro, not a const, so queries can be
/// assembled with `concat!` into `&'static str`s that sqlx knows are not injectable.
macro_rules! message_columns {
    () => {
        "id, room_id, seq, sender_id, sender_username, content, client_msg_id, created_at"
    };
}
pub(super) use message_columns;

/// The schema's CHECK constraint admits only these three strings.
pub(super) fn parse_role(role: &str) -> Role {
    match role {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        _ => Role::Member,
    }
}

pub(super) fn role_str(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}
