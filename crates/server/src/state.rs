//! The application state every handler receives: plain values built once from the config.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Passwords, Tokens};
use crate::bus::Bus;
use crate::config::ValidConfig;
use crate::presence::Presence;
use crate::rate_limit::RateLimits;
use crate::store::Store;
use crate::writer::Writers;

/// Shared by every request and connection. Cloning is cheap (handles and `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ValidConfig>,
    pub store: Store,
    pub tokens: Tokens,
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
}
