//! The Socket.IO peer's side of the wire: Engine.IO v4 + Socket.IO v4 over the websocket
//! transport only, the few packets the benchmark needs, written by hand (it is test tooling;
//! a full client library would also pull in long-polling, reconnection and buffering that
//! would only blur what is measured).
//!
//! One WebSocket text frame is one Engine.IO packet: a type digit, then its data.
//! - `0{"sid":…,"pingInterval":…,"pingTimeout":…}` open (server → client, first frame)
//! - `2` ping from the server, answered with `3` pong (or the server drops us after
//!   `pingInterval + pingTimeout`)
//! - `4…` a Socket.IO packet, again a type digit first:
//!   `40{auth}` connect (client) / `40{"sid":…}` connected (server) / `44{…}` refused,
//!   `41` disconnect, `42[name, data]` event, `42<id>[name, data]` event asking for an
//!   acknowledgement, `43<id>[data]` that acknowledgement.
//!
//! The peer (`shared/peer-socketio/server.js`) has no accounts and no room creation: the
//! auth payload is `{"token":"user:<name>"}` and rooms are any string. Mapping onto the
//! benchmark: subscribe → `joinRoom` with an ack; `message.send` → `sendMessage` with an ack
//! carrying the `seq`; `message.new` ↔ `receiveMessage {roomId, seq, clientMsgId, …}`.

use std::borrow::Cow;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use nebula_wire::Seq;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::client::{ConnectSpec, Socket, SubscribedAt, connect};
use crate::frames::{Incoming, SendTemplate};

/// The acknowledgement id of `joinRoom`; sends use `n + 1`, so ids never repeat on a socket.
const JOIN_ACK_ID: u64 = 0;

/// `ws://host:port/socket.io/?EIO=4&transport=websocket` for `http://host:port`.
pub fn endpoint(base: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        super::ws_base(base)?
    ))
}

