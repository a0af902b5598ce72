//! One WebSocket connection: a small state machine in one task.
//!
//! Live events mostly bypass this task: the hub writes them straight to the socket through
//! the connection's [`Outbound`]. The task reads the client's frames, answers them (acks,
//! errors, subscriptions and their replays), writes whatever the socket could not take at
//! once, and handles the events the fan-out hands it (gaps in seqs, subscriptions being set
//! up, `member.left`). One `select!` watches, in priority order: shutdown, the slow-consumer
//! signal, token expiry, finished message writes (acks), the backlog, events handed over,
//! frames from the client, and the ping timer. Nothing here blocks the rest of the room.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use metrics::{Counter, Histogram};
use nebula_wire::{Seq, ServerEvent, User};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message as WsMessage;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::budget::FrameBudget;
use super::close::CloseReason;
use super::events::{PendingSend, SendOutcome};
use super::outbound::{Io, Outbound};
use super::registry::ConnectionPermit;
use super::transport::Transport;
use crate::bus::encode;
use crate::error::ApiError;
use crate::hub::{ConnId, Frame};
use crate::state::AppState;

/// Most handed-over events handled per wake-up before the task looks at anything else.
const HANDLE_BATCH: usize = 64;
/// How long a backlog may go without the socket taking any of it before the client counts
/// as not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages a connection may have waiting for their commit; beyond this it stops reading
/// frames until acks come back (backpressure on that client alone).
pub(super) const MAX_IN_FLIGHT: usize = 256;
/// Invalid or rate-limited frames tolerated per window before closing with 1008.
const MAX_STRIKES: u32 = 20;
const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Messages held back behind gaps before the gaps are repaired without further waiting.
const MAX_HELD: usize = 4096;
/// How long a closing connection waits for the client to answer its close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Connection {
    pub(super) id: ConnId,
    pub(super) user: User,
    pub(super) state: AppState,
    /// The protocol on the way in (and tungstenite's control frames on the way out).
    socket: WebSocketStream<Transport>,
    /// The way out, shared with the hub; also holds the per-room cursors.
    pub(super) out: Arc<Outbound>,
    /// Events the fan-out handed to this task.
    queue: mpsc::Receiver<Frame>,
    pub(super) pending: FuturesUnordered<PendingSend>,
    /// Per room, messages received ahead of a missing predecessor, by seq.
    held: HashMap<Uuid, BTreeMap<Seq, Frame>>,
    /// When the oldest open gap stops being waited for and is read from the database.
    gap_deadline: Option<tokio::time::Instant>,
    strikes: u32,
    strike_window_start: Instant,
    last_heard: Instant,
    /// Frames other than messages this connection may still send (see `budget`).
    pub(super) budget: FrameBudget,
    /// This connection's place in its user's connection cap.
    _permit: ConnectionPermit,
}

impl Connection {
    /// Serves one upgraded socket until it closes.
    pub async fn run(
        io: Io,
        state: AppState,
        user: User,
        permit: ConnectionPermit,
        token_expires_at: i64,
        initial_room: Option<(Uuid, Option<Seq>)>,
    ) {
        let capacity = state.config.config.ws_outbound_queue;
        let (queue_tx, queue) = mpsc::channel(capacity);
        let out = Arc::new(Outbound::new(io, queue_tx, Default::default(), capacity));
        let socket = Transport::websocket(out.clone(), super::ws_config(&state)).await;
        let mut connection = Connection {
            id: state.bus.hub().next_conn_id(),
            user,
            socket,
            out,
            queue,
            pending: FuturesUnordered::new(),
            held: HashMap::new(),
            gap_deadline: None,
            strikes: 0,
            strike_window_start: Instant::now(),
            last_heard: Instant::now(),
            budget: FrameBudget::new(),
            _permit: permit,
            state,
        };
        metrics::gauge!("nebula_ws_connections").increment(1.0);
        tracing::debug!(conn = connection.id, user_id = %connection.user.id, "websocket open");
        let reason = connection.serve(token_expires_at, initial_room).await;
        metrics::counter!("nebula_ws_disconnects_total", "reason" => reason.label()).increment(1);
        tracing::debug!(
            conn = connection.id,
            reason = reason.label(),
            "websocket closed"
        );
        Box::pin(connection.close(reason)).await;
    }

