//! One simulated user's WebSocket: open, subscribe, hand the read half to a [`Reader`] task,
//! keep the write half for sending, close.
//!
//! Reading and writing are separate tasks on purpose: a single loop that awaits a send while
//! the server is blocked writing to us (both TCP buffers full) would deadlock the pair.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use nebula_wire::{ClientEvent, Seq};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::frames::{self, Incoming};
use crate::live::Live;
use crate::reader::{Reader, ReaderOutcome};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type WsSink = SplitSink<Socket, Frame>;
pub(crate) type WsStream = SplitStream<Socket>;

/// How long the handshake plus `subscribe` may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing socket waits for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who connects where.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Index of the user (and of its connection) in this run.
    pub index: usize,
    /// Index of the room it subscribes to.
    pub room: usize,
    pub room_id: Uuid,
    pub token: String,
}

/// An open, subscribed connection.
pub struct Connection {
    pub index: usize,
    pub room: usize,
    pub(crate) sink: WsSink,
    /// Permits for unacknowledged sends; the reader returns one per ack or error.
    pub(crate) window: Arc<Semaphore>,
    /// Highest seq this connection has received (for the drain check).
    seen: Arc<AtomicI64>,
    reader: JoinHandle<ReaderOutcome>,
}

/// Small read buffers keep thousands of idle sockets cheap (tungstenite's default is 128 KiB
/// per socket); no write buffer, so each frame goes out when sent; frames up to 8 MiB since a
/// `subscribed` answer lists every online member of a big room.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(8 << 20))
        .max_frame_size(Some(8 << 20))
}

impl Connection {
    /// Connects to `endpoint` (`ws://host/ws`), subscribes, and starts reading.
    pub async fn open(
        endpoint: &str,
        spec: ConnectSpec,
        in_flight: usize,
        live: Arc<Live>,
        closing: CancellationToken,
    ) -> anyhow::Result<Connection> {
        let url = format!("{endpoint}?token={}", spec.token);
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let (socket, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(socket_config()), true)
                    .await
                    .map_err(describe_connect_error)?;
            let (mut sink, mut stream) = socket.split();
            let subscribe = ClientEvent::Subscribe {
                room_id: spec.room_id,
                since_seq: None,
                since_rev: None,
            };
            sink.send(Frame::text(serde_json::to_string(&subscribe)?))
                .await
                .context("sending subscribe")?;
            let last_seq = wait_subscribed(&mut stream, spec.room_id).await?;
            anyhow::Ok((sink, stream, last_seq))
        })
        .await
        .context("no `subscribed` answer in time")??;
        let (sink, stream, last_seq) = subscribed;
        let window = Arc::new(Semaphore::new(in_flight));
        let seen = Arc::new(AtomicI64::new(last_seq));
        let reader = Reader::new(
            spec.index,
            spec.room,
            spec.room_id,
            last_seq,
            live,
            window.clone(),
            seen.clone(),
        );
        Ok(Connection {
            index: spec.index,
            room: spec.room,
            sink,
            window,
            seen,
            reader: tokio::spawn(reader.run(stream, closing)),
        })
    }

    /// Highest seq received so far.
    pub fn seen(&self) -> Seq {
        self.seen.load(Ordering::Relaxed)
    }

    /// Whether the socket is still being read (false once the server closed or dropped it).
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }

    /// Sends a normal close and waits for the reader to finish. Cancel the run's `closing`
    /// token first, so the reader knows the close is ours and not the server's.
    pub async fn close(mut self) -> ReaderOutcome {
        let frame = Frame::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "benchmark finished".into(),
        }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.sink.send(frame)).await;
        match tokio::time::timeout(CLOSE_TIMEOUT * 2, &mut self.reader).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panicked)) => {
                ReaderOutcome::lost(self.room, format!("reader failed: {panicked}"))
            }
            Err(_) => {
                self.reader.abort();
                ReaderOutcome::lost(self.room, "reader did not finish".into())
            }
        }
    }
}

/// Reads frames until the answer to our `subscribe`.
async fn wait_subscribed(stream: &mut WsStream, room_id: Uuid) -> anyhow::Result<Seq> {
    let room = room_id.to_string();
    while let Some(frame) = stream.next().await {
        match frame.context("reading the subscribe answer")? {
            Frame::Text(text) => match frames::parse(text.as_str()) {
                Ok(Incoming::Subscribed { room_id, last_seq }) if room_id == room => {
                    return Ok(last_seq);
                }
                Ok(Incoming::Error { code, .. }) => bail!("subscribe refused: {code}"),
                Ok(_) => {}
                Err(err) => bail!("unreadable frame before `subscribed`: {err}"),
            },
            Frame::Close(frame) => {
                bail!("closed before `subscribed`: {:?}", frame.map(|f| f.code))
            }
            _ => {}
        }
    }
    bail!("connection ended before `subscribed`")
}

/// Turns an HTTP refusal of the upgrade into its status line.
fn describe_connect_error(err: tungstenite::Error) -> anyhow::Error {
    match err {
        tungstenite::Error::Http(response) => {
            anyhow::anyhow!("upgrade refused: HTTP {}", response.status())
        }
        other => anyhow::Error::new(other).context("connecting"),
    }
}
