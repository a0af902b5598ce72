//! The read half of one connection: counts acks, errors and deliveries, checks seqs (and the
//! revs of `message.updated`), records latencies, and notes how the socket ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

use crate::accounting::SeqTracker;
use crate::client::{SharedSink, SubscribedAt, WsStream};
use crate::frames::{ClientMsgId, Incoming};
use crate::latency::LocalSamples;
use crate::live::{Live, bump};
use crate::target::Target;

/// How long a reader keeps reading after our close, waiting for the server's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What one connection saw, handed back when it closes.
#[derive(Debug)]
pub struct ReaderOutcome {
    pub room: usize,
    /// `message.new` by seq.
    pub tracker: SeqTracker,
    /// `message.updated` by rev.
    pub revs: SeqTracker,
    /// `error` events by code, plus the reader's own findings: `unreadable_frame`,
    /// `foreign_room` (a message of a room not subscribed), `foreign_ack` (an ack for a
    /// `client_msg_id` this connection never sent), `unexpected_update` (a `message.updated`
    /// of a message no change was made to, or one more than the changes made to it).
    pub errors: BTreeMap<String, u64>,
    /// A second ack for a message already acknowledged.
    pub duplicate_acks: u64,
    /// How the socket ended before we closed it: a close code, or `dropped`.
    pub ended_early: Option<String>,
}

impl ReaderOutcome {
    /// The outcome of a reader that could not report (it panicked or hung).
    pub fn lost(room: usize, why: String) -> ReaderOutcome {
        ReaderOutcome {
            room,
            tracker: SeqTracker::new(0),
            revs: SeqTracker::new(0),
            errors: BTreeMap::new(),
            duplicate_acks: 0,
            ended_early: Some(why),
        }
    }
}

/// What a reader is given: who it reads for and where it reports.
pub struct ReaderSpec {
    pub target: Target,
    pub index: usize,
    pub room_id: String,
    pub live: Arc<Live>,
    /// The sender's window: one permit back per answered send.
    pub window: Arc<Semaphore>,
    /// Highest seq received, for the drain check.
    pub seen: Arc<AtomicI64>,
    /// Different revs of `message.updated` received, for the drain check.
    pub updates_seen: Arc<AtomicU64>,
    /// For answers the protocol itself demands (Engine.IO pongs).
    pub sink: SharedSink,
}

impl ReaderSpec {
    /// A reader for a socket subscribed to room index `room` at `at`.
    pub fn start(self, room: usize, at: SubscribedAt) -> Reader {
        Reader {
            spec: self,
            answered: Vec::new(),
            updates_per_message: Vec::new(),
            outcome: ReaderOutcome {
                room,
                tracker: SeqTracker::new(at.last_seq),
                revs: SeqTracker::new(at.last_rev),
                errors: BTreeMap::new(),
                duplicate_acks: 0,
                ended_early: None,
            },
        }
    }
}

pub struct Reader {
    spec: ReaderSpec,
    /// One bit per send of this connection: set once it is acked or refused.
    answered: Vec<u64>,
    /// `message.updated` received per [`crate::live::ChangeLog`] slot.
    updates_per_message: Vec<usize>,
    outcome: ReaderOutcome,
}

