//! Sending one Web Push message (RFC 8030) to one subscription.
//!
//! web-push-native does the RFC 8291 `aes128gcm` encryption; we sign VAPID ourselves (see
//! [`VapidKeys::authorization`]) and send with reqwest over rustls + ring, only where the
//! [`EndpointPolicy`] allows (see `crate::endpoint`).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Uri, header};
use chrono::{DateTime, Utc};
use nebula_wire::User;
use nebula_wire::notify::{
    CallNotification, DirectMessageNotification, MemberChange, MemberNotification,
    MentionNotification, UserRef,
};
use nebula_wire::{CallMedia, Seq};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use web_push_native::{Auth, WebPushBuilder, p256};

use crate::endpoint::{EndpointPolicy, NoPublicAddress};
use crate::error::{Error, Result};
use crate::store::Subscription;
use crate::vapid::{VapidKeys, decode_base64url};

/// What the service worker receives, decrypted: one membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushPayload {
    /// `member.joined` or `member.left`, the names the WebSocket events use.
    #[serde(rename = "type")]
    pub kind: String,
    pub room_id: Uuid,
    pub room_name: String,
    pub user: User,
    /// Lets the service worker collapse a rare duplicate (use it as the notification `tag`).
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

impl PushPayload {
    /// The payload for `event`.
    pub fn from_event(event: &MemberNotification) -> Self {
        let kind = match event.change {
            MemberChange::Joined => "member.joined",
            MemberChange::Left => "member.left",
        };
        PushPayload {
            kind: kind.to_owned(),
            room_id: event.room_id,
            room_name: event.room_name.clone(),
            user: event.user.clone(),
            event_id: event.event_id,
            occurred_at: event.occurred_at,
        }
    }
}

/// What the service worker receives, decrypted, for a direct message (`type`
/// `"message.direct"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePushPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub room_id: Uuid,
    pub message: MessageRef,
    pub sender: UserRef,
    /// The start of the message (see `DirectMessageNotification::PREVIEW_CHARS`).
    pub preview: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

/// Which message a push is about: enough to open the room at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub id: Uuid,
    pub seq: Seq,
}

impl MessagePushPayload {
    pub const TYPE: &str = "message.direct";

    pub fn from_event(event: &DirectMessageNotification) -> Self {
        MessagePushPayload {
            kind: Self::TYPE.to_owned(),
            room_id: event.room_id,
            message: MessageRef {
                id: event.message_id,
                seq: event.seq,
            },
            sender: event.sender.clone(),
            preview: event.preview.clone(),
            event_id: event.event_id,
            occurred_at: event.occurred_at,
        }
    }
}

/// What the service worker receives, decrypted, when someone mentions the user in a group
/// room (`type` `"message.mention"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MentionPushPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub room_id: Uuid,
    pub room_name: String,
    pub message: MessageRef,
    pub sender: UserRef,
    /// The start of the message (see `DirectMessageNotification::PREVIEW_CHARS`).
    pub preview: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
}

impl MentionPushPayload {
    pub const TYPE: &str = "message.mention";

    pub fn from_event(event: &MentionNotification) -> Self {
        MentionPushPayload {
            kind: Self::TYPE.to_owned(),
            room_id: event.room_id,
            room_name: event.room_name.clone(),
            message: MessageRef {
                id: event.message_id,
                seq: event.seq,
            },
            sender: event.sender.clone(),
            preview: event.preview.clone(),
            event_id: event.event_id,
            occurred_at: event.occurred_at,
        }
    }
}

/// What the service worker receives, decrypted, for a call ringing while the user had no open
/// connection (`type` `"call.incoming"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPushPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub call_id: Uuid,
    pub from: UserRef,
    pub media: CallMedia,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// When the call stops ringing: a notification shown later should say "missed call".
    pub expires_at: DateTime<Utc>,
}

impl CallPushPayload {
    pub const TYPE: &str = "call.incoming";

    pub fn from_event(event: &CallNotification) -> Self {
        CallPushPayload {
            kind: Self::TYPE.to_owned(),
            call_id: event.call_id,
            from: event.caller.clone(),
            media: event.media,
            event_id: event.event_id,
            occurred_at: event.occurred_at,
            expires_at: event.expires_at,
        }
    }
}

