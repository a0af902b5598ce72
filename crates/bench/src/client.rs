//! One simulated user's WebSocket: open, subscribe, hand the read half to a [`Reader`] task,
//! keep the write half for sending, close.
//!
//! Reading and writing are separate tasks on purpose: a single loop that awaits a send while
//! the server is blocked writing to us (both TCP buffers full) would deadlock the pair.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::SinkExt;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use nebula_wire::{Rev, Seq};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::live::Live;
use crate::reader::{ReaderOutcome, ReaderSpec};
use crate::setup::Api;
use crate::target::Target;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type WsSink = SplitSink<Socket, Frame>;
pub(crate) type WsStream = SplitStream<Socket>;
/// The write half, shared by the sender and (for Socket.IO's application-level pongs) the
/// reader. The reader never waits on it: it hands a pong to a task of its own, so a sender
/// blocked on a full socket cannot stop the reading that would unblock it.
pub(crate) type SharedSink = Arc<Mutex<WsSink>>;

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
    /// Index of the node it connects to (of `Options::nodes`).
    pub node: usize,
    /// The room's id as the target spells it.
    pub room_id: String,
    pub token: String,
}

/// Where a room stood when a socket subscribed: what it already had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribedAt {
    pub last_seq: Seq,
    pub last_rev: Rev,
}

/// An open, subscribed connection.
pub struct Connection {
    pub index: usize,
    pub room: usize,
    pub(crate) sink: SharedSink,
    /// Permits for unacknowledged sends; the reader returns one per ack or error.
    pub(crate) window: Arc<Semaphore>,
    /// Highest seq this connection has received (for the drain check).
    seen: Arc<AtomicI64>,
    /// Different revs of `message.updated` this connection has received (for the drain
    /// check).
    updates_seen: Arc<AtomicU64>,
    reader: JoinHandle<ReaderOutcome>,
}

/// Small read buffers keep thousands of idle sockets cheap (tungstenite's default is 128 KiB
/// per socket); no write buffer, so each frame goes out when sent; frames up to 16 MiB since
/// a `subscribed` answer lists every online member of a big room.
pub(crate) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

/// Opens a WebSocket to `url` with the simulator's socket settings (the Socket.IO peer's;
/// Nebula's open through `nebula-client`).
pub(crate) async fn connect(url: &str) -> anyhow::Result<Socket> {
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(socket_config()), true)
            .await
            .map_err(describe_connect_error)?;
    Ok(socket)
}

/// The parts of a connection the run shares with it.
pub struct Shared {
    pub target: Target,
    /// Nebula's client (`None` for the Socket.IO peer).
    pub api: Option<Api>,
    pub in_flight: usize,
    pub live: Arc<Live>,
    pub closing: CancellationToken,
}

impl Connection {
    /// Connects to `endpoint`, subscribes as the target does it, and starts reading.
    pub async fn open(
        endpoint: &str,
        spec: ConnectSpec,
        shared: &Shared,
    ) -> anyhow::Result<Connection> {
        let (socket, at) = tokio::time::timeout(
            SUBSCRIBE_TIMEOUT,
            shared.target.open(endpoint, shared.api.as_ref(), &spec),
        )
        .await
        .context("no `subscribed` answer in time")??;
        let (sink, stream) = socket.split();
        let sink = Arc::new(Mutex::new(sink));
        let window = Arc::new(Semaphore::new(shared.in_flight));
        let seen = Arc::new(AtomicI64::new(at.last_seq));
        let updates_seen = Arc::new(AtomicU64::new(0));
        let reader = ReaderSpec {
            target: shared.target,
            index: spec.index,
            room_id: spec.room_id,
            live: shared.live.clone(),
            window: window.clone(),
            seen: seen.clone(),
            updates_seen: updates_seen.clone(),
            sink: sink.clone(),
        }
        .start(spec.room, at);
        Ok(Connection {
            index: spec.index,
            room: spec.room,
            sink,
            window,
            seen,
            updates_seen,
            reader: tokio::spawn(reader.run(stream, shared.closing.clone())),
        })
    }

    /// Highest seq received so far.
    pub fn seen(&self) -> Seq {
        self.seen.load(Ordering::Relaxed)
    }

    /// Different revs of `message.updated` received so far.
    pub fn updates_seen(&self) -> u64 {
        self.updates_seen.load(Ordering::Relaxed)
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
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            self.sink.lock().await.send(frame).await
        })
        .await;
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

/// Turns an HTTP refusal of the upgrade into its status line.
fn describe_connect_error(err: tungstenite::Error) -> anyhow::Error {
    match err {
        tungstenite::Error::Http(response) => {
            anyhow::anyhow!("upgrade refused: HTTP {}", response.status())
        }
        other => anyhow::Error::new(other).context("connecting"),
    }
}
