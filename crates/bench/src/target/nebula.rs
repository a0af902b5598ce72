//! Nebula's side of the wire: the handshake and `subscribe` → `subscribed` through
//! `nebula-client`; then, on the measured path, `message.send` → `message.ack` +
//! `message.new` (the contract's Part 1) and `message.updated` for the changes the `edits`
//! scenario makes over REST, written from templates and read through a borrowed view of the
//! frame (a full `ServerEvent` parse per delivery costs several times more: `parse_cost`
//! below), so the simulator measures the server and not its own JSON. Frames are checked
//! against the shared `nebula_wire` types in the tests so they cannot drift apart.

use std::borrow::Cow;

use anyhow::Context;
use nebula_wire::{Rev, Seq};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::client::{ConnectSpec, Socket, SubscribedAt, socket_config};
use crate::frames::{Incoming, SendTemplate};
use crate::setup::{Api, room_id};

/// `ws://host:port/ws` for `http://host:port`.
pub fn endpoint(base: &str) -> anyhow::Result<String> {
    Ok(format!("{}/ws", super::ws_base(base)?))
}

/// Opens `/ws` on the spec's node as the spec's user and subscribes to its room; returns the socket and the
/// room's `last_seq` and `last_rev` at subscription.
pub(crate) async fn open(api: &Api, spec: &ConnectSpec) -> anyhow::Result<(Socket, SubscribedAt)> {
    let room = room_id(&spec.room_id)?;
    let mut connection = api
        .as_user_on(spec.node, &spec.token)
        .connect_with("/ws", Some(socket_config()))
        .await
        .context("connecting")?;
    let subscribed = connection
        .subscribe(room, None)
        .await
        .context("subscribing")?;
    let at = SubscribedAt {
        last_seq: subscribed.last_seq,
        last_rev: subscribed.last_rev,
    };
    Ok((connection.into_inner(), at))
}

/// `message.send` frames for one connection in one room.
pub fn send_template(
    room_id: &str,
    content: &str,
    connection: usize,
) -> serde_json::Result<SendTemplate> {
    let room_id = serde_json::to_string(room_id)?;
    let content = serde_json::to_string(content)?;
    Ok(SendTemplate {
        numbered: None,
        prefix: format!(
            r#"{{"type":"message.send","room_id":{room_id},"content":{content},"client_msg_id":""#
        ),
        suffix: "\"}",
        connection,
    })
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
    /// Absent from servers older than the message lifecycle: no rev then.
    #[serde(default)]
    last_rev: Option<Rev>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(rename = "ref", borrow, default)]
    reference: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    room_id: Cow<'a, str>,
    seq: Seq,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(default)]
    rev: Rev,
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
                seq: message.seq,
                // The ack's own field is the contract's; the message carries the same value.
                client_msg_id: raw.client_msg_id.or(message.client_msg_id),
            }
        }
        "message.updated" => {
            let message = message(raw.message)?;
            Incoming::Updated {
                room_id: message.room_id,
                message_id: message.id,
                rev: message.rev,
            }
        }
        "error" => Incoming::Error {
            code: raw.code.ok_or_else(|| missing("code"))?,
            reference: raw.reference,
        },
        "subscribed" => Incoming::Subscribed {
            room_id: raw.room_id.ok_or_else(|| missing("room_id"))?,
            last_seq: raw.last_seq.ok_or_else(|| missing("last_seq"))?,
            last_rev: raw.last_rev.unwrap_or(0),
        },
        _ => Incoming::Other,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use nebula_wire::{ClientEvent, Message, ServerEvent, User};
    use uuid::Uuid;

    use super::*;
    use crate::frames::filler_content;

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
            mentions: vec![],
        }
    }

    #[test]
    fn send_frames_are_valid_client_events() {
        let room_id = Uuid::new_v4();
        let content = filler_content(37);
        let template = send_template(&room_id.to_string(), &content, 12).unwrap();
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
            Incoming::Subscribed {
                last_seq: 9,
                last_rev: 9,
                ..
            }
        ));
        let mut edited = message(room, 4, None);
        edited.rev = 12;
        let id = edited.id;
        let updated =
            serde_json::to_string(&ServerEvent::MessageUpdated { message: edited }).unwrap();
        assert_eq!(
            parse(&updated).unwrap(),
            Incoming::Updated {
                room_id: room.to_string().into(),
                message_id: id.to_string().into(),
                rev: 12
            }
        );
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