/// Opens a Socket.IO session as the spec's user and joins its room. The peer has no
/// subscription point: every run uses fresh room names, so the room starts at seq 0.
pub(crate) async fn open(
    endpoint: &str,
    spec: &ConnectSpec,
) -> anyhow::Result<(Socket, SubscribedAt)> {
    let mut socket = connect(endpoint).await?;
    let first = next_text(&mut socket).await?;
    if !matches!(packet(&first), Packet::Open(_)) {
        bail!("expected an Engine.IO open packet, got {first:?}");
    }
    socket
        .send(Frame::text(connect_packet(&spec.token)?))
        .await
        .context("sending the Socket.IO connect")?;
    loop {
        let text = next_text(&mut socket).await?;
        match packet(&text) {
            Packet::Connected => break,
            Packet::ConnectError(why) => bail!("Socket.IO connect refused: {why}"),
            Packet::Ping => socket.send(Frame::text(PONG)).await?,
            _ => {}
        }
    }
    socket
        .send(Frame::text(join_packet(&spec.room_id, JOIN_ACK_ID)?))
        .await
        .context("sending joinRoom")?;
    loop {
        let text = next_text(&mut socket).await?;
        match packet(&text) {
            Packet::Ack { id, data } if id == JOIN_ACK_ID => {
                let (answer,): (AckBody<'_>,) =
                    serde_json::from_str(data).context("reading the joinRoom ack")?;
                if !answer.ok {
                    bail!("joinRoom refused: {}", answer.error.unwrap_or_default());
                }
                return Ok((socket, SubscribedAt::default()));
            }
            Packet::Ping => socket.send(Frame::text(PONG)).await?,
            Packet::Disconnect => bail!("disconnected before joining"),
            _ => {}
        }
    }
}

/// The next text frame (control frames are handled by tungstenite).
async fn next_text(socket: &mut Socket) -> anyhow::Result<String> {
    while let Some(frame) = socket.next().await {
        match frame.context("reading the handshake")? {
            Frame::Text(text) => return Ok(text.as_str().to_owned()),
            Frame::Close(frame) => bail!("closed during the handshake: {frame:?}"),
            _ => {}
        }
    }
    bail!("connection ended during the handshake")
}

/// The pong that answers an Engine.IO ping.
pub const PONG: &str = "3";

/// `40{"token":"user:<name>"}`: the Socket.IO connect packet with its auth payload.
pub fn connect_packet(token: &str) -> serde_json::Result<String> {
    Ok(format!("40{}", serde_json::json!({ "token": token })))
}

/// `42<id>["joinRoom",{"roomId":…}]`.
pub fn join_packet(room_id: &str, ack_id: u64) -> serde_json::Result<String> {
    Ok(format!(
        "42{ack_id}{}",
        serde_json::json!(["joinRoom", { "roomId": room_id }])
    ))
}

/// `42<n+1>["sendMessage",{"roomId":…,"content":…,"clientMsgId":"…"}]` for one connection.
pub fn send_template(
    room_id: &str,
    content: &str,
    connection: usize,
) -> serde_json::Result<SendTemplate> {
    let room_id = serde_json::to_string(room_id)?;
    let content = serde_json::to_string(content)?;
    Ok(SendTemplate {
        numbered: Some("42"),
        prefix: format!(
            r#"["sendMessage",{{"roomId":{room_id},"content":{content},"clientMsgId":""#
        ),
        suffix: "\"}]",
        connection,
    })
}

/// One Engine.IO packet, split but not yet decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{…}`: the session's parameters.
    Open(&'a str),
    /// `2`: the server's heartbeat.
    Ping,
    /// `40{"sid":…}`.
    Connected,
    /// `44{…}`, with its payload.
    ConnectError(&'a str),
    /// `42[…]` (any ack id the server asks for is skipped: the peer never asks).
    Event(&'a str),
    /// `43<id>[…]`.
    Ack { id: u64, data: &'a str },
    /// `41`, or an Engine.IO `1` close.
    Disconnect,
    /// Pong, noop, upgrade, binary placeholders …
    Other,
    /// Not a packet at all.
    Invalid,
}

/// Splits one text frame into its packet type and data.
pub fn packet(text: &str) -> Packet<'_> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'0') => Packet::Open(&text[1..]),
        Some(b'1') => Packet::Disconnect,
        Some(b'2') => Packet::Ping,
        Some(b'3' | b'5' | b'6') => Packet::Other,
        Some(b'4') => {
            let (kind, rest) = match bytes.get(1) {
                Some(&kind) => (kind, &text[2..]),
                None => return Packet::Invalid,
            };
            // The default namespace is never written out; another one would be `/name,`.
            let rest = if rest.starts_with('/') {
                match rest.split_once(',') {
                    Some((_, rest)) => rest,
                    None => return Packet::Invalid,
                }
            } else {
                rest
            };
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (id, data) = rest.split_at(digits);
            match kind {
                b'0' => Packet::Connected,
                b'1' => Packet::Disconnect,
                b'2' => Packet::Event(data),
                b'3' => match id.parse() {
                    Ok(id) => Packet::Ack { id, data },
                    Err(_) => Packet::Invalid,
                },
                b'4' => Packet::ConnectError(data),
                _ => Packet::Other,
            }
        }
        _ => Packet::Invalid,
    }
}

/// `[name, data]` of an event; events the peer sends us have exactly one argument.
#[derive(Deserialize)]
struct EventArgs<'a>(#[serde(borrow)] Cow<'a, str>, #[serde(borrow)] &'a RawValue);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivered<'a> {
    #[serde(borrow)]
    room_id: Cow<'a, str>,
    seq: Seq,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
}

/// The one argument of an acknowledgement: `{ok, seq?, clientMsgId?, error?, roomId?}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckBody<'a> {
    ok: bool,
    #[serde(default)]
    seq: Option<Seq>,
    #[serde(borrow, default)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room_id: Option<Cow<'a, str>>,
}

