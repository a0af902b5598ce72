//! What the rest of the server sees of the relay: the broker's state for `/health`, and the
//! Web Push HTTP API when notifications are delivered in-process.

use std::sync::{Arc, Mutex};

use axum::Router;

use super::BROKER_CONNECTED;

/// The relay's link to RabbitMQ, as `/health` reports it.
#[derive(Debug, Clone)]
enum BrokerState {
    Connected,
    /// Another node holds the outbox lock and publishes; this one does not need the broker.
    Standby,
    Down(String),
}

/// Shared between the relay (writer) and `/health` (reader). Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct BrokerStatus(Arc<Mutex<BrokerState>>);

impl BrokerStatus {
    pub(super) fn new() -> Self {
        BrokerStatus(Arc::new(Mutex::new(BrokerState::Down(
            "not connected yet".into(),
        ))))
    }

    pub(super) fn connected(&self) {
        self.set(BrokerState::Connected);
    }

    pub(super) fn standby(&self) {
        self.set(BrokerState::Standby);
    }

    pub(super) fn down(&self, reason: impl Into<String>) {
        self.set(BrokerState::Down(reason.into()));
    }

    pub(super) fn is_connected(&self) -> bool {
        matches!(self.get(), BrokerState::Connected)
    }

    fn set(&self, state: BrokerState) {
        let connected = matches!(state, BrokerState::Connected);
        // A poisoned lock only means a panic elsewhere mid-assignment; the value is whole.
        *self.0.lock().unwrap_or_else(|poison| poison.into_inner()) = state;
        metrics::gauge!(BROKER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }

    fn get(&self) -> BrokerState {
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// The relay as seen by the HTTP layer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    broker: Option<BrokerStatus>,
    webpush: Option<nebula_notifier::ApiState>,
}

impl Outbox {
    pub(super) fn with_broker(status: BrokerStatus) -> Self {
        Outbox {
            broker: Some(status),
            webpush: None,
        }
    }

    pub(super) fn embedded(api: nebula_notifier::ApiState) -> Self {
        Outbox {
            broker: None,
            webpush: Some(api),
        }
    }

    pub(super) fn disabled() -> Self {
        Outbox {
            broker: None,
            webpush: None,
        }
    }

    pub(super) fn broker_status(&self) -> Option<BrokerStatus> {
        self.broker.clone()
    }

    /// `/health`'s `broker` check when a broker is configured: `Err` with the reason (for the
    /// log) while the relay has no broker connection.
    ///
    /// A broker outage degrades the node but never makes it unready: membership changes
    /// still commit, their notifications wait in the outbox and go out when it returns.
    pub fn broker_check(&self) -> Option<Result<(), String>> {
        let status = self.broker.as_ref()?;
        Some(match status.get() {
            BrokerState::Connected | BrokerState::Standby => Ok(()),
            BrokerState::Down(reason) => Err(reason),
        })
    }

    /// `POST`/`DELETE /webpush/subscribe` and `GET /webpush/vapid-public-key` when
    /// notifications are pushed in-process (with a broker, `nebula-notifier` serves them);
    /// otherwise no routes.
    /// Whether this node serves the Web Push subscription API (in-process notifications).
    pub fn serves_webpush(&self) -> bool {
        self.webpush.is_some()
    }

    pub fn webpush_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        match &self.webpush {
            // The notifier's router carries its own state; `with_state(())` only re-types it
            // so it merges into a router of any state.
            Some(api) => nebula_notifier::router(api.clone()).with_state(()),
            None => Router::new(),
        }
    }
}
