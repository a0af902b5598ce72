//! The Redis bus: events cross nodes over pub/sub, one channel per room.
//!
//! A node subscribes to a room's channel only while it has local subscribers in that room,
//! so traffic grows with where users are, not with nodes × rooms. Publishing delivers to the
//! local hub at once and queues the event for Redis; a publisher task pipelines the queue.
//!
//! Ordering and repair are the same for every engine: see `bus::remote`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope;
use super::remote::{
    Control, MAX_BACKOFF, OUTGOING_DEPTH, PUBLISH_BATCH, WATCH_TIMEOUT, forward, reconcile,
    register_metrics, room_channel,
};
use crate::cluster::{Cluster, RedisEngine};
use crate::hub::{Frame, Hub};
use crate::store::Store;

#[derive(Debug)]
pub struct RedisBus {
    hub: Arc<Hub>,
    cluster: Cluster,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    control: mpsc::UnboundedSender<Control>,
}

impl RedisBus {
    /// Starts the publisher and subscriber tasks on `tasks`; they stop with `shutdown`.
    pub fn start(
        hub: Arc<Hub>,
        cluster: Cluster,
        redis: RedisEngine,
        store: Store,
        reconcile_every: Duration,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Arc<Self> {
        register_metrics();
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_DEPTH);
        let (control, control_rx) = mpsc::unbounded_channel();
        tasks.spawn(run_publisher(redis.clone(), outgoing_rx));
        let subscriber = Subscriber {
            hub: hub.clone(),
            cluster: cluster.clone(),
            redis,
            store,
            control: control_rx,
            reconcile_every,
        };
        tasks.spawn(subscriber.run(shutdown));
        Arc::new(RedisBus {
            hub,
            cluster,
            outgoing,
            control,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Starts listening to a room's channel; returns once Redis confirmed the subscription
    /// (or at once while Redis is unreachable: reconciliation covers that case).
    pub async fn watch(&self, room_id: Uuid) {
        let (done, confirmed) = oneshot::channel();
        if self.control.send(Control::Watch(room_id, done)).is_ok() {
            let _ = tokio::time::timeout(WATCH_TIMEOUT, confirmed).await;
        }
    }

    /// Stops listening to a room's channel (if it still has no local subscriber by then).
    pub fn unwatch(&self, room_id: Uuid) {
        let _ = self.control.send(Control::Unwatch(room_id));
    }

    /// Delivers several events locally now (see `Hub::publish_all`) and queues each for the
    /// other nodes.
    pub fn publish_all(&self, frames: &[Frame]) {
        self.hub.publish_all(frames);
        for frame in frames {
            self.send(frame);
        }
    }

    /// Delivers locally now and queues the event for the other nodes.
    pub fn publish(&self, frame: Frame) {
        self.hub.publish(&frame);
        self.send(&frame);
    }

    /// Queues an event for the other nodes.
    fn send(&self, frame: &Frame) {
        let channel = room_channel(&self.cluster, frame.room_id);
        let bytes = envelope::encode(self.cluster.node_id, frame);
        if self.outgoing.try_send((channel, bytes)).is_err() {
            metrics::counter!("nebula_bus_publish_failures_total").increment(1);
        }
    }

    pub async fn health(&self) -> Result<(), String> {
        if !self.cluster.bus_connected() {
            return Err("event stream disconnected; reconnecting".to_owned());
        }
        self.cluster.ping().await
    }
}

/// Sends queued publications in pipelines of up to `PUBLISH_BATCH`.
///
/// Runs until every publisher is gone rather than until shutdown starts: what a stopping
/// node still publishes (the last commits, its users going offline) should reach the others.
async fn run_publisher(redis: RedisEngine, mut queue: mpsc::Receiver<(String, Vec<u8>)>) {
    let mut conn = redis.commands();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, bytes) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(bytes).ignore();
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => {
                metrics::counter!("nebula_bus_published_total").increment(batch.len() as u64);
            }
            Err(err) => {
                tracing::debug!(error = %err, dropped = batch.len(), "publishing to Redis failed");
                metrics::counter!("nebula_bus_publish_failures_total")
                    .increment(batch.len() as u64);
            }
        }
        batch.clear();
    }
}

/// Owns the pub/sub connection: (re)connects, keeps the channel set equal to the hub's rooms,
/// forwards other nodes' events to the hub, and reconciles with the database.
struct Subscriber {
    hub: Arc<Hub>,
    cluster: Cluster,
    redis: RedisEngine,
    store: Store,
    control: mpsc::UnboundedReceiver<Control>,
    reconcile_every: Duration,
}

/// Why a connected session ended.
enum SessionEnd {
    Shutdown,
    Disconnected,
}

impl Subscriber {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session(&shutdown).await {
                Ok(SessionEnd::Shutdown) => return,
                Ok(SessionEnd::Disconnected) => {
                    tracing::warn!("Redis event stream lost; reconnecting");
                    backoff = Duration::from_millis(100);
                }
                Err(err) => tracing::debug!(error = %err, "Redis event stream unavailable"),
            }
            self.cluster.set_bus_connected(false);
            // While disconnected, watch requests are answered at once: subscribers go on
            // locally and are reconciled when the stream is back.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = &mut wait => break,
                    Some(control) = self.control.recv() => {
                        if let Control::Watch(_, done) = control {
                            let _ = done.send(());
                        }
                    }
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connected session, until the connection drops or the node shuts down.
    async fn session(&mut self, shutdown: &CancellationToken) -> redis::RedisResult<SessionEnd> {
        let pubsub = tokio::time::timeout(WATCH_TIMEOUT, self.redis.client().get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
        let (mut sink, mut stream) = pubsub.split();
        for room in self.hub.rooms() {
            sink.subscribe(room_channel(&self.cluster, room.room_id))
                .await?;
        }
        self.cluster.set_bus_connected(true);
        tracing::info!(node = %self.cluster.node_id, "Redis event stream connected");
        // Whatever was published while we were away is in the database.
        reconcile(&self.hub, &self.store).await;
        let mut reconcile_timer = tokio::time::interval(self.reconcile_every);
        reconcile_timer.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
                message = stream.next() => match message {
                    Some(message) => {
                        forward(&self.hub, &self.store, self.cluster.node_id, message.get_payload_bytes()).await;
                    }
                    None => return Ok(SessionEnd::Disconnected),
                },
                Some(control) = self.control.recv() => match control {
                    Control::Watch(room_id, done) => {
                        let subscribed = sink.subscribe(room_channel(&self.cluster, room_id)).await;
                        let _ = done.send(());
                        subscribed?;
                    }
                    Control::Unwatch(room_id) => {
                        // A connection may have arrived since the request: check again.
                        if !self.hub.has_subscribers(room_id) {
                            sink.unsubscribe(room_channel(&self.cluster, room_id)).await?;
                        }
                    }
                },
                _ = reconcile_timer.tick() => reconcile(&self.hub, &self.store).await,
            }
        }
    }
}