/// Reads one text frame into what the accounting needs. `Err` means it was not a packet
/// this client understands.
pub fn parse<'a>(text: &'a str) -> Result<Incoming<'a>, serde_json::Error> {
    use serde::de::Error as _;
    Ok(match packet(text) {
        Packet::Ping => Incoming::Ping { reply: PONG },
        Packet::Disconnect => Incoming::Closed,
        Packet::Event(data) => {
            let EventArgs(name, data) = serde_json::from_str(data)?;
            if name != "receiveMessage" {
                return Ok(Incoming::Other);
            }
            let message: Delivered<'a> = serde_json::from_str(data.get())?;
            Incoming::New {
                room_id: message.room_id,
                seq: message.seq,
                client_msg_id: message.client_msg_id,
            }
        }
        Packet::Ack { data, .. } => {
            let (answer,): (AckBody<'a>,) = serde_json::from_str(data)?;
            match (answer.ok, answer.seq) {
                (true, Some(seq)) => Incoming::Ack {
                    seq,
                    client_msg_id: answer.client_msg_id,
                },
                // A join acknowledgement.
                (true, None) => Incoming::Other,
                (false, _) => Incoming::Error {
                    code: answer.error.unwrap_or(Cow::Borrowed("not_ok")),
                    reference: answer.client_msg_id.or(answer.room_id),
                },
            }
        }
        Packet::Open(_) | Packet::Connected | Packet::ConnectError(_) | Packet::Other => {
            Incoming::Other
        }
        Packet::Invalid => return Err(serde_json::Error::custom("not an Engine.IO packet")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{ClientMsgId, filler_content};

    #[test]
    fn splits_packets() {
        assert_eq!(
            packet(r#"0{"sid":"a","pingInterval":25000}"#),
            Packet::Open(r#"{"sid":"a","pingInterval":25000}"#)
        );
        assert_eq!(packet("2"), Packet::Ping);
        assert_eq!(packet("3"), Packet::Other);
        assert_eq!(packet(r#"40{"sid":"x"}"#), Packet::Connected);
        assert_eq!(
            packet(r#"44{"message":"unauthorized"}"#),
            Packet::ConnectError(r#"{"message":"unauthorized"}"#)
        );
        assert_eq!(packet(r#"42["a",1]"#), Packet::Event(r#"["a",1]"#));
        assert_eq!(packet(r#"4217["a",1]"#), Packet::Event(r#"["a",1]"#));
        assert_eq!(packet(r#"42/chat,["a",1]"#), Packet::Event(r#"["a",1]"#));
        assert_eq!(
            packet(r#"43123[{"ok":true}]"#),
            Packet::Ack {
                id: 123,
                data: r#"[{"ok":true}]"#
            }
        );
        assert_eq!(packet("41"), Packet::Disconnect);
        assert_eq!(packet("1"), Packet::Disconnect);
        assert_eq!(packet("43[1]"), Packet::Invalid);
        assert_eq!(packet(""), Packet::Invalid);
        assert_eq!(packet("{}"), Packet::Invalid);
    }

    #[test]
    fn writes_the_handshake_packets() {
        assert_eq!(
            connect_packet("user:ada").unwrap(),
            r#"40{"token":"user:ada"}"#
        );
        assert_eq!(
            join_packet("r\"1", 0).unwrap(),
            r#"420["joinRoom",{"roomId":"r\"1"}]"#
        );
    }

    #[test]
    fn send_frames_are_acknowledged_events() {
        let content = filler_content(20);
        let template = send_template("nb1-room-0", &content, 4).unwrap();
        let frame = template.frame(9, 555);
        let Packet::Event(data) = packet(&frame) else {
            panic!("not an event: {frame}");
        };
        assert!(frame.starts_with("4210["), "ack id n + 1 = 10: {frame}");
        let value: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            value,
            serde_json::json!(["sendMessage", {
                "roomId": "nb1-room-0", "content": content, "clientMsgId": "4-9-555"
            }])
        );
    }

    #[test]
    fn reads_deliveries_acks_and_refusals() {
        let delivered = r#"42["receiveMessage",{"roomId":"r","seq":7,"sender":"u","content":"hi \"x\"","clientMsgId":"1-2-3","createdAt":"2026-01-01T00:00:00.000Z"}]"#;
        assert_eq!(
            parse(delivered).unwrap(),
            Incoming::New {
                room_id: "r".into(),
                seq: 7,
                client_msg_id: Some("1-2-3".into())
            }
        );
        let acked = r#"433[{"ok":true,"id":"42","seq":7,"clientMsgId":"1-2-3","createdAt":"2026-01-01T00:00:00.000Z"}]"#;
        let Incoming::Ack { seq, client_msg_id } = parse(acked).unwrap() else {
            panic!("not an ack");
        };
        assert_eq!(seq, 7);
        assert_eq!(
            client_msg_id.as_deref().and_then(ClientMsgId::parse),
            Some(ClientMsgId {
                connection: 1,
                n: 2,
                sent_at_us: 3
            })
        );
        assert_eq!(
            parse(r#"434[{"ok":false,"error":"db_error","clientMsgId":"1-3-9"}]"#).unwrap(),
            Incoming::Error {
                code: "db_error".into(),
                reference: Some("1-3-9".into())
            }
        );
        assert_eq!(
            parse(r#"430[{"ok":true,"roomId":"r"}]"#).unwrap(),
            Incoming::Other
        );
        assert_eq!(parse("2").unwrap(), Incoming::Ping { reply: "3" });
        assert_eq!(parse("41").unwrap(), Incoming::Closed);
        assert_eq!(parse(r#"42["somethingElse",{}]"#).unwrap(), Incoming::Other);
        assert!(parse("hello").is_err());
        assert!(parse(r#"42["receiveMessage",{"roomId":"r"}]"#).is_err());
    }
}
