//! Embedded mode: no broker; the server pushes in-process and serves the Web Push API on its
//! own port.

use std::time::Duration;

use nebula_notifier::PushPayload;
use reqwest::StatusCode;
use serde_json::json;

use super::push_endpoint::{Mode, PushEndpoint};
use super::{
    SUBJECT, WAIT, embedded, eventually, outbox_rows, store_subscription, subscribe,
    wait_outbox_empty,
};
use crate::helpers::{Backend, TestApp, send};
use crate::on_both_backends;

on_both_backends!(
    the_other_members_browsers_are_told_who_joined_and_left,
    a_failed_push_is_retried_then_dead_lettered,
    without_keys_in_production_web_push_is_off,
    with_default_settings_a_loopback_push_endpoint_is_never_contacted,
    a_user_may_subscribe_at_most_the_configured_number_of_browsers,
);

async fn the_other_members_browsers_are_told_who_joined_and_left(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| embedded(config, &vapid)).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let key: serde_json::Value = app.get("/webpush/vapid-public-key").await.json();
    assert_eq!(key["public_key"], vapid.public_key.as_str());

    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let room = bob.create_room("Lobby", false).await;
    // Subscribing needs the server's own token.
    let anonymous = app
        .post_json("/webpush/subscribe", json!({"endpoint": "https://x"}))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let bobs_browser = endpoint.new_browser();
    subscribe(&bob, &bobs_browser).await;
    let alices_browser = endpoint.new_browser();
    subscribe(&alice, &alices_browser).await;

    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    endpoint.wait_for_pushes(1, WAIT).await;
    assert_eq!(alice.leave(room.id).await.status, StatusCode::NO_CONTENT);
    endpoint.wait_for_pushes(2, WAIT).await;
    // Rows are deleted after their pushes: once the outbox is empty nothing more can come.
    wait_outbox_empty(&app).await;

    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    let pushes = endpoint.received_by(&bobs_browser);
    let summary: Vec<_> = pushes
        .iter()
        .map(|push: &PushPayload| (push.kind.as_str(), push.user.username.as_str()))
        .collect();
    assert_eq!(
        summary,
        [("member.joined", "alice"), ("member.left", "alice")]
    );
    for push in &pushes {
        assert_eq!((push.room_id, push.room_name.as_str()), (room.id, "Lobby"));
        assert_eq!(push.user.id, alice.user.id);
    }
    assert_ne!(pushes[0].event_id, pushes[1].event_id);
    assert!(
        endpoint.received_by(&alices_browser).is_empty(),
        "nobody is told about their own join or leave"
    );
    let raw = &endpoint.received()[0].raw;
    assert_eq!(raw["type"], "member.joined");
    assert_eq!(raw["user"]["username"], "alice");

    // Unsubscribing stops the pushes.
    let gone = send(
        bob.http
            .delete(format!("{}/webpush/subscribe", bob.base))
            .bearer_auth(&bob.token)
            .json(&json!({"endpoint": bobs_browser.endpoint})),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text());
    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    wait_outbox_empty(&app).await;
    assert_eq!(endpoint.received().len(), 2);
}

async fn a_failed_push_is_retried_then_dead_lettered(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| {
        embedded(config, &vapid);
        config.outbox_max_attempts = 2;
    })
    .await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let bob = app.register("bob").await;
    let room = bob.create_room("Lobby", false).await;
    let browser = endpoint.new_browser();
    subscribe(&bob, &browser).await;

    // The push service is down for the first attempt, back for the second (1 s later).
    endpoint.set_mode(&browser, Mode::Unavailable);
    let alice = app.register("alice").await;
    alice.join(room.id).await;
    endpoint
        .wait_until(WAIT, "a first attempt", |e| e.requests_for(&browser) >= 1)
        .await;
    eventually("the failed attempt to be recorded", WAIT, || async {
        outbox_rows(&app.database_url)
            .await
            .first()
            .is_some_and(|row| row.attempts == 1 && !row.dead)
    })
    .await;
    endpoint.set_mode(&browser, Mode::Accept);
    endpoint.wait_for_pushes(1, WAIT).await;
    wait_outbox_empty(&app).await;

    // Down for good: after OUTBOX_MAX_ATTEMPTS the row is kept, marked dead, and skipped.
    endpoint.set_mode(&browser, Mode::Unavailable);
    let carol = app.register("carol").await;
    carol.join(room.id).await;
    eventually("the event to be dead-lettered", WAIT, || async {
        outbox_rows(&app.database_url)
            .await
            .first()
            .is_some_and(|row| row.dead && row.attempts == 2)
    })
    .await;
    let rows = outbox_rows(&app.database_url).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.user.username, "carol");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        endpoint.requests_for(&browser),
        4,
        "1 failed + 1 delivered for alice, 2 failed for carol, none after"
    );
    let dead = super::metric(&app, "nebula_outbox_dead_lettered_total").await;
    assert!(dead.is_some_and(|n| n >= 1.0), "{dead:?}");
}

