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
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use nebula_wire::{Rev, Seq, ServerEvent, User};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use tungstenite::Message as WsMessage;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::budget::FrameBudget;
use super::close::CloseReason;
use super::events::{PendingSend, SendOutcome};
use super::outbound::{Io, Outbound, Position, count_delivered, record_latency};
use super::registry::ConnectionPermit;
use super::transport::Transport;
use crate::auth::SocketWatch;
use crate::bus::encode;
use crate::error::ApiError;
use crate::hub::{ConnId, Frame};
use crate::presence::UserPresence;
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
/// Messages read from the database per query when replaying.
const REPLAY_PAGE: i64 = 500;
/// How long a closing connection waits for the client to answer its close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A room's delivery exceptions (usually none: the room then has no entry at all, and the
/// fan-out writes its events directly).
#[derive(Debug, Default)]
struct Held {
    /// Frames that arrived ahead of a missing predecessor, by rev.
    frames: BTreeMap<Rev, Frame>,
    /// (seq, rev) of messages a replay sent in a version newer than the position it ended at:
    /// live changes of those messages up to that rev are older news, skipped (the position
    /// still moves past them). Dropped once the position passes the rev.
    ahead: Vec<(Seq, Rev)>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.ahead.is_empty()
    }
}

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
    /// Per room, what delivery must still account for: frames received ahead of a missing
    /// predecessor, and messages a replay showed in a newer version than its position.
    held: HashMap<Uuid, Held>,
    /// When the oldest open gap stops being waited for and is read from the database.
    gap_deadline: Option<tokio::time::Instant>,
    strikes: u32,
    strike_window_start: Instant,
    last_heard: Instant,
    /// Frames other than messages this connection may still send (see `budget`).
    pub(super) budget: FrameBudget,
    /// This connection's place in its user's connection cap.
    _permit: ConnectionPermit,
    /// Cancelled when the account's tokens of this one's generation stop counting.
    standing: SocketWatch,
    /// Counts this connection as its user's, cluster-wide, until it ends (no Web Push for
    /// direct messages and calls meanwhile); taken as soon as the session is over.
    user_presence: Option<UserPresence>,
}

impl Connection {
    /// Serves one upgraded socket until it closes.
    pub async fn run(
        io: Io,
        state: AppState,
        user: User,
        (permit, standing): (ConnectionPermit, SocketWatch),
        token_expires_at: i64,
        initial_room: Option<(Uuid, Option<Seq>, Option<Rev>)>,
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
            standing,
            user_presence: None,
            state,
        };
        metrics::gauge!("nebula_ws_connections").increment(1.0);
        tracing::debug!(conn = connection.id, user_id = %connection.user.id, "websocket open");
        connection
            .state
            .calls
            .register(connection.user.id, connection.id, connection.out.clone());
        connection.state.user_events.register(
            connection.user.id,
            connection.id,
            connection.out.clone(),
        );
        connection.user_presence = Some(UserPresence::open(
            connection.state.presence.clone(),
            &connection.user,
        ));
        let reason = connection.serve(token_expires_at, initial_room).await;
        connection.user_presence = None;
        // Its calls end now, not after the closing handshake.
        connection
            .state
            .calls
            .unregister(&connection.user, connection.id);
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
    /// and copy per received frame, which showed in the ingest profile. Refusals (`reject`),
    /// the wait for a far-behind socket and a full writer queue are boxed too: with them
    /// inline the task was 4,184 bytes, without them 3,552 (`size_of_val` of the spawned
    /// future, release build).
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
        // the waiter under the token's lock.
        let (shutdown_token, out) = (self.state.shutdown.clone(), self.out.clone());
        let revoked_token = self.standing.revoked().clone();
        let shutdown = shutdown_token.cancelled();
        let revoked = revoked_token.cancelled();
        let overflowed = out.overflowed().cancelled();
        let backlogged = out.backlogged();
        tokio::pin!(shutdown, overflowed, backlogged, revoked);
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
                () = &mut revoked => return CloseReason::TokenRevoked,
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

