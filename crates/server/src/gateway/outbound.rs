//! The write side of one WebSocket, shared by its connection task and the hub's fan-out.
//!
//! Delivering an event used to mean waking the connection's task, which then copied the frame
//! into tungstenite's buffer and wrote it: a task switch, a cross-thread wake-up and a copy per
//! recipient, costing more than the `write` itself. Now the fan-out writes an event straight to
//! the socket when the socket can take it and the connection has nothing else pending for it
//! ([`Outbound::offer`]): one non-blocking vectored `write` of a two-byte header and the
//! shared payload, no copy, no wake-up. What cannot go out at once waits in a small backlog
//! that the connection's task writes when the socket is writable again; anything that needs
//! the task's judgement (a gap in revs, a subscription being set up, a `member.left`) is handed
//! to the task's queue, after which every event of the connection goes through the queue until
//! the task has caught up, so order is kept.
//!
//! Per-room delivery cursors live here, under the same lock as the socket, because both the
//! fan-out and the task need them to decide what to write.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use metrics::{Counter, Histogram};
use nebula_wire::{Rev, Seq, ServerEvent};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hub::Frame;

/// How far a room has been brought on a socket: `message.new` for every seq up to `seq`, and
/// every change (creations, edits, deletes, reactions) up to `rev`. Live messages and changes
/// go out in rev order, so `message.new` goes out in seq order too (a message takes its seq
/// and its rev in one commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub seq: Seq,
    pub rev: Rev,
}

impl Position {
    /// Moves past a frame written to the socket.
    fn advance(&mut self, frame: &Frame) {
        if let Some(rev) = frame.rev {
            self.rev = self.rev.max(rev);
            if let Some(seq) = frame.seq
                && frame.kind == "message.new"
            {
                self.seq = self.seq.max(seq);
            }
        }
    }
}

/// Where a connection is in one room's stream of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: Position,
    /// Whether the fan-out may write this room's events itself. Off while the subscription is
    /// being set up and while the task holds changes behind a gap or must check them against
    /// a replay: then the task decides.
    pub direct: bool,
}

/// What became of an event offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Written to the socket (or to its backlog).
    Written,
    /// Handed to the connection's task.
    Queued,
    /// Not for this connection (not subscribed, already delivered, or closing).
    Dropped,
    /// A low-value event skipped because the connection is behind.
    Shed,
    /// The connection cannot keep up: it has been told to go.
    Overflowed,
}

/// Where [`Outbound::route`] sends a live event.
enum Route {
    /// Straight to the socket (or its backlog).
    Direct,
    /// To the connection's task.
    Task,
    /// Nowhere: dropped or shed.
    Done(Offered),
}

/// What became of the events offered by [`Outbound::offer_all`], counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfferedAll {
    /// Written to the socket or its backlog.
    pub written: usize,
    /// Handed to the connection's task.
    pub queued: usize,
    /// Low-value events skipped because the connection is behind.
    pub shed: usize,
    /// Not for this connection, or the connection is going.
    pub dropped: usize,
}

impl OfferedAll {
    fn add(&mut self, offered: Offered) {
        match offered {
            Offered::Written => self.written += 1,
            Offered::Queued => self.queued += 1,
            Offered::Shed => self.shed += 1,
            Offered::Dropped | Offered::Overflowed => self.dropped += 1,
        }
    }
}

/// Most backlog pieces handed to one `writev`.
const WRITEV_MAX: usize = 64;

/// A piece of the backlog: a frame header kept inline (a frame waiting costs no allocation of
/// its own: its payload is the event's shared bytes), or bytes.
#[derive(Debug)]
enum Chunk {
    Header { bytes: [u8; 10], start: u8, end: u8 },
    Bytes(Bytes),
}

impl Chunk {
    fn header(header: &[u8]) -> Chunk {
        let mut bytes = [0u8; 10];
        bytes[..header.len()].copy_from_slice(header);
        Chunk::Header {
            bytes,
            start: 0,
            end: header.len() as u8,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Header { bytes, start, end } => &bytes[usize::from(*start)..usize::from(*end)],
            Chunk::Bytes(bytes) => bytes,
        }
    }

    /// Drops the first `n` bytes (fewer than it holds).
    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Header { start, .. } => *start += n as u8,
            Chunk::Bytes(bytes) => bytes::Buf::advance(bytes, n),
        }
    }
}

/// Opcodes of the frames the server writes itself.
#[derive(Debug, Clone, Copy)]
pub enum Opcode {
    Text = 0x1,
}

/// The upgraded connection as hyper hands it over.
pub type Io = TokioIo<Upgraded>;