    /// The task's resting size is what an idle connection costs: every state an `await` can
    /// be in is stored inline in it. So the hot paths (live deliveries, acks, pings, a
    /// `message.send`) are awaited inline, and the cold ones that carry database or Redis
    /// calls (subscribe and replay, `read`, membership lookups, gap repair, shutdown) are
    /// boxed for the moment they run. Inline, those made every connection's task 6.1 KiB
    /// (measured with dhat); boxing the whole frame handler instead cost a large allocation
    /// and copy per received frame, which showed in the ingest profile.
    async fn serve(
        &mut self,
        token_expires_at: i64,
        initial_room: Option<(Uuid, Option<Seq>)>,
    ) -> CloseReason {
        if let Some((room_id, since_seq)) = initial_room
            && let Err(reason) = Box::pin(self.subscribe(room_id, since_seq)).await
        {
            return reason;
        }
        // Created once, not per turn of the loop: waiting on a cancellation token registers
        // the waiter under the token's lock.
        let (shutdown_token, out) = (self.state.shutdown.clone(), self.out.clone());
        let shutdown = shutdown_token.cancelled();
        let overflowed = out.overflowed().cancelled();
        let backlogged = out.backlogged();
        tokio::pin!(shutdown, overflowed, backlogged);
        let until_expiry =
            u64::try_from(token_expires_at - chrono::Utc::now().timestamp()).unwrap_or(0);
        let expiry = tokio::time::sleep(Duration::from_secs(until_expiry));
        tokio::pin!(expiry);
        let mut ping = tokio::time::interval(self.state.config.ping_interval());
        ping.tick().await;
        loop {
            let step = tokio::select! {
                biased;
                () = &mut shutdown => return Box::pin(self.drain_for_shutdown()).await,
                () = &mut overflowed => return CloseReason::SlowConsumer,
                () = &mut expiry => return CloseReason::TokenExpired,
                Some(outcome) = self.pending.next(), if !self.pending.is_empty() => self.acknowledge(outcome).await,
                () = &mut backlogged => {
                    backlogged.set(out.backlogged());
                    self.write_backlog().await
                }
                Some(frame) = self.queue.recv() => self.handle_batch(frame).await,
                () = gap_timer(self.gap_deadline) => Box::pin(self.repair_gaps()).await,
                incoming = self.socket.next(), if self.pending.len() < MAX_IN_FLIGHT => self.receive(incoming).await,
                _ = ping.tick() => self.keep_alive().await,
            };
            if let Err(reason) = step {
                return reason;
            }
        }
    }

