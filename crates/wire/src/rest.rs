//! REST request and response bodies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{Rev, Seq};

/// A registered account as others may see it (never a password hash or an email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 3–32 characters of `[A-Za-z0-9_.-]`, unique ignoring case.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_.-]+$")]
    pub username: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// An address of the shape `local@domain` (no spaces), at most 254 characters.
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = "^[^@\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+@[^@\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+$"
    )]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// With two-factor authentication on: the current code of the authenticator app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_code: Option<String>,
    /// With two-factor authentication on, instead of `totp_code`: an unused recovery code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
}

/// Answer to a successful register or login.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthResponse {
    pub token: String,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub user: User,
}

/// A chat room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Room {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub is_private: bool,
    pub owner_id: Uuid,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    /// For a member only: the room's highest `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<Seq>,
    /// For a member only: the `seq` they last marked read (WebSocket `read`), 0 if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_seq: Option<Seq>,
    /// For a member only: messages after `last_read_seq` not sent by them and not deleted.
    /// Exact while `last_seq - last_read_seq` is at most `UNREAD_COUNT_MAX` (default 1000);
    /// beyond, the count among the first `UNREAD_COUNT_MAX` messages after `last_read_seq`
    /// (show it as "999+").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<i64>,
    /// `group` for rooms created with `POST /rooms`, `direct` for the one room of two users
    /// (`POST /dms`).
    #[serde(default)]
    pub kind: RoomKind,
    /// For a direct room: the other of its two users, as the caller sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<User>,
    /// For a member only: which of the room's events reach them while away (push, digest);
    /// set with `PUT /rooms/{room_id}/notifications`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_level: Option<crate::NotificationLevel>,
}

/// What kind of room a room is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// Created with `POST /rooms`: public or private, members join and leave.
    #[default]
    Group,
    /// The private room of exactly two users; its membership never changes.
    Direct,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateRoomRequest {
    /// 1–100 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*[^\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[^\\u0000]*$"
    )]
    pub name: String,
    /// Omitted means a public room.
    #[serde(default)]
    pub is_private: Option<bool>,
    /// At most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000, pattern = "^[^\\u0000]*$")]
    pub description: Option<String>,
}

/// `GET /rooms`: the rooms the caller belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<Room>,
}

/// `GET /rooms/public`: one page of public rooms, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicRoomPage {
    pub rooms: Vec<Room>,
    /// Every public room matching the filter, not just this page.
    pub total: i64,
}

/// Query of `GET /rooms/public`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct PublicRoomQuery {
    /// Case-insensitive substring of the room name, at most 100 characters.
    #[param(max_length = 100, pattern = "^[^\\u0000]*$")]
    pub q: Option<String>,
    /// 1-based page number.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u64>,
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberList {
    pub members: Vec<Member>,
}

/// `POST /rooms/{room_id}/members`: `{}` joins a public room yourself; with `user_id` or
/// `username`, an owner or admin adds that user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AddMemberRequest {
    #[serde(default)]
    pub user_id: Option<Uuid>,
    #[serde(default)]
    pub username: Option<String>,
}

/// `PATCH /rooms/{room_id}/members/{user_id}`: the room's owner changes a member's role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateMemberRequest {
    pub role: AssignableRole,
}

/// The roles an owner can give (ownership is not transferred this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssignableRole {
    Admin,
    Member,
}

impl From<AssignableRole> for Role {
    fn from(role: AssignableRole) -> Role {
        match role {
            AssignableRole::Admin => Role::Admin,
            AssignableRole::Member => Role::Member,
        }
    }
}

