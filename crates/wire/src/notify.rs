//! Notifications: what the server's outbox publishes to RabbitMQ (queue
//! `room_member.notifications`) and the notification service consumes.
//!
//! Four kinds travel on the one queue, each versioned:
//! - membership changes ([`MemberNotification`]), the original format, with no `kind` field so
//!   that notifiers built before the other kinds existed keep reading them;
//! - direct messages ([`DirectMessageNotification`], `"kind": "direct_message"`);
//! - incoming calls ([`CallNotification`], `"kind": "incoming_call"`);
//! - e-mails ([`MailNotification`], `"kind": "mail"`);
//! - mentions of a member in a group room ([`MentionNotification`], `"kind": "mention"`).
//!
//! [`Notification::parse`] tells them apart. A consumer that meets a kind (or version) it does
//! not know must refuse it loudly (dead-letter it with a log line), never drop it or misread
//! it: an older notifier reading a `direct_message` fails on its missing `change` field and
//! dead-letters it, which is what it does with any unreadable message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CallMedia, Seq, User};

/// What happened to the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    Joined,
    Left,
}

/// One membership change, written to the outbox in the same transaction as the change itself.
///
/// Versioned so a notifier can refuse (and dead-letter) a format it does not understand
/// instead of misreading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNotification {
    /// Format version; currently 1.
    pub version: u32,
    /// Unique per event: consumers dedupe on it, so a redelivered event has no second effect.
    pub event_id: Uuid,
    pub change: MemberChange,
    pub room_id: Uuid,
    pub room_name: String,
    /// Who joined or left.
    pub user: User,
    /// The other members of the room at the time of the change: who should be notified.
    pub recipients: Vec<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

impl MemberNotification {
    pub const VERSION: u32 = 1;
}

/// An e-mail to one user, rendered by the chat server and written to the outbox in the
/// transaction that caused it (a password reset, an address to verify). The mailer adds
/// `From`, `Date`, a `Message-ID` derived from `event_id` and the `List-Unsubscribe` headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailNotification {
    /// Format version; currently 1.
    pub version: u32,
    /// Unique per mail: consumers dedupe on it, so a redelivered event is not mailed twice.
    pub event_id: Uuid,
    /// The recipient's account.
    pub user_id: Uuid,
    pub mail: MailContent,
    pub occurred_at: DateTime<Utc>,
}

impl MailNotification {
    pub const VERSION: u32 = 1;
}

/// What a mail says and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailContent {
    pub to: String,
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part.
    pub html: String,
    /// One-click unsubscribe link (RFC 8058) for notification mail; `None` for mail the
    /// account asked for (resets, verification codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
}

/// A user as a notification names them: enough to show, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: Uuid,
    pub username: String,
}

/// A message in a direct room, written to the outbox in the message's own commit. Whether it
/// is pushed is decided later: not if the recipient has an open connection when the relay
/// takes the row, nor if, when it is dispatched, they have read it, it was deleted, or either
/// user has blocked the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMessageNotification {
    /// Format version of this kind; currently 1.
    pub version: u32,
    pub event_id: Uuid,
    pub room_id: Uuid,
    pub message_id: Uuid,
    pub seq: Seq,
    pub sender: UserRef,
    /// The other user of the direct room.
    pub recipient: Uuid,
    /// The start of the message (at most [`DirectMessageNotification::PREVIEW_CHARS`]
    /// characters, `…` appended when cut).
    pub preview: String,
    pub occurred_at: DateTime<Utc>,
}

impl DirectMessageNotification {
    pub const VERSION: u32 = 1;
    /// Characters of the message a push shows: enough for a lock screen, small enough that
    /// the encrypted push stays far below push services' 4 KiB limit.
    pub const PREVIEW_CHARS: usize = 100;

    /// The preview of `content`.
    pub fn preview_of(content: &str) -> String {
        let mut chars = content.chars();
        let mut preview: String = chars.by_ref().take(Self::PREVIEW_CHARS).collect();
        if chars.next().is_some() {
            preview.push('…');
        }
        preview
    }
}

/// A `call.invite` to a user who had no open connection: their browsers are told a call is
/// ringing. Never stored as chat history; pointless once the ring is over, so it carries
/// `expires_at` and is not pushed after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallNotification {
    /// Format version of this kind; currently 1.
    pub version: u32,
    pub event_id: Uuid,
    pub call_id: Uuid,
    pub caller: UserRef,
    pub callee: Uuid,
    pub media: CallMedia,
    pub occurred_at: DateTime<Utc>,
    /// When the call stops ringing (`CALL_RING_TIMEOUT_SECONDS` after the invite).
    pub expires_at: DateTime<Utc>,
}

impl CallNotification {
    pub const VERSION: u32 = 1;
}

