//! Nebula's notification service: when someone joins or leaves a room, the other members'
//! browsers get a Web Push notification; so does the recipient of a direct message and the
//! callee of a call who had no open connection (RFC 8030 / 8291 `aes128gcm` / 8292 VAPID).
//!
//! The pipeline, usable standalone (the `nebula-notifier` binary) or embedded in the chat
//! server (which runs it in-process when no RabbitMQ is configured):
//!
//! ```text
//! server outbox ─► RabbitMQ (topology) ─► consumer ─► Dispatcher::deliver ─► PushSender ─► push service
//!                                                         │
//!                                                 PushStore (subscriptions, dedupe)
//! browser ─► http::router (POST/DELETE /webpush/subscribe) ─► PushStore
//! ```

pub mod app;
pub mod config;
pub mod consumer;
pub mod dispatch;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod otel;
pub mod push;
pub mod store;
pub mod topology;
pub mod vapid;

pub use consumer::{Consumer, ConsumerConfig};
pub use dispatch::{DeliveryReport, Dispatcher};
pub use endpoint::EndpointPolicy;
pub use error::{Error, Result};
pub use http::{ApiState, SubscriptionRules, WebPushApi, router};
pub use mail::{MailOutcome, Mailer};
pub use push::{
    CallPushPayload, MentionPushPayload, MessagePushPayload, MessageRef, PushOutcome, PushPayload,
    PushSender, SendOptions,
};
pub use store::{Claim, NewSubscription, PushStore, Subscription, Suppressed};
pub use topology::{DEAD_LETTER_EXCHANGE, EXCHANGE, QUEUE, Topology, declare_topology};
pub use vapid::{GeneratedVapidKeys, VapidKeys, generate_vapid_keys};

/// Installs ring as rustls's process-wide crypto provider, once.
///
/// reqwest is built with `rustls-no-provider` (its default provider, aws-lc, is a slow C
/// build), so some provider must be installed before the first HTTPS request. If the host
/// process installed one already, that one stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
