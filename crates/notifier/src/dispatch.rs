//! Turning one notification into pushes: the pipeline the consumer runs per message and the
//! chat server runs in-process when it has no broker.
//!
//! Membership changes go to the room's other members. A direct message or an incoming call
//! goes to its one recipient, but first the dispatcher re-checks what may have changed since
//! the send, at dispatch time (see `PushStore::direct_message_suppressed`): a message the
//! recipient has read, one that was deleted, or anything between two users of whom one has
//! blocked the other is not pushed, and a call that stopped ringing is not announced. Such an
//! event is marked processed without a push (`DeliveryReport::suppressed`).
//!
//! Failure model. An event is finished once every subscription of every recipient has either
//! accepted the push, refused it for good, or turned out to be gone; only then is it marked
//! processed. If some pushes fail transiently, [`Dispatcher::deliver`] returns
//! [`Error::Incomplete`] and the caller retries with backoff.
//!
//! Each push is claimed in the store per (event, subscription) before it is sent and marked
//! done when the push service answers, so a retry pushes only to the subscriptions still
//! missing it, and two copies of one event handled at once (a publisher that sent it twice,
//! two notifier instances) never push the same subscription twice: the second finds the claim
//! and reports the event incomplete, and its retry then finds the event processed. A copy
//! that checked "processed" just before the other one finished, and so reaches a claim after
//! the event's per-subscription rows were deleted, is told by the claim itself that the event
//! is processed (see `PushStore::claim_delivery`) and sends nothing. A claim left by a pusher
//! that died is taken over after the lease. The one window left is a crash between a push
//! service's answer and the "done" record: that single push is sent again. The payload
//! carries `event_id` and the push a `Topic` header so the client can collapse it.
//!
//! Endpoints the [`PushSender`] refuses to contact (see `crate::endpoint`) are settled, not
//! retried: one whose URL can never be allowed is deleted like a subscription the push
//! service called gone; one whose host resolved only to non-public addresses is kept (DNS
//! answers change) and skipped for this event, like a push refused for good.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream;
use nebula_wire::notify::{MailNotification, MemberNotification, Notification, room_topic};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::mail::{MailOutcome, Mailer};
use crate::metrics;
use crate::push::{
    CallPushPayload, MentionPushPayload, MessagePushPayload, PushOutcome, PushPayload, PushSender,
    SendOptions,
};
use crate::store::{Claim, PushStore, Subscription, Suppressed};

/// What [`Dispatcher::deliver`] did with an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The event was already processed: nothing was sent.
    pub duplicate: bool,
    /// Pushes the push services accepted in this call.
    pub sent: usize,
    /// Subscriptions deleted because their push service said they are gone.
    pub removed: usize,
    /// Pushes refused for good (non-retryable 4xx).
    pub rejected: usize,
    /// Not pushed at all, and why: read, deleted, blocked, or a call no longer ringing.
    pub suppressed: Option<Suppressed>,
}

/// Who an event goes to and what they receive.
struct Plan {
    recipients: Vec<Uuid>,
    payload: serde_json::Value,
    /// The push's `TTL`, when not the sender's default.
    ttl: Option<Duration>,
    /// The push's `Topic` (RFC 8030 §5.4): the room's, so the pushes of a burst in one room
    /// replace each other on a push service instead of stacking; `None`: the event's own.
    topic: Option<String>,
}

/// Pushes notifications to recipients' browsers and sends mail events over SMTP. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: PushStore,
    sender: PushSender,
    /// `None` when no SMTP relay is configured: mail events are then dropped with a warning.
    mailer: Option<Mailer>,
    concurrency: usize,
    claim_lease: Duration,
}

/// Pushes in flight per event. Push services are fast; a bound keeps one large room from
/// opening hundreds of connections at once.
const DEFAULT_CONCURRENCY: usize = 8;