/// `@username` of a member in a message of a group room, written to the outbox in the
/// message's own commit, one per mentioned member. Decided later like a direct message: not
/// pushed if the member has an open connection when the relay takes the row, nor if, when it
/// is dispatched, they read it, it was deleted, either user blocked the other, the room is at
/// level `none` for them or their pushes are off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionNotification {
    /// Format version of this kind; currently 1.
    pub version: u32,
    pub event_id: Uuid,
    pub room_id: Uuid,
    pub room_name: String,
    pub message_id: Uuid,
    pub seq: Seq,
    pub sender: UserRef,
    /// The mentioned member.
    pub recipient: Uuid,
    /// As [`DirectMessageNotification::preview`].
    pub preview: String,
    pub occurred_at: DateTime<Utc>,
}

impl MentionNotification {
    pub const VERSION: u32 = 1;
}

/// The RFC 8030 §5.4 `Topic` of pushes about one room: a push service keeps only the newest
/// undelivered push of a topic, so a burst of messages in one room replaces rather than
/// stacks. The room id's 16 bytes in URL-safe base64 without padding: 22 characters, within
/// the 32 the RFC allows.
pub fn room_topic(room_id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = room_id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for sextet in sextets.iter().take(chunk.len() + 1) {
            out.push(char::from(ALPHABET[*sextet as usize]));
        }
    }
    out
}

/// Any event of the notifications queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Member(MemberNotification),
    DirectMessage(DirectMessageNotification),
    IncomingCall(CallNotification),
    Mail(MailNotification),
    Mention(MentionNotification),
}

/// The kinds that carry a `kind` field.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    DirectMessage(DirectMessageNotification),
    IncomingCall(CallNotification),
    Mail(MailNotification),
    Mention(MentionNotification),
}

/// Why a queue message is not a notification this build understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON, or fields missing or of the wrong type.
    Malformed(String),
    /// A `kind` this build does not know (a newer publisher).
    UnknownKind(String),
    /// A version of a known kind this build does not know.
    UnknownVersion { kind: String, version: u32 },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Malformed(why) => write!(f, "malformed notification: {why}"),
            ParseError::UnknownKind(kind) => write!(f, "unknown notification kind {kind:?}"),
            ParseError::UnknownVersion { kind, version } => {
                write!(f, "unknown version {version} of notification kind {kind:?}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl Notification {
    /// Reads one queue message (or outbox payload).
    pub fn parse(data: &[u8]) -> Result<Notification, ParseError> {
        #[derive(Deserialize)]
        struct Head {
            version: u32,
            #[serde(default)]
            kind: Option<String>,
        }
        let head: Head = serde_json::from_slice(data)
            .map_err(|err| ParseError::Malformed(format!("no version: {err}")))?;
        let (kind, known) = match head.kind.as_deref() {
            None => ("member", MemberNotification::VERSION),
            Some("direct_message") => ("direct_message", DirectMessageNotification::VERSION),
            Some("incoming_call") => ("incoming_call", CallNotification::VERSION),
            Some("mail") => ("mail", MailNotification::VERSION),
            Some("mention") => ("mention", MentionNotification::VERSION),
            Some(other) => return Err(ParseError::UnknownKind(other.to_owned())),
        };
        if head.version != known {
            return Err(ParseError::UnknownVersion {
                kind: kind.to_owned(),
                version: head.version,
            });
        }
        let malformed = |err: serde_json::Error| ParseError::Malformed(err.to_string());
        if head.kind.is_none() {
            return serde_json::from_slice(data)
                .map(Notification::Member)
                .map_err(malformed);
        }
        Ok(match serde_json::from_slice(data).map_err(malformed)? {
            Tagged::DirectMessage(event) => Notification::DirectMessage(event),
            Tagged::IncomingCall(event) => Notification::IncomingCall(event),
            Tagged::Mail(event) => Notification::Mail(event),
            Tagged::Mention(event) => Notification::Mention(event),
        })
    }

    /// The JSON published (and stored in the outbox).
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Notification::Member(event) => serde_json::to_string(event),
            Notification::DirectMessage(event) => {
                serde_json::to_string(&Tagged::DirectMessage(event.clone()))
            }
            Notification::IncomingCall(event) => {
                serde_json::to_string(&Tagged::IncomingCall(event.clone()))
            }
            Notification::Mail(event) => serde_json::to_string(&Tagged::Mail(event.clone())),
            Notification::Mention(event) => serde_json::to_string(&Tagged::Mention(event.clone())),
        }
    }

    /// Unique per event; consumers dedupe on it.
    pub fn event_id(&self) -> Uuid {
        match self {
            Notification::Member(event) => event.event_id,
            Notification::DirectMessage(event) => event.event_id,
            Notification::IncomingCall(event) => event.event_id,
            Notification::Mail(event) => event.event_id,
            Notification::Mention(event) => event.event_id,
        }
    }

    /// The one user a direct message or call push is for, the push a connected user does not
    /// need (`None` for membership changes, which go to several, and for mail, which is sent
    /// whether or not its recipient is online).
    pub fn single_recipient(&self) -> Option<Uuid> {
        match self {
            Notification::Member(_) => None,
            Notification::DirectMessage(event) => Some(event.recipient),
            Notification::IncomingCall(event) => Some(event.callee),
            Notification::Mail(_) => None,
            Notification::Mention(event) => Some(event.recipient),
        }
    }

    /// The room a push is about, whose [`room_topic`] groups its pushes (`None` for calls
    /// and mail).
    pub fn room(&self) -> Option<Uuid> {
        match self {
            Notification::Member(event) => Some(event.room_id),
            Notification::DirectMessage(event) => Some(event.room_id),
            Notification::Mention(event) => Some(event.room_id),
            Notification::IncomingCall(_) | Notification::Mail(_) => None,
        }
    }

    /// The name logs use for the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Member(_) => "member",
            Notification::DirectMessage(_) => "direct_message",
            Notification::IncomingCall(_) => "incoming_call",
            Notification::Mail(_) => "mail",
            Notification::Mention(_) => "mention",
        }
    }
}

