//! One WebSocket connection: a small state machine in one task.
//!
//! One `select!` watches, in priority order: shutdown, the slow-consumer signal, token expiry,
//! finished message writes (acks), live events from the hub, frames from the client, and the
//! ping timer. Nothing here blocks the rest of the room: the hub only `try_send`s into this
//! connection's bounded queue, and socket writes give up as soon as the queue has overflowed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use metrics::{Counter, Histogram};
use nebula_wire::{Rev, Seq, ServerEvent, User};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::budget::FrameBudget;
use super::close::CloseReason;
use super::events::{PendingSend, SendOutcome};
use super::registry::ConnectionPermit;
use crate::bus::encode;
use crate::error::ApiError;
use crate::hub::{ConnId, Frame};
use crate::state::AppState;

/// Most queued events written with one flush.
const WRITE_BATCH: usize = 64;
/// How long one socket write may take before the client counts as not reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages a connection may have waiting for their commit; beyond this it stops reading
/// frames until acks come back (backpressure on that client alone).
pub(super) const MAX_IN_FLIGHT: usize = 256;
/// Invalid or rate-limited frames tolerated per window before closing with 1008.
const MAX_STRIKES: u32 = 20;
const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// Messages held back behind gaps before the gaps are repaired without further waiting.
const MAX_HELD: usize = 4096;
/// Messages read from the database per query when replaying.
const REPLAY_PAGE: i64 = 500;
/// How long a closing connection waits for the client to answer its close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// How far a subscribed room has been brought on this socket: `message.new` for every seq up
/// to `seq`, and every change up to `rev` (live frames are delivered in rev order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub seq: Seq,
    pub rev: Rev,
}

impl Cursor {
    /// While a room is being replayed nothing live is delivered for it.
    pub const REPLAYING: Cursor = Cursor {
        seq: Seq::MAX,
        rev: Rev::MAX,
    };
}

/// A room's delivery exceptions (usually none: the room then has no entry at all).
#[derive(Debug, Default)]
struct Held {
    /// Frames that arrived ahead of a missing predecessor, by rev.
    frames: BTreeMap<Rev, Frame>,
    /// (seq, rev) of messages a replay sent in a version newer than the cursor it ended at:
    /// live changes of those messages up to that rev are older news, skipped (the cursor
    /// still moves past them). Dropped once the cursor passes the rev.
    ahead: Vec<(Seq, Rev)>,
}

