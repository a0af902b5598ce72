//! The notifier's Prometheus metrics.
//!
//! Recorded through the `metrics` facade, so when the chat server embeds the pipeline they
//! land in the server's own recorder and `/metrics`. The binary installs a Prometheus recorder
//! and renders it from its own route (no exporter HTTP listener: that feature pulls in a
//! second TLS stack).

use metrics::{counter, describe_counter, describe_gauge, gauge};

/// Broker messages taken off the queue (every delivery, including redeliveries).
pub const EVENTS_CONSUMED: &str = "nebula_notifier_events_consumed_total";
/// Pushes a push service accepted.
pub const PUSHES_SENT: &str = "nebula_notifier_pushes_sent_total";
/// Pushes that failed, transiently or for good.
pub const PUSHES_FAILED: &str = "nebula_notifier_pushes_failed_total";
/// Messages sent to the dead-letter queue (malformed, or out of attempts).
pub const EVENTS_DEAD_LETTERED: &str = "nebula_notifier_events_dead_lettered_total";
/// Subscriptions deleted because their push service answered 404/410, or because their
/// endpoint's URL may not be pushed to (see `crate::endpoint`).
pub const SUBSCRIPTIONS_REMOVED: &str = "nebula_notifier_subscriptions_removed_total";
/// Mails the SMTP relay accepted.
pub const MAILS_SENT: &str = "nebula_notifier_mails_sent_total";
/// Mails that failed, transiently or for good.
pub const MAILS_FAILED: &str = "nebula_notifier_mails_failed_total";
/// 1 while the consumer holds a broker connection, else 0.
pub const BROKER_CONNECTED: &str = "nebula_notifier_broker_connected";

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_counter!(
        EVENTS_CONSUMED,
        "Broker messages taken off the notification queue"
    );
    describe_counter!(PUSHES_SENT, "Web Push messages accepted by push services");
    describe_counter!(
        PUSHES_FAILED,
        "Web Push messages that failed (transient or refused)"
    );
    describe_counter!(
        EVENTS_DEAD_LETTERED,
        "Messages sent to the dead-letter queue"
    );
    describe_counter!(
        SUBSCRIPTIONS_REMOVED,
        "Subscriptions deleted after a 404/410 from their push service, or with a refused endpoint"
    );
    describe_counter!(MAILS_SENT, "E-mails accepted by the SMTP relay");
    describe_counter!(MAILS_FAILED, "E-mails that failed (transient or refused)");
    describe_gauge!(BROKER_CONNECTED, "1 while connected to RabbitMQ");
    // Start at zero so dashboards show the series before the first event.
    for name in [
        EVENTS_CONSUMED,
        PUSHES_SENT,
        PUSHES_FAILED,
        EVENTS_DEAD_LETTERED,
        SUBSCRIPTIONS_REMOVED,
        MAILS_SENT,
        MAILS_FAILED,
    ] {
        counter!(name).absolute(0);
    }
    gauge!(BROKER_CONNECTED).set(0.0);
}

pub(crate) fn event_consumed() {
    counter!(EVENTS_CONSUMED).increment(1);
}

pub(crate) fn push_sent() {
    counter!(PUSHES_SENT).increment(1);
}

pub(crate) fn push_failed() {
    counter!(PUSHES_FAILED).increment(1);
}

pub(crate) fn event_dead_lettered() {
    counter!(EVENTS_DEAD_LETTERED).increment(1);
}

pub(crate) fn subscription_removed() {
    counter!(SUBSCRIPTIONS_REMOVED).increment(1);
}

pub(crate) fn mail_sent() {
    counter!(MAILS_SENT).increment(1);
}

pub(crate) fn mail_failed() {
    counter!(MAILS_FAILED).increment(1);
}

pub(crate) fn broker_connected(connected: bool) {
    gauge!(BROKER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}