/// The shared write side of one connection. Cheap to share (`Arc`).
pub struct Outbound {
    state: Mutex<State>,
    /// The connection's task: events it must handle itself.
    queue: mpsc::Sender<Frame>,
    /// Raised when the backlog needs the task (a write did not complete).
    backlogged: Notify,
    /// Cancelled when the connection falls too far behind: its task closes it (4008).
    overflowed: CancellationToken,
    /// Frames (queued or in the backlog) a connection may have outstanding.
    capacity: usize,
}

struct State {
    /// The socket. Reads (the task's) and writes (anyone's) take turns under this lock.
    io: Io,
    /// Subscribed rooms.
    rooms: HashMap<Uuid, Cursor>,
    /// Bytes accepted but not yet written, in order.
    backlog: VecDeque<Chunk>,
    /// Frames in the backlog (for the high-water mark and the overflow limit).
    backlog_frames: usize,
    /// Events handed to the task and not yet handled by it: while any are, new events go the
    /// same way, so nothing overtakes them.
    queued: usize,
    /// No more data frames: the connection is closing.
    closed: bool,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    pub fn new(
        io: Io,
        queue: mpsc::Sender<Frame>,
        overflowed: CancellationToken,
        capacity: usize,
    ) -> Self {
        Outbound {
            state: Mutex::new(State {
                io,
                rooms: HashMap::new(),
                backlog: VecDeque::new(),
                backlog_frames: 0,
                queued: 0,
                closed: false,
            }),
            queue,
            backlogged: Notify::new(),
            overflowed,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Offers a live event (see the module docs). Never blocks.
    pub fn offer(&self, frame: &Frame) -> Offered {
        let mut state = self.lock();
        match self.route(&mut state, frame) {
            Route::Direct => self.write_frame(&mut state, Opcode::Text, &frame.text, true),
            Route::Task => self.hand_over(&mut state, frame),
            Route::Done(offered) => offered,
        }
    }

    /// Offers several live events of one room, in order, under one lock: those that go
    /// straight out leave in one vectored `write` (a batch of commits reaches each socket in
    /// one system call instead of one per message). Anything handed to the task goes after
    /// what was written before it, so order is kept exactly as by [`Outbound::offer`] each.
    /// `user_id` is the connection's user: frames that skip it are not offered. Each frame
    /// written to the socket (or its backlog) adds one to its entry in `written`.
    pub fn offer_all(&self, frames: &[Frame], user_id: Uuid, written: &mut [usize]) -> OfferedAll {
        let mut counts = OfferedAll::default();
        let mut state = self.lock();
        let mut direct: Vec<usize> = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            if frame.skip_user == Some(user_id) {
                continue;
            }
            match self.route(&mut state, frame) {
                Route::Direct => direct.push(i),
                Route::Task => {
                    counts.written += self.write_frames(&mut state, frames, &direct, written);
                    direct.clear();
                    counts.add(self.hand_over(&mut state, frame));
                }
                Route::Done(offered) => counts.add(offered),
            }
        }
        counts.written += self.write_frames(&mut state, frames, &direct, written);
        counts
    }

    /// Where a live event goes on this connection; moves the room's cursor past it when it
    /// goes straight to the socket.
    fn route(&self, state: &mut State, frame: &Frame) -> Route {
        if state.closed {
            return Route::Done(Offered::Dropped);
        }
        let Some(&cursor) = state.rooms.get(&frame.room_id) else {
            // Not subscribed here, unless the task is about to register the room: it decides.
            return if state.queued > 0 {
                Route::Task
            } else {
                Route::Done(Offered::Dropped)
            };
        };
        let direct = state.queued == 0
            && cursor.direct
            && frame.member_left.is_none()
            && frame
                .rev
                .is_none_or(|rev| rev <= cursor.at.rev.saturating_add(1));
        if !direct {
            return Route::Task;
        }
        if let Some(rev) = frame.rev {
            if rev <= cursor.at.rev {
                return Route::Done(Offered::Dropped); // already delivered (replay, repair, duplicate)
            }
            if let Some(cursor) = state.rooms.get_mut(&frame.room_id) {
                cursor.at.advance(frame);
            }
        }
        if frame.is_sheddable() && state.backlog_frames >= self.capacity / 2 {
            return Route::Done(Offered::Shed);
        }
        Route::Direct
    }

    /// Live frames bound for the socket (`frames[i]` for each `i` in `which`), written
    /// together: as many as fit in one vectored write go at once, the rest (and any remainder
    /// of a partial write) wait in the backlog. Adds one to `written[i]` for each, and returns
    /// how many.
    fn write_frames(
        &self,
        state: &mut State,
        frames: &[Frame],
        which: &[usize],
        written: &mut [usize],
    ) -> usize {
        match which {
            [] => return 0,
            [only] => {
                let offered = self.write_frame(state, Opcode::Text, &frames[*only].text, true);
                if offered != Offered::Written {
                    return 0;
                }
                written[*only] += 1;
                return 1;
            }
            _ => {}
        }
        let headers: Vec<([u8; 10], usize)> = which
            .iter()
            .map(|&i| header(Opcode::Text, frames[i].text.len()))
            .collect();
        let mut sent = 0; // frames of `which` written whole
        if state.backlog.is_empty() {
            // One write per WRITEV_MAX slices; stop at the first the socket does not take whole.
            while sent < which.len() {
                let upto = (sent + WRITEV_MAX / 2).min(which.len());
                let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
                let mut total = 0;
                for (k, n) in (sent..upto).enumerate() {
                    let (header, len) = &headers[n];
                    let text = &frames[which[n]].text;
                    slices[2 * k] = IoSlice::new(&header[..*len]);
                    slices[2 * k + 1] = IoSlice::new(text);
                    total += len + text.len();
                }
                match try_write(&mut state.io, &slices[..2 * (upto - sent)]) {
                    Ok(n) if n == total => sent = upto,
                    Ok(mut n) => {
                        BACKLOGGED[Backlogged::Partial as usize].increment(1);
                        // Whole frames first, then what is left of the one cut short.
                        while n >= headers[sent].1 + frames[which[sent]].text.len() {
                            n -= headers[sent].1 + frames[which[sent]].text.len();
                            sent += 1;
                        }
                        let (header, len) = headers[sent];
                        let text = &frames[which[sent]].text;
                        if n < len {
                            self.push(state, Chunk::header(&header[n..len]));
                            self.push(state, Chunk::Bytes(text.clone()));
                        } else {
                            self.push(state, Chunk::Bytes(text.slice(n - len..)));
                        }
                        state.backlog_frames += 1;
                        sent += 1;
                        break;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        BACKLOGGED[Backlogged::WouldBlock as usize].increment(1);
                        break;
                    }
                    Err(_) => {
                        // The peer is gone; the task notices on its next read.
                        for &i in &which[..sent] {
                            written[i] += 1;
                        }
                        state.closed = true;
                        self.backlogged.notify_one();
                        return sent;
                    }
                }
            }
        } else {
            BACKLOGGED[Backlogged::Behind as usize].increment(which.len() as u64);
        }
        for n in sent..which.len() {
            let (header, len) = headers[n];
            self.push(state, Chunk::header(&header[..len]));
            self.push(state, Chunk::Bytes(frames[which[n]].text.clone()));
            state.backlog_frames += 1;
        }
        for &i in which {
            written[i] += 1;
        }
        if sent < which.len() || !state.backlog.is_empty() {
            self.backlogged.notify_one();
            if state.backlog_frames > self.capacity {
                // Nothing more for it: the connection is let go (its task sees `overflowed`).
                state.closed = true;
                self.overflow();
            }
        }
        which.len()
    }

    /// Hands an event to the task's queue; the queue full means the connection is too slow.
    fn hand_over(&self, state: &mut State, frame: &Frame) -> Offered {
        if frame.is_sheddable() && self.queue.capacity() <= self.queue.max_capacity() / 2 {
            return Offered::Shed;
        }
        match self.queue.try_send(frame.clone()) {
            Ok(()) => {
                state.queued += 1;
                Offered::Queued
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                state.closed = true;
                self.overflow()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offered::Dropped,
        }
    }

    /// The task handled one event it was handed.
    pub fn handled(&self) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(1);
    }

    /// Writes a data frame from the task (an answer, a replayed message, …), after anything
    /// already accepted; `false` when the connection is closing. Never overflows: the task
    /// waits for the backlog itself when it is behind (see [`Outbound::is_behind`]).
    pub fn send(&self, payload: &Bytes) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        self.write_frame(&mut state, Opcode::Text, payload, false);
        true
    }