/// Query of `GET /rooms/{room_id}/online`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct OnlineQuery {
    /// A username: the page starts after it (in case-insensitive order). Take it from `next`.
    #[param(max_length = 32, pattern = "^[A-Za-z0-9_.-]*$")]
    pub after: Option<String>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// `GET /rooms/{room_id}/online`: one page of the room's online members, by username.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnlinePage {
    pub users: Vec<User>,
    /// How many members are online in all.
    pub online_count: u64,
    /// The `after` of the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: Seq,
    pub sender_id: Uuid,
    pub sender_username: String,
    /// `""` once the message is deleted.
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The message this one answers (of the same room), if any.
    #[serde(default)]
    pub reply_to: Option<ReplyTo>,
    /// When the content was last edited; `null` if never.
    #[serde(default)]
    pub edited_at: Option<DateTime<Utc>>,
    /// When the message was deleted; `null` if it was not. A deleted message keeps its place
    /// (`seq`) in history with empty `content`, no reactions, attachments or edit history.
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Reactions, most used first (ties: the emoji reacted with first comes first).
    #[serde(default)]
    pub reactions: Vec<ReactionCount>,
    /// The room's change counter at this version of the message: every new message, edit,
    /// delete and reaction change takes the next `rev` of its room. Of two versions of a
    /// message, keep the one with the higher `rev`.
    #[serde(default)]
    pub rev: Rev,
    /// Attached media, in the order the sender named them; `[]` when none (and once deleted).
    #[serde(default)]
    pub attachments: Vec<Media>,
    /// Members of the room named as `@username` in `content` (case-insensitive, each once, in
    /// order of first mention); `[]` when none (and once deleted).
    #[serde(default)]
    pub mentions: Vec<Uuid>,
}

/// What a reply points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplyTo {
    pub id: Uuid,
    pub seq: Seq,
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
}

/// An uploaded file as a message carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Media {
    pub id: Uuid,
    /// What the bytes are, whatever was declared at upload.
    pub content_type: String,
    pub size: i64,
    pub filename: String,
    /// Images only (read from the image's header, also when it is too large to decode).
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// A signed path (`/media/{id}?exp=…&sig=…`) that fetches the bytes without an
    /// `Authorization` header (for `<img>`), valid for one to two `MEDIA_URL_TTL_SECONDS`
    /// periods. Fetch the object again (history, `GET /media/{id}/info`) for a fresh one.
    #[serde(default)]
    pub url: Option<String>,
    /// The same for the thumbnail; `null` when there is none (not an image, or too large or
    /// broken to decode).
    #[serde(default)]
    pub thumbnail_url: Option<String>,
}

/// `GET /media/limits`: how much the caller may upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MediaLimits {
    /// The largest upload in bytes (`MEDIA_MAX_BYTES`).
    pub max_bytes: i64,
    /// Bytes of uploads one user may keep (`MEDIA_QUOTA_BYTES`).
    pub quota_bytes: i64,
    /// Bytes the caller's uploads take now.
    pub used_bytes: i64,
}

/// `POST /media?filename=`: the name the file is shown with.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The name shown for the file. Control characters, `/` and `\\` become `_`, it is cut to
    /// 255 characters, and an empty (or missing) name becomes `file`: any string is accepted.
    pub filename: Option<String>,
}

/// The raw bytes of an upload (`POST /media`), in the OpenAPI document.
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct UploadBody(pub Vec<u8>);

/// `GET /media/{id}?exp=&sig=`: a signed URL instead of an `Authorization` header.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// Unix time the signature stops being valid.
    pub exp: Option<i64>,
    /// The signature from a media object's `url` / `thumbnail_url`.
    pub sig: Option<String>,
}

/// `POST /stories`: text, media, or both.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateStoryRequest {
    /// At most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub text: Option<String>,
    /// Media the author uploaded.
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub media_id: Option<String>,
}

/// A story: visible to its author and the author's contacts until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Story {
    pub id: Uuid,
    pub user: User,
    pub text: Option<String>,
    pub media: Option<Media>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// `GET /stories`: the caller's and their contacts' unexpired stories, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoryList {
    pub stories: Vec<Story>,
}

/// Someone who viewed a story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoryView {
    pub user: User,
    pub viewed_at: DateTime<Utc>,
}

/// `GET /stories/{id}/views` (author only), most recent first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoryViews {
    pub views: Vec<StoryView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostMessageRequest {
    /// 1–4000 characters (`MESSAGE_MAX_CHARS`), not whitespace-only; stored exactly as sent.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = "^[^\\u0000]*[^\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[^\\u0000]*$"
    )]
    pub content: String,
    /// Idempotency key, 1–128 characters: reposting the same id in the same room returns the
    /// original message.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\u0000]*$")]
    pub client_msg_id: Option<String>,
    /// The id of a message of this room this one answers (else 422 `invalid_reply`).
    #[serde(default)]
    #[schema(value_type = Option<Uuid>, format = Uuid)]
    pub reply_to: Option<String>,
    /// Ids of media the sender uploaded, at most 10 (else 422 `invalid_attachment`). Uploads
    /// do not exist yet: any id is refused, an empty list is fine.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Uuid>>, max_items = 10)]
    pub attachments: Option<Vec<String>>,
}

