//! Group commit: message writes from every connection and REST call, batched into few
//! transactions.
//!
//! A single-row commit costs a full fsync (≈3 ms on PostgreSQL here), which would cap a node
//! at a few hundred messages per second per connection. Writers instead take whatever is
//! queued — one message when idle, hundreds under load — and commit it in one transaction.
//! Nothing waits for a batch to fill, so an idle server adds no latency. Each sender is
//! answered only after the commit that holds its message, then the message is published.
//!
//! Rooms are spread over writers by id, so one room's messages always pass through one
//! writer and are published in seq order.
//!
//! Each writer is a pipeline of two tasks: the writer commits, its publisher fans out and
//! answers. The next batch commits while the previous one is being published, so a node's
//! ingest is bounded by the slower of the two rather than by their sum.
//!
//! Changes to stored messages (edits, deletes, reactions) take the same queues and are
//! committed the same way: the changes of a batch in one transaction of their own, after the
//! batch's new messages (a change can only name a message whose post was already answered, so
//! none depends on a message of its own batch, and messages keep the commit they had). Each
//! is answered after its commit and published as `message.updated`, in rev order.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Span;

use crate::bus::Bus;
use crate::hub::Frame;
use crate::store::{
    Applied, ChangeOutcome, ChangesCommitted, Committed, MemberCache, NewChange, NewMessage,
    NotAMember, Posted, Store, StoreError,
};

struct Pending {
    message: NewMessage,
    reply: Reply,
}

/// Where a message's outcome goes.
struct Reply {
    /// When the sender's request arrived (the start of the end-to-end latency).
    received_at: SystemTime,
    /// The sender's span (its WebSocket frame or HTTP request) when traces are exported, else
    /// `Span::none()`: the commit and the publication are its children.
    span: Span,
    to: oneshot::Sender<Result<Posted, WriteError>>,
}

/// What a writer's queue carries.
enum Op {
    Post(Pending),
    Change(PendingChange),
}

struct PendingChange {
    change: NewChange,
    reply: oneshot::Sender<Result<ChangeOutcome, WriteError>>,
}

/// Why a message was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("message could not be stored: {0}")]
    Failed(String),
    #[error("server is shutting down")]
    ShuttingDown,
    /// The sender is not a member of the room (checked in the commit itself).
    #[error("not a member of the room")]
    NotAMember,
    /// A direct room whose two users are blocked (see [`crate::access::explain_refusal`]).
    #[error("the users of this direct room are blocked")]
    Blocked,
}

/// Handle to the writers. Cheap to clone; the writers stop once every handle is dropped and
/// their queues are drained.
#[derive(Debug, Clone)]
pub struct Writers {
    queues: Vec<mpsc::Sender<Op>>,
    hasher: RandomState,
}

/// Pending messages a writer queues before senders wait (backpressure on ingest).
const QUEUE_DEPTH: usize = 8192;

impl Writers {
    /// Starts `count` writers on `tasks`.
    pub fn start(
        store: Store,
        bus: Bus,
        count: usize,
        batch_max: usize,
        write_delay: Duration,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let queues = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                let publisher = Publisher {
                    store: store.clone(),
                    bus: bus.clone(),
                    delay: write_delay,
                    frames_max: batch_max,
                };
                tasks.spawn(run_writer(store.clone(), publisher, rx, batch_max));
                tx
            })
            .collect();
        Writers {
            queues,
            hasher: RandomState::new(),
        }
    }

    /// Stores a message and returns it with its seq once the commit is durable.
    pub async fn post(&self, message: NewMessage) -> Result<Posted, WriteError> {
        self.submit(message).await?.wait().await
    }

    /// Queues a message and returns at once with a ticket for its outcome.
    ///
    /// Queue order is commit order within a room, so a connection that submits its messages
    /// one after another gets increasing seqs even with many of them in flight.
    pub async fn submit(&self, message: NewMessage) -> Result<Ticket, WriteError> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Post(Pending {
            message,
            reply: Reply {
                received_at: SystemTime::now(),
                span: if nebula_notifier::otel::enabled() {
                    Span::current()
                } else {
                    Span::none()
                },
                to: reply,
            },
        });
        // `try_send` first: the pending message then never sits in this future's state (it
        // is held by every WebSocket task that sends, see `gateway::connection`); waiting for
        // room in a full queue is the rare case, boxed.
        let queue = self.queue(op.room_id());
        let wait = match queue.try_send(op) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(op)) => Some(Box::pin(queue.send(op))),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WriteError::ShuttingDown),
        };
        if let Some(wait) = wait {
            wait.await.map_err(|_| WriteError::ShuttingDown)?;
        }
        Ok(Ticket(answer))
    }

    /// Applies a change to a stored message and returns its outcome once it is committed
    /// (and published, if it changed anything).
    pub async fn change(&self, change: NewChange) -> Result<ChangeOutcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        let op = Op::Change(PendingChange { change, reply });
        self.queue(op.room_id())
            .send(op)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }

    /// The queue of the writer that owns a room.
    fn queue(&self, room_id: uuid::Uuid) -> &mpsc::Sender<Op> {
        let shard =
            usize::try_from(self.hasher.hash_one(room_id) % self.queues.len() as u64).unwrap_or(0);
        &self.queues[shard]
    }
}

