//! A loopback push service: what a browser vendor's push server does with our requests,
//! minus forwarding. It checks the VAPID JWT (ES256 signature, `aud` = its own origin with
//! port, `exp`, `sub`), decrypts the body with the browser's private key and records the
//! payload; anything wrong is answered 400/401 and recorded as an error the tests assert on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::OsRng;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use nebula_notifier::PushPayload;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde::Deserialize;
use tokio::sync::Notify;
use uuid::Uuid;

use super::ece;

/// How the endpoint answers pushes for one browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 201 Created, and the push is recorded.
    Accept,
    /// 410 Gone: the subscription expired.
    Gone,
    /// 503: the push service is having a bad day.
    Unavailable,
    /// 413: this message will never be accepted.
    Refuse,
}

/// One simulated browser subscription: its keys stay here, the rest goes to the notifier.
#[derive(Debug, Clone)]
pub struct Browser {
    pub id: String,
    pub endpoint: String,
    /// base64url, as `PushSubscription.toJSON()` gives it.
    pub p256dh: String,
    pub auth: String,
}

/// A push that passed every check.
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    pub browser: String,
    pub payload: PushPayload,
    /// The decrypted JSON as sent, to check the wire shape independently of `PushPayload`.
    pub raw: serde_json::Value,
    /// The RFC 8030 `Topic` header, if any (checked to be ≤ 32 URL-safe base64 characters).
    pub topic: Option<String>,
}

/// A push of another kind than a membership change (a direct message, an incoming call),
/// checked like the others; `raw` is its decrypted JSON.
#[derive(Debug, Clone)]
pub struct OtherPush {
    pub browser: String,
    pub raw: serde_json::Value,
    /// The `TTL` header, in seconds.
    pub ttl: u64,
    /// The RFC 8030 `Topic` header, if any (checked to be ≤ 32 URL-safe base64 characters).
    pub topic: Option<String>,
}

struct Keys {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

#[derive(Default)]
struct Inner {
    keys: HashMap<String, Keys>,
    modes: HashMap<String, Mode>,
    received: Vec<ReceivedPush>,
    /// Accepted pushes that are not membership changes.
    others: Vec<OtherPush>,
    /// Every request per browser, whatever the answer.
    requests: HashMap<String, usize>,
    errors: Vec<String>,
    /// While set, pushes beyond this many accepted ones are held unanswered, then refused.
    hold_after: Option<usize>,
    held: usize,
    /// Browsers whose pushes wait at this gate until it is opened, then are handled as usual.
    gates: HashMap<String, Arc<Notify>>,
    /// Pushes waiting at a gate, per browser.
    waiting: HashMap<String, usize>,
}

struct Shared {
    origin: String,
    vapid_public_key: String,
    subject: String,
    inner: Mutex<Inner>,
    changed: Notify,
    release: Notify,
    /// TCP connections accepted, whatever came (or did not come) over them.
    connections: AtomicUsize,
}

/// The running endpoint; stops when dropped.
pub struct PushEndpoint {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PushEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PushEndpoint {
    /// Listens on 127.0.0.1 (random port), expecting pushes signed by `vapid_public_key`.
    pub async fn start(vapid_public_key: &str, subject: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            origin,
            vapid_public_key: vapid_public_key.to_owned(),
            subject: subject.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            release: Notify::new(),
            connections: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/push/{id}", post(receive))
            .with_state(Arc::clone(&shared));
        let counted = Arc::clone(&shared);
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, Ordering::SeqCst);
            counted.changed.notify_waiters();
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        PushEndpoint { shared, task }
    }

    /// A new browser subscription with fresh keys, accepting pushes.
    pub fn new_browser(&self) -> Browser {
        let secret = p256::SecretKey::random(&mut OsRng);
        let auth: [u8; 16] = rand::random();
        let id = Uuid::new_v4().simple().to_string();
        let browser = Browser {
            endpoint: format!("{}/push/{id}", self.shared.origin),
            p256dh: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth),
            id: id.clone(),
        };
        let mut inner = self.shared.inner.lock().unwrap();
        inner.keys.insert(id.clone(), Keys { secret, auth });
        inner.modes.insert(id, Mode::Accept);
        browser
    }

