//! `Dispatcher::deliver` against the loopback push service: what members' browsers get.

use std::collections::BTreeSet;
use std::time::Duration;

use nebula_notifier::Error;
use nebula_wire::notify::MemberChange;
use serde_json::json;

use crate::support::push_endpoint::Mode;
use crate::support::{Pipeline, event, user};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_join_reaches_every_other_members_browsers_encrypted_and_signed() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let bob_phone = pipeline.subscribe(&bob).await;
    let bob_laptop = pipeline.subscribe(&bob).await;
    let carol_laptop = pipeline.subscribe(&carol).await;
    let alice_laptop = pipeline.subscribe(&alice).await;
    let dave_laptop = pipeline.subscribe(&dave).await;
    // Alice is listed too, as a sloppy publisher might: she must not hear of her own join.
    let joined = event(MemberChange::Joined, &alice, &[&bob, &carol, &alice]);

    let report = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!(
        (
            report.sent,
            report.removed,
            report.rejected,
            report.duplicate
        ),
        (3, 0, 0, false)
    );
    let pushes = pipeline.endpoint.wait_for_pushes(3, WAIT).await;
    assert!(
        pipeline.endpoint.errors().is_empty(),
        "{:?}",
        pipeline.endpoint.errors()
    );
    let reached: BTreeSet<_> = pushes.iter().map(|push| push.browser.clone()).collect();
    let expected: BTreeSet<_> = [&bob_phone, &bob_laptop, &carol_laptop]
        .iter()
        .map(|b| b.id.clone())
        .collect();
    assert_eq!(reached, expected);
    // Grouped by room (RFC 8030 Topic): a burst of one room's pushes replaces rather than stacks.
    let topic = nebula_wire::notify::room_topic(joined.room_id);
    assert!(
        pushes
            .iter()
            .all(|push| push.topic.as_deref() == Some(topic.as_str())),
        "{:?}",
        pushes.iter().map(|push| &push.topic).collect::<Vec<_>>()
    );
    assert_eq!(
        pipeline.endpoint.requests_for(&alice_laptop)
            + pipeline.endpoint.requests_for(&dave_laptop),
        0
    );

    let raw = &pushes[0].raw;
    assert_eq!(
        *raw,
        json!({
            "type": "member.joined",
            "room_id": joined.room_id,
            "room_name": "general",
            "user": {"id": alice.id, "username": "alice", "created_at": alice.created_at},
            "event_id": joined.event_id,
            "occurred_at": joined.occurred_at,
        })
    );
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_leave_is_pushed_as_member_left() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let bob_laptop = pipeline.subscribe(&bob).await;

    pipeline
        .dispatcher
        .deliver(&event(MemberChange::Left, &alice, &[&bob]))
        .await
        .unwrap();

    let pushes = pipeline.endpoint.received_by(&bob_laptop);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].kind, "member.left");
    assert_eq!(pushes[0].user.username, "alice");
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_pushed_once() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let bob_laptop = pipeline.subscribe(&bob).await;
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let first = pipeline.dispatcher.deliver(&joined).await.unwrap();
    let second = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!((first.sent, first.duplicate), (1, false));
    assert_eq!((second.sent, second.duplicate), (0, true));
    assert_eq!(pipeline.endpoint.requests_for(&bob_laptop), 1);
}

#[tokio::test]
async fn a_subscription_the_push_service_calls_gone_is_deleted() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let old_phone = pipeline.subscribe(&bob).await;
    let laptop = pipeline.subscribe(&bob).await;
    pipeline.endpoint.set_mode(&old_phone, Mode::Gone);

    let report = pipeline
        .dispatcher
        .deliver(&event(MemberChange::Joined, &alice, &[&bob]))
        .await
        .unwrap();

    assert_eq!((report.sent, report.removed), (1, 1));
    let left: Vec<_> = pipeline
        .store()
        .subscriptions_of(bob.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.endpoint)
        .collect();
    assert_eq!(left, vec![laptop.endpoint.clone()]);
    // The next event does not try the dead endpoint again.
    pipeline
        .dispatcher
        .deliver(&event(MemberChange::Left, &alice, &[&bob]))
        .await
        .unwrap();
    assert_eq!(pipeline.endpoint.requests_for(&old_phone), 1);
    assert_eq!(pipeline.endpoint.received_by(&laptop).len(), 2);
}

#[tokio::test]
async fn a_transient_failure_is_retried_without_pushing_the_others_twice() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;
    let phone = pipeline.subscribe(&bob).await;
    pipeline.endpoint.set_mode(&phone, Mode::Unavailable);
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let first = pipeline.dispatcher.deliver(&joined).await;
    assert!(
        matches!(
            first,
            Err(Error::Incomplete {
                failed: 1,
                attempted: 2
            })
        ),
        "{first:?}"
    );
    assert!(
        !pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );

    pipeline.endpoint.set_mode(&phone, Mode::Accept);
    let retry = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!(retry.sent, 1);
    assert_eq!(
        pipeline.endpoint.requests_for(&laptop),
        1,
        "the laptop got the event twice"
    );
    assert_eq!(pipeline.endpoint.received_by(&phone).len(), 1);
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_push_refused_for_good_is_not_retried_and_the_subscription_kept() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let laptop = pipeline.subscribe(&bob).await;
    pipeline.endpoint.set_mode(&laptop, Mode::Refuse);
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let report = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert_eq!((report.sent, report.rejected), (0, 1));
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

#[tokio::test]
async fn an_event_nobody_subscribed_to_is_simply_done() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let joined = event(MemberChange::Joined, &alice, &[&bob]);
    let report = pipeline.dispatcher.deliver(&joined).await.unwrap();
    assert_eq!(report.sent, 0);
    assert!(
        pipeline
            .store()
            .is_processed(joined.event_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn two_copies_of_an_event_handled_at_once_push_once() {
    let pipeline = Pipeline::sqlite().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let browsers = [
        pipeline.subscribe(&bob).await,
        pipeline.subscribe(&bob).await,
        pipeline.subscribe(&bob).await,
    ];
    let joined = event(MemberChange::Joined, &alice, &[&bob]);

    let (first, second) = tokio::join!(
        pipeline.dispatcher.deliver(&joined),
        pipeline.dispatcher.deliver(&joined)
    );
    // One copy may find the other's claims and report the event unfinished; its retry then
    // finds the event processed.
    for outcome in [&first, &second] {
        assert!(
            matches!(outcome, Ok(_) | Err(Error::Incomplete { .. })),
            "{outcome:?}"
        );
    }
    let retry = pipeline.dispatcher.deliver(&joined).await.unwrap();

    assert!(retry.duplicate || retry.sent == 0);
    for browser in &browsers {
        assert_eq!(
            pipeline.endpoint.requests_for(browser),
            1,
            "a browser got the event twice"
        );
    }
}