/// How long a claim protects a push in progress. Well above the push timeout (15 s), so
/// only a pusher that died loses its claim. Keep the consumer's total retry time above it, or
/// an event whose claims were orphaned by a crash may run out of attempts before they expire.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);

/// What happened to one subscription's push.
enum Step {
    Pushed(PushOutcome),
    /// Another handler of the same event holds the claim; the event is not finished yet.
    Busy,
    /// Another copy of the event finished it meanwhile: nothing to send.
    Finished,
}
impl Dispatcher {
    /// A dispatcher over `store`, sending with `sender`.
    pub fn new(store: PushStore, sender: PushSender) -> Self {
        Dispatcher {
            store,
            sender,
            mailer: None,
            concurrency: DEFAULT_CONCURRENCY,
            claim_lease: DEFAULT_CLAIM_LEASE,
        }
    }

    /// Sends mail events through `mailer`.
    pub fn with_mailer(mut self, mailer: Option<Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    /// Mails `event` once (see [`Dispatcher::dispatch`]).
    pub async fn deliver_mail(&self, event: &MailNotification) -> Result<DeliveryReport> {
        self.dispatch(&Notification::Mail(event.clone())).await
    }

    /// Sends one mail event not yet processed. A mail the relay refuses for good is settled
    /// (not retried); a transient failure returns [`Error::Incomplete`] for the caller to
    /// retry with backoff. The one window left is a crash between the relay's answer and
    /// `mark_processed`: the copy sent again carries the same `Message-ID`.
    async fn send_mail(&self, event: &MailNotification) -> Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        match &self.mailer {
            None => {
                tracing::warn!("no SMTP_URL / RESEND_API_KEY configured; a mail was dropped");
                report.rejected = 1;
            }
            Some(mailer) => match mailer.send(event).await {
                MailOutcome::Sent => {
                    metrics::mail_sent();
                    report.sent = 1;
                }
                MailOutcome::Rejected(reason) => {
                    metrics::mail_failed();
                    tracing::warn!(%reason, "mail refused for good; not retrying it");
                    report.rejected = 1;
                }
                MailOutcome::Transient(reason) => {
                    metrics::mail_failed();
                    tracing::warn!(%reason, "mail failed; will retry");
                    return Err(Error::Incomplete {
                        failed: 1,
                        attempted: 1,
                    });
                }
            },
        }
        self.store.mark_processed(event.event_id).await?;
        tracing::info!(sent = report.sent, "mail event delivered");
        Ok(report)
    }

    /// Changes the claim lease (see [`DEFAULT_CLAIM_LEASE`]).
    pub fn with_claim_lease(mut self, lease: Duration) -> Self {
        self.claim_lease = lease;
        self
    }

    /// Changes how many pushes of one event may be in flight at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The store this dispatcher records into.
    pub fn store(&self) -> &PushStore {
        &self.store
    }

    /// Pushes a membership event to every subscription of its recipients, once (see
    /// [`Dispatcher::dispatch`]).
    pub async fn deliver(&self, event: &MemberNotification) -> Result<DeliveryReport> {
        self.dispatch(&Notification::Member(event.clone())).await
    }