/// How a push service answered, sorted by what the dispatcher must do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// 2xx: the push service took the message.
    Delivered,
    /// 404/410 (or keys that can never work): the subscription is dead, delete it.
    Gone,
    /// Another 4xx: this message will never be accepted (too large, malformed, VAPID
    /// mismatch); retrying cannot help, so it is logged and not retried.
    Rejected(StatusCode),
    /// Network error, timeout, 408, 429 or 5xx: worth trying again later.
    Transient(String),
    /// The endpoint's URL may not be pushed to (plain http, `localhost`, a non-public IP
    /// literal): nothing was sent, and nothing ever will be, so the subscription is deleted.
    EndpointRefused(String),
    /// The endpoint's host resolved only to non-public addresses: nothing was sent. Not
    /// retried, but the subscription is kept, since a DNS answer can change.
    AddressRefused(String),
}

/// Sends encrypted, VAPID-signed pushes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PushSender {
    http: reqwest::Client,
    vapid: Arc<VapidKeys>,
    ttl: Duration,
    endpoints: EndpointPolicy,
}

/// Headers of one push that differ per event.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// `TTL`; `None`: the sender's default.
    pub ttl: Option<Duration>,
    /// `Topic` (RFC 8030 §5.4, at most 32 URL-safe base64 characters); `None`: derived from
    /// the event id, so a retried event still replaces its own earlier copy.
    pub topic: Option<String>,
}

/// How long a push service may keep an undelivered message (the `TTL` header).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Lifetime of the VAPID JWT; RFC 8292 allows at most 24 hours.
const VAPID_VALIDITY: Duration = Duration::from_secs(12 * 60 * 60);

