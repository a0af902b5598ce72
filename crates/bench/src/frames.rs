//! What every target's frames have in common: the `client_msg_id` that carries the send time,
//! the prebuilt send frame, message filler, and the few fields the accounting reads from an
//! incoming frame. Each target's own codec lives in [`crate::target`].
//!
//! The generator shares two cores with the server, so the hot path avoids work it does not
//! need: an outgoing send is a prebuilt prefix plus a `client_msg_id`, and an incoming frame
//! is read into a borrowed view holding only the fields the accounting uses (everything else,
//! such as message content, is skipped by the parser without allocating).

use std::borrow::Cow;
use std::fmt::Write as _;

use nebula_wire::{Rev, Seq};

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

/// One connection's send frames: everything up to the `client_msg_id` value is serialized
/// once, so a send costs one string of known capacity.
///
/// `numbered` frames start with `<head><n + 1>`: Socket.IO puts the acknowledgement id
/// between the packet type and the payload (`42<id>[…]`), and it must differ per send.
#[derive(Debug, Clone)]
pub struct SendTemplate {
    pub(crate) numbered: Option<&'static str>,
    pub(crate) prefix: String,
    pub(crate) suffix: &'static str,
    pub(crate) connection: usize,
}

impl SendTemplate {
    /// The frame for this connection's send number `n`, stamped `sent_at_us`.
    pub fn frame(&self, n: u64, sent_at_us: u64) -> String {
        let mut frame = String::with_capacity(self.prefix.len() + 64);
        // Writing into a String cannot fail.
        if let Some(head) = self.numbered {
            let _ = write!(frame, "{head}{}", n + 1);
        }
        frame.push_str(&self.prefix);
        let _ = write!(frame, "{}-{n}-{sent_at_us}", self.connection);
        frame.push_str(self.suffix);
        frame
    }
}

/// Message content of exactly `size` ASCII bytes (so also `size` characters), never blank.
pub fn filler_content(size: usize) -> String {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog. ";
    // Starts with a letter, so even one byte is not whitespace-only.
    TEXT.chars().cycle().take(size).collect()
}

/// The fields of a server frame that the accounting needs, whichever target sent it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A message delivered to a subscriber (`message.new` / `receiveMessage`).
    New {
        room_id: Cow<'a, str>,
        seq: Seq,
        client_msg_id: Option<Cow<'a, str>>,
    },
    /// A send acknowledged to its sender, with the seq it got.
    Ack {
        seq: Seq,
        client_msg_id: Option<Cow<'a, str>>,
    },
    /// A refusal, with the `client_msg_id` or room id it refers to.
    Error {
        code: Cow<'a, str>,
        reference: Option<Cow<'a, str>>,
    },
    /// A changed message delivered to a subscriber (Nebula's `message.updated`): its room,
    /// its id and the room's `rev` at this version.
    Updated {
        room_id: Cow<'a, str>,
        message_id: Cow<'a, str>,
        rev: Rev,
    },
    /// Nebula's answer to `subscribe`.
    Subscribed {
        room_id: Cow<'a, str>,
        last_seq: Seq,
        last_rev: Rev,
    },
    /// An application-level ping that must be answered with the given frame (Engine.IO's
    /// `2` → `3`; Nebula's pings are WebSocket control frames tungstenite answers itself).
    Ping { reply: &'static str },
    /// The server ended the session inside the protocol (a Socket.IO `41` disconnect).
    Closed,
    /// Anything else (presence, typing, pong, a join acknowledgement …): not counted.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_msg_ids_round_trip() {
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
    fn numbered_templates_put_the_ack_id_first() {
        let template = SendTemplate {
            numbered: Some("42"),
            prefix: "[\"x\",\"".into(),
            suffix: "\"]",
            connection: 3,
        };
        assert_eq!(template.frame(0, 99), "421[\"x\",\"3-0-99\"]");
        assert_eq!(template.frame(41, 7), "4242[\"x\",\"3-41-7\"]");
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
}