pub(crate) struct Connection {
    pub(super) id: ConnId,
    pub(super) user: User,
    pub(super) state: AppState,
    socket: WebSocket,
    /// Our end of the queue the hub fills; subscriptions hold clones of the sender.
    pub(super) queue_tx: mpsc::Sender<Frame>,
    queue: mpsc::Receiver<Frame>,
    pub(super) overflowed: CancellationToken,
    /// Subscribed rooms → how far this socket has been brought.
    pub(super) rooms: HashMap<Uuid, Cursor>,
    pub(super) pending: FuturesUnordered<PendingSend>,
    /// Per room, what delivery must still account for: frames received ahead of a missing
    /// predecessor, and messages a replay showed in a newer version than its cursor.
    held: HashMap<Uuid, Held>,
    /// When the oldest open gap stops being waited for and is read from the database.
    gap_deadline: Option<tokio::time::Instant>,
    /// With `WS_WRITE_DELAY_MS`: queued events wait until then to be written as one batch.
    hold_until: Option<tokio::time::Instant>,
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
        socket: WebSocket,
        state: AppState,
        user: User,
        permit: ConnectionPermit,
        token_expires_at: i64,
        initial_room: Option<(Uuid, Option<Seq>, Option<Rev>)>,
    ) {
        let (queue_tx, queue) = mpsc::channel(state.config.config.ws_outbound_queue);
        let mut connection = Connection {
            id: state.bus.hub().next_conn_id(),
            user,
            socket,
            queue_tx,
            queue,
            overflowed: CancellationToken::new(),
            rooms: HashMap::new(),
            pending: FuturesUnordered::new(),
            held: HashMap::new(),
            gap_deadline: None,
            hold_until: None,
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
        initial_room: Option<(Uuid, Option<Seq>, Option<Rev>)>,
    ) -> CloseReason {
        if let Some((room_id, since_seq, since_rev)) = initial_room
            && let Err(reason) = Box::pin(self.subscribe(room_id, since_seq, since_rev)).await
        {
            return reason;
        }
        // Created once, not per turn of the loop: waiting on a cancellation token registers
        // the waiter under the token's lock, which per delivered event was measurable.
        let (shutdown_token, overflowed_token) =
            (self.state.shutdown.clone(), self.overflowed.clone());
        let shutdown = shutdown_token.cancelled();
        let overflowed = overflowed_token.cancelled();
        tokio::pin!(shutdown, overflowed);
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
                Some(frame) = self.queue.recv(), if self.hold_until.is_none() => self.deliver_batch(frame).await,
                () = hold_timer(self.hold_until), if self.hold_until.is_some() => {
                    self.hold_until = None;
                    Ok(())
                }
                () = gap_timer(self.gap_deadline) => Box::pin(self.repair_gaps()).await,
                incoming = self.socket.next(), if self.pending.len() < MAX_IN_FLIGHT => self.receive(incoming).await,
                _ = ping.tick() => self.keep_alive().await,
            };
            if let Err(reason) = step {
                return reason;
            }
        }
    }

    /// Writes `first` and whatever else is queued (up to `WRITE_BATCH` frames) with one flush,
    /// so a burst of events costs one `write` per socket, not one per event. With
    /// `WS_WRITE_DELAY_MS`, the next batch waits that long after this one: under a steady
    /// stream, events coalesce into fewer writes; after a quiet spell, the first goes out at
    /// once.
    async fn deliver_batch(&mut self, first: Frame) -> Result<(), CloseReason> {
        self.deliver(first).await?;
        for _ in 1..WRITE_BATCH {
            match self.queue.try_recv() {
                Ok(frame) => self.deliver(frame).await?,
                Err(_) => break,
            }
        }
        self.flush().await?;
        let delay = self.state.config.write_delay();
        if !delay.is_zero() {
            self.hold_until = Some(tokio::time::Instant::now() + delay);
        }
        Ok(())
    }

    /// Handles one frame from the client.
    async fn receive(
        &mut self,
        incoming: Option<Result<WsMessage, axum::Error>>,
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
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Ok(()),
            Some(Err(err)) => Err(classify_socket_error(err)),
        }
    }

    /// Writes one live event, keeping a room's messages and changes in rev order, gap-free and
    /// duplicate-free (so `message.new` arrives in seq order: a message takes its seq and its
    /// rev in the same commit).
    ///
    /// A frame whose predecessor has not arrived yet (events of different nodes cross on the
    /// bus) is held back; if the gap is still open after `BUS_GAP_WAIT_MS`, the room is brought
    /// up to date from the database (see `repair_gaps`).
    async fn deliver(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let Some(&delivered) = self.rooms.get(&frame.room_id) else {
            return Ok(());
        };
        let Some(rev) = frame.rev else {
            return self.write_frame(frame).await;
        };
        if rev <= delivered.rev {
            return Ok(()); // already sent (replay, repair, or a duplicate publication)
        }
        if rev > delivered.rev + 1 {
            let room_id = frame.room_id;
            let held = &mut self.held.entry(room_id).or_default().frames;
            held.insert(rev, frame);
            if held.len() > MAX_HELD {
                return Box::pin(self.repair_gaps()).await;
            }
            if self.gap_deadline.is_none() {
                self.gap_deadline =
                    Some(tokio::time::Instant::now() + self.state.config.gap_wait());
            }
            return Ok(());
        }
        let room_id = frame.room_id;
        self.write_frame(frame).await?;
        self.release_held(room_id).await
    }

    /// Queues a frame for the socket (written at the batch's flush) and does its bookkeeping.
    async fn write_frame(&mut self, frame: Frame) -> Result<(), CloseReason> {
        if let Some(rev) = frame.rev {
            if let Some(cursor) = self.rooms.get_mut(&frame.room_id) {
                cursor.rev = rev;
                if let Some(seq) = frame.seq
                    && frame.kind == "message.new"
                {
                    cursor.seq = seq;
                }
            }
            if !self.held.is_empty() && self.superseded(&frame, rev) {
                return Ok(());
            }
        }
        self.feed(WsMessage::Text(frame.text.clone())).await?;
        count_delivered(frame.kind);
        if let Some(latency) = frame.received_at.and_then(|at| at.elapsed().ok()) {
            DELIVERY_LATENCY.record(latency.as_secs_f64());
        }
        if frame.member_left == Some(self.user.id) {
            self.drop_subscription(frame.room_id);
        }
        Ok(())
    }

    /// Whether a replay already sent a newer version of this frame's message (see
    /// `Held::ahead`); forgets what the cursor, now at `rev`, has passed.
    fn superseded(&mut self, frame: &Frame, rev: Rev) -> bool {
        let Some(held) = self.held.get_mut(&frame.room_id) else {
            return false;
        };
        if held.ahead.is_empty() {
            return false;
        }
        let skip = held
            .ahead
            .iter()
            .any(|&(seq, newer)| frame.seq == Some(seq) && rev <= newer);
        held.ahead.retain(|&(_, newer)| newer > rev);
        if held.ahead.is_empty() && held.frames.is_empty() {
            self.held.remove(&frame.room_id);
        }
        skip
    }

    /// Sends held frames that now follow on, dropping any the cursor has passed.
    async fn release_held(&mut self, room_id: Uuid) -> Result<(), CloseReason> {
        loop {
            let Some(&cursor) = self.rooms.get(&room_id) else {
                self.held.remove(&room_id);
                return Ok(());
            };
            let Some(held) = self.held.get_mut(&room_id) else {
                return Ok(());
            };
            let Some(entry) = held.frames.first_entry() else {
                if held.ahead.is_empty() {
                    self.held.remove(&room_id);
                }
                return Ok(());
            };
            let rev = *entry.key();
            if rev > cursor.rev + 1 {
                return Ok(()); // still a gap
            }
            let frame = entry.remove();
            if rev == cursor.rev + 1 {
                self.write_frame(frame).await?;
            }
        }
    }

    /// The wait is over: brings every room with a still-open gap up to the database, then
    /// sends what was held and follows on.
    async fn repair_gaps(&mut self) -> Result<(), CloseReason> {
        self.gap_deadline = None;
        let rooms: Vec<Uuid> = self.held.keys().copied().collect();
        for room_id in rooms {
            let (Some(&cursor), Some(first)) = (
                self.rooms.get(&room_id),
                self.held
                    .get(&room_id)
                    .and_then(|held| held.frames.keys().next().copied()),
            ) else {
                continue;
            };
            if first > cursor.rev + 1 {
                metrics::counter!("nebula_ws_gap_repairs_total").increment(1);
                let (last_seq, last_rev) =
                    self.state
                        .store
                        .room_positions(room_id)
                        .await
                        .map_err(|err| {
                            tracing::error!(error = %err, "gap repair failed");
                            CloseReason::ServerError
                        })?;
                // Everything up to the held frame is committed: the database is at least there.
                let to = Cursor {
                    seq: last_seq.max(cursor.seq),
                    rev: last_rev.max(first - 1),
                };
                self.catch_up(room_id, cursor, to).await?;
                if let Some(room) = self.rooms.get_mut(&room_id) {
                    *room = to;
                }
            }
            self.release_held(room_id).await?;
        }
        self.flush().await
    }

    /// Brings a room from `from` to `to` (a last seq and rev read together from the database)
    /// with stored messages: `message.new` for every seq in `from.seq < seq <= to.seq`, in seq
    /// order, then `message.updated` for every older message (`seq <= from.seq`) whose latest
    /// change is in `from.rev < rev <= to.rev`, in rev order. Each message goes in the version
    /// the database holds; a new one read in a version beyond `to.rev` is remembered so that
    /// the live changes it already includes are skipped. Changes of older messages beyond
    /// `to.rev` arrive live. The caller moves the room's cursor to `to`.
    pub(super) async fn catch_up(
        &mut self,
        room_id: Uuid,
        from: Cursor,
        to: Cursor,
    ) -> Result<(), CloseReason> {
        let failed = |err: crate::store::StoreError| {
            tracing::error!(error = %err, "replay failed");
            CloseReason::ServerError
        };
        let mut ahead = Vec::new();
        let mut cursor = from.seq.max(0);
        while cursor < to.seq {
            let high = to.seq.min(cursor + REPLAY_PAGE);
            let messages = self
                .state
                .store
                .messages_between(room_id, cursor, high)
                .await
                .map_err(failed)?;
            for message in messages {
                if message.rev > to.rev {
                    ahead.push((message.seq, message.rev));
                }
                self.send_event(&ServerEvent::MessageNew { message })
                    .await?;
                count_delivered("message.new");
            }
            cursor = high;
        }
        let older = from.seq.min(to.seq);
        let mut after = from.rev.max(0);
        while older > 0 && after < to.rev {
            let entries = self
                .state
                .store
                .changes(room_id, after, to.rev, Some(older), REPLAY_PAGE)
                .await
                .map_err(failed)?;
            let full = entries.len() == usize::try_from(REPLAY_PAGE).unwrap_or(usize::MAX);
            for entry in entries {
                after = entry.message.rev;
                self.send_event(&ServerEvent::MessageUpdated {
                    message: entry.message,
                })
                .await?;
                count_delivered("message.updated");
            }
            if !full {
                break;
            }
        }
        if !ahead.is_empty() {
            self.held.entry(room_id).or_default().ahead.extend(ahead);
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
        self.write(WsMessage::Ping(Default::default())).await
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
        self.send_text(encode(event)).await
    }

    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), CloseReason> {
        self.write(WsMessage::Text(text)).await
    }

    /// Writes to the socket unless the client has stopped reading: a write blocked for
    /// `WRITE_TIMEOUT`, or an overflow of its queue meanwhile, ends the connection.
    async fn write(&mut self, message: WsMessage) -> Result<(), CloseReason> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Adds a message to the socket's write buffer; it goes out at the next flush (or once
    /// the buffer passes `WRITE_BUFFER_BYTES`).
    async fn feed(&mut self, message: WsMessage) -> Result<(), CloseReason> {
        let feed = self.socket.feed(message);
        guarded(feed, &self.overflowed).await
    }

    /// Writes out whatever was fed, under the same conditions as `write`.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        let flush = self.socket.flush();
        guarded(flush, &self.overflowed).await
    }

    /// Leaves a room's fan-out and presence (unsubscribe, membership lost, or disconnect).
    pub(super) fn drop_subscription(&mut self, room_id: Uuid) {
        if self.rooms.remove(&room_id).is_none() {
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
        for room_id in self.rooms.keys().copied().collect::<Vec<_>>() {
            self.drop_subscription(room_id);
        }
        if matches!(reason, CloseReason::SlowConsumer) {
            metrics::counter!("nebula_ws_slow_consumer_disconnects_total").increment(1);
            return; // it is not reading: a close frame would only wait in its buffer
        }
        let frame = CloseFrame {
            code: reason.code(),
            reason: reason.text().into(),
        };
        // Finish the closing handshake: wait for the client's close frame, discarding what it
        // sent meanwhile. Dropping a socket with unread input makes the kernel reset the
        // connection, and a reset can destroy the close frame (and acks) before the client
        // reads them.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
            if self
                .socket
                .send(WsMessage::Close(Some(frame)))
                .await
                .is_err()
            {
                return;
            }
            while let Some(Ok(message)) = self.socket.next().await {
                if matches!(message, WsMessage::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Normally `close` already left every room; this covers a task that was aborted.
        for room_id in self.rooms.keys().copied().collect::<Vec<_>>() {
            self.drop_subscription(room_id);
        }
        metrics::gauge!("nebula_ws_connections").decrement(1.0);
    }
}

/// Event types with a delivery counter of their own; anything else counts as "other".
const DELIVERED_KINDS: [&str; 8] = [
    "message.new",
    "message.updated",
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

/// Completes a socket write unless the client has stopped reading (see `Connection::write`).
///
/// A write that completes at once, the usual case, is not raced against the timeout and the
/// overflow signal: arming a timer and a cancellation waiter per event cost more than the
/// write itself.
async fn guarded<F>(mut write: F, overflowed: &CancellationToken) -> Result<(), CloseReason>
where
    F: Future<Output = Result<(), axum::Error>> + Unpin,
{
    if let Some(result) = (&mut write).now_or_never() {
        return result.map_err(|_| CloseReason::Normal);
    }
    tokio::select! {
        result = write => result.map_err(|_| CloseReason::Normal),
        () = overflowed.cancelled() => Err(CloseReason::SlowConsumer),
        () = tokio::time::sleep(WRITE_TIMEOUT) => Err(CloseReason::SlowConsumer),
    }
}

/// Fires when a held write batch may go; never while none is held.
async fn hold_timer(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// Fires at the gap deadline; never while no gap is open.
async fn gap_timer(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A frame over the size limit closes with 1009; any other socket error just ends the session.
fn classify_socket_error(err: axum::Error) -> CloseReason {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => CloseReason::TooBig,
        _ => CloseReason::Normal,
    }
}