    /// Whether half the connection's capacity waits in the backlog: the task then lets the
    /// socket catch up before writing more, leaving the other half to live events.
    pub fn is_behind(&self) -> bool {
        self.lock().backlog_frames >= self.capacity / 2
    }

    /// Writes bytes that are already a whole frame (tungstenite's control frames: pongs, the
    /// closing handshake), after anything already accepted. Allowed while closing.
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        if state.backlog.is_empty() {
            match try_write(&mut state.io, &[IoSlice::new(bytes)]) {
                Ok(written) if written == bytes.len() => return Ok(()),
                Ok(written) => {
                    let rest = Bytes::copy_from_slice(&bytes[written..]);
                    self.push(&mut state, Chunk::Bytes(rest));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.push(&mut state, Chunk::Bytes(Bytes::copy_from_slice(bytes)));
                }
                Err(err) => return Err(err),
            }
        } else {
            self.push(&mut state, Chunk::Bytes(Bytes::copy_from_slice(bytes)));
        }
        self.backlogged.notify_one();
        Ok(())
    }

    /// One frame: header and payload in one vectored write when nothing is waiting before it.
    /// A live event (`live`) that finds the backlog over capacity lets the connection go.
    fn write_frame(
        &self,
        state: &mut State,
        opcode: Opcode,
        payload: &Bytes,
        live: bool,
    ) -> Offered {
        let (header, header_len) = header(opcode, payload.len());
        let header = &header[..header_len];
        if state.backlog.is_empty() {
            let slices = [IoSlice::new(header), IoSlice::new(payload)];
            match try_write(&mut state.io, &slices) {
                Ok(written) if written == header.len() + payload.len() => {
                    return Offered::Written;
                }
                Ok(written) if written < header.len() => {
                    BACKLOGGED[Backlogged::Partial as usize].increment(1);
                    self.push(state, Chunk::header(&header[written..]));
                    self.push(state, Chunk::Bytes(payload.clone()));
                }
                Ok(written) => {
                    BACKLOGGED[Backlogged::Partial as usize].increment(1);
                    self.push(state, Chunk::Bytes(payload.slice(written - header.len()..)));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    BACKLOGGED[Backlogged::WouldBlock as usize].increment(1);
                    self.push(state, Chunk::header(header));
                    self.push(state, Chunk::Bytes(payload.clone()));
                }
                Err(_) => {
                    // The peer is gone; the task notices on its next read.
                    state.closed = true;
                    self.backlogged.notify_one();
                    return Offered::Dropped;
                }
            }
        } else {
            BACKLOGGED[Backlogged::Behind as usize].increment(1);
            self.push(state, Chunk::header(header));
            self.push(state, Chunk::Bytes(payload.clone()));
        }
        state.backlog_frames += 1;
        self.backlogged.notify_one();
        if live && state.backlog_frames > self.capacity {
            // Nothing more for it: the connection is let go (its task sees `overflowed`).
            state.closed = true;
            return self.overflow();
        }
        Offered::Written
    }

    fn push(&self, state: &mut State, chunk: Chunk) {
        state.backlog.push_back(chunk);
    }

    fn overflow(&self) -> Offered {
        if !self.overflowed.is_cancelled() {
            metrics::counter!("nebula_ws_outbound_overflows_total").increment(1);
        }
        self.overflowed.cancel();
        Offered::Overflowed
    }

    /// Resolves when the backlog has something to write (after [`Outbound::write_backlog`]
    /// left some, or a direct write was partial).
    pub async fn backlogged(&self) {
        self.backlogged.notified().await;
    }

    /// Whether anything waits to be written.
    pub fn has_backlog(&self) -> bool {
        !self.lock().backlog.is_empty()
    }

    /// Writes the backlog out, waiting for the socket to take it. `Ok(true)` once it is empty.
    ///
    /// Only this (the connection's task) writes while a backlog exists; the fan-out only
    /// appends to it. So the waker registered here is never replaced by the fan-out's
    /// non-blocking attempts.
    pub async fn write_backlog(&self) -> io::Result<bool> {
        poll_fn(|cx| {
            let mut state = self.lock();
            loop {
                let State { io, backlog, .. } = &mut *state;
                if backlog.is_empty() {
                    state.backlog_frames = 0;
                    state.backlog.shrink_to_fit();
                    return Poll::Ready(Ok(true));
                }
                let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
                let mut used = 0;
                for (slot, chunk) in slices.iter_mut().zip(backlog.iter()) {
                    *slot = IoSlice::new(chunk.as_slice());
                    used += 1;
                }
                let mut written = match Pin::new(io).poll_write_vectored(cx, &slices[..used]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(written)) => written,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => return Poll::Pending,
                };
                while written > 0 {
                    let Some(front) = backlog.front_mut() else {
                        break;
                    };
                    let len = front.as_slice().len();
                    if written >= len {
                        written -= len;
                        backlog.pop_front();
                    } else {
                        front.advance(written);
                        written = 0;
                    }
                }
            }
        })
        .await
    }

    /// Reads from the socket (tungstenite's side, through `transport::Transport`).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_read(cx, buf)
    }

    /// Starts a room's subscription: nothing is written to it directly until the task says.
    pub fn open_room(&self, room_id: Uuid) {
        self.lock().rooms.insert(
            room_id,
            Cursor {
                at: Position::default(),
                direct: false,
            },
        );
    }

    /// Records where the task brought a room (a replay's end).
    pub fn set_position(&self, room_id: Uuid, at: Position) {
        if let Some(cursor) = self.lock().rooms.get_mut(&room_id) {
            cursor.at = at;
        }
    }

    /// Moves a room's position past a frame the task wrote.
    pub fn advance(&self, frame: &Frame) {
        if let Some(cursor) = self.lock().rooms.get_mut(&frame.room_id) {
            cursor.at.advance(frame);
        }
    }

    /// Lets the fan-out write a room's events itself, or stops it.
    pub fn set_direct(&self, room_id: Uuid, direct: bool) {
        if let Some(cursor) = self.lock().rooms.get_mut(&room_id) {
            cursor.direct = direct;
        }
    }

    /// A room's cursor, `None` when not subscribed.
    pub fn cursor(&self, room_id: Uuid) -> Option<Cursor> {
        self.lock().rooms.get(&room_id).copied()
    }

    /// Forgets a room; `false` if it was not subscribed.
    pub fn remove_room(&self, room_id: Uuid) -> bool {
        self.lock().rooms.remove(&room_id).is_some()
    }

    /// The subscribed rooms.
    pub fn rooms(&self) -> Vec<Uuid> {
        self.lock().rooms.keys().copied().collect()
    }

    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    /// No more data frames (control frames of the closing handshake still go).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    pub fn overflowed(&self) -> &CancellationToken {
        &self.overflowed
    }
}

