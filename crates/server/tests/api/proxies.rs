//! Client addresses behind reverse proxies (`TRUSTED_PROXIES`), as the per-address auth limit
//! sees them, and the limiter's memory under address rotation.

use std::time::Duration;

use nebula::rate_limit::SWEEP_EVERY_CHECKS;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Reply, TestApp, send};

/// An auth attempt that costs no hashing (it fails validation once past the limit check),
/// through a proxy that sent these `X-Forwarded-For` lines.
async fn attempt(app: &TestApp, forwarded_for: &[&str]) -> Reply {
    let mut request = app
        .http
        .post(app.url("/auth/register"))
        .json(&json!({"username": "x", "password": "short"}));
    for value in forwarded_for {
        request = request.header("x-forwarded-for", *value);
    }
    send(request).await
}

/// Whether the auth limit let the attempt through (it then fails validation).
async fn admitted(app: &TestApp, forwarded_for: &[&str]) -> bool {
    let reply = attempt(app, forwarded_for).await;
    match reply.status.as_u16() {
        422 => true,
        429 => false,
        other => panic!("unexpected {other}: {}", reply.text()),
    }
}

/// Two attempts per client per minute; requests from loopback come through trusted proxies.
async fn behind_proxies(trusted: &str) -> TestApp {
    let trusted = trusted.parse().unwrap();
    TestApp::spawn_with(Backend::Sqlite, |config| {
        config.rate_limit_auth_per_minute = 2;
        config.trusted_proxies = trusted;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_is_the_rightmost_address_our_proxies_did_not_add() {
    let app = behind_proxies("127.0.0.1/32,10.0.0.0/8").await;
    // The client writes anything it likes at the left; our proxy appended its real address.
    assert!(admitted(&app, &["198.51.100.1, 203.0.113.7"]).await);
    assert!(admitted(&app, &["198.51.100.2, 203.0.113.7"]).await);
    assert!(
        !admitted(&app, &["198.51.100.3, 203.0.113.7"]).await,
        "a forged left-most hop does not make a new client"
    );
    // Through a second trusted proxy, and with the list split over header lines.
    assert!(!admitted(&app, &["1.1.1.1, 203.0.113.7, 10.0.0.2"]).await);
    assert!(!admitted(&app, &["1.1.1.1, 203.0.113.7", "10.0.0.2"]).await);
    // Another client behind the same proxies has its own allowance.
    assert!(admitted(&app, &["203.0.113.8, 10.1.2.3"]).await);
    let limited = attempt(&app, &["203.0.113.7"]).await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    // The test client (127.0.0.1) is not a trusted proxy here: it is the client.
    let app = behind_proxies("10.0.0.0/8").await;
    assert!(admitted(&app, &["203.0.113.1"]).await);
    assert!(admitted(&app, &["203.0.113.2"]).await);
    assert!(!admitted(&app, &["203.0.113.3"]).await);
    assert!(!admitted(&app, &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_limited_per_64() {
    let app = behind_proxies("127.0.0.1").await;
    assert!(admitted(&app, &["2001:db8:1:2::1"]).await);
    assert!(admitted(&app, &["2001:db8:1:2:aaaa::7"]).await);
    assert!(
        !admitted(&app, &["2001:db8:1:2:ffff:ffff:ffff:ffff"]).await,
        "another address of the same /64 is the same client"
    );
    assert!(admitted(&app, &["2001:db8:1:3::1"]).await, "another /64");
    // An IPv4 client written as IPv4-mapped IPv6 is that IPv4 client.
    assert!(admitted(&app, &["::ffff:203.0.113.50"]).await);
    assert!(admitted(&app, &["203.0.113.50"]).await);
    assert!(!admitted(&app, &["[::ffff:203.0.113.50]:4711"]).await);
}

/// A client rotating through addresses creates one bucket per address; the buckets that have
/// refilled are swept without waiting for the timer, and the timer sweeps the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_memory_stays_bounded_under_address_rotation() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        // A bucket used once is full again after 10 ms.
        config.rate_limit_auth_per_minute = 6000;
        config.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await;
    let rotations = SWEEP_EVERY_CHECKS + 1000;
    let mut clients = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let http = app.http.clone();
        let url = app.url("/auth/register");
        clients.spawn(async move {
            for n in (worker..rotations).step_by(8) {
                // A fresh /64 for every request.
                let address = format!("2001:db8:{:x}:{:x}::1", n >> 16, n & 0xffff);
                let reply = http
                    .post(&url)
                    .header("x-forwarded-for", address)
                    .json(&json!({"username": "x", "password": "short"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let kept = app.limits.tracked_keys();
    assert!(
        kept < SWEEP_EVERY_CHECKS as usize,
        "{kept} buckets kept after {rotations} addresses"
    );
    // The periodic sweep (every 10 s) forgets the rest.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    while app.limits.tracked_keys() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} buckets still kept",
            app.limits.tracked_keys()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