    /// Handles `first` and whatever else was handed over meanwhile (up to `HANDLE_BATCH`).
    async fn handle_batch(&mut self, first: Frame) -> Result<(), CloseReason> {
        self.handle(first).await?;
        for _ in 1..HANDLE_BATCH {
            match self.queue.try_recv() {
                Ok(frame) => self.handle(frame).await?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// One handed-over event; the fan-out writes directly again once none is outstanding.
    async fn handle(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let result = self.deliver(frame).await;
        self.out.handled();
        result
    }

    /// Writes what the socket did not take at once, waiting for it to take more; a client
    /// that takes nothing for `WRITE_TIMEOUT`, or falls too far behind meanwhile, is let go.
    async fn write_backlog(&mut self) -> Result<(), CloseReason> {
        tokio::select! {
            written = self.out.write_backlog() => written.map(|_| ()).map_err(|_| CloseReason::Normal),
            () = self.out.overflowed().cancelled() => Err(CloseReason::SlowConsumer),
            () = tokio::time::sleep(WRITE_TIMEOUT) => Err(CloseReason::SlowConsumer),
        }
    }

    /// Handles one frame from the client.
    async fn receive(
        &mut self,
        incoming: Option<Result<WsMessage, tungstenite::Error>>,
    ) -> Result<(), CloseReason> {
        self.last_heard = Instant::now();
        match incoming {
            None | Some(Ok(WsMessage::Close(_))) => Err(CloseReason::Normal),
            Some(Ok(WsMessage::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(WsMessage::Binary(_))) => {
                self.reject(
                    ApiError::InvalidEvent(
                        "binary frames are not supported; send JSON text".into(),
                    ),
                    None,
                )
                .await
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => Ok(()),
            Some(Err(err)) => Err(classify_socket_error(err)),
        }
    }

    /// Writes one handed-over event, keeping `message.new` gap-free and duplicate-free per
    /// room.
    ///
    /// A message whose predecessor has not arrived yet (events of different nodes cross on
    /// the bus) is held back, and the fan-out stops writing the room directly; if the gap is
    /// still open after `BUS_GAP_WAIT_MS`, the missing messages are read from the database
    /// (see `repair_gaps`).
    async fn deliver(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let Some(cursor) = self.out.cursor(frame.room_id) else {
            return Ok(());
        };
        let Some(seq) = frame.seq else {
            return self.write_frame(frame).await;
        };
        if seq <= cursor.delivered {
            return Ok(()); // already sent (replay, repair, or a duplicate publication)
        }
        let room_id = frame.room_id;
        if seq > cursor.delivered + 1 {
            self.out.set_direct(room_id, false);
            let held = self.held.entry(room_id).or_default();
            held.insert(seq, frame);
            if held.len() > MAX_HELD {
                return Box::pin(self.repair_gaps()).await;
            }
            if self.gap_deadline.is_none() {
                self.gap_deadline =
                    Some(tokio::time::Instant::now() + self.state.config.gap_wait());
            }
            return Ok(());
        }
        self.write_frame(frame).await?;
        self.release_held(room_id).await
    }

    /// Drops what was held back for a room (its subscription starts over).
    pub(super) fn forget_held(&mut self, room_id: Uuid) {
        self.held.remove(&room_id);
    }

    /// Writes a frame and does its bookkeeping.
    async fn write_frame(&mut self, frame: Frame) -> Result<(), CloseReason> {
        if let Some(seq) = frame.seq {
            self.out.set_delivered(frame.room_id, seq);
        }
        self.send_bytes(&frame.text).await?;
        count_delivered(frame.kind);
        if let Some(latency) = frame.received_at.and_then(|at| at.elapsed().ok()) {
            DELIVERY_LATENCY.record(latency.as_secs_f64());
        }
        if frame.member_left == Some(self.user.id) {
            self.drop_subscription(frame.room_id);
        }
        Ok(())
    }

    /// Sends held messages that now follow on, dropping any the cursor has passed; once none
    /// is held, the fan-out writes the room directly again.
    async fn release_held(&mut self, room_id: Uuid) -> Result<(), CloseReason> {
        loop {
            let Some(cursor) = self.out.cursor(room_id) else {
                self.held.remove(&room_id);
                return Ok(());
            };
            let Some(held) = self.held.get_mut(&room_id) else {
                return Ok(());
            };
            let Some(entry) = held.first_entry() else {
                self.held.remove(&room_id);
                self.out.set_direct(room_id, true);
                return Ok(());
            };
            let seq = *entry.key();
            if seq > cursor.delivered + 1 {
                return Ok(()); // still a gap
            }
            let frame = entry.remove();
            if seq == cursor.delivered + 1 {
                self.write_frame(frame).await?;
            }
        }
    }

    /// The wait is over: reads every still-missing message from the database, then sends
    /// what was held.
    async fn repair_gaps(&mut self) -> Result<(), CloseReason> {
        self.gap_deadline = None;
        let rooms: Vec<Uuid> = self.held.keys().copied().collect();
        for room_id in rooms {
            let (Some(cursor), Some(first)) = (
                self.out.cursor(room_id),
                self.held
                    .get(&room_id)
                    .and_then(|held| held.keys().next().copied()),
            ) else {
                continue;
            };
            if first > cursor.delivered + 1 {
                metrics::counter!("nebula_ws_gap_repairs_total").increment(1);
                self.replay(room_id, cursor.delivered, first - 1).await?;
            }
            self.release_held(room_id).await?;
        }
        Ok(())
    }

    /// Sends stored messages `after < seq <= up_to` of a room as `message.new`, in order.
    pub(super) async fn replay(
        &mut self,
        room_id: Uuid,
        after: Seq,
        up_to: Seq,
    ) -> Result<(), CloseReason> {
        let mut cursor = after;
        while cursor < up_to {
            let high = up_to.min(cursor + 500);
            let messages = self
                .state
                .store
                .messages_between(room_id, cursor, high)
                .await
                .map_err(|err| {
                    tracing::error!(error = %err, "replay failed");
                    CloseReason::ServerError
                })?;
            for message in messages {
                let seq = message.seq;
                self.send_event(&ServerEvent::MessageNew { message })
                    .await?;
                count_delivered("message.new");
                self.out.set_delivered(room_id, seq);
            }
            cursor = high;
        }
        Ok(())
    }

    async fn acknowledge(&mut self, outcome: SendOutcome) -> Result<(), CloseReason> {
        let event = outcome.into_event();
        self.send_event(&event).await
    }

    async fn keep_alive(&mut self) -> Result<(), CloseReason> {
        if self.last_heard.elapsed() > self.state.config.idle_timeout() {
            return Err(CloseReason::IdleTimeout);
        }
        // Through tungstenite, which writes it into the outbound after what is there.
        self.socket
            .send(WsMessage::Ping(Default::default()))
            .await
            .map_err(|_| CloseReason::Normal)
    }

    /// On shutdown: stop reading, answer every message already submitted (each is committed
    /// by the draining writers), then close with 1012.
    async fn drain_for_shutdown(&mut self) -> CloseReason {
        let grace = Duration::from_secs(self.state.config.config.shutdown_grace_seconds);
        let _ = tokio::time::timeout(grace, async {
            while let Some(outcome) = self.pending.next().await {
                if self.acknowledge(outcome).await.is_err() {
                    break;
                }
            }
        })
        .await;
        CloseReason::Restarting
    }

    /// Counts a refused frame (invalid, over a budget, or not allowed) against the client and
    /// tells it why; too many within the strike window close the socket with 1008.
    pub(super) async fn reject(
        &mut self,
        err: ApiError,
        reference: Option<String>,
    ) -> Result<(), CloseReason> {
        if self.strike_window_start.elapsed() > STRIKE_WINDOW {
            self.strike_window_start = Instant::now();
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            return Err(CloseReason::Flooding);
        }
        self.send_event(&err.ws_error(reference)).await
    }

    pub(super) async fn send_event(&mut self, event: &ServerEvent) -> Result<(), CloseReason> {
        self.send_bytes(&encode(event)).await
    }

    /// Writes a data frame after everything already accepted for the socket; what the socket
    /// does not take at once is written by this task's loop (`write_backlog`), or right here
    /// when the backlog is half full (a long replay waits for the client instead of piling up).
    async fn send_bytes(&mut self, text: &Bytes) -> Result<(), CloseReason> {
        if !self.out.send(text) {
            return Err(if self.out.overflowed().is_cancelled() {
                CloseReason::SlowConsumer
            } else {
                CloseReason::Normal
            });
        }
        if self.out.is_behind() {
            self.write_backlog().await?;
        }
        Ok(())
    }

    /// Leaves a room's fan-out and presence (unsubscribe, membership lost, or disconnect).
    pub(super) fn drop_subscription(&mut self, room_id: Uuid) {
        if !self.out.remove_room(room_id) {
            return;
        }
        self.held.remove(&room_id);
        self.state.bus.unsubscribe(room_id, self.id);
        metrics::gauge!("nebula_ws_subscriptions").decrement(1.0);
        if self.state.presence.disconnected(room_id, &self.user) {
            self.state.typing.subscription_ended(room_id, self.user.id);
        }
    }

    async fn close(mut self, reason: CloseReason) {
        for room_id in self.out.rooms() {
            self.drop_subscription(room_id);
        }
        self.out.close();
        if matches!(reason, CloseReason::SlowConsumer) {
            metrics::counter!("nebula_ws_slow_consumer_disconnects_total").increment(1);
            return; // it is not reading: a close frame would only wait in its buffer
        }
        let frame = CloseFrame {
            code: CloseCode::from(reason.code()),
            reason: reason.text().into(),
        };
        // Finish the closing handshake: write what is pending and the close frame, then wait
        // for the client's close frame, discarding what it sent meanwhile. Dropping a socket
        // with unread input makes the kernel reset the connection, and a reset can destroy
        // the close frame (and acks) before the client reads them.
        let out = self.out.clone();
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
            if self.socket.close(Some(frame)).await.is_err() {
                return;
            }
            if out.write_backlog().await.is_err() {
                return;
            }
            while let Some(Ok(message)) = self.socket.next().await {
                if matches!(message, WsMessage::Close(_)) {
                    break;
                }
            }
            let _ = out.write_backlog().await;
        })
        .await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Normally `close` already left every room; this covers a task that was aborted.
        for room_id in self.out.rooms() {
            self.drop_subscription(room_id);
        }
        self.out.close();
        metrics::gauge!("nebula_ws_connections").decrement(1.0);
    }
}

/// Event types with a delivery counter of their own; anything else counts as "other".
const DELIVERED_KINDS: [&str; 7] = [
    "message.new",
    "typing",
    "read",
    "presence",
    "member.joined",
    "member.left",
    "other",
];

/// Counter handles, resolved once: this runs for every recipient of every event, where a
/// registry lookup per call would be the most expensive part of a delivery.
static DELIVERED: LazyLock<[Counter; DELIVERED_KINDS.len()]> = LazyLock::new(|| {
    DELIVERED_KINDS
        .map(|kind| metrics::counter!("nebula_ws_events_delivered_total", "type" => kind))
});
static DELIVERY_LATENCY: LazyLock<Histogram> =
    LazyLock::new(|| metrics::histogram!("nebula_message_delivery_latency_seconds"));

fn count_delivered(kind: &str) {
    let index = DELIVERED_KINDS
        .iter()
        .position(|known| *known == kind)
        .unwrap_or(DELIVERED_KINDS.len() - 1);
    DELIVERED[index].increment(1);
}

/// Fires at the gap deadline; never while no gap is open.
async fn gap_timer(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A frame over the size limit closes with 1009; any other socket error just ends the session.
fn classify_socket_error(err: tungstenite::Error) -> CloseReason {
    match err {
        tungstenite::Error::Capacity(_) => CloseReason::TooBig,
        _ => CloseReason::Normal,
    }
}
