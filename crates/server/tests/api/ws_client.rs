//! A WebSocket test client speaking the contract's events.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nebula_wire::{ClientEvent, Message, ServerEvent};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::helpers::Session;

/// How long a test waits for an event that should come.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a socket ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<u16>),
    /// The TCP connection went away without a close frame.
    Dropped,
}

impl Session {
    /// Opens `/ws` (or another WebSocket path) with this session's token.
    pub async fn ws(&self, path: &str) -> WsClient {
        self.try_ws(path)
            .await
            .unwrap_or_else(|err| panic!("websocket {path}: {err}"))
    }

    pub async fn try_ws(&self, path: &str) -> Result<WsClient, tungstenite::Error> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{path}{separator}token={}",
            self.base.replacen("http", "ws", 1),
            self.token
        );
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(WsClient { stream })
    }

    /// Opens `path` with a small kernel receive buffer (64 KiB), so that a client that stops
    /// reading is felt after megabytes, not the tens of MiB Linux would otherwise queue.
    pub async fn ws_with_small_buffer(&self, path: &str) -> WsClient {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{path}{separator}token={}",
            self.base.replacen("http", "ws", 1),
            self.token
        );
        let addr: std::net::SocketAddr = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("test servers listen on an address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connect");
        let (stream, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("websocket");
        WsClient { stream }
    }

    /// A `/ws` socket subscribed to `room` (waits for `subscribed`).
    pub async fn subscribed(&self, room: Uuid) -> WsClient {
        let mut ws = self.ws("/ws").await;
        ws.send(ClientEvent::Subscribe {
            room_id: room,
            since_seq: None,
            since_rev: None,
        })
        .await;
        ws.expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
            .await;
        ws
    }
}

impl WsClient {
    pub async fn send(&mut self, event: ClientEvent) {
        let text = serde_json::to_string(&event).unwrap();
        self.send_raw(&text).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.stream
            .send(Frame::text(text))
            .await
            .expect("send frame");
    }

    /// The next event, skipping transport pings.
    pub async fn next_event(&mut self) -> ServerEvent {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("an event within the patience window")
                .expect("socket open")
                .expect("frame");
            match frame {
                Frame::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("bad event {text}: {e}"));
                }
                Frame::Ping(_) | Frame::Pong(_) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next event matching `wanted`, skipping others (e.g. presence noise).
    pub async fn expect(&mut self, wanted: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
        loop {
            let event = self.next_event().await;
            if wanted(&event) {
                return event;
            }
        }
    }

    /// The next `message.new`, skipping other events.
    pub async fn next_message(&mut self) -> Message {
        match self
            .expect(|e| matches!(e, ServerEvent::MessageNew { .. }))
            .await
        {
            ServerEvent::MessageNew { message } => message,
            _ => unreachable!(),
        }
    }

    /// The next `message.updated`, skipping other events.
    pub async fn next_updated(&mut self) -> Message {
        match self
            .expect(|e| matches!(e, ServerEvent::MessageUpdated { .. }))
            .await
        {
            ServerEvent::MessageUpdated { message } => message,
            _ => unreachable!(),
        }
    }

    /// Sends `count` messages whose content and `client_msg_id` are `"{tag}-{i}"`.
    pub async fn send_numbered(
        &mut self,
        room_id: Uuid,
        tag: impl std::fmt::Display,
        count: usize,
    ) {
        for i in 0..count {
            let id = format!("{tag}-{i}");
            self.send(ClientEvent::MessageSend {
                room_id,
                content: id.clone(),
                client_msg_id: Some(id),
                reply_to: None,
                attachments: None,
            })
            .await;
        }
    }

    /// Reads until the socket ends, returning how; events seen on the way are returned too.
    pub async fn until_closed(&mut self) -> (Ended, Vec<ServerEvent>) {
        let mut seen = Vec::new();
        loop {
            let next = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("socket ends in time");
            match next {
                Some(Ok(Frame::Text(text))) => {
                    seen.push(serde_json::from_str(text.as_str()).unwrap())
                }
                Some(Ok(Frame::Close(frame))) => {
                    return (
                        Ended::Closed(frame.map(|f: CloseFrame| u16::from(f.code))),
                        seen,
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (Ended::Dropped, seen),
            }
        }
    }
}