    /// Writes one handed-over event, keeping a room's messages and changes in rev order,
    /// gap-free and duplicate-free (so `message.new` arrives in seq order: a message takes its
    /// seq and its rev in the same commit).
    ///
    /// A frame whose predecessor has not arrived yet (events of different nodes cross on the
    /// bus) is held back, and the fan-out stops writing the room directly; if the gap is still
    /// open after `BUS_GAP_WAIT_MS`, the room is brought up to date from the database (see
    /// `repair_gaps`).
    async fn deliver(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let Some(cursor) = self.out.cursor(frame.room_id) else {
            return Ok(());
        };
        let Some(rev) = frame.rev else {
            return self.write_frame(frame).await;
        };
        if rev <= cursor.at.rev {
            return Ok(()); // already sent (replay, repair, or a duplicate publication)
        }
        let room_id = frame.room_id;
        if rev > cursor.at.rev + 1 {
            self.out.set_direct(room_id, false);
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
        self.write_frame(frame).await?;
        self.release_held(room_id).await
    }

    /// Drops what was held back for a room (its subscription starts over).
    pub(super) fn forget_held(&mut self, room_id: Uuid) {
        self.held.remove(&room_id);
    }

    /// Lets the fan-out write a room directly again unless something is held for it.
    pub(super) fn resume_direct(&mut self, room_id: Uuid) {
        if self.held.get(&room_id).is_none_or(Held::is_empty) {
            self.held.remove(&room_id);
            self.out.set_direct(room_id, true);
        }
    }

    /// Writes a frame and does its bookkeeping.
    async fn write_frame(&mut self, frame: Frame) -> Result<(), CloseReason> {
        if let Some(rev) = frame.rev {
            self.out.advance(&frame);
            if self.superseded(&frame, rev) {
                return Ok(());
            }
        }
        // A traced frame that waited for this task: its write is a span of the trace too.
        let span = match &frame.trace {
            Some(parent) => {
                let span = tracing::info_span!("ws.write", kind = frame.kind);
                nebula_notifier::otel::set_parent_from(&span, parent);
                span
            }
            None => tracing::Span::none(),
        };
        self.send_bytes(&frame.text).instrument(span).await?;
        count_delivered(frame.kind, 1);
        record_latency(&frame);
        if frame.member_left == Some(self.user.id) {
            self.drop_subscription(frame.room_id);
        }
        Ok(())
    }

    /// Whether a replay already sent a newer version of this frame's message (see
    /// `Held::ahead`); forgets what the position, now at `rev`, has passed.
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
        skip
    }

    /// Sends held frames that now follow on, dropping any the position has passed; once
    /// nothing is held, the fan-out writes the room directly again.
    async fn release_held(&mut self, room_id: Uuid) -> Result<(), CloseReason> {
        loop {
            let Some(cursor) = self.out.cursor(room_id) else {
                self.held.remove(&room_id);
                return Ok(());
            };
            let Some(held) = self.held.get_mut(&room_id) else {
                return Ok(());
            };
            let Some(entry) = held.frames.first_entry() else {
                self.resume_direct(room_id);
                return Ok(());
            };
            let rev = *entry.key();
            if rev > cursor.at.rev + 1 {
                return Ok(()); // still a gap
            }
            let frame = entry.remove();
            if rev == cursor.at.rev + 1 {
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
            let (Some(cursor), Some(first)) = (
                self.out.cursor(room_id),
                self.held
                    .get(&room_id)
                    .and_then(|held| held.frames.keys().next().copied()),
            ) else {
                continue;
            };
            if first > cursor.at.rev + 1 {
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
                let to = Position {
                    seq: last_seq.max(cursor.at.seq),
                    rev: last_rev.max(first - 1),
                };
                self.catch_up(room_id, cursor.at, to).await?;
                self.out.set_position(room_id, to);
            }
            self.release_held(room_id).await?;
        }
        Ok(())
    }

    /// Brings a room from `from` to `to` (a last seq and rev read together from the database)
    /// with stored messages: `message.new` for every seq in `from.seq < seq <= to.seq`, in seq
    /// order, then `message.updated` for every older message (`seq <= from.seq`) whose latest
    /// change is in `from.rev < rev <= to.rev`, in rev order. Each message goes in the version
    /// the database holds; a new one read in a version beyond `to.rev` is remembered so that
    /// the live changes it already includes are skipped. Changes of older messages beyond
    /// `to.rev` arrive live. The caller moves the room's position to `to`.
    pub(super) async fn catch_up(
        &mut self,
        room_id: Uuid,
        from: Position,
        to: Position,
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
                count_delivered("message.new", 1);
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
                count_delivered("message.updated", 1);
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
    ///
    /// Boxed (an allocation only when a frame is refused): the error event held across the
    /// write would otherwise add 0.7 KiB to every path that can refuse, and so to every
    /// connection's resting task (see `serve`).
    pub(super) fn reject(
        &mut self,
        err: ApiError,
        reference: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Result<(), CloseReason>> + Send + '_>> {
        Box::pin(async move {
            if self.strike_window_start.elapsed() > STRIKE_WINDOW {
                self.strike_window_start = Instant::now();
                self.strikes = 0;
            }
            self.strikes += 1;
            if self.strikes > MAX_STRIKES {
                return Err(CloseReason::Flooding);
            }
            self.send_event(&err.ws_error(reference)).await
        })
    }

    pub(super) async fn send_event(&mut self, event: &ServerEvent) -> Result<(), CloseReason> {
        let bytes = encode(event);
        self.send_bytes(&bytes).await
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
            // Boxed: rare (a client far behind), and its timer would sit in every path that
            // writes (see `serve`).
            Box::pin(self.write_backlog()).await?;
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
        self.state.calls.unregister(&self.user, self.id);
        self.state.user_events.unregister(self.user.id, self.id);
        for room_id in self.out.rooms() {
            self.drop_subscription(room_id);
        }
        self.out.close();
        metrics::gauge!("nebula_ws_connections").decrement(1.0);
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
fn classify_socket_error(err: tungstenite::Error) -> CloseReason {
    match err {
        tungstenite::Error::Capacity(_) => CloseReason::TooBig,
        _ => CloseReason::Normal,
    }
}
