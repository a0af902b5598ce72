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

use std::hash::{BuildHasher, RandomState};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::bus::Bus;
use crate::store::{MemberCache, NewMessage, NotAMember, Posted, Store, StoreError};

struct Pending {
    message: NewMessage,
    /// When the sender's request arrived (the start of the end-to-end latency).
    received_at: SystemTime,
    reply: oneshot::Sender<Result<Posted, WriteError>>,
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
}

/// Handle to the writers. Cheap to clone; the writers stop once every handle is dropped and
/// their queues are drained.
#[derive(Debug, Clone)]
pub struct Writers {
    queues: Vec<mpsc::Sender<Pending>>,
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
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let queues = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                tasks.spawn(run_writer(store.clone(), bus.clone(), rx, batch_max));
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
        let shard =
            usize::try_from(self.hasher.hash_one(message.room_id) % self.queues.len() as u64)
                .unwrap_or(0);
        let (reply, answer) = oneshot::channel();
        self.queues[shard]
            .send(Pending {
                message,
                received_at: SystemTime::now(),
                reply,
            })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        Ok(Ticket(answer))
    }
}

/// The outcome of a submitted message, available once its batch has committed.
pub struct Ticket(oneshot::Receiver<Result<Posted, WriteError>>);

impl Ticket {
    pub async fn wait(self) -> Result<Posted, WriteError> {
        self.0.await.map_err(|_| WriteError::ShuttingDown)?
    }
}

async fn run_writer(store: Store, bus: Bus, mut queue: mpsc::Receiver<Pending>, batch_max: usize) {
    let mut batch: Vec<Pending> = Vec::with_capacity(batch_max);
    let mut members = MemberCache::default();
    while queue.recv_many(&mut batch, batch_max).await > 0 {
        let messages: Vec<NewMessage> = batch
            .iter()
            .map(|pending| pending.message.clone())
            .collect();
        let started = Instant::now();
        let result = store.append_messages(&messages, &mut members).await;
        metrics::histogram!("nebula_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("nebula_commit_batch_size").record(messages.len() as f64);
        match result {
            Ok(committed) => {
                for (pending, outcome) in batch.drain(..).zip(committed.outcomes) {
                    if let Ok(Posted::Created(message)) = &outcome {
                        let member_rev = committed
                            .member_revs
                            .get(&message.room_id)
                            .copied()
                            .unwrap_or_default();
                        bus.publish_message(&store, message, member_rev, pending.received_at)
                            .await;
                    }
                    // A sender that went away still has its message stored; it learns the seq
                    // on reconnect by reposting its client_msg_id.
                    let _ = pending
                        .reply
                        .send(outcome.map_err(|NotAMember| WriteError::NotAMember));
                }
                metrics::counter!("nebula_messages_stored_total").increment(messages.len() as u64);
            }
            Err(err) => {
                tracing::error!(error = %err, batch = messages.len(), "message batch failed");
                let answer = match err {
                    StoreError::Unavailable(cause) => WriteError::Unavailable(cause),
                    other => WriteError::Failed(other.to_string()),
                };
                for pending in batch.drain(..) {
                    let _ = pending.reply.send(Err(answer.clone()));
                }
            }
        }
    }
}