    pub fn set_mode(&self, browser: &Browser, mode: Mode) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .modes
            .insert(browser.id.clone(), mode);
    }

    /// Accepts `count` pushes in total, then holds every further one unanswered.
    pub fn hold_after(&self, count: usize) {
        self.shared.inner.lock().unwrap().hold_after = Some(count);
    }

    /// Refuses (503, unrecorded) every held push and accepts normally from now on.
    pub fn release_held(&self) {
        self.shared.inner.lock().unwrap().hold_after = None;
        self.shared.release.notify_waiters();
    }

    pub fn held(&self) -> usize {
        self.shared.inner.lock().unwrap().held
    }

    /// From now on, pushes for `browser` wait unanswered until [`PushEndpoint::open`].
    pub fn close_gate(&self, browser: &Browser) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .gates
            .insert(browser.id.clone(), Arc::new(Notify::new()));
    }

    /// Lets the pushes waiting at `browser`'s gate (and later ones) through, handled as usual.
    pub fn open(&self, browser: &Browser) {
        let gate = self.shared.inner.lock().unwrap().gates.remove(&browser.id);
        if let Some(gate) = gate {
            gate.notify_waiters();
        }
    }

    /// Pushes for `browser` waiting at its gate right now.
    pub fn waiting_for(&self, browser: &Browser) -> usize {
        self.shared
            .inner
            .lock()
            .unwrap()
            .waiting
            .get(&browser.id)
            .copied()
            .unwrap_or(0)
    }

    /// TCP connections accepted so far: a request that never got this far never reached
    /// the host at all.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The `scheme://host:port` pushes are expected at.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    pub fn received(&self) -> Vec<ReceivedPush> {
        self.shared.inner.lock().unwrap().received.clone()
    }

    /// Accepted pushes other than membership changes, in arrival order.
    pub fn others(&self) -> Vec<OtherPush> {
        self.shared.inner.lock().unwrap().others.clone()
    }

    /// The decrypted JSON of the pushes other than membership changes `browser` accepted.
    pub fn others_for(&self, browser: &Browser) -> Vec<serde_json::Value> {
        self.others()
            .into_iter()
            .filter(|push| push.browser == browser.id)
            .map(|push| push.raw)
            .collect()
    }

    /// Waits until at least `count` pushes other than membership changes were accepted.
    pub async fn wait_for_others(&self, count: usize, timeout: Duration) -> Vec<OtherPush> {
        self.wait_until(timeout, &format!("{count} other pushes"), |endpoint| {
            endpoint.others().len() >= count
        })
        .await;
        self.others()
    }

    pub fn received_by(&self, browser: &Browser) -> Vec<PushPayload> {
        self.received()
            .into_iter()
            .filter(|push| push.browser == browser.id)
            .map(|push| push.payload)
            .collect()
    }

    pub fn requests_for(&self, browser: &Browser) -> usize {
        self.shared
            .inner
            .lock()
            .unwrap()
            .requests
            .get(&browser.id)
            .copied()
            .unwrap_or(0)
    }

    /// Every verification failure so far; tests expect none.
    pub fn errors(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().errors.clone()
    }

    /// Waits (up to `timeout`) until `done` holds for the endpoint's state.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&PushEndpoint) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                assert!(
                    done(self),
                    "timed out waiting for {what}; received {:?}, errors {:?}",
                    self.received()
                        .iter()
                        .map(|push| push.payload.event_id)
                        .collect::<Vec<_>>(),
                    self.errors()
                );
                return;
            }
        }
    }

    /// Waits until at least `count` pushes were accepted.
    pub async fn wait_for_pushes(&self, count: usize, timeout: Duration) -> Vec<ReceivedPush> {
        self.wait_until(timeout, &format!("{count} pushes"), |endpoint| {
            endpoint.received().len() >= count
        })
        .await;
        self.received()
    }
}