impl Op {
    fn room_id(&self) -> uuid::Uuid {
        match self {
            Op::Post(pending) => pending.message.room_id,
            Op::Change(pending) => pending.change.room_id,
        }
    }
}

/// The outcome of a submitted message, available once its batch has committed.
pub struct Ticket(oneshot::Receiver<Result<Posted, WriteError>>);

impl Ticket {
    pub async fn wait(self) -> Result<Posted, WriteError> {
        self.0.await.map_err(|_| WriteError::ShuttingDown)?
    }
}

/// How many committed batches a writer may hand to its publisher before it waits: one being
/// published and one queued is enough to keep the next commit running while the previous
/// batch's fan-out runs, and bounds what a slow publisher holds.
const PIPELINE_DEPTH: usize = 2;

/// A committed (or failed) batch on its way to being published and answered.
enum Done {
    Posts {
        replies: Vec<Reply>,
        /// One `message.commit` span per traced message (a batch serves many traces).
        commits: Vec<Span>,
        result: Result<Committed, WriteError>,
    },
    Changes {
        pending: Vec<PendingChange>,
        result: Result<ChangesCommitted, WriteError>,
    },
}

/// Commits batches one after another and hands each to the writer's publisher, so a batch's
/// commit (a round trip and an fsync) runs while the previous batch is fanned out and
/// answered. One publisher per writer, fed in commit order: a room's events still go out in
/// seq order, and every sender is still answered only after its commit.
async fn run_writer(
    store: Store,
    publisher: Publisher,
    mut queue: mpsc::Receiver<Op>,
    batch_max: usize,
) {
    let (done, to_publish) = mpsc::channel(PIPELINE_DEPTH);
    let publisher = tokio::spawn(publisher.run(to_publish));
    let mut ops: Vec<Op> = Vec::with_capacity(batch_max);
    let mut members = MemberCache::default();
    while queue.recv_many(&mut ops, batch_max).await > 0 {
        let mut messages: Vec<NewMessage> = Vec::with_capacity(ops.len());
        let mut replies: Vec<Reply> = Vec::with_capacity(ops.len());
        let mut changes: Vec<PendingChange> = Vec::new();
        for op in ops.drain(..) {
            match op {
                Op::Post(pending) => {
                    messages.push(pending.message);
                    replies.push(pending.reply);
                }
                Op::Change(pending) => changes.push(pending),
            }
        }
        if !messages.is_empty() {
            let commits: Vec<Span> = replies
                .iter()
                .map(|reply| {
                    if reply.span.is_none() {
                        Span::none()
                    } else {
                        tracing::info_span!(parent: &reply.span, "message.commit", batch = messages.len())
                    }
                })
                .collect();
            let result = commit_posts(&store, &messages, &mut members).await;
            let batch = Done::Posts {
                replies,
                commits,
                result,
            };
            if done.send(batch).await.is_err() {
                break;
            }
        }
        // After the batch's messages (see the module docs).
        if !changes.is_empty() {
            let result = commit_changes(&store, &changes).await;
            let pending = changes;
            if done.send(Done::Changes { pending, result }).await.is_err() {
                break;
            }
        }
    }
    drop(done);
    if let Err(err) = publisher.await {
        tracing::error!(error = %err, "message publisher failed");
    }
}

/// Commits a batch of new messages in one transaction.
async fn commit_posts(
    store: &Store,
    messages: &[NewMessage],
    members: &mut MemberCache,
) -> Result<Committed, WriteError> {
    let started = Instant::now();
    let result = store.append_messages(messages, members).await;
    metrics::histogram!("nebula_commit_duration_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("nebula_commit_batch_size").record(messages.len() as f64);
    match result {
        Ok(committed) => {
            metrics::counter!("nebula_messages_stored_total").increment(messages.len() as u64);
            Ok(committed)
        }
        Err(err) => {
            tracing::error!(error = %err, batch = messages.len(), "message batch failed");
            Err(write_error(err))
        }
    }
}

/// Commits queued changes in one transaction.
async fn commit_changes(
    store: &Store,
    pending: &[PendingChange],
) -> Result<ChangesCommitted, WriteError> {
    let changes: Vec<NewChange> = pending.iter().map(|p| p.change.clone()).collect();
    let started = Instant::now();
    let result = store.apply_changes(&changes).await;
    metrics::histogram!("nebula_change_commit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(committed) => {
            metrics::counter!("nebula_message_changes_total").increment(changes.len() as u64);
            Ok(committed)
        }
        Err(err) => {
            tracing::error!(error = %err, batch = changes.len(), "change batch failed");
            Err(write_error(err))
        }
    }
}

