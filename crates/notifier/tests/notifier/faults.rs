//! Faults: the broker restarting under the consumer, and the consumer dying mid-batch.
//! Either way every event reaches every browser exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use nebula_notifier::PushStore;
use nebula_wire::notify::{MemberChange, MemberNotification};
use uuid::Uuid;

use crate::support::push_endpoint::PushEndpoint;
use crate::support::rabbit::{RunningConsumer, TestQueue, fast_config, shared_broker};
use crate::support::rabbit_node::RabbitNode;
use crate::support::{Pipeline, event, unavailable, user};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until the store has finished every event in `events`.
async fn wait_processed(store: &PushStore, events: &[MemberNotification]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for event in events {
        while !store.is_processed(event.event_id).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {} was never finished",
                event.event_id
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Each of `events` reached the endpoint exactly once, and nothing else did.
fn assert_exactly_once(endpoint: &PushEndpoint, events: &[MemberNotification]) {
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    let mut counts: BTreeMap<Uuid, usize> = BTreeMap::new();
    for push in endpoint.received() {
        *counts.entry(push.payload.event_id).or_default() += 1;
    }
    let expected: BTreeMap<Uuid, usize> = events.iter().map(|event| (event.event_id, 1)).collect();
    assert_eq!(counts, expected, "pushes per event");
}

#[tokio::test]
async fn a_broker_restart_loses_and_duplicates_nothing() {
    let mut node = match RabbitNode::start().await {
        Ok(node) => node,
        Err(why) => {
            return unavailable("a_broker_restart_loses_and_duplicates_nothing", &why)
                .unwrap_or(());
        }
    };
    let url = node.url();
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    pipeline.subscribe(&bob).await;
    let queue = TestQueue::new(&url).await;
    let config = fast_config(&url, &queue.topology);
    let consumer = RunningConsumer::start(config.clone(), pipeline.dispatcher.clone());
    consumer.wait_connected(WAIT).await;
    let mut events: Vec<_> = (0..9)
        .map(|_| event(MemberChange::Joined, &alice, &[&bob]))
        .collect();

    // Before: consumed normally.
    for event in &events[..3] {
        queue.publish(event).await;
    }
    pipeline.endpoint.wait_for_pushes(3, WAIT).await;
    // Around the stop: confirmed by the broker, then the broker goes down at once.
    for event in &events[3..6] {
        queue.publish(event).await;
    }
    drop(queue);
    node.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !consumer.is_connected(),
        "the consumer did not notice the broker leaving"
    );

    node.boot().await.unwrap();
    consumer.wait_connected(WAIT).await;
    // After: published to the restarted broker.
    let queue = TestQueue::on(&url, config.topology.clone()).await;
    for event in &events[6..] {
        queue.publish(event).await;
    }

    wait_processed(pipeline.store(), &events).await;
    consumer.stop().await;
    events.sort_by_key(|event| event.event_id);
    assert_exactly_once(&pipeline.endpoint, &events);
    queue.delete(&config).await;
    node.stop().await;
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_loses_and_duplicates_nothing() {
    let Some(url) = shared_broker("a_consumer_killed_mid_batch_loses_and_duplicates_nothing").await
    else {
        return;
    };
    let pipeline = Pipeline::sqlite().await;
    // Short claim lease: the killed consumer's claims on held pushes must expire within the
    // retries of the restarted one.
    let dispatcher = pipeline
        .dispatcher
        .clone()
        .with_claim_lease(Duration::from_millis(500));
    let (alice, bob) = (user("alice"), user("bob"));
    pipeline.subscribe(&bob).await;
    let queue = TestQueue::new(&url).await;
    let mut config = fast_config(&url, &queue.topology);
    config.max_attempts = 10;
    let events: Vec<_> = (0..10)
        .map(|_| event(MemberChange::Joined, &alice, &[&bob]))
        .collect();

    // The push service takes three pushes, then stops answering: the rest are in flight when
    // the consumer dies, some events are finished but maybe not acked.
    pipeline.endpoint.hold_after(3);
    let consumer = RunningConsumer::start(config.clone(), dispatcher.clone());
    for event in &events {
        queue.publish(event).await;
    }
    pipeline
        .endpoint
        .wait_until(WAIT, "a held push", |endpoint| endpoint.held() >= 1)
        .await;
    let accepted: Vec<_> = events
        .iter()
        .filter(|event| {
            pipeline
                .endpoint
                .received()
                .iter()
                .any(|push| push.payload.event_id == event.event_id)
        })
        .cloned()
        .collect();
    assert_eq!(accepted.len(), 3);
    wait_processed(pipeline.store(), &accepted).await;
    consumer.kill().await;

    pipeline.endpoint.release_held();
    let restarted = RunningConsumer::start(config.clone(), dispatcher);
    wait_processed(pipeline.store(), &events).await;
    restarted.stop().await;

    let mut expected = events.clone();
    expected.sort_by_key(|event| event.event_id);
    assert_exactly_once(&pipeline.endpoint, &expected);
    assert!(
        queue.drain_dead_letters().await.is_empty(),
        "events were dead-lettered"
    );
    assert_eq!(queue.ready().await, 0);
    queue.delete(&config).await;
}