    /// Pushes `event` to every subscription of its recipients, once; a mail event is sent
    /// over SMTP instead, once.
    ///
    /// Already processed: does nothing. Otherwise pushes to each subscription not yet
    /// served, deletes subscriptions answered 404/410, and marks the event processed — unless
    /// some push failed transiently, in which case it returns [`Error::Incomplete`] and a
    /// later call finishes the job. Database errors are returned as they are; both kinds are
    /// worth retrying. A direct message or call that should no longer be pushed (see the
    /// module docs) is marked processed with nothing sent.
    #[tracing::instrument(skip_all, fields(event_id = %event.event_id(), kind = event.kind()))]
    pub async fn dispatch(&self, event: &Notification) -> Result<DeliveryReport> {
        let event_id = event.event_id();
        if self.store.is_processed(event_id).await? {
            tracing::debug!("event already processed");
            return Ok(DeliveryReport {
                duplicate: true,
                ..DeliveryReport::default()
            });
        }
        if let Notification::Mail(mail) = event {
            return self.send_mail(mail).await;
        }
        let plan = match self.plan(event).await? {
            Ok(plan) => plan,
            Err(reason) => {
                self.store.mark_processed(event_id).await?;
                tracing::info!(reason = reason.as_str(), "not pushed");
                return Ok(DeliveryReport {
                    suppressed: Some(reason),
                    ..DeliveryReport::default()
                });
            }
        };
        let subscriptions = self
            .store
            .pending_subscriptions(event_id, &plan.recipients)
            .await?;

        let outcomes: Vec<Result<Step>> = stream::iter(subscriptions)
            .map(|subscription| self.push_one(subscription, &plan, event_id))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;

        let mut report = DeliveryReport::default();
        let attempted = outcomes.len();
        let mut failed = 0;
        for outcome in outcomes {
            match outcome? {
                Step::Pushed(PushOutcome::Delivered) => report.sent += 1,
                Step::Pushed(PushOutcome::Gone | PushOutcome::EndpointRefused(_)) => {
                    report.removed += 1
                }
                Step::Pushed(PushOutcome::Rejected(_) | PushOutcome::AddressRefused(_)) => {
                    report.rejected += 1
                }
                Step::Pushed(PushOutcome::Transient(_)) | Step::Busy => failed += 1,
                Step::Finished => {}
            }
        }
        if failed > 0 {
            return Err(Error::Incomplete { failed, attempted });
        }
        self.store.mark_processed(event_id).await?;
        tracing::info!(
            sent = report.sent,
            removed = report.removed,
            rejected = report.rejected,
            "event delivered"
        );
        Ok(report)
    }

    /// Who gets what; `Err` when the event is not to be pushed at all.
    /// Why a push about message `seq` of `room_id` from `sender` must not reach `recipient`
    /// (oneself; read, deleted, blocked, muted, push off), or `None` to send it.
    async fn message_push_suppressed(
        &self,
        room_id: Uuid,
        seq: i64,
        sender: Uuid,
        recipient: Uuid,
    ) -> Result<Option<Suppressed>> {
        if recipient == sender {
            return Ok(Some(Suppressed::NotMember));
        }
        self.store
            .direct_message_suppressed(room_id, seq, sender, recipient)
            .await
    }