fn write_error(err: StoreError) -> WriteError {
    match err {
        StoreError::Unavailable(cause) => WriteError::Unavailable(cause),
        other => WriteError::Failed(other.to_string()),
    }
}

/// Fans out committed batches and answers their senders (each writer has one).
struct Publisher {
    store: Store,
    bus: Bus,
    /// `WS_WRITE_DELAY_MS`: how long the first committed batch waits for others to go out
    /// with it (0: no wait, only what is already committed joins it).
    delay: Duration,
    /// Most new messages and changes published together (`WRITE_BATCH_MAX`, which
    /// `WS_OUTBOUND_QUEUE` is at least, so one window always fits a connection's queue).
    frames_max: usize,
}

impl Publisher {
    /// Publishes each committed batch's new messages and changes, in commit order, and
    /// answers their senders after it. Batches committed meanwhile (and, with a write delay,
    /// those committed within it) go out together: each subscriber's socket takes a window's
    /// events for its room in one write.
    async fn run(self, mut batches: mpsc::Receiver<Done>) {
        let mut window: Vec<Done> = Vec::new();
        while let Some(first) = batches.recv().await {
            let mut size = first.len();
            window.push(first);
            if !self.delay.is_zero() {
                let until = tokio::time::Instant::now() + self.delay;
                while size < self.frames_max
                    && let Ok(Some(batch)) = tokio::time::timeout_at(until, batches.recv()).await
                {
                    size += batch.len();
                    window.push(batch);
                }
            }
            while size < self.frames_max
                && let Ok(batch) = batches.try_recv()
            {
                size += batch.len();
                window.push(batch);
            }
            let mut frames = Vec::with_capacity(size);
            for batch in &mut window {
                batch.frames(&mut frames);
            }
            self.bus.publish_all(&self.store, frames).await;
            for batch in window.drain(..) {
                batch.answer();
            }
        }
    }
}

/// A room's membership revision at a batch's commit (0 when it never lost a member).
fn member_rev_at(member_revs: &BTreeMap<uuid::Uuid, i64>, room_id: uuid::Uuid) -> i64 {
    member_revs.get(&room_id).copied().unwrap_or_default()
}

impl Done {
    /// New messages and changes it holds.
    fn len(&self) -> usize {
        match self {
            Done::Posts { replies, .. } => replies.len(),
            Done::Changes { pending, .. } => pending.len(),
        }
    }

    /// Its events: `message.new` for each new message, `message.updated` for each change.
    fn frames(&mut self, frames: &mut Vec<Frame>) {
        match self {
            Done::Posts {
                replies,
                commits,
                result: Ok(committed),
            } => {
                let commits = std::mem::take(commits);
                for ((reply, outcome), commit) in
                    replies.iter().zip(&committed.outcomes).zip(commits)
                {
                    let Ok(Posted::Created(message)) = outcome else {
                        continue;
                    };
                    let member_rev = member_rev_at(&committed.member_revs, message.room_id);
                    let publish = if commit.is_none() {
                        Span::none()
                    } else {
                        tracing::info_span!(parent: &commit, "bus.publish", seq = message.seq)
                    };
                    frames.push(publish.in_scope(|| {
                        Frame::message(message.clone(), member_rev, Some(reply.received_at))
                    }));
                }
            }
            Done::Changes {
                result: Ok(committed),
                ..
            } => {
                for outcome in &committed.outcomes {
                    if let Ok(Applied::Changed(message)) = outcome {
                        let member_rev = member_rev_at(&committed.member_revs, message.room_id);
                        frames.push(Frame::updated(message.clone(), member_rev));
                    }
                }
            }
            Done::Posts { result: Err(_), .. } | Done::Changes { result: Err(_), .. } => {}
        }
    }

    /// Answers every sender (after its event was published).
    fn answer(self) {
        match self {
            Done::Posts {
                replies,
                result: Ok(committed),
                ..
            } => {
                for (reply, outcome) in replies.into_iter().zip(committed.outcomes) {
                    // A sender that went away still has its message stored; it learns the seq
                    // on reconnect by reposting its client_msg_id.
                    let _ = reply
                        .to
                        .send(outcome.map_err(|NotAMember| WriteError::NotAMember));
                }
            }
            Done::Posts {
                replies,
                result: Err(answer),
                ..
            } => {
                for reply in replies {
                    let _ = reply.to.send(Err(answer.clone()));
                }
            }
            Done::Changes {
                pending,
                result: Ok(committed),
            } => {
                for (pending, outcome) in pending.into_iter().zip(committed.outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Done::Changes {
                pending,
                result: Err(answer),
            } => {
                for pending in pending {
                    let _ = pending.reply.send(Err(answer.clone()));
                }
            }
        }
    }
}