/// One delivery counter per room event type, and one for anything else ("other"), resolved
/// once: this runs for every event written, where a registry lookup per call would be the most
/// expensive part of a delivery.
static DELIVERED: LazyLock<[Counter; ServerEvent::ROOM_EVENT_TYPES.len() + 1]> =
    LazyLock::new(|| {
        std::array::from_fn(|i| {
            let kind = ServerEvent::ROOM_EVENT_TYPES
                .get(i)
                .copied()
                .unwrap_or("other");
            metrics::counter!("nebula_ws_events_delivered_total", "type" => kind)
        })
    });
static DELIVERY_LATENCY: LazyLock<Histogram> =
    LazyLock::new(|| metrics::histogram!("nebula_message_delivery_latency_seconds"));

/// Counts `n` events of `kind` written to sockets.
pub fn count_delivered(kind: &str, n: u64) {
    let index = ServerEvent::ROOM_EVENT_TYPES
        .iter()
        .position(|known| *known == kind)
        .unwrap_or(ServerEvent::ROOM_EVENT_TYPES.len());
    DELIVERED[index].increment(n);
}

/// Records how long a live message took from its sender's request to a socket.
pub fn record_latency(frame: &Frame) {
    if let Some(latency) = frame.received_at.and_then(|at| at.elapsed().ok()) {
        DELIVERY_LATENCY.record(latency.as_secs_f64());
    }
}

