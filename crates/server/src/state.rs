//! The application state every handler receives: plain values built once from the config.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Passwords, Standings, Tokens};
use crate::bus::Bus;
use crate::config::ValidConfig;
use crate::gateway::registry::UserConnections;
use crate::gateway::typing::TypingRelay;
use crate::presence::Presence;
use crate::rate_limit::RateLimits;
use crate::store::Store;
use crate::writer::Writers;

/// Shared by every request and every WebSocket connection. One allocation behind an `Arc`:
/// axum clones the state for each request and each connection keeps a clone for its lifetime,
/// so a clone must be a reference-count increment, not a copy of every handle (measured: the
/// field-by-field clone allocated ~500 bytes per idle connection).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What every handler and connection uses, built once at start.
pub struct Services {
    pub config: Arc<ValidConfig>,
    pub store: Store,
    pub tokens: Tokens,
    /// Account standings (token generations, deactivation), cached per node.
    pub standings: Standings,
    /// Renders mails (sent through the outbox) and signs unsubscribe links.
    pub mail: crate::mail::Mails,
    pub passwords: Passwords,
    pub writers: Writers,
    pub bus: Bus,
    pub limits: Arc<RateLimits>,
    pub metrics: PrometheusHandle,
    pub presence: Arc<Presence>,
    /// Cancelled when the server starts shutting down; long-lived connections watch it.
    pub shutdown: CancellationToken,
    /// WebSocket connection tasks, awaited on shutdown (they outlive the HTTP server).
    pub connections: TaskTracker,
    /// The outbox relay's face: broker health, and the Web Push API when embedded.
    pub outbox: crate::outbox::Outbox,
    /// Coalesces typing indicators per user and room.
    pub typing: TypingRelay,
    /// Open WebSocket connections per user on this node, capped.
    pub user_connections: UserConnections,
    /// Call signalling (`call.*` events) between this node's connections and the others.
    pub calls: crate::calls::Calls,
    /// Events addressed to users (`dm.opened`, `room.added`, `contact.*`), to their
    /// connections on every node.
    pub user_events: crate::user_events::UserEvents,
    /// Where uploads are kept (disk or S3).
    pub media_storage: crate::media::MediaStorage,
    /// Signs and checks media URLs.
    pub media_urls: crate::media::MediaUrls,
    /// Image decoding for uploads, a few at a time.
    pub media_inspector: crate::media::inspect::Inspector,
    /// Wakes the media janitor after deletes.
    pub media_janitor: crate::media::janitor::JanitorHandle,
}