impl Reader {
    /// Reads until the socket ends (or `CLOSE_GRACE` after `closing` is cancelled).
    pub async fn run(mut self, mut stream: WsStream, closing: CancellationToken) -> ReaderOutcome {
        self.spec.live.open.fetch_add(1, Ordering::Relaxed);
        let live = self.spec.live.clone();
        let mut ack_samples = LocalSamples::new(&live.ack_latency);
        let mut e2e_samples = LocalSamples::new(&live.e2e_latency);
        let deadline = tokio::time::sleep(Duration::MAX);
        tokio::pin!(deadline);
        let mut we_closed = false;
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                () = closing.cancelled(), if !we_closed => {
                    we_closed = true;
                    deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                    continue;
                }
                () = &mut deadline => break,
            };
            match frame {
                Some(Ok(Frame::Text(text))) => {
                    self.on_text(text.as_str(), &mut ack_samples, &mut e2e_samples);
                }
                Some(Ok(Frame::Close(close))) => {
                    if !we_closed && !closing.is_cancelled() {
                        let code = close.map_or(1005, |frame| u16::from(frame.code));
                        self.outcome.ended_early = Some(code.to_string());
                    }
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite itself
                Some(Err(_)) | None => {
                    if !we_closed && !closing.is_cancelled() && self.outcome.ended_early.is_none() {
                        self.outcome.ended_early = Some("dropped".into());
                    }
                    break;
                }
            }
        }
        self.spec.live.open.fetch_sub(1, Ordering::Relaxed);
        self.outcome
    }

    fn on_text(&mut self, text: &str, acks: &mut LocalSamples<'_>, e2e: &mut LocalSamples<'_>) {
        let incoming = match self.spec.target.parse(text) {
            Ok(incoming) => incoming,
            Err(_) => return self.count_error("unreadable_frame"),
        };
        match incoming {
            Incoming::New {
                room_id,
                seq,
                client_msg_id,
            } => {
                if room_id != self.spec.room_id.as_str() {
                    return self.count_error("foreign_room");
                }
                bump(&self.spec.live.delivered);
                self.outcome.tracker.record(seq);
                self.spec
                    .seen
                    .store(self.outcome.tracker.highest(), Ordering::Relaxed);
                if let Some(id) = client_msg_id.as_deref().and_then(ClientMsgId::parse) {
                    e2e.record_micros(self.spec.live.now_us().saturating_sub(id.sent_at_us));
                }
            }
            Incoming::Updated {
                room_id,
                message_id,
                rev,
            } => {
                if room_id != self.spec.room_id.as_str() {
                    return self.count_error("foreign_room");
                }
                bump(&self.spec.live.delivered);
                self.outcome.revs.record(rev);
                self.spec
                    .updates_seen
                    .store(self.outcome.revs.distinct(), Ordering::Relaxed);
                match self.change_started(&message_id) {
                    Some(at) => e2e.record_micros(self.spec.live.now_us().saturating_sub(at)),
                    None => self.count_error("unexpected_update"),
                }
            }
            Incoming::Ack { seq, client_msg_id } => {
                let Some(id) = client_msg_id.as_deref().and_then(ClientMsgId::parse) else {
                    return self.count_error("foreign_ack");
                };
                if id.connection != self.spec.index {
                    return self.count_error("foreign_ack");
                }
                if !self.first_answer(id.n) {
                    self.outcome.duplicate_acks += 1;
                    return;
                }
                self.spec.window.add_permits(1);
                bump(&self.spec.live.acked);
                self.spec.live.acked_seq(self.outcome.room, seq);
                acks.record_micros(self.spec.live.now_us().saturating_sub(id.sent_at_us));
            }
            Incoming::Error { code, reference } => {
                self.count_error(&code);
                let refused = reference.as_deref().and_then(ClientMsgId::parse);
                if let Some(id) = refused
                    && id.connection == self.spec.index
                    && self.first_answer(id.n)
                {
                    self.spec.window.add_permits(1);
                    bump(&self.spec.live.failed);
                }
            }
            Incoming::Ping { reply } => {
                // Not awaited here: the sender may hold the sink while the server waits for
                // us to read.
                let sink = self.spec.sink.clone();
                tokio::spawn(async move {
                    let _ = sink.lock().await.send(Frame::text(reply)).await;
                });
            }
            Incoming::Closed => {
                if self.outcome.ended_early.is_none() {
                    self.outcome.ended_early = Some("disconnect".into());
                }
            }
            Incoming::Subscribed { .. } | Incoming::Other => bump(&self.spec.live.other),
        }
    }

    /// When the change this `message.updated` of `message_id` reports started: the n-th
    /// update of a message is its n-th change (see [`crate::live::ChangeLog`]).
    fn change_started(&mut self, message_id: &str) -> Option<u64> {
        let changes = &self.spec.live.changes;
        let slot = changes.slot(&uuid::Uuid::parse_str(message_id).ok()?)?;
        if self.updates_per_message.len() < changes.len() {
            self.updates_per_message.resize(changes.len(), 0);
        }
        let nth = self.updates_per_message[slot];
        self.updates_per_message[slot] += 1;
        changes.started_at(slot, nth)
    }

    /// Marks send `n` answered; false if it already was.
    fn first_answer(&mut self, n: u64) -> bool {
        let Ok(word) = usize::try_from(n / 64) else {
            return false;
        };
        let bit = 1u64 << (n % 64);
        if word >= self.answered.len() {
            self.answered.resize(word + 1, 0);
        }
        let first = self.answered[word] & bit == 0;
        self.answered[word] |= bit;
        first
    }

    fn count_error(&mut self, code: &str) {
        bump(&self.spec.live.errors);
        match self.outcome.errors.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                self.outcome.errors.insert(code.to_owned(), 1);
            }
        }
    }
}
