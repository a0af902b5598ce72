//! Two copies of one event handled at once (a publisher that sent it twice, a redelivery
//! racing a retry, two notifier instances): each browser gets it once, whatever the
//! interleaving. The interleavings are forced with the push endpoint's gates, not hoped for.

use std::time::Duration;

use nebula_notifier::NewSubscription;
use nebula_wire::notify::MemberChange;

use crate::support::{Pipeline, TestDb, event, user};

const WAIT: Duration = Duration::from_secs(10);

/// The race behind the flaky `a_published_event_is_pushed_once_even_if_published_twice`:
///
/// 1. copy A pushes to Bob's laptop; that push is in flight;
/// 2. copy B checks "processed" (not yet), lists Bob's subscriptions and starts with another
///    browser whose push is slow;
/// 3. A finishes: the laptop's push is done and the event is marked processed;
/// 4. B gets to the laptop only now and claims its push.
///
/// B's other browser is one that moved to Bob (a user signing in on a shared browser) after A
/// listed the subscriptions: it sorts first and is only in B's list, so B is busy with it
/// while A finishes. Any other reason for B to be slow at step 2 is the same race.
async fn a_copy_that_checked_before_the_other_finished_does_not_push_again(pipeline: Pipeline) {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    // Created first, so it is listed before the laptop once it is Bob's.
    let shared_browser = pipeline.subscribe(&carol).await;
    let laptop = pipeline.subscribe(&bob).await;
    let joined = event(MemberChange::Joined, &alice, &[&bob]);
    let endpoint = &pipeline.endpoint;

    endpoint.close_gate(&laptop);
    let first = tokio::spawn({
        let dispatcher = pipeline.dispatcher.clone();
        let joined = joined.clone();
        async move { dispatcher.deliver(&joined).await }
    });
    endpoint
        .wait_until(WAIT, "copy A's push to the laptop", |e| {
            e.waiting_for(&laptop) == 1
        })
        .await;

    // Bob signs in on Carol's browser; it is his subscription now.
    let moved = NewSubscription {
        endpoint: shared_browser.endpoint.clone(),
        p256dh: shared_browser.p256dh.clone(),
        auth: shared_browser.auth.clone(),
    };
    pipeline
        .store()
        .upsert_subscription(bob.id, &moved)
        .await
        .unwrap();
    endpoint.close_gate(&shared_browser);
    let second = tokio::spawn({
        // One push at a time: B reaches the laptop only after the shared browser's push.
        let dispatcher = pipeline.dispatcher.clone().with_concurrency(1);
        let joined = joined.clone();
        async move { dispatcher.deliver(&joined).await }
    });
    endpoint
        .wait_until(WAIT, "copy B's push to the shared browser", |e| {
            e.waiting_for(&shared_browser) == 1
        })
        .await;

    endpoint.open(&laptop);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.sent, 1, "copy A pushes to the laptop");
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
    endpoint.open(&shared_browser);
    let second = second.await.unwrap();

    assert!(second.is_ok(), "copy B: {second:?}");
    assert_eq!(
        endpoint.requests_for(&laptop),
        1,
        "the laptop was pushed the same event twice"
    );
    assert_eq!(endpoint.received_by(&shared_browser).len(), 1);
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
}

#[tokio::test]
async fn a_copy_that_checked_before_the_other_finished_does_not_push_again_on_sqlite() {
    a_copy_that_checked_before_the_other_finished_does_not_push_again(Pipeline::sqlite().await)
        .await;
}

#[tokio::test]
async fn a_copy_that_checked_before_the_other_finished_does_not_push_again_on_postgres() {
    let Some(db) = TestDb::postgres(
        "a_copy_that_checked_before_the_other_finished_does_not_push_again_on_postgres",
    )
    .await
    else {
        return;
    };
    a_copy_that_checked_before_the_other_finished_does_not_push_again(Pipeline::over(db).await)
        .await;
}
