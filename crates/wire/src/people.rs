//! REST bodies of direct rooms, people search, contacts and blocks (contract Part 2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::rest::{Room, User};

/// Names another user by id or by username (at least one; `user_id` wins if both).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// `GET /dms`: the caller's direct rooms, most recent message first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectRoomList {
    pub rooms: Vec<Room>,
}

/// Query of `GET /users`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct UserSearchQuery {
    /// Username prefix, matched ignoring case; 1–32 characters.
    #[param(min_length = 1, max_length = 32)]
    pub q: String,
}

/// `GET /users` and `GET /blocks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// Whether a contact request is still waiting or was accepted at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContactRequestStatus {
    Pending,
    /// The other user had already asked: the two became contacts at once.
    Accepted,
}

/// A contact request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContactRequest {
    pub id: Uuid,
    pub from: User,
    pub to: User,
    pub status: ContactRequestStatus,
    pub created_at: DateTime<Utc>,
}

/// `GET /contacts/requests`: pending requests to and from the caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactRequestList {
    pub incoming: Vec<ContactRequest>,
    pub outgoing: Vec<ContactRequest>,
}

/// A contact and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub user: User,
    pub since: DateTime<Utc>,
}

/// `GET /contacts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
}
