//! A [`Frame`] on its way between nodes.
//!
//! Wire form: one line of JSON header, a newline, then the event's JSON text exactly as the
//! sockets will receive it — so the receiving node forwards the bytes without re-encoding them,
//! and escaping the event inside a JSON string is avoided.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use nebula_wire::{Rev, Seq, ServerEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hub::{Frame, FrameData};

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// The publishing node: it already delivered the event locally and ignores its echo.
    #[serde(rename = "o")]
    origin: Uuid,
    #[serde(rename = "r")]
    room_id: Uuid,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    seq: Option<Seq>,
    /// The room's change counter at this version of a message (`message.new`/`.updated`).
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    rev: Option<Rev>,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    skip_user: Option<Uuid>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    member_left: Option<Uuid>,
    /// The room's membership revision the event was published at.
    #[serde(rename = "m", default, skip_serializing_if = "is_zero")]
    member_rev: i64,
    #[serde(rename = "k")]
    kind: String,
    /// Microseconds since the Unix epoch when the sender's request arrived.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    received_at_us: Option<u64>,
    /// W3C `traceparent` of the publishing span, when traces are exported.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Encodes a frame published by `origin`.
pub fn encode(origin: Uuid, frame: &Frame) -> Vec<u8> {
    let header = Header {
        origin,
        room_id: frame.room_id,
        seq: frame.seq,
        rev: frame.rev,
        skip_user: frame.skip_user,
        member_left: frame.member_left,
        member_rev: frame.member_rev,
        kind: frame.kind.to_owned(),
        received_at_us: frame
            .received_at
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .and_then(|since| u64::try_from(since.as_micros()).ok()),
        traceparent: frame.trace.clone(),
    };
    let mut bytes = serde_json::to_vec(&header).unwrap_or_default();
    bytes.push(b'\n');
    bytes.extend_from_slice(&frame.text);
    bytes
}

/// Decodes a frame and its origin; `None` for anything that is not one (logged by the caller).
/// `trace` is the publisher's span (the receiver continues the trace from it).
pub fn decode(bytes: &[u8]) -> Option<(Uuid, FrameData)> {
    let split = bytes.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..split]).ok()?;
    // Sockets receive these bytes as a text frame: they must be UTF-8.
    let text = std::str::from_utf8(&bytes[split + 1..]).ok()?;
    let frame = FrameData {
        room_id: header.room_id,
        seq: header.seq,
        rev: header.rev,
        skip_user: header.skip_user,
        member_left: header.member_left,
        member_rev: header.member_rev,
        kind: known_kind(&header.kind),
        received_at: header
            .received_at_us
            .map(|us| UNIX_EPOCH + Duration::from_micros(us)),
        text: Bytes::copy_from_slice(text.as_bytes()),
        trace: header.traceparent,
    };
    Some((header.origin, frame))
}

/// Event types as static labels (metrics labels must not come from the network unchecked).
fn known_kind(kind: &str) -> &'static str {
    ServerEvent::ROOM_EVENT_TYPES
        .into_iter()
        .find(|known| *known == kind)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn a_frame_survives_the_trip() {
        let frame = Frame::from(FrameData {
            room_id: Uuid::new_v4(),
            seq: Some(42),
            rev: Some(57),
            skip_user: None,
            member_left: Some(Uuid::new_v4()),
            member_rev: 7,
            kind: "message.new",
            received_at: Some(SystemTime::now()),
            text: Bytes::from_static(br#"{"type":"message.new","message":{"content":"a\nb"}}"#),
            trace: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        });
        let origin = Uuid::new_v4();
        let (from, back) = decode(&encode(origin, &frame)).expect("decodes");
        assert_eq!(from, origin);
        assert_eq!(
            (
                back.room_id,
                back.seq,
                back.rev,
                back.member_left,
                back.member_rev
            ),
            (
                frame.room_id,
                frame.seq,
                frame.rev,
                frame.member_left,
                frame.member_rev
            )
        );
        assert_eq!(back.text, frame.text);
        assert_eq!(back.kind, "message.new");
        assert_eq!(back.trace, frame.trace);
        let drift = frame
            .received_at
            .unwrap()
            .duration_since(back.received_at.unwrap())
            .unwrap_or_default();
        assert!(drift < Duration::from_micros(1));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode(b"not a frame").is_none());
        assert!(decode(b"{}\n{}").is_none());
    }
}
