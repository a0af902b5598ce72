//! The NATS bus: events cross nodes over core NATS pub/sub, one subject per room.
//!
//! The same shape as the Redis bus: a node subscribes to a room's subject only while it has
//! local subscribers in that room; publishing delivers to the local hub at once and queues the
//! event for NATS. One client connection publishes in order, so one node's events reach the
//! others in the order it published them, as with Redis.
//!
//! The NATS client reconnects and re-subscribes by itself; what it cannot do is replay what was
//! published while it was away. So on every (re)connection — once the server has the
//! re-subscriptions — and periodically, the watched rooms are reconciled with the database
//! (`bus::remote`), exactly as after a Redis reconnect.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_stream::{StreamExt, StreamMap};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope;
use super::remote::{
    Control, OUTGOING_DEPTH, PUBLISH_BATCH, WATCH_TIMEOUT, forward, reconcile, register_metrics,
    room_channel,
};
use crate::cluster::{Cluster, NatsEngine};
use crate::hub::{Frame, Hub};
use crate::store::Store;

#[derive(Debug)]
pub struct NatsBus {
    hub: Arc<Hub>,
    cluster: Cluster,
    outgoing: mpsc::Sender<(String, Vec<u8>)>,
    control: mpsc::UnboundedSender<Control>,
}

impl NatsBus {
    /// Starts the publisher and subscriber tasks on `tasks`; they stop with `shutdown`.
    pub fn start(
        hub: Arc<Hub>,
        cluster: Cluster,
        nats: Arc<NatsEngine>,
        store: Store,
        reconcile_every: Duration,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Arc<Self> {
        register_metrics();
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_DEPTH);
        let (control, control_rx) = mpsc::unbounded_channel();
        tasks.spawn(run_publisher(nats.clone(), outgoing_rx));
        let subscriber = Subscriber {
            hub: hub.clone(),
            cluster: cluster.clone(),
            nats,
            store,
            control: control_rx,
            reconcile_every,
            rooms: StreamMap::new(),
        };
        tasks.spawn(subscriber.run(shutdown));
        Arc::new(NatsBus {
            hub,
            cluster,
            outgoing,
            control,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Starts listening to a room's subject; returns once the server has the subscription
    /// (or at once while NATS is unreachable: reconciliation covers that case).
    pub async fn watch(&self, room_id: Uuid) {
        let (done, confirmed) = oneshot::channel();
        if self.control.send(Control::Watch(room_id, done)).is_ok() {
            let _ = tokio::time::timeout(WATCH_TIMEOUT, confirmed).await;
        }
    }

    /// Stops listening to a room's subject (if it still has no local subscriber by then).
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
        let subject = room_channel(&self.cluster, frame.room_id);
        let bytes = envelope::encode(self.cluster.node_id, frame);
        if self.outgoing.try_send((subject, bytes)).is_err() {
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

/// Sends queued publications; while disconnected they are dropped and counted (the client
/// would otherwise hold them and deliver them late, after the receivers repaired).
///
/// Runs until every publisher is gone rather than until shutdown starts: what a stopping
/// node still publishes should reach the others.
async fn run_publisher(nats: Arc<NatsEngine>, mut queue: mpsc::Receiver<(String, Vec<u8>)>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut published = 0u64;
        let mut failed = 0u64;
        for (subject, bytes) in batch.drain(..) {
            match nats.publish(&subject, bytes).await {
                Ok(()) => published += 1,
                Err(err) => {
                    tracing::debug!(error = %err, "publishing to NATS failed");
                    failed += 1;
                }
            }
        }
        metrics::counter!("nebula_bus_published_total").increment(published);
        metrics::counter!("nebula_bus_publish_failures_total").increment(failed);
    }
    // What was published last must leave before the process does.
    let _ = nats.confirm().await;
}

/// Owns the room subscriptions: keeps them equal to the hub's rooms, forwards other nodes'
/// events to the hub, and reconciles with the database after every (re)connection.
struct Subscriber {
    hub: Arc<Hub>,
    cluster: Cluster,
    nats: Arc<NatsEngine>,
    store: Store,
    control: mpsc::UnboundedReceiver<Control>,
    reconcile_every: Duration,
    rooms: StreamMap<Uuid, async_nats::Subscriber>,
}

impl Subscriber {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut connection = self.nats.connection();
        let mut seen_epoch = 0;
        let mut reconcile_timer = tokio::time::interval(self.reconcile_every);
        reconcile_timer.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = connection.changed() => {
                    if changed.is_err() {
                        return; // the client is gone
                    }
                    let state = *connection.borrow_and_update();
                    if !state.connected {
                        self.cluster.set_bus_connected(false);
                        tracing::warn!("NATS event stream lost; reconnecting");
                    } else if state.epoch != seen_epoch {
                        seen_epoch = state.epoch;
                        // The client re-subscribes before it handles our flush: once it
                        // returns, anything published from now on reaches us, and the
                        // database holds everything before.
                        if self.nats.confirm().await.is_ok() {
                            self.cluster.set_bus_connected(true);
                            tracing::info!(node = %self.cluster.node_id, "NATS event stream connected");
                            reconcile(&self.hub, &self.store).await;
                        } else {
                            // Try again on the next change or tick.
                            seen_epoch = 0;
                        }
                    }
                }
                Some((_, message)) = self.rooms.next() => {
                    forward(&self.hub, &self.store, self.cluster.node_id, &message.payload).await;
                }
                Some(control) = self.control.recv() => self.control(control).await,
                _ = reconcile_timer.tick() => {
                    if seen_epoch == 0 && self.nats.connected() && self.nats.confirm().await.is_ok() {
                        // Connected without our having seen it (the event raced the start).
                        seen_epoch = connection.borrow().epoch.max(1);
                        self.cluster.set_bus_connected(true);
                    }
                    if self.cluster.bus_connected() {
                        reconcile(&self.hub, &self.store).await;
                    }
                }
            }
        }
    }

    async fn control(&mut self, control: Control) {
        match control {
            Control::Watch(room_id, done) => {
                if !self.rooms.contains_key(&room_id) {
                    let subject = room_channel(&self.cluster, room_id);
                    match self.nats.client().subscribe(subject).await {
                        Ok(subscription) => {
                            self.rooms.insert(room_id, subscription);
                        }
                        Err(err) => tracing::warn!(error = %err, "subscribing on NATS failed"),
                    }
                }
                // While disconnected the subscription is the client's to restore; the
                // reconciliation after reconnecting covers the gap.
                if self.nats.connected() {
                    let _ = self.nats.confirm().await;
                }
                let _ = done.send(());
            }
            Control::Unwatch(room_id) => {
                // A connection may have arrived since the request: check again.
                if !self.hub.has_subscribers(room_id)
                    && let Some(mut subscription) = self.rooms.remove(&room_id)
                {
                    let _ = subscription.unsubscribe().await;
                }
            }
        }
    }
}