async fn without_keys_in_production_web_push_is_off(backend: Backend) {
    // The test config is production-like (DEV_MODE=false) and sets no keys.
    let app = TestApp::spawn_with(backend, |config| config.rabbit_url = None).await;
    app.get("/webpush/vapid-public-key")
        .await
        .assert_problem(404, "not_found");
    let bob = app.register("bob").await;
    let room = bob.create_room("Lobby", false).await;
    let alice = app.register("alice").await;
    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    // Nothing could deliver them, so they do not pile up either.
    wait_outbox_empty(&app).await;
}

/// The report: a user subscribes `http://127.0.0.1:<port>/internal-admin`, another user
/// joins their room, and the server must not POST there. With default settings the subscribe
/// is refused; a row stored anyway (before the rule, or by a process that allowed private
/// endpoints) is dropped at send time without a connection being made.
async fn with_default_settings_a_loopback_push_endpoint_is_never_contacted(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| {
        embedded(config, &vapid);
        config.webpush_allow_private_endpoints = false;
    })
    .await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let bob = app.register("bob").await;
    let room = bob.create_room("Lobby", false).await;
    let mut browser = endpoint.new_browser();
    browser.endpoint = format!("{}/internal-admin", endpoint.origin());

    let reply = bob
        .post(
            "/webpush/subscribe",
            json!({"endpoint": browser.endpoint, "keys": {"p256dh": browser.p256dh, "auth": browser.auth}}),
        )
        .await;
    reply.assert_problem(422, "invalid_subscription");

    let push_store = nebula_notifier::PushStore::connect(&app.database_url, 1)
        .await
        .unwrap();
    store_subscription(&push_store, &bob, &browser).await;
    let alice = app.register("alice").await;
    assert_eq!(alice.join(room.id).await.status, StatusCode::CREATED);
    wait_outbox_empty(&app).await;

    assert_eq!(
        endpoint.connections(),
        0,
        "the server connected to loopback"
    );
    assert!(
        push_store
            .subscriptions_of(bob.user.id)
            .await
            .unwrap()
            .is_empty(),
        "a subscription that can never be pushed to is deleted"
    );
    push_store.close().await;
}

async fn a_user_may_subscribe_at_most_the_configured_number_of_browsers(backend: Backend) {
    let vapid = nebula_notifier::generate_vapid_keys();
    let app = TestApp::spawn_with(backend, |config| {
        embedded(config, &vapid);
        config.webpush_max_subscriptions_per_user = 1;
    })
    .await;
    let endpoint = PushEndpoint::start(&vapid.public_key, SUBJECT).await;
    let bob = app.register("bob").await;
    let (laptop, phone) = (endpoint.new_browser(), endpoint.new_browser());
    subscribe(&bob, &laptop).await;

    let reply = bob
        .post(
            "/webpush/subscribe",
            json!({"endpoint": phone.endpoint, "keys": {"p256dh": phone.p256dh, "auth": phone.auth}}),
        )
        .await;
    reply.assert_problem(409, "too_many_subscriptions");
    // The same browser again is a refresh.
    subscribe(&bob, &laptop).await;
}
