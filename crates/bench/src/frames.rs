//! The few frames the simulator writes and reads, made and parsed cheaply.
//!
//! The generator shares two cores with the server, so the hot path avoids work it does not
//! need: an outgoing `message.send` is a prebuilt prefix plus a `client_msg_id`, and an
//! incoming frame is read into a borrowed view holding only the fields the accounting uses
//! (everything else, such as message content, is skipped by the parser without allocating).
//! Tests check both against the shared `nebula_wire` types so they cannot drift apart.

use std::borrow::Cow;
use std::fmt::Write as _;

use nebula_wire::Seq;
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// The `client_msg_id` of every simulated send: `<connection>-<n>-<sent_at_us>`.
///
/// Carrying the send time in the id lets any subscriber compute end-to-end latency without a
/// shared lookup table (all clients live in this process, so they share one clock), and `n`
/// lets the sender recognise a second ack for the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMsgId {
    pub connection: usize,
    /// 0-based counter of this connection's sends.
    pub n: u64,
    /// Microseconds since the run's clock origin.
    pub sent_at_us: u64,
}

impl ClientMsgId {
    pub fn parse(text: &str) -> Option<ClientMsgId> {
        let mut parts = text.splitn(3, '-');
        let connection = parts.next()?.parse().ok()?;
        let n = parts.next()?.parse().ok()?;
        let sent_at_us = parts.next()?.parse().ok()?;
        Some(ClientMsgId {
            connection,
            n,
            sent_at_us,
        })
    }
}

/// Builds one connection's `message.send` frames: the JSON up to the `client_msg_id` value is
/// serialized once, so a send costs one string of known capacity.
#[derive(Debug, Clone)]
pub struct SendTemplate {
    prefix: String,
    connection: usize,
}

impl SendTemplate {
    pub fn new(room_id: Uuid, content: &str, connection: usize) -> serde_json::Result<Self> {
        let content = serde_json::to_string(content)?;
        let prefix = format!(
            r#"{{"type":"message.send","room_id":"{room_id}","content":{content},"client_msg_id":""#
        );
        Ok(SendTemplate { prefix, connection })
    }

    /// The frame for this connection's send number `n`, stamped `sent_at_us`.
    pub fn frame(&self, n: u64, sent_at_us: u64) -> String {
        let mut frame = String::with_capacity(self.prefix.len() + 48);
        frame.push_str(&self.prefix);
        // Writing into a String cannot fail.
        let _ = write!(frame, "{}-{n}-{sent_at_us}\"}}", self.connection);
        frame
    }
}

/// Message content of exactly `size` ASCII bytes (so also `size` characters), never blank.
pub fn filler_content(size: usize) -> String {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog. ";
    // Starts with a letter, so even one byte is not whitespace-only.
    TEXT.chars().cycle().take(size).collect()
}

/// The fields of a server event that the accounting needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `message.new`.
    New {
        room_id: Cow<'a, str>,
        seq: Seq,
        client_msg_id: Option<Cow<'a, str>>,
    },
    /// `message.ack`.
    Ack {
        room_id: Cow<'a, str>,
        seq: Seq,
        client_msg_id: Option<Cow<'a, str>>,
    },
    /// `error`, with the `client_msg_id` or room id it refers to.
    Error {
        code: Cow<'a, str>,
        reference: Option<Cow<'a, str>>,
    },
    Subscribed {
        room_id: Cow<'a, str>,
        last_seq: Seq,
    },
    /// Any other event type (presence, typing, pong, …): not counted.
    Other,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// A message object in `message.new` / `message.ack`, but a string in `error`: kept raw
    /// and read once the type is known.
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room_id: Option<Cow<'a, str>>,
    #[serde(default)]
    last_seq: Option<Seq>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(rename = "ref", borrow, default)]
    reference: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    room_id: Cow<'a, str>,
    seq: Seq,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
}