impl From<MemberNotification> for Notification {
    fn from(event: MemberNotification) -> Self {
        Notification::Member(event)
    }
}

impl From<MailNotification> for Notification {
    fn from(event: MailNotification) -> Self {
        Notification::Mail(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm() -> DirectMessageNotification {
        DirectMessageNotification {
            version: 1,
            event_id: Uuid::now_v7(),
            room_id: Uuid::now_v7(),
            message_id: Uuid::now_v7(),
            seq: 3,
            sender: UserRef {
                id: Uuid::now_v7(),
                username: "alice".into(),
            },
            recipient: Uuid::now_v7(),
            preview: "hi".into(),
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn kinds_round_trip_and_membership_keeps_its_old_shape() {
        let member = MemberNotification {
            version: 1,
            event_id: Uuid::now_v7(),
            change: MemberChange::Joined,
            room_id: Uuid::now_v7(),
            room_name: "Lobby".into(),
            user: User {
                id: Uuid::now_v7(),
                username: "bo".into(),
                created_at: Utc::now(),
            },
            recipients: vec![],
            occurred_at: Utc::now(),
        };
        let json = Notification::Member(member.clone()).to_json().unwrap();
        assert!(
            !json.contains("\"kind\""),
            "old consumers read it as before"
        );
        assert_eq!(
            Notification::parse(json.as_bytes()).unwrap(),
            Notification::Member(member)
        );
        let event = Notification::DirectMessage(dm());
        let json = event.to_json().unwrap();
        assert!(json.contains("\"kind\":\"direct_message\""), "{json}");
        assert_eq!(Notification::parse(json.as_bytes()).unwrap(), event);
        // What a notifier from before this kind does with it: refuses it, it does not misread it.
        assert!(serde_json::from_str::<MemberNotification>(&json).is_err());
        let mail = Notification::Mail(MailNotification {
            version: 1,
            event_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            mail: MailContent {
                to: "bo@example.com".into(),
                subject: "Hi".into(),
                text: "hi".into(),
                html: "<p>hi</p>".into(),
                unsubscribe_url: None,
            },
            occurred_at: Utc::now(),
        });
        let json = mail.to_json().unwrap();
        assert!(json.contains("\"kind\":\"mail\""), "{json}");
        assert_eq!(Notification::parse(json.as_bytes()).unwrap(), mail);
    }

    #[test]
    fn unknown_kinds_and_versions_are_refused_by_name() {
        let unknown = br#"{"version":1,"kind":"story_posted","event_id":"x"}"#;
        assert_eq!(
            Notification::parse(unknown),
            Err(ParseError::UnknownKind("story_posted".into()))
        );
        let mut value = serde_json::from_str::<serde_json::Value>(
            &Notification::DirectMessage(dm()).to_json().unwrap(),
        )
        .unwrap();
        value["version"] = 2.into();
        let newer = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Notification::parse(&newer),
            Err(ParseError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            Notification::parse(b"not json"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn mentions_round_trip_and_room_topics_are_short_url_safe_base64() {
        let event = Notification::Mention(MentionNotification {
            version: 1,
            event_id: Uuid::now_v7(),
            room_id: Uuid::now_v7(),
            room_name: "Lobby".into(),
            message_id: Uuid::now_v7(),
            seq: 4,
            sender: UserRef {
                id: Uuid::now_v7(),
                username: "alice".into(),
            },
            recipient: Uuid::now_v7(),
            preview: "@bo hi".into(),
            occurred_at: Utc::now(),
        });
        let json = event.to_json().unwrap();
        assert!(json.contains("\"kind\":\"mention\""), "{json}");
        assert_eq!(Notification::parse(json.as_bytes()).unwrap(), event);

        let topic = room_topic(Uuid::from_bytes([0xff; 16]));
        assert_eq!(topic, "_____________________w");
        let topic = room_topic(Uuid::nil());
        assert_eq!(topic.len(), 22);
        assert!(topic.chars().all(|c| c == 'A'));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_ne!(room_topic(a), room_topic(b));
        assert!(
            room_topic(a)
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn previews_are_cut_at_a_character_boundary() {
        assert_eq!(DirectMessageNotification::preview_of("short"), "short");
        let long = "é".repeat(150);
        let preview = DirectMessageNotification::preview_of(&long);
        assert_eq!(preview.chars().count(), 101);
        assert!(preview.ends_with('…'));
    }
}
