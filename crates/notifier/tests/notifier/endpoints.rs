//! Where pushes may go: never to loopback, private or otherwise non-public addresses (unless
//! explicitly allowed), checked on the address actually connected to; never via a redirect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::post;
use nebula_notifier::{EndpointPolicy, NewSubscription};
use nebula_wire::notify::MemberChange;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::support::push_endpoint::Browser;
use crate::support::{Pipeline, TestDb, event, user};

/// A DNS of the test's own: names to addresses, like a record an attacker controls.
struct FakeDns(HashMap<&'static str, IpAddr>);

impl Resolve for FakeDns {
    fn resolve(&self, name: Name) -> Resolving {
        let found: Vec<SocketAddr> = self
            .0
            .get(name.as_str())
            .map(|ip| SocketAddr::new(*ip, 0))
            .into_iter()
            .collect();
        Box::pin(async move { Ok(Box::new(found.into_iter()) as Addrs) })
    }
}

/// `push.example.test` → 127.0.0.1.
fn dns_to_loopback() -> FakeDns {
    FakeDns(HashMap::from([(
        "push.example.test",
        IpAddr::from([127, 0, 0, 1]),
    )]))
}

/// `browser`'s endpoint on the loopback push service, under the host name `host`.
fn endpoint_named(pipeline: &Pipeline, browser: &Browser, scheme: &str, host: &str) -> String {
    let port = pipeline.endpoint.origin().rsplit(':').next().unwrap();
    format!("{scheme}://{host}:{port}/push/{}", browser.id)
}

/// A server that answers every POST with `307 Temporary Redirect` to `target` (a 307 keeps the
/// method and body, so a client that follows it re-sends the push there). Returns its origin
/// and how many requests it got.
async fn redirector(target: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let app = Router::new().route(
        "/push/{id}",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]) }
        }),
    );
    // Stops with the test's runtime.
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (origin, requests)
}

/// Stores `endpoint` with `browser`'s keys for `user`, as if it had been subscribed.
async fn store_endpoint(
    pipeline: &Pipeline,
    user: &nebula_wire::User,
    browser: &Browser,
    endpoint: &str,
) {
    let new = NewSubscription {
        endpoint: endpoint.to_owned(),
        p256dh: browser.p256dh.clone(),
        auth: browser.auth.clone(),
    };
    pipeline
        .store()
        .upsert_subscription(user.id, &new)
        .await
        .unwrap();
}

/// The report: a subscription whose endpoint is a loopback address, and a member
/// joining the room of its owner. Stored directly, as a row from before the rule (or from a
/// process that allowed private endpoints) would be: the sender checks again.
#[tokio::test]
async fn a_loopback_push_endpoint_is_never_contacted_with_default_settings() {
    let pipeline = Pipeline::with_policy(TestDb::sqlite().await, EndpointPolicy::default()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browser = pipeline.subscribe(&bob).await;
    assert!(browser.endpoint.starts_with("http://127.0.0.1:"));
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let report = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!(
        pipeline.endpoint.connections(),
        0,
        "the endpoint was contacted"
    );
    assert_eq!((report.sent, report.removed), (0, 1));
    assert!(
        pipeline
            .store()
            .subscriptions_of(bob.id)
            .await
            .unwrap()
            .is_empty(),
        "an endpoint that can never be pushed to is deleted"
    );
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap(),
        "and is not retried"
    );
}

/// A host name that passes the URL check but resolves to loopback (a DNS record the
/// subscriber controls): the connection is never made.
#[tokio::test]
async fn a_host_name_resolving_to_loopback_is_never_contacted() {
    let policy = EndpointPolicy::default().with_lookup(dns_to_loopback());
    let pipeline = Pipeline::with_policy(TestDb::sqlite().await, policy).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browser = pipeline.endpoint.new_browser();
    let endpoint = endpoint_named(&pipeline, &browser, "https", "push.example.test");
    store_endpoint(&pipeline, &bob, &browser, &endpoint).await;
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let report = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!(
        pipeline.endpoint.connections(),
        0,
        "the endpoint was contacted"
    );
    assert_eq!((report.sent, report.rejected), (0, 1));
    // Not retried for this event; kept, since a DNS answer can change.
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
    assert_eq!(
        pipeline
            .store()
            .subscriptions_of(bob.id)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The same name and DNS with `WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`: the push does go to
/// 127.0.0.1, so the test DNS is really what the client connects by.
#[tokio::test]
async fn a_host_name_resolving_to_loopback_is_contacted_when_private_endpoints_are_allowed() {
    let policy = EndpointPolicy::new(true).with_lookup(dns_to_loopback());
    let pipeline = Pipeline::with_policy(TestDb::sqlite().await, policy).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browser = pipeline.endpoint.new_browser();
    let endpoint = endpoint_named(&pipeline, &browser, "http", "push.example.test");
    store_endpoint(&pipeline, &bob, &browser, &endpoint).await;
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!(pipeline.endpoint.connections(), 1);
    assert_eq!(pipeline.endpoint.requests_for(&browser), 1);
}

/// Even where private endpoints are allowed, a push service's redirect is not followed: it
/// would send the push wherever the endpoint points.
#[tokio::test]
async fn a_redirect_from_a_push_service_is_not_followed() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browser = pipeline.endpoint.new_browser();
    let (origin, redirected) = redirector(browser.endpoint.clone()).await;
    store_endpoint(&pipeline, &bob, &browser, &format!("{origin}/push/x")).await;
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let report = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!(redirected.load(Ordering::SeqCst), 1);
    assert_eq!(
        pipeline.endpoint.connections(),
        0,
        "the redirect was followed: {report:?}"
    );
    // Refused for good: not retried, the subscription kept.
    assert_eq!((report.sent, report.rejected), (0, 1));
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
}