/// Reads one text frame. `Err` means it was not a server event at all.
pub fn parse<'a>(text: &'a str) -> Result<Incoming<'a>, serde_json::Error> {
    let raw: RawEvent<'a> = serde_json::from_str(text)?;
    let missing = |field| serde::de::Error::missing_field(field);
    let message = |raw: Option<&'a RawValue>| {
        serde_json::from_str::<RawMessage<'a>>(raw.ok_or_else(|| missing("message"))?.get())
    };
    Ok(match raw.kind.as_ref() {
        "message.new" => {
            let message = message(raw.message)?;
            Incoming::New {
                room_id: message.room_id,
                seq: message.seq,
                client_msg_id: message.client_msg_id,
            }
        }
        "message.ack" => {
            let message = message(raw.message)?;
            Incoming::Ack {
                room_id: message.room_id,
                seq: message.seq,
                // The ack's own field is the contract's; the message carries the same value.
                client_msg_id: raw.client_msg_id.or(message.client_msg_id),
            }
        }
        "error" => Incoming::Error {
            code: raw.code.ok_or_else(|| missing("code"))?,
            reference: raw.reference,
        },
        "subscribed" => Incoming::Subscribed {
            room_id: raw.room_id.ok_or_else(|| missing("room_id"))?,
            last_seq: raw.last_seq.ok_or_else(|| missing("last_seq"))?,
        },
        _ => Incoming::Other,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use nebula_wire::{ClientEvent, Message, ServerEvent, User};

    use super::*;

    fn message(room_id: Uuid, seq: Seq, client_msg_id: Option<&str>) -> Message {
        Message {
            id: Uuid::new_v4(),
            room_id,
            seq,
            sender_id: Uuid::new_v4(),
            sender_username: "ada".into(),
            content: "quote \" backslash \\ and ünïcode".into(),
            client_msg_id: client_msg_id.map(str::to_owned),
            created_at: Utc::now(),
            reply_to: None,
            edited_at: None,
            deleted_at: None,
            reactions: vec![],
            rev: seq,
            attachments: vec![],
        }
    }

    #[test]
    fn send_frames_are_valid_client_events() {
        let room_id = Uuid::new_v4();
        let content = filler_content(37);
        let template = SendTemplate::new(room_id, &content, 12).unwrap();
        let frame = template.frame(7, 123_456);
        let event: ClientEvent = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            event,
            ClientEvent::MessageSend {
                room_id,
                content,
                client_msg_id: Some("12-7-123456".into()),
                reply_to: None,
                attachments: None,
            }
        );
        assert_eq!(
            ClientMsgId::parse("12-7-123456"),
            Some(ClientMsgId {
                connection: 12,
                n: 7,
                sent_at_us: 123_456
            })
        );
        assert_eq!(ClientMsgId::parse("someone-else's"), None);
    }

    #[test]
    fn filler_has_the_exact_size_and_is_not_blank() {
        for size in [1, 2, 45, 100, 4000] {
            let content = filler_content(size);
            assert_eq!(content.len(), size);
            assert_eq!(content.chars().count(), size);
            assert!(!content.trim().is_empty());
        }
    }

    #[test]
    fn parses_what_the_wire_types_serialize() {
        let room = Uuid::new_v4();
        let new = serde_json::to_string(&ServerEvent::MessageNew {
            message: message(room, 5, Some("1-2-3")),
        })
        .unwrap();
        assert_eq!(
            parse(&new).unwrap(),
            Incoming::New {
                room_id: room.to_string().into(),
                seq: 5,
                client_msg_id: Some("1-2-3".into())
            }
        );
        let ack = serde_json::to_string(&ServerEvent::MessageAck {
            client_msg_id: Some("1-2-3".into()),
            message: message(room, 6, Some("1-2-3")),
        })
        .unwrap();
        assert!(matches!(parse(&ack).unwrap(), Incoming::Ack { seq: 6, .. }));
        let error = serde_json::to_string(&ServerEvent::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
            reference: Some("1-2-3".into()),
        })
        .unwrap();
        assert_eq!(
            parse(&error).unwrap(),
            Incoming::Error {
                code: "rate_limited".into(),
                reference: Some("1-2-3".into())
            }
        );
        let subscribed = serde_json::to_string(&ServerEvent::Subscribed {
            room_id: room,
            last_seq: 9,
            last_rev: 9,
            online: vec![User {
                id: Uuid::new_v4(),
                username: "ada".into(),
                created_at: Utc::now(),
            }],
            online_count: 1,
        })
        .unwrap();
        assert!(matches!(
            parse(&subscribed).unwrap(),
            Incoming::Subscribed { last_seq: 9, .. }
        ));
        assert_eq!(
            parse(&serde_json::to_string(&ServerEvent::Pong).unwrap()).unwrap(),
            Incoming::Other
        );
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"message.new"}"#).is_err());
    }

    /// Not a test: compares the borrowed view with full `ServerEvent` parsing.
    /// `cargo test --release -p nebula-bench parse_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement, not a check"]
    fn parse_cost() {
        let room = Uuid::new_v4();
        let mut event = message(room, 1, Some("3-14-1592653"));
        event.content = filler_content(100);
        let text = serde_json::to_string(&ServerEvent::MessageNew { message: event }).unwrap();
        let rounds = 200_000;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(parse(std::hint::black_box(&text)).unwrap());
        }
        let light = started.elapsed();
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            let full: ServerEvent = serde_json::from_str(std::hint::black_box(&text)).unwrap();
            std::hint::black_box(full);
        }
        let full = started.elapsed();
        println!(
            "message.new ({} bytes): view {:?}/frame, full ServerEvent {:?}/frame",
            text.len(),
            light / rounds,
            full / rounds
        );
    }
}