/// `PATCH /rooms/{room_id}/messages/{message_id}`: the new content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EditMessageRequest {
    /// The same limits as posting.
    #[schema(
        min_length = 1,
        max_length = 4000,
        pattern = "^[^\\u0000]*[^\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[^\\u0000]*$"
    )]
    pub content: String,
}

/// One earlier content of an edited message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageVersion {
    pub content: String,
    /// When the edit that replaced this content was made.
    pub edited_at: DateTime<Utc>,
}

/// `GET /rooms/{room_id}/messages/{message_id}/history`: earlier contents, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageHistory {
    pub versions: Vec<MessageVersion>,
}

/// One emoji's reactions with who reacted (in the order they did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReactionUsers {
    pub emoji: String,
    pub count: i64,
    pub users: Vec<User>,
}

/// `GET /rooms/{room_id}/messages/{message_id}/reactions`, in the order of `message.reactions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReactionList {
    pub reactions: Vec<ReactionUsers>,
}

/// Query of `GET /rooms/{room_id}/changes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct ChangesQuery {
    /// Messages created or changed after this `rev` (default 0: all of them).
    pub since_rev: Option<Rev>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// `GET /rooms/{room_id}/changes`: messages created or changed after `since_rev`, each in its
/// current version, ascending `rev`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangesPage {
    pub messages: Vec<Message>,
    /// The room's latest `rev` as the page was read. With `has_more` false, the next query
    /// may start from the greater of it and the last message's `rev`.
    pub last_rev: Rev,
    /// Whether more changes follow beyond this page.
    pub has_more: bool,
}

/// Query of `GET /rooms/{room_id}/messages`: either `page`/`page_size`, or a keyset window
/// (`before_seq` and/or `after_seq`, with `limit`). When any keyset parameter is given, the
/// page parameters are not used (an out-of-range one is still refused).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Page-based: 1 is the newest page.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Page-based: 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u64>,
    /// Keyset: the messages just below this seq.
    pub before_seq: Option<Seq>,
    /// Keyset: the messages just above this seq. With `before_seq` too: the `limit` messages
    /// just above `after_seq` and below `before_seq`.
    pub after_seq: Option<Seq>,
    /// Keyset: 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// A page of history, page-based form. Messages are in ascending `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub page: u64,
    pub page_size: u64,
    pub total: i64,
}

/// A window of history, keyset form. Messages are in ascending `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageWindow {
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond this window in the direction of the cursor.
    pub has_more: bool,
}

/// `GET /`: what this service is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    pub docs: String,
    /// What this server accepts, so clients check before sending instead of hard-coding it.
    pub limits: ServiceLimits,
}

/// `GET /` `limits`: the server's configured limits on what clients send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceLimits {
    /// The longest message, in characters (`MESSAGE_MAX_CHARS`).
    pub message_max_chars: i64,
    /// The largest upload in bytes (`MEDIA_MAX_BYTES`; also in `GET /media/limits`).
    pub media_max_bytes: i64,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded` (optional dependencies failing) or `unavailable`.
    pub status: String,
    /// Each check by name: `ok` or a short description of the failure.
    pub checks: std::collections::BTreeMap<String, String>,
}

/// `GET /rooms/{room_id}/messages` answers in the form its query asked for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum History {
    Page(MessagePage),
    Window(MessageWindow),
}

/// `GET /voip/turn`: time-limited TURN credentials (coturn's REST API, `use-auth-secret`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TurnCredentials {
    /// TURN/STUN URIs for `RTCPeerConnection`'s `iceServers[].urls`.
    pub uris: Vec<String>,
    /// `<expiry unix time>:<user id>`.
    pub username: String,
    /// base64(HMAC-SHA1(TURN_SECRET, username)).
    pub password: String,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}