impl PushSender {
    /// A sender with its own HTTP client (HTTP/2 where the push service offers it), pushing
    /// only to the endpoints `endpoints` allows.
    pub fn new(vapid: VapidKeys, ttl: Duration, endpoints: EndpointPolicy) -> Result<Self> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A push service that takes longer is treated as down; the event is retried.
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("nebula-notifier/", env!("CARGO_PKG_VERSION")))
            // Every host name is resolved here and only allowed addresses are connected to.
            .dns_resolver(endpoints.resolver())
            // A push service never redirects; following one would send the push (and the
            // request) wherever the endpoint's owner points it, past the checks above.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, out of the resolver's sight.
            .no_proxy()
            .https_only(!endpoints.allows_private())
            .build()?;
        Ok(PushSender {
            http,
            vapid: Arc::new(vapid),
            ttl,
            endpoints,
        })
    }

    /// The VAPID keys pushes are signed with.
    pub fn vapid(&self) -> &VapidKeys {
        &self.vapid
    }

    /// Encrypts `payload` for `subscription` and posts it to the subscription's endpoint.
    pub async fn send<P: Serialize + ?Sized>(
        &self,
        subscription: &Subscription,
        payload: &P,
        event_id: Uuid,
    ) -> PushOutcome {
        self.send_with(subscription, payload, event_id, SendOptions::default())
            .await
    }

    /// [`PushSender::send`] with a `TTL` of its own: how long the push service may hold the
    /// message for an offline browser (an incoming call is worth showing only while it rings).
    pub async fn send_with_ttl<P: Serialize + ?Sized>(
        &self,
        subscription: &Subscription,
        payload: &P,
        event_id: Uuid,
        ttl: Duration,
    ) -> PushOutcome {
        let options = SendOptions {
            ttl: Some(ttl),
            topic: None,
        };
        self.send_with(subscription, payload, event_id, options)
            .await
    }

    /// [`PushSender::send`] with the headers of `options`. Every push goes through here, so
    /// this is where the `push.send` span is (the dispatcher calls it directly).
    #[tracing::instrument(name = "push.send", skip_all, fields(subscription = %subscription.id))]
    pub async fn send_with<P: Serialize + ?Sized>(
        &self,
        subscription: &Subscription,
        payload: &P,
        event_id: Uuid,
        options: SendOptions,
    ) -> PushOutcome {
        let ttl = options.ttl.unwrap_or(self.ttl);
        let topic = options
            .topic
            .unwrap_or_else(|| event_id.simple().to_string());
        // Checked again here, not only at subscribe time: the row may predate the rule, or
        // have been stored by a process that allowed private endpoints. reqwest does not
        // resolve IP literals, so this is also what keeps those off private addresses.
        let url = match self.endpoints.check(&subscription.endpoint) {
            Ok(url) => url,
            Err(refused) => return PushOutcome::EndpointRefused(refused.to_string()),
        };
        let request = match self.build(&url, subscription, payload, &topic, ttl) {
            Ok(request) => request,
            Err(err) => {
                // Only stored keys that are not a valid P-256 point / 16-byte secret get here;
                // they were validated on subscribe, so the row is corrupt and can never work.
                tracing::warn!(error = %err, "unusable subscription");
                return PushOutcome::Gone;
            }
        };
        match self.http.execute(request).await {
            Ok(response) => classify(response.status()),
            Err(err) => match no_public_address(&err) {
                Some(refused) => PushOutcome::AddressRefused(refused.to_string()),
                None => PushOutcome::Transient(err.to_string()),
            },
        }
    }

    /// The request to `url`, the subscription's endpoint as checked: what was checked is
    /// what is sent to.
    fn build<P: Serialize + ?Sized>(
        &self,
        url: &Url,
        subscription: &Subscription,
        payload: &P,
        topic: &str,
        ttl: Duration,
    ) -> Result<reqwest::Request> {
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|err| Error::PushBuild(format!("endpoint: {err}")))?;
        let ua_public = decode_base64url(&subscription.p256dh)
            .and_then(|raw| p256::PublicKey::from_sec1_bytes(&raw).ok())
            .ok_or_else(|| Error::PushBuild("p256dh is not a P-256 point".into()))?;
        let ua_auth = decode_base64url(&subscription.auth)
            .and_then(|raw| <[u8; 16]>::try_from(raw.as_slice()).ok())
            .map(Auth::from)
            .ok_or_else(|| Error::PushBuild("auth is not 16 bytes".into()))?;
        let body = serde_json::to_vec(payload)
            .map_err(|err| Error::PushBuild(format!("payload: {err}")))?;

        // The builder sets TTL, Content-Encoding: aes128gcm and the encrypted body; its own
        // VAPID support is not used because of the `aud` port bug.
        let mut request = WebPushBuilder::new(uri, ua_public, ua_auth)
            .with_valid_duration(ttl)
            .build(body)
            .map_err(|err| Error::PushBuild(err.to_string()))?;
        let authorization = self.vapid.authorization(url, VAPID_VALIDITY)?;
        let headers = request.headers_mut();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::try_from(authorization)
                .map_err(|err| Error::PushBuild(err.to_string()))?,
        );
        headers.insert("urgency", HeaderValue::from_static("normal"));
        // RFC 8030 §5.4: a push service replaces a still-undelivered message with the same
        // topic: pushes about one room share the room's topic (a burst shows as its latest),
        // others use their event id (32 hex chars), so a retried event cannot pile up twice on
        // an offline device.
        let topic =
            HeaderValue::try_from(topic).map_err(|err| Error::PushBuild(err.to_string()))?;
        headers.insert("topic", topic);
        reqwest::Request::try_from(request).map_err(Error::from)
    }
}

/// The resolver's refusal, if that is why the request failed.
fn no_public_address(err: &reqwest::Error) -> Option<&NoPublicAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<NoPublicAddress>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// Sorts a push service's status into what the dispatcher does next.
fn classify(status: StatusCode) -> PushOutcome {
    match status.as_u16() {
        200..=299 => PushOutcome::Delivered,
        // Redirects are not followed (see `PushSender::new`), and asking again would get
        // the same answer.
        300..=399 => PushOutcome::Rejected(status),
        404 | 410 => PushOutcome::Gone,
        408 | 429 => PushOutcome::Transient(format!("push service answered {status}")),
        400..=499 => PushOutcome::Rejected(status),
        _ => PushOutcome::Transient(format!("push service answered {status}")),
    }
}
