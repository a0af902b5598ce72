//! What every engine's bus does the same way: channel names, metrics, handing other nodes'
//! events to the hub, and reconciling watched rooms with the database.
//!
//! Pub/sub is fire-and-forget on both engines: publications of different nodes arrive in any
//! order, and a node that is disconnected misses what was published meanwhile. Neither loses
//! a message:
//! - each connection keeps a room's messages and their changes in rev order and, when a
//!   predecessor is missing, waits briefly for it and then reads it from the database
//!   (`gateway::connection`);
//! - the bus reconciles every watched room against the database after each reconnect and
//!   periodically, publishing locally whatever the node never received (a dropped last
//!   change has no successor to reveal the gap).

use std::time::Duration;

use tracing::Instrument;
use uuid::Uuid;

use super::{envelope, members};
use crate::cluster::Cluster;
use crate::hub::{Frame, Hub};
use crate::store::Store;

/// Publications waiting for the engine; beyond this they are dropped (and repaired from the
/// database by the receiving nodes) rather than growing without bound during an outage.
pub(super) const OUTGOING_DEPTH: usize = 65_536;
/// Most publications sent in one batch.
pub(super) const PUBLISH_BATCH: usize = 512;
/// Most changes one reconciliation replays per room (the rest follow on the next round).
const RECONCILE_LIMIT: i64 = 1000;
/// How long `watch` waits for the engine to confirm a subscription before going on degraded.
pub(super) const WATCH_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A request to the subscriber task: listen to a room (answered once listening), or stop.
pub(super) enum Control {
    Watch(Uuid, tokio::sync::oneshot::Sender<()>),
    Unwatch(Uuid),
}

pub(super) fn room_channel(cluster: &Cluster, room_id: Uuid) -> String {
    cluster.key(format_args!("room:{room_id}"))
}

pub(super) fn register_metrics() {
    metrics::describe_counter!(
        "nebula_bus_published_total",
        "Events published to other nodes"
    );
    metrics::describe_counter!(
        "nebula_bus_received_total",
        "Events received from other nodes"
    );
    metrics::describe_counter!(
        "nebula_bus_publish_failures_total",
        "Events that could not be published to other nodes (they repair from the database)"
    );
    metrics::describe_counter!(
        "nebula_bus_repaired_messages_total",
        "Messages a node missed on the bus and replayed from the database"
    );
    metrics::counter!("nebula_bus_published_total").increment(0);
    metrics::counter!("nebula_bus_received_total").increment(0);
    metrics::counter!("nebula_bus_publish_failures_total").increment(0);
    metrics::counter!("nebula_bus_repaired_messages_total").increment(0);
    metrics::gauge!("nebula_bus_connected").set(0.0);
}

/// Hands another node's event to the local hub, once this node's subscribers of the room are
/// known to be members at the event's membership revision (see `bus::members`).
pub(super) async fn forward(hub: &Hub, store: &Store, node_id: Uuid, payload: &[u8]) {
    match envelope::decode(payload) {
        Some((origin, _)) if origin == node_id => {}
        Some((_, mut frame)) => {
            metrics::counter!("nebula_bus_received_total").increment(1);
            // A traced publication continues here: this node's fan-out is a child of the
            // receipt, itself a child of the publishing node's span.
            let span = match &frame.trace {
                Some(parent) => {
                    let span = tracing::info_span!("bus.receive", kind = frame.kind);
                    nebula_notifier::otel::set_parent_from(&span, parent);
                    frame.trace = nebula_notifier::otel::traceparent(&span);
                    span
                }
                None => tracing::Span::none(),
            };
            let frame = Frame::from(frame);
            async {
                members::admit(hub, store, &frame).await;
                hub.publish(&frame);
            }
            .instrument(span)
            .await;
        }
        None => tracing::warn!(bytes = payload.len(), "unreadable event on the bus"),
    }
}

/// Brings every watched room up to the database: first its subscribers, dropping those
/// removed while this node was not told (so the messages below cannot reach them), then
/// every stored message and change this node has not seen, in the version the database
/// holds (a change read from the feed is the message's latest; the connections deliver
/// them in rev order).
pub(super) async fn reconcile(hub: &Hub, store: &Store) {
    for room in hub.rooms() {
        let (stored, member_rev) = match store.room_revisions(room.room_id).await {
            Ok(revisions) => revisions,
            Err(err) => {
                tracing::warn!(error = %err, "reconciling with the database failed");
                return;
            }
        };
        if member_rev > room.member_rev {
            members::check_members(hub, store, room.room_id).await;
        }
        if stored <= room.last_rev {
            continue;
        }
        match store
            .changes(room.room_id, room.last_rev, stored, None, RECONCILE_LIMIT)
            .await
        {
            Ok(entries) => {
                metrics::counter!("nebula_bus_repaired_messages_total")
                    .increment(entries.len() as u64);
                for entry in entries {
                    let frame = Frame::feed_entry(entry.message, entry.is_creation, member_rev);
                    hub.publish(&frame);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reconciling with the database failed"),
        }
    }
}
