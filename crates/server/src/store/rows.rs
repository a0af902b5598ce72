//! Row shapes as both drivers decode them, and their conversion to wire types.

use chrono::{DateTime, Utc};
use nebula_wire::{Member, Message, ReactionCount, ReplyTo, Role, User};
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
    pub rev: i64,
    pub created_rev: i64,
    pub reply_to_id: Option<Uuid>,
    pub reply_to_seq: Option<i64>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub reactions: Option<String>,
    /// The media objects attached, as JSON with unsigned paths (`NULL`: none).
    pub attachments: Option<String>,
    /// The members mentioned, as a JSON array of ids (`NULL`: none).
    pub mentions: Option<String>,
}

impl MessageRow {
    /// Whether this version of the message is its creation (no change since).
    pub fn is_creation(&self) -> bool {
        self.rev == self.created_rev
    }
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        let reactions = Tally::decode(row.reactions.as_deref()).counts();
        Message {
            id: row.id,
            room_id: row.room_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_username: row.sender_username,
            content: row.content,
            client_msg_id: row.client_msg_id,
            created_at: row.created_at,
            reply_to: row
                .reply_to_id
                .zip(row.reply_to_seq)
                .map(|(id, seq)| ReplyTo { id, seq }),
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
            reactions,
            rev: row.rev,
            attachments: decode_attachments(row.attachments.as_deref()),
            mentions: super::mentions::decode_mentions(row.mentions.as_deref()),
        }
    }
}

/// Columns of `messages` in `MessageRow` order. A macro, not a const, so queries can be
/// assembled with `concat!` into `&'static str`s that sqlx knows are not injectable.
macro_rules! message_columns {
    () => {
        "id, room_id, seq, sender_id, sender_username, content, client_msg_id, created_at, \
         rev, created_rev, reply_to_id, reply_to_seq, edited_at, deleted_at, reactions, attachments, \
         mentions"
    };
}
pub(super) use message_columns;

/// The columns a new message is inserted with (the others start NULL).
macro_rules! message_insert_columns {
    () => {
        "id, room_id, seq, sender_id, sender_username, content, client_msg_id, created_at, \
         rev, created_rev, reply_to_id, reply_to_seq, attachments, mentions"
    };
}
pub(super) use message_insert_columns;

/// `messages.attachments` as stored. A value that does not decode (it never should) reads as
/// no attachments rather than failing the whole page.
pub(super) fn decode_attachments(stored: Option<&str>) -> Vec<nebula_wire::Media> {
    stored
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// `messages.attachments` to store: `NULL` for none; signed URLs are never stored.
pub(super) fn encode_attachments(media: &[nebula_wire::Media]) -> Option<String> {
    if media.is_empty() {
        return None;
    }
    let unsigned: Vec<nebula_wire::Media> = media
        .iter()
        .cloned()
        .map(|mut m| {
            m.url = Some(format!("/media/{}", m.id));
            m.thumbnail_url = m
                .thumbnail_url
                .map(|_| format!("/media/{}/thumbnail", m.id));
            m
        })
        .collect();
    serde_json::to_string(&unsigned).ok()
}

/// A message's reaction counts as stored in `messages.reactions`: `[[emoji, count], …]` in the
/// order each emoji was first reacted with (an emoji whose count fell to 0 is dropped and, if
/// reacted with again, goes last). The wire order — most used first, ties in this order — is
/// derived when reading, by a stable sort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tally(Vec<(String, i64)>);

impl Tally {
    /// NULL or unreadable JSON is no reactions (the column is only written by `encode`).
    pub fn decode(stored: Option<&str>) -> Tally {
        stored
            .and_then(|json| serde_json::from_str(json).ok())
            .map(Tally)
            .unwrap_or_default()
    }

    /// NULL when there are none.
    pub fn encode(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        serde_json::to_string(&self.0).ok()
    }

    /// How many distinct emoji.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn count(&self, emoji: &str) -> i64 {
        self.0
            .iter()
            .find(|(e, _)| e == emoji)
            .map_or(0, |(_, n)| *n)
    }

    /// Adds `delta` (±1) to an emoji's count.
    pub fn add(&mut self, emoji: &str, delta: i64) {
        match self.0.iter().position(|(e, _)| e == emoji) {
            Some(index) => {
                self.0[index].1 += delta;
                if self.0[index].1 <= 0 {
                    self.0.remove(index);
                }
            }
            None if delta > 0 => self.0.push((emoji.to_owned(), delta)),
            None => {}
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The wire form: most used first, ties in first-reacted order.
    pub fn counts(&self) -> Vec<ReactionCount> {
        let mut counts: Vec<ReactionCount> = self
            .0
            .iter()
            .map(|(emoji, count)| ReactionCount {
                emoji: emoji.clone(),
                count: *count,
            })
            .collect();
        counts.sort_by_key(|reaction| std::cmp::Reverse(reaction.count));
        counts
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_are_most_used_first_then_first_reacted() {
        let mut tally = Tally::default();
        for emoji in ["👍", "❤️", "👍", "🎉"] {
            tally.add(emoji, 1);
        }
        tally.add("🎉", 1);
        let wire = |t: &Tally| {
            t.counts()
                .into_iter()
                .map(|r| (r.emoji, r.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            wire(&tally),
            [("👍".into(), 2), ("🎉".into(), 2), ("❤️".into(), 1)]
        );
        // Round trip through the column, and an emoji whose count falls to 0 goes away.
        let mut back = Tally::decode(tally.encode().as_deref());
        assert_eq!(back, tally);
        back.add("❤️", -1);
        back.add("nothing", -1);
        assert_eq!(back.len(), 2);
        back.add("❤️", 1);
        let order: Vec<String> = back.counts().into_iter().map(|r| r.emoji).collect();
        assert_eq!(order, ["👍", "🎉", "❤️"]);
        back.clear();
        assert_eq!(back.encode(), None);
        assert_eq!(Tally::decode(Some("garbage")), Tally::default());
    }
}
