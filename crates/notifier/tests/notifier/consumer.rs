//! The RabbitMQ consumer on the shared test broker (`NEBULA_TEST_AMQP_URL`), one queue per test.

use std::time::Duration;

use nebula_wire::notify::MemberChange;
use serde_json::json;

use crate::support::push_endpoint::Mode;
use crate::support::rabbit::{RunningConsumer, TestQueue, fast_config, shared_broker};
use crate::support::{Pipeline, event, user};

const WAIT: Duration = Duration::from_secs(20);

/// Polls the dead-letter queue until `count` messages arrived.
async fn wait_for_dead_letters(queue: &TestQueue, count: usize) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut found = Vec::new();
    while found.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} dead letters arrived",
            found.len()
        );
        found.extend(queue.drain_dead_letters().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}

#[tokio::test]
async fn a_published_event_is_pushed_once_even_if_published_twice() {
    let Some(url) = shared_broker("a_published_event_is_pushed_once_even_if_published_twice").await
    else {
        return;
    };
    let pipeline = Pipeline::sqlite().await;
    let queue = TestQueue::new(&url).await;
    let config = fast_config(&url, &queue.topology);
    let consumer = RunningConsumer::start(config.clone(), pipeline.dispatcher.clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    queue.publish(&joined).await;
    queue.publish(&joined).await;
    let later = event(MemberChange::Left, &alice, &[&bob]);
    queue.publish(&later).await;

    pipeline.endpoint.wait_for_pushes(2, WAIT).await;
    consumer.stop().await;
    // This consumer handles several deliveries at once (prefetch > 1), so the two events may
    // be pushed in either order; what matters here is that each is pushed exactly once.
    let mut kinds: Vec<_> = pipeline
        .endpoint
        .received_by(&laptop)
        .into_iter()
        .map(|p| (p.event_id, p.kind))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (joined.event_id, "member.joined".to_owned()),
            (later.event_id, "member.left".to_owned())
        ]
    );
    assert!(pipeline.endpoint.errors().is_empty());
    queue.delete(&config).await;
}

#[tokio::test]
async fn unreadable_messages_go_straight_to_the_dead_letter_queue() {
    let Some(url) = shared_broker("unreadable_messages_go_straight_to_the_dead_letter_queue").await
    else {
        return;
    };
    let pipeline = Pipeline::sqlite().await;
    let queue = TestQueue::new(&url).await;
    let config = fast_config(&url, &queue.topology);
    let consumer = RunningConsumer::start(config.clone(), pipeline.dispatcher.clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;
    let mut from_the_future =
        serde_json::to_value(event(MemberChange::Joined, &alice, &[&bob])).unwrap();
    from_the_future["version"] = json!(2);

    queue.publish_raw(b"this is not json").await;
    queue
        .publish_raw(from_the_future.to_string().as_bytes())
        .await;
    queue
        .publish_raw(br#"{"version": 1, "event_id": "nope"}"#)
        .await;
    // A kind a newer server publishes and this build does not know: kept, not dropped.
    let unknown_kind = br#"{"version": 1, "kind": "story_posted", "event_id": "0190b0c8-0000-7000-8000-000000000000"}"#;
    queue.publish_raw(unknown_kind).await;
    let fine = event(MemberChange::Joined, &alice, &[&bob]);
    queue.publish(&fine).await;

    let dead = wait_for_dead_letters(&queue, 4).await;
    assert_eq!(dead[0], b"this is not json");
    assert_eq!(dead[3], unknown_kind);
    pipeline.endpoint.wait_for_pushes(1, WAIT).await;
    consumer.stop().await;
    assert_eq!(
        pipeline.endpoint.received_by(&laptop).len(),
        1,
        "the good event behind them still went out"
    );
    queue.delete(&config).await;
}

#[tokio::test]
async fn a_failing_event_is_retried_with_backoff_then_dead_lettered() {
    let Some(url) =
        shared_broker("a_failing_event_is_retried_with_backoff_then_dead_lettered").await
    else {
        return;
    };
    let pipeline = Pipeline::sqlite().await;
    let queue = TestQueue::new(&url).await;
    let config = fast_config(&url, &queue.topology);
    let consumer = RunningConsumer::start(config.clone(), pipeline.dispatcher.clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;
    pipeline.endpoint.set_mode(&laptop, Mode::Unavailable);
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let started = tokio::time::Instant::now();
    queue.publish(&joined).await;

    let dead = wait_for_dead_letters(&queue, 1).await;
    let elapsed = started.elapsed();
    consumer.stop().await;
    let dead: nebula_wire::notify::MemberNotification = serde_json::from_slice(&dead[0]).unwrap();
    assert_eq!(dead.event_id, joined.event_id);
    assert_eq!(
        pipeline.endpoint.requests_for(&laptop),
        config.max_attempts as usize
    );
    // Waits of 100 ms then 200 ms between the three attempts.
    assert!(
        elapsed >= Duration::from_millis(300),
        "retried too fast: {elapsed:?}"
    );
    assert!(
        !pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
    queue.delete(&config).await;
}

#[tokio::test]
async fn a_push_service_that_recovers_gets_the_event_on_a_retry() {
    let Some(url) = shared_broker("a_push_service_that_recovers_gets_the_event_on_a_retry").await
    else {
        return;
    };
    let pipeline = Pipeline::sqlite().await;
    let queue = TestQueue::new(&url).await;
    let mut config = fast_config(&url, &queue.topology);
    config.max_attempts = 5;
    let consumer = RunningConsumer::start(config.clone(), pipeline.dispatcher.clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;
    let phone = pipeline.subscribe(&bob).await;
    pipeline.endpoint.set_mode(&phone, Mode::Unavailable);
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    queue.publish(&joined).await;
    pipeline
        .endpoint
        .wait_until(WAIT, "a failed attempt", |e| e.requests_for(&phone) >= 1)
        .await;
    pipeline.endpoint.set_mode(&phone, Mode::Accept);
    pipeline
        .endpoint
        .wait_until(WAIT, "the retry", |e| e.received_by(&phone).len() == 1)
        .await;

    consumer.stop().await;
    assert_eq!(
        pipeline.endpoint.requests_for(&laptop),
        1,
        "the laptop was pushed again on retry"
    );
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
    assert!(queue.drain_dead_letters().await.is_empty());
    queue.delete(&config).await;
}
