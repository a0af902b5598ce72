//! [`Connection`]: one WebSocket as it is, without resuming: typed events in and out, the
//! handshake with the token, `subscribe` → `subscribed`. [`crate::Session`] is built on the
//! same handshake; load generators and protocol tests use this level directly, and its raw
//! frames ([`Connection::send_text`], its `Sink` and `Stream` of frames,
//! [`Connection::into_inner`]) for what the typed events cannot say (malformed frames,
//! floods, a lean reader).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use nebula_wire::{ClientEvent, Problem, Rev, Seq, ServerEvent, User};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::{Client, Error, Result};

/// The socket under a [`Connection`].
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What `subscribed` said about a room.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub room_id: Uuid,
    /// Everything above this `seq` will be delivered on this socket.
    pub last_seq: Seq,
    /// The room's `rev` when the subscription started.
    pub last_rev: Rev,
    /// The first online members by username.
    pub online: Vec<User>,
    pub online_count: u64,
    /// The size of the `subscribed` frame (it grows with the online list).
    pub frame_bytes: usize,
}

impl Client {
    /// `ws://…{path}?token=…` (or `&token=` when `path` has a query already).
    pub fn ws_url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        let base = self.base_url().replacen("http", "ws", 1);
        match self.token() {
            Some(token) => format!("{base}{path}{separator}token={token}"),
            None => format!("{base}{path}"),
        }
    }

    /// Opens a WebSocket on `path` (`/ws`, `/ws/rooms/{room_id}`) with this client's token.
    pub async fn connect(&self, path: &str) -> Result<Connection> {
        self.connect_with(path, None).await
    }

    /// [`connect`](Client::connect) with tungstenite's buffer and frame limits.
    pub async fn connect_with(
        &self,
        path: &str,
        config: Option<WebSocketConfig>,
    ) -> Result<Connection> {
        // No Nagle: chat frames are small and latency matters more than packet count.
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(self.ws_url(path), config, true)
                .await
                .map_err(refused)?;
        Ok(Connection { socket })
    }

    /// [`connect`](Client::connect) over a TCP stream the caller opened (e.g. with a small
    /// receive buffer, to feel backpressure early).
    pub async fn connect_over(&self, path: &str, stream: TcpStream) -> Result<Connection> {
        let (socket, _) =
            tokio_tungstenite::client_async(self.ws_url(path), MaybeTlsStream::Plain(stream))
                .await
                .map_err(refused)?;
        Ok(Connection { socket })
    }
}

/// A refused upgrade as the API error it is (its problem document when there is one).
fn refused(err: tungstenite::Error) -> Error {
    match err {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            let problem = serde_json::from_slice::<Problem>(body).unwrap_or_else(|_| Problem {
                kind: "about:blank".into(),
                title: "upgrade refused".into(),
                status,
                detail: String::from_utf8_lossy(body).into_owned(),
                code: format!("http_{status}"),
            });
            Error::Api {
                status,
                problem: Box::new(problem),
            }
        }
        other => Error::from(other),
    }
}

/// One open WebSocket.
pub struct Connection {
    socket: Socket,
}

impl Connection {
    pub async fn send_event(&mut self, event: &ClientEvent) -> Result<()> {
        // Serializing a wire type cannot fail.
        let text = serde_json::to_string(event).unwrap_or_default();
        self.send_text(&text).await
    }

    /// Sends any text, valid or not.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        Ok(self.socket.send(Frame::text(text)).await?)
    }

    /// The next event, skipping control frames. The end of the socket is an error:
    /// [`Error::ClosedByServer`] with its close code, or [`Error::Closed`] without one.
    pub async fn next_event(&mut self) -> Result<ServerEvent> {
        Ok(self.next_sized().await?.0)
    }

    /// Subscribes to a room (from now, or resuming after `since`'s seq and rev) and waits
    /// for its `subscribed`; other events on the way are dropped. A refusal is
    /// [`Error::Refused`].
    pub async fn subscribe(
        &mut self,
        room_id: Uuid,
        since: Option<(Seq, Rev)>,
    ) -> Result<Subscribed> {
        self.send_event(&ClientEvent::Subscribe {
            room_id,
            since_seq: since.map(|(seq, _)| seq),
            since_rev: since.map(|(_, rev)| rev),
        })
        .await?;
        loop {
            match self.next_sized().await? {
                (
                    ServerEvent::Subscribed {
                        room_id: answered,
                        last_seq,
                        last_rev,
                        online,
                        online_count,
                    },
                    frame_bytes,
                ) if answered == room_id => {
                    return Ok(Subscribed {
                        room_id,
                        last_seq,
                        last_rev,
                        online,
                        online_count,
                        frame_bytes,
                    });
                }
                (ServerEvent::Error { code, message, .. }, _) => {
                    return Err(Error::Refused { code, message });
                }
                _ => {}
            }
        }
    }

    /// Stops following a room and waits for its `unsubscribed`.
    pub async fn unsubscribe(&mut self, room_id: Uuid) -> Result<()> {
        self.send_event(&ClientEvent::Unsubscribe { room_id })
            .await?;
        loop {
            match self.next_event().await? {
                ServerEvent::Unsubscribed { room_id: answered } if answered == room_id => {
                    return Ok(());
                }
                ServerEvent::Error { code, message, .. } => {
                    return Err(Error::Refused { code, message });
                }
                _ => {}
            }
        }
    }

    /// Sends a close frame (`None`: without a code) and flushes it.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        Ok(self.socket.close(frame).await?)
    }

    /// The socket itself, e.g. to split it into a reader and a writer task.
    pub fn into_inner(self) -> Socket {
        self.socket
    }

    /// The next event with the size of its frame in bytes.
    async fn next_sized(&mut self) -> Result<(ServerEvent, usize)> {
        loop {
            let frame = match self.socket.next().await {
                None => return Err(Error::Closed),
                Some(frame) => frame?,
            };
            match frame {
                Frame::Text(text) => {
                    let event =
                        serde_json::from_str(text.as_str()).map_err(|err| Error::Unreadable {
                            frame: text.to_string(),
                            reason: err.to_string(),
                        })?;
                    return Ok((event, text.len()));
                }
                Frame::Close(frame) => {
                    return Err(Error::ClosedByServer {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Frame::Binary(bytes) => {
                    return Err(Error::Unreadable {
                        frame: format!("{} binary bytes", bytes.len()),
                        reason: "the protocol has no binary frames".into(),
                    });
                }
                // Pings are answered by tungstenite itself.
                Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_) => {}
            }
        }
    }
}

/// Raw frames in, as the socket reads them (pings included).
impl Stream for Connection {
    type Item = tungstenite::Result<Frame>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.socket).poll_next(cx)
    }
}

/// Raw frames out, for what typed events cannot say (a flood fed without flushing each
/// frame, a malformed frame).
impl Sink<Frame> for Connection {
    type Error = tungstenite::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<tungstenite::Result<()>> {
        Pin::new(&mut self.socket).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> tungstenite::Result<()> {
        Pin::new(&mut self.socket).start_send(frame)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<tungstenite::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<tungstenite::Result<()>> {
        Pin::new(&mut self.socket).poll_close(cx)
    }
}