/// Frames that could not be written at once and waited in a backlog.
/// Why: the socket took nothing (`would_block`), part of the frame (`partial`), or frames
/// were already waiting (`behind`).
static BACKLOGGED: LazyLock<[Counter; 3]> = LazyLock::new(|| {
    ["would_block", "partial", "behind"]
        .map(|reason| metrics::counter!("nebula_ws_backlogged_frames_total", "reason" => reason))
});

#[derive(Clone, Copy)]
enum Backlogged {
    WouldBlock,
    Partial,
    Behind,
}

/// One write attempt that never waits: a socket that cannot take anything now is
/// `WouldBlock`. No waker is registered that matters (see `write_backlog`).
///
/// The attempt is outside tokio's cooperative budget: a fan-out writes to a whole room's
/// sockets in one poll of its task, and once the task's budget (128 operations) is spent every
/// further write would be refused as not ready without the kernel being asked. Measured in a
/// 1000-member room, that sent 85 % of deliveries through the backlog and a task wake-up.
fn try_write(io: &mut Io, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    let mut cx = Context::from_waker(Waker::noop());
    let write = tokio::task::coop::unconstrained(poll_fn(|cx| {
        Pin::new(&mut *io).poll_write_vectored(cx, slices)
    }));
    match pin!(write).poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// A server frame's header (FIN set, no mask): up to 10 bytes, and how many are used.
fn header(opcode: Opcode, len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x80 | opcode as u8;
    if len < 126 {
        header[1] = len as u8;
        (header, 2)
    } else if let Ok(len) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

/// Connections on real loopback sockets, for tests of the fan-out.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use hyper::service::service_fn;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// An outbound on a loopback connection upgraded by hyper (as the server's are), with
    /// tiny kernel buffers so a client that does not read is felt after a few KiB; the
    /// client's end, and the task's queue.
    /// A connection whose server side has a 4 KiB send buffer (so tests fill it quickly).
    pub(crate) async fn outbound(
        capacity: usize,
    ) -> (Arc<Outbound>, TcpStream, mpsc::Receiver<Frame>) {
        outbound_with_send_buffer(capacity, Some(4096)).await
    }

    /// The same with the kernel's default send buffer (`None`) or the given one.
    pub(crate) async fn outbound_with_send_buffer(
        capacity: usize,
        send_buffer: Option<usize>,
    ) -> (Arc<Outbound>, TcpStream, mpsc::Receiver<Frame>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (upgraded_tx, upgraded_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (server, _) = listener.accept().await.expect("accept");
            if let Some(size) = send_buffer {
                socket2::SockRef::from(&server)
                    .set_send_buffer_size(size)
                    .expect("SO_SNDBUF");
            }
            server.set_nodelay(true).expect("TCP_NODELAY");
            let upgraded_tx = std::sync::Mutex::new(Some(upgraded_tx));
            let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                let on_upgrade = hyper::upgrade::on(&mut request);
                if let Some(tx) = upgraded_tx.lock().expect("lock").take() {
                    tokio::spawn(async move {
                        let _ = tx.send(on_upgrade.await.expect("upgrade"));
                    });
                }
                async {
                    let mut response = hyper::Response::new(http_body_util::Empty::<Bytes>::new());
                    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                    response
                        .headers_mut()
                        .insert("upgrade", hyper::header::HeaderValue::from_static("test"));
                    response.headers_mut().insert(
                        "connection",
                        hyper::header::HeaderValue::from_static("upgrade"),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .with_upgrades()
                .await;
        });
        let mut client = TcpStream::connect(addr).await.expect("connect");
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .expect("SO_RCVBUF");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        client
            .write_all(
                b"GET / HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: test\r\n\r\n",
            )
            .await
            .expect("request");
        // Read the 101 response to its end.
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).await.expect("response");
            response.push(byte[0]);
        }
        let upgraded = upgraded_rx.await.expect("upgraded");
        let (queue, received) = mpsc::channel(capacity);
        let out = Outbound::new(
            TokioIo::new(upgraded),
            queue,
            CancellationToken::new(),
            capacity,
        );
        (Arc::new(out), client, received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::FrameData;

    /// A frame at `rev`; for messages, the message created at that rev (seq = rev).
    fn frame(room_id: Uuid, rev: Option<Rev>, kind: &'static str) -> Frame {
        change(room_id, rev, rev, kind)
    }

    fn change(room_id: Uuid, seq: Option<Seq>, rev: Option<Rev>, kind: &'static str) -> Frame {
        with_text(room_id, seq, rev, kind, Bytes::from(vec![b'x'; 1000]))
    }

    fn with_text(
        room_id: Uuid,
        seq: Option<Seq>,
        rev: Option<Rev>,
        kind: &'static str,
        text: Bytes,
    ) -> Frame {
        Frame::from(FrameData {
            room_id,
            seq,
            rev,
            skip_user: None,
            member_left: None,
            member_rev: 0,
            kind,
            received_at: None,
            text,
            trace: None,
        })
    }

    #[tokio::test]
    async fn events_go_straight_out_in_order_and_gaps_go_to_the_task() {
        let (out, _client, mut queue) = testing::outbound(64).await;
        let room = Uuid::new_v4();
        assert_eq!(
            out.offer(&frame(room, Some(1), "message.new")),
            Offered::Dropped,
            "not subscribed"
        );
        out.open_room(room);
        assert_eq!(
            out.offer(&frame(room, Some(1), "message.new")),
            Offered::Queued,
            "being set up"
        );
        out.handled();
        out.set_position(room, Position { seq: 1, rev: 1 });
        out.set_direct(room, true);
        assert_eq!(
            out.offer(&frame(room, Some(1), "message.new")),
            Offered::Dropped,
            "a duplicate"
        );
        assert_eq!(
            out.offer(&frame(room, Some(2), "message.new")),
            Offered::Written
        );
        assert_eq!(out.offer(&frame(room, None, "typing")), Offered::Written);
        assert_eq!(
            out.offer(&frame(room, Some(4), "message.new")),
            Offered::Queued,
            "a gap"
        );
        // While the task has something, everything goes its way (order is kept).
        assert_eq!(
            out.offer(&frame(room, Some(3), "message.new")),
            Offered::Queued
        );
        assert_eq!(queue.try_recv().ok().and_then(|f| f.rev), Some(1));
        assert_eq!(queue.try_recv().ok().and_then(|f| f.rev), Some(4));
        assert_eq!(queue.try_recv().ok().and_then(|f| f.rev), Some(3));
    }

    #[tokio::test]
    async fn changes_of_older_messages_follow_the_rev_and_leave_the_seq() {
        let (out, _client, mut queue) = testing::outbound(64).await;
        let room = Uuid::new_v4();
        out.open_room(room);
        out.set_position(room, Position { seq: 5, rev: 7 });
        out.set_direct(room, true);
        // An edit of message 2 at rev 8: written, the seq cursor stays at 5.
        let edit = change(room, Some(2), Some(8), "message.updated");
        assert_eq!(out.offer(&edit), Offered::Written);
        assert_eq!(
            out.cursor(room).map(|cursor| cursor.at),
            Some(Position { seq: 5, rev: 8 })
        );
        assert_eq!(out.offer(&edit), Offered::Dropped, "the same change again");
        // The next message takes seq 6 at rev 9.
        let next = change(room, Some(6), Some(9), "message.new");
        assert_eq!(out.offer(&next), Offered::Written);
        assert_eq!(
            out.cursor(room).map(|cursor| cursor.at),
            Some(Position { seq: 6, rev: 9 })
        );
        // A change two revs ahead waits for the task.
        assert_eq!(
            out.offer(&frame(room, Some(11), "message.updated")),
            Offered::Queued
        );
        assert_eq!(queue.try_recv().ok().and_then(|f| f.rev), Some(11));
    }

    /// One fan-out writes to many sockets in one poll of its task; none of those writes may
    /// be refused because the task's cooperative budget ran out.
    #[tokio::test]
    async fn writes_are_not_limited_by_the_tasks_budget() {
        let (out, _client, _queue) = testing::outbound_with_send_buffer(1024, None).await;
        let room = Uuid::new_v4();
        out.open_room(room);
        out.set_direct(room, true);
        let small = with_text(room, None, None, "typing", Bytes::from_static(b"{}"));
        for n in 0..500 {
            assert_eq!(out.offer(&small), Offered::Written, "write {n}");
            assert!(!out.has_backlog(), "write {n} waited in the backlog");
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_shed_then_dropped() {
        let (out, _client, _queue) = testing::outbound(8).await;
        let room = Uuid::new_v4();
        out.open_room(room);
        out.set_direct(room, true);
        // Fill the kernel's buffers until writes wait in the backlog.
        let mut seq = 0;
        while !out.has_backlog() {
            seq += 1;
            assert_eq!(
                out.offer(&frame(room, Some(seq), "message.new")),
                Offered::Written
            );
            assert!(seq < 10_000, "the socket never filled up");
        }
        // Below half the capacity, everything still goes.
        for _ in 0..3 {
            seq += 1;
            assert_eq!(
                out.offer(&frame(room, Some(seq), "message.new")),
                Offered::Written
            );
        }
        assert_eq!(out.offer(&frame(room, None, "typing")), Offered::Shed);
        assert_eq!(out.offer(&frame(room, None, "presence")), Offered::Shed);
        assert!(!out.overflowed().is_cancelled(), "messages still fit");
        let mut outcome = Offered::Written;
        while outcome == Offered::Written {
            seq += 1;
            outcome = out.offer(&frame(room, Some(seq), "message.new"));
        }
        assert_eq!(outcome, Offered::Overflowed);
        assert!(out.overflowed().is_cancelled());
    }

    /// Frames that wait in the backlog (whole, or after a partial write) reach the client
    /// byte for byte and in order once the socket drains.
    #[tokio::test]
    async fn what_waits_in_the_backlog_goes_out_whole_and_in_order() {
        let (out, client, _queue) = testing::outbound(1_000_000).await;
        let room = Uuid::new_v4();
        out.open_room(room);
        out.set_direct(room, true);
        let mut sent = Vec::new();
        let mut after_backlog = 0;
        while after_backlog < 30 {
            // Sizes that take 2-, 4- and 10-byte headers.
            let size = [100, 700, 70_000][sent.len() % 3];
            let number = sent.len().to_string();
            let text = Bytes::from("0".repeat(size - number.len()) + &number);
            let frame = with_text(room, None, None, "message.new", text.clone());
            assert_eq!(out.offer(&frame), Offered::Written);
            sent.push(text);
            if out.has_backlog() {
                after_backlog += 1;
            }
        }
        drain_and_check(&out, client, &sent).await;
    }

    /// A batch offered together: what may go straight out is written (in order, in one go),
    /// a gap sends the rest to the task, frames skipping the user are not offered.
    #[tokio::test]
    async fn a_batch_goes_out_in_order_and_a_gap_sends_the_rest_to_the_task() {
        use tokio::io::AsyncReadExt;
        let (out, mut client, mut queue) = testing::outbound(64).await;
        let room = Uuid::new_v4();
        let me = Uuid::new_v4();
        out.open_room(room);
        out.set_position(room, Position { seq: 1, rev: 1 });
        out.set_direct(room, true);
        let mine = Frame::from(FrameData {
            room_id: room,
            seq: None,
            rev: None,
            skip_user: Some(me),
            member_left: None,
            member_rev: 0,
            kind: "typing",
            received_at: None,
            text: Bytes::from_static(b"{}"),
            trace: None,
        });
        let batch = [
            frame(room, Some(1), "message.new"), // a duplicate
            frame(room, Some(2), "message.new"),
            mine,
            frame(room, Some(3), "message.new"),
            frame(room, Some(5), "message.new"), // a gap: to the task, and all after it
            frame(room, Some(4), "message.new"),
        ];
        let mut written = vec![0; batch.len()];
        let offered = out.offer_all(&batch, me, &mut written);
        assert_eq!(
            offered,
            OfferedAll {
                written: 2,
                queued: 2,
                shed: 0,
                dropped: 1
            }
        );
        assert_eq!(written, [0, 1, 0, 1, 0, 0]);
        assert_eq!(queue.try_recv().ok().and_then(|f| f.rev), Some(5));
        assert_eq!(queue.try_recv().ok().and_then(|f| f.rev), Some(4));
        let expected = 2 * (4 + 1000);
        let mut stream = vec![0u8; expected];
        client.read_exact(&mut stream).await.expect("two frames");
        assert!(
            stream
                .chunks(4 + 1000)
                .all(|frame| frame[4..].iter().all(|b| *b == b'x'))
        );
        assert_eq!(
            out.cursor(room).map(|cursor| cursor.at),
            Some(Position { seq: 3, rev: 3 })
        );
    }

    /// Batches larger than one `writev` and larger than the socket takes reach the client
    /// byte for byte and in order, whatever was cut short.
    #[tokio::test]
    async fn batches_that_fill_the_socket_go_out_whole_and_in_order() {
        let (out, client, _queue) = testing::outbound(1_000_000).await;
        let room = Uuid::new_v4();
        out.open_room(room);
        out.set_direct(room, true);
        let mut sent = Vec::new();
        let mut batches_after_backlog = 0;
        while batches_after_backlog < 3 {
            let batch: Vec<Frame> = (0..40)
                .map(|_| {
                    let size = [100, 700, 70_000, 30][sent.len() % 4];
                    let number = sent.len().to_string();
                    let text = Bytes::from("0".repeat(size - number.len()) + &number);
                    sent.push(text.clone());
                    with_text(room, None, None, "message.new", text)
                })
                .collect();
            let mut written = vec![0; batch.len()];
            let offered = out.offer_all(&batch, Uuid::nil(), &mut written);
            assert_eq!(offered.written, 40);
            assert!(written.iter().all(|n| *n == 1));
            if out.has_backlog() {
                batches_after_backlog += 1;
            }
        }
        drain_and_check(&out, client, &sent).await;
    }

    /// Writes the backlog out and checks that the client read exactly `sent`, each a whole
    /// text frame, in order.
    async fn drain_and_check(out: &Outbound, mut client: tokio::net::TcpStream, sent: &[Bytes]) {
        use tokio::io::AsyncReadExt;
        let expected: usize = sent
            .iter()
            .map(|text| header(Opcode::Text, text.len()).1 + text.len())
            .sum();
        let reader = tokio::spawn(async move {
            let mut stream = vec![0u8; expected];
            client
                .read_exact(&mut stream)
                .await
                .expect("the whole stream");
            stream
        });
        assert!(out.write_backlog().await.expect("written"));
        let stream = reader.await.expect("reader");
        let mut at = 0;
        for (n, text) in sent.iter().enumerate() {
            let (head, used) = header(Opcode::Text, text.len());
            assert_eq!(&stream[at..at + used], &head[..used], "header of frame {n}");
            at += used;
            assert_eq!(
                &stream[at..at + text.len()],
                &text[..],
                "payload of frame {n}"
            );
            at += text.len();
        }
    }

    /// Our headers are what tungstenite, the reference, writes.
    #[test]
    fn headers_match_tungstenite() {
        use tungstenite::protocol::frame::FrameHeader;
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let (ours, used) = header(Opcode::Text, len);
            let mut theirs = Vec::new();
            FrameHeader {
                opcode: OpCode::Data(Data::Text),
                ..FrameHeader::default()
            }
            .format(len as u64, &mut theirs)
            .expect("format");
            assert_eq!(&ours[..used], &theirs[..], "length {len}");
        }
    }
}