    async fn plan(&self, event: &Notification) -> Result<std::result::Result<Plan, Suppressed>> {
        let encode = |value: std::result::Result<serde_json::Value, serde_json::Error>| {
            value.map_err(|err| Error::MalformedEvent(format!("cannot encode the payload: {err}")))
        };
        Ok(Ok(match event {
            Notification::Mail(_) => {
                return Err(Error::MalformedEvent("a mail is not pushed".into()));
            }
            Notification::Member(event) => Plan {
                // The member who joined or left is never told about it, whatever the
                // publisher sent.
                recipients: event
                    .recipients
                    .iter()
                    .copied()
                    .filter(|id| *id != event.user.id)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                payload: encode(serde_json::to_value(PushPayload::from_event(event)))?,
                ttl: None,
                topic: Some(room_topic(event.room_id)),
            },
            Notification::DirectMessage(event) => {
                if let Some(reason) = self
                    .message_push_suppressed(
                        event.room_id,
                        event.seq,
                        event.sender.id,
                        event.recipient,
                    )
                    .await?
                {
                    return Ok(Err(reason));
                }
                Plan {
                    recipients: vec![event.recipient],
                    payload: encode(serde_json::to_value(MessagePushPayload::from_event(event)))?,
                    ttl: None,
                    topic: Some(room_topic(event.room_id)),
                }
            }
            Notification::Mention(event) => {
                // The same checks as a direct message: read, deleted, blocked, muted, push off.
                if let Some(reason) = self
                    .message_push_suppressed(
                        event.room_id,
                        event.seq,
                        event.sender.id,
                        event.recipient,
                    )
                    .await?
                {
                    return Ok(Err(reason));
                }
                Plan {
                    recipients: vec![event.recipient],
                    payload: encode(serde_json::to_value(MentionPushPayload::from_event(event)))?,
                    ttl: None,
                    topic: Some(room_topic(event.room_id)),
                }
            }
            Notification::IncomingCall(event) => {
                // Whole seconds left to ring; a push service takes TTL in seconds.
                let left = (event.expires_at - chrono::Utc::now()).num_seconds();
                let Some(left) = u64::try_from(left).ok().filter(|left| *left > 0) else {
                    return Ok(Err(Suppressed::Expired));
                };
                if event.callee == event.caller.id {
                    return Ok(Err(Suppressed::NotMember));
                }
                if self
                    .store
                    .blocked_either_way(event.caller.id, event.callee)
                    .await?
                {
                    return Ok(Err(Suppressed::Blocked));
                }
                if !self.store.push_enabled(event.callee).await? {
                    return Ok(Err(Suppressed::PushOff));
                }
                Plan {
                    recipients: vec![event.callee],
                    payload: encode(serde_json::to_value(CallPushPayload::from_event(event)))?,
                    ttl: Some(Duration::from_secs(left)),
                    topic: None,
                }
            }
        }))
    }

    /// Claims, pushes to one subscription and records what the push service said.
    async fn push_one(
        &self,
        subscription: Subscription,
        plan: &Plan,
        event_id: Uuid,
    ) -> Result<Step> {
        let id = subscription.id;
        match self
            .store
            .claim_delivery(event_id, id, self.claim_lease)
            .await?
        {
            Claim::Claimed => {}
            Claim::Taken => {
                tracing::debug!(subscription = %id, "push claimed by another handler");
                return Ok(Step::Busy);
            }
            Claim::Processed => {
                tracing::debug!(subscription = %id, "event finished by another handler");
                return Ok(Step::Finished);
            }
        }
        let options = SendOptions {
            ttl: plan.ttl,
            topic: plan.topic.clone(),
        };
        let outcome = self
            .sender
            .send_with(&subscription, &plan.payload, event_id, options)
            .await;
        match &outcome {
            PushOutcome::Delivered => {
                metrics::push_sent();
                self.store.complete_delivery(event_id, id).await?;
            }
            PushOutcome::Gone => {
                tracing::info!(subscription = %id, "push subscription gone; removing it");
                // Deleting the subscription deletes its claim too (foreign key cascade).
                if self.store.remove_subscription_by_id(id).await? {
                    metrics::subscription_removed();
                }
            }
            PushOutcome::EndpointRefused(reason) => {
                metrics::push_failed();
                tracing::warn!(subscription = %id, %reason,
                    "push endpoint not allowed; removing the subscription without contacting it");
                if self.store.remove_subscription_by_id(id).await? {
                    metrics::subscription_removed();
                }
            }
            PushOutcome::Rejected(status) => {
                metrics::push_failed();
                tracing::warn!(subscription = %id, %status, "push refused; not retrying it");
                // Done, so a retry of this event does not ask again.
                self.store.complete_delivery(event_id, id).await?;
            }
            PushOutcome::AddressRefused(reason) => {
                metrics::push_failed();
                tracing::warn!(subscription = %id, %reason,
                    "push endpoint resolves to no public address; not contacted, not retried");
                self.store.complete_delivery(event_id, id).await?;
            }
            PushOutcome::Transient(reason) => {
                metrics::push_failed();
                tracing::warn!(subscription = %id, %reason, "push failed; will retry");
                self.store.release_delivery(event_id, id).await?;
            }
        }
        Ok(Step::Pushed(outcome))
    }
}