#[derive(Debug, Deserialize)]
struct VapidClaims {
    sub: String,
    exp: i64,
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (mode, gate) = {
        let mut inner = shared.inner.lock().unwrap();
        *inner.requests.entry(id.clone()).or_default() += 1;
        (inner.modes.get(&id).copied(), inner.gates.get(&id).cloned())
    };
    if let Some(gate) = gate {
        // Listening before counting ourselves as waiting, so an `open` the test sends as soon
        // as it sees us waiting cannot be missed.
        let opened = gate.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        let still_closed = {
            let mut inner = shared.inner.lock().unwrap();
            let closed = inner
                .gates
                .get(&id)
                .is_some_and(|current| Arc::ptr_eq(current, &gate));
            if closed {
                *inner.waiting.entry(id.clone()).or_default() += 1;
            }
            closed
        };
        shared.changed.notify_waiters();
        if still_closed {
            opened.await;
            *shared
                .inner
                .lock()
                .unwrap()
                .waiting
                .entry(id.clone())
                .or_default() -= 1;
        }
    }
    shared.changed.notify_waiters();
    let Some(mode) = mode else {
        return StatusCode::NOT_FOUND;
    };
    let checked = verify(&shared, &id, &headers, &body).and_then(|verified| {
        let topic = topic(&headers)?;
        Ok((verified, topic))
    });
    let decision = {
        let mut inner = shared.inner.lock().unwrap();
        match checked {
            Err(error) => {
                inner.errors.push(format!("{id}: {error}"));
                Decision::Answer(StatusCode::BAD_REQUEST)
            }
            Ok(_) if mode == Mode::Gone => Decision::Answer(StatusCode::GONE),
            Ok(_) if mode == Mode::Unavailable => Decision::Answer(StatusCode::SERVICE_UNAVAILABLE),
            Ok(_) if mode == Mode::Refuse => Decision::Answer(StatusCode::PAYLOAD_TOO_LARGE),
            Ok(_)
                if inner
                    .hold_after
                    .is_some_and(|limit| inner.received.len() >= limit) =>
            {
                inner.held += 1;
                Decision::Hold(shared.release.notified())
            }
            Ok(((Some(payload), raw, _), topic)) => {
                inner.received.push(ReceivedPush {
                    browser: id,
                    payload,
                    raw,
                    topic,
                });
                Decision::Answer(StatusCode::CREATED)
            }
            Ok(((None, raw, ttl), topic)) => {
                inner.others.push(OtherPush {
                    browser: id,
                    raw,
                    ttl,
                    topic,
                });
                Decision::Answer(StatusCode::CREATED)
            }
        }
    };
    shared.changed.notify_waiters();
    match decision {
        Decision::Answer(status) => status,
        Decision::Hold(release) => {
            // Never recorded: the sender never learns it got through, so neither do we.
            release.await;
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The `Topic` header as RFC 8030 §5.4 allows it: at most 32 characters of the URL-safe
/// base64 alphabet.
fn topic(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get("topic") else {
        return Ok(None);
    };
    let topic = value
        .to_str()
        .map_err(|_| "Topic is not ASCII".to_owned())?;
    let url_safe = topic
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if topic.is_empty() || topic.len() > 32 || !url_safe {
        return Err(format!(
            "Topic {topic:?} is not 1-32 URL-safe base64 characters"
        ));
    }
    Ok(Some(topic.to_owned()))
}

enum Decision<'a> {
    Answer(StatusCode),
    Hold(tokio::sync::futures::Notified<'a>),
}

/// Everything a real push service and browser would check, in order. A membership change
/// comes back as a `PushPayload` too; other kinds only as JSON (and their TTL).
fn verify(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Option<PushPayload>, serde_json::Value, u64), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    if header("content-encoding").as_deref() != Some("aes128gcm") {
        return Err("Content-Encoding must be aes128gcm".into());
    }
    let ttl = header("ttl").ok_or("missing TTL")?;
    let ttl = ttl.parse::<u64>().map_err(|_| format!("bad TTL {ttl}"))?;
    if header("urgency").as_deref() != Some("normal") {
        return Err("Urgency must be normal".into());
    }

    // RFC 8292 §3: Authorization: vapid t=<JWT>, k=<public key>.
    let authorization = header("authorization").ok_or("missing Authorization")?;
    let params = authorization
        .strip_prefix("vapid ")
        .ok_or("Authorization scheme must be vapid")?;
    let mut token = None;
    let mut key = None;
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => token = Some(value.to_owned()),
            Some(("k", value)) => key = Some(value.to_owned()),
            _ => {}
        }
    }
    let (token, key) = (token.ok_or("missing t=")?, key.ok_or("missing k=")?);
    if key != shared.vapid_public_key {
        return Err("k= is not the application server key".into());
    }
    let point = URL_SAFE_NO_PAD
        .decode(&key)
        .map_err(|_| "k= is not base64url")?;
    if point.len() != 65 || point[0] != 4 {
        return Err("k= is not an uncompressed P-256 point".into());
    }
    let decoding = DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..]),
    )
    .map_err(|err| format!("k=: {err}"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[shared.origin.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<VapidClaims>(&token, &decoding, &validation)
        .map_err(|err| format!("VAPID JWT rejected: {err}"))?
        .claims;
    if claims.sub != shared.subject {
        return Err(format!(
            "sub is {}, expected {}",
            claims.sub, shared.subject
        ));
    }
    let now = chrono::Utc::now().timestamp();
    if claims.exp > now + 24 * 60 * 60 {
        return Err("exp is more than 24 hours away".into());
    }

    let inner = shared.inner.lock().unwrap();
    let keys = inner.keys.get(id).ok_or("unknown subscription")?;
    let plaintext = ece::decrypt(body, &keys.secret, &keys.auth)?;
    let raw: serde_json::Value =
        serde_json::from_slice(&plaintext).map_err(|err| format!("payload is not JSON: {err}"))?;
    let membership = raw["type"]
        .as_str()
        .is_some_and(|kind| kind.starts_with("member."));
    if !membership {
        return Ok((None, raw, ttl));
    }
    let payload = serde_json::from_value(raw.clone())
        .map_err(|err| format!("payload is not the expected JSON: {err}"))?;
    Ok((Some(payload), raw, ttl))
}
