//! The store's behaviour, the same suite on SQLite and on PostgreSQL.

use chrono::{Duration, Utc};
use nebula_notifier::{Claim, NewSubscription, PushStore};
use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::support::TestDb;

fn subscription(n: usize) -> NewSubscription {
    NewSubscription {
        endpoint: format!("https://push.example/{n}-{}", Uuid::new_v4()),
        p256dh: format!("key-{n}"),
        auth: format!("auth-{n}"),
    }
}

async fn subscriptions_belong_to_their_user(store: &PushStore) {
    let (alice, mallory) = (Uuid::now_v7(), Uuid::now_v7());
    let first = store
        .upsert_subscription(alice, &subscription(1))
        .await
        .unwrap();
    let rotated = NewSubscription {
        endpoint: first.endpoint.clone(),
        p256dh: "rotated".into(),
        auth: "new".into(),
    };
    let again = store.upsert_subscription(alice, &rotated).await.unwrap();
    assert_eq!(again.id, first.id, "an endpoint is one row");
    assert_eq!(again.p256dh, "rotated");
    store
        .upsert_subscription(alice, &subscription(2))
        .await
        .unwrap();
    assert_eq!(store.subscriptions_of(alice).await.unwrap().len(), 2);

    assert!(
        !store
            .remove_subscription(mallory, &first.endpoint)
            .await
            .unwrap()
    );
    assert!(
        store
            .remove_subscription(alice, &first.endpoint)
            .await
            .unwrap()
    );
    assert_eq!(store.subscriptions_of(alice).await.unwrap().len(), 1);
    let last = store.subscriptions_of(alice).await.unwrap().remove(0);
    assert!(store.remove_subscription_by_id(last.id).await.unwrap());
    assert!(!store.remove_subscription_by_id(last.id).await.unwrap());
}

async fn pending_subscriptions_skip_delivered_ones_and_other_users(store: &PushStore) {
    let event_id = Uuid::now_v7();
    // More recipients than one IN list holds, to cover the chunking.
    let recipients: Vec<Uuid> = (0..1203).map(|_| Uuid::now_v7()).collect();
    let mut ids = Vec::new();
    for (n, user) in recipients.iter().enumerate().filter(|(n, _)| n % 100 == 7) {
        ids.push(
            store
                .upsert_subscription(*user, &subscription(n))
                .await
                .unwrap()
                .id,
        );
    }
    store
        .upsert_subscription(Uuid::now_v7(), &subscription(9999))
        .await
        .unwrap();

    let pending = store
        .pending_subscriptions(event_id, &recipients)
        .await
        .unwrap();
    assert_eq!(pending.len(), ids.len());

    let lease = std::time::Duration::from_secs(60);
    assert_eq!(
        store.claim_delivery(event_id, ids[0], lease).await.unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        store.claim_delivery(event_id, ids[0], lease).await.unwrap(),
        Claim::Taken,
        "a live claim was taken twice"
    );
    assert_eq!(
        store
            .pending_subscriptions(event_id, &recipients)
            .await
            .unwrap()
            .len(),
        ids.len(),
        "claimed is not done"
    );
    store.complete_delivery(event_id, ids[0]).await.unwrap();
    assert_eq!(
        store
            .claim_delivery(event_id, ids[0], std::time::Duration::ZERO)
            .await
            .unwrap(),
        Claim::Taken,
        "a done push was claimed"
    );

    // A released claim, and a claim older than the lease, can be taken again.
    assert_eq!(
        store.claim_delivery(event_id, ids[1], lease).await.unwrap(),
        Claim::Claimed
    );
    store.release_delivery(event_id, ids[1]).await.unwrap();
    assert_eq!(
        store.claim_delivery(event_id, ids[1], lease).await.unwrap(),
        Claim::Claimed
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        store
            .claim_delivery(event_id, ids[1], std::time::Duration::from_millis(10))
            .await
            .unwrap(),
        Claim::Claimed,
        "a stale claim was not taken over"
    );

    let pending = store
        .pending_subscriptions(event_id, &recipients)
        .await
        .unwrap();
    assert_eq!(pending.len(), ids.len() - 1);
    assert!(pending.iter().all(|s| s.id != ids[0]));
    // Another event still has everyone pending.
    assert_eq!(
        store
            .pending_subscriptions(Uuid::now_v7(), &recipients)
            .await
            .unwrap()
            .len(),
        ids.len()
    );
}

async fn processed_events_are_remembered_then_pruned(store: &PushStore) {
    let event_id = Uuid::now_v7();
    let user = Uuid::now_v7();
    let sub = store
        .upsert_subscription(user, &subscription(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_delivery(event_id, sub.id, std::time::Duration::from_secs(60))
            .await
            .unwrap(),
        Claim::Claimed
    );
    store.complete_delivery(event_id, sub.id).await.unwrap();
    assert!(
        store
            .pending_subscriptions(event_id, &[user])
            .await
            .unwrap()
            .is_empty()
    );

    assert!(!store.is_processed(event_id).await.unwrap());
    assert!(store.mark_processed(event_id).await.unwrap());
    assert!(
        !store.mark_processed(event_id).await.unwrap(),
        "marked twice"
    );
    assert!(store.is_processed(event_id).await.unwrap());
    // Its per-subscription rows are gone with it.
    assert_eq!(
        store
            .pending_subscriptions(event_id, &[user])
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(
        store
            .prune_processed(Utc::now() - Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_processed(Utc::now() + Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert!(!store.is_processed(event_id).await.unwrap());
}

/// Two copies of one event, in the order that pushed a browser twice: copy B checks
/// "processed" before copy A marks the event, and claims after A has finished.
async fn a_claim_after_the_event_was_processed_is_refused(store: &PushStore) {
    let event_id = Uuid::now_v7();
    let user = Uuid::now_v7();
    let sub = store
        .upsert_subscription(user, &subscription(1))
        .await
        .unwrap();
    let lease = std::time::Duration::from_secs(60);

    assert!(
        !store.is_processed(event_id).await.unwrap(),
        "copy B checks"
    );
    assert_eq!(
        store.claim_delivery(event_id, sub.id, lease).await.unwrap(),
        Claim::Claimed
    );
    store.complete_delivery(event_id, sub.id).await.unwrap();
    assert!(
        store.mark_processed(event_id).await.unwrap(),
        "copy A is done"
    );

    let pending = store
        .pending_subscriptions(event_id, &[user])
        .await
        .unwrap();
    let claim = match pending.first() {
        Some(listed) => store
            .claim_delivery(event_id, listed.id, lease)
            .await
            .unwrap(),
        None => Claim::Processed,
    };
    assert_eq!(
        claim,
        Claim::Processed,
        "copy B may push the subscription a second time"
    );
    // Nothing of copy B's attempt stays behind.
    assert_eq!(
        store
            .pending_subscriptions(event_id, &[user])
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn a_users_subscriptions_are_capped(store: &PushStore) {
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let first = store
        .upsert_subscription_within(alice, &subscription(1), 2)
        .await
        .unwrap()
        .expect("the first of two");
    assert!(
        store
            .upsert_subscription_within(alice, &subscription(2), 2)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .upsert_subscription_within(alice, &subscription(3), 2)
            .await
            .unwrap()
            .is_none(),
        "a third subscription was stored"
    );

    // Refreshing one of her own endpoints is not a new subscription, even under a limit
    // lowered below what she has.
    let refreshed = NewSubscription {
        endpoint: first.endpoint.clone(),
        p256dh: "rotated".into(),
        auth: "rotated".into(),
    };
    for max in [2, 1] {
        let again = store
            .upsert_subscription_within(alice, &refreshed, max)
            .await
            .unwrap()
            .expect("a refresh is always allowed");
        assert_eq!(again.id, first.id);
    }
    // Taken over by Bob (he signed in on that browser): new for him, gone for her.
    assert!(
        store
            .upsert_subscription_within(bob, &refreshed, 1)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .upsert_subscription_within(bob, &subscription(4), 1)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.subscriptions_of(alice).await.unwrap().len(), 1);
    assert!(
        store
            .upsert_subscription_within(alice, &subscription(5), 2)
            .await
            .unwrap()
            .is_some()
    );
}

async fn concurrent_subscribes_stay_within_the_cap(store: &PushStore) {
    let alice = Uuid::now_v7();
    let attempts: Vec<_> = (0..12)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .upsert_subscription_within(alice, &subscription(n), 3)
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for attempt in attempts {
        if attempt.await.unwrap().unwrap().is_some() {
            stored += 1;
        }
    }
    assert_eq!(stored, 3);
    assert_eq!(store.subscriptions_of(alice).await.unwrap().len(), 3);
}

async fn run_suite(store: &PushStore) {
    store.ping().await.unwrap();
    store.migrate().await.unwrap();
    subscriptions_belong_to_their_user(store).await;
    pending_subscriptions_skip_delivered_ones_and_other_users(store).await;
    processed_events_are_remembered_then_pruned(store).await;
    a_claim_after_the_event_was_processed_is_refused(store).await;
    a_users_subscriptions_are_capped(store).await;
    concurrent_subscribes_stay_within_the_cap(store).await;
}

#[tokio::test]
async fn store_on_sqlite() {
    let db = TestDb::sqlite().await;
    assert_eq!(db.store.backend_name(), "sqlite");
    run_suite(&db.store).await;
}

#[tokio::test]
async fn store_on_postgres() {
    let Some(db) = TestDb::postgres("store_on_postgres").await else {
        return;
    };
    assert_eq!(db.store.backend_name(), "postgres");
    run_suite(&db.store).await;
}

/// The PostgreSQL side of the race: copy B's claim arrives while copy A's `mark_processed`
/// transaction has deleted the 'done' row but not committed yet. B's insert waits for A and
/// then finds no row in its way; it must still learn that the event is processed.
#[tokio::test]
async fn a_claim_waiting_for_the_marking_transaction_sees_the_event_processed_on_postgres() {
    let Some(db) = TestDb::postgres(
        "a_claim_waiting_for_the_marking_transaction_sees_the_event_processed_on_postgres",
    )
    .await
    else {
        return;
    };
    let store = db.store.clone();
    let (event_id, user) = (Uuid::now_v7(), Uuid::now_v7());
    let sub = store
        .upsert_subscription(user, &subscription(1))
        .await
        .unwrap();
    let lease = std::time::Duration::from_secs(60);
    assert_eq!(
        store.claim_delivery(event_id, sub.id, lease).await.unwrap(),
        Claim::Claimed
    );
    store.complete_delivery(event_id, sub.id).await.unwrap();

    // Copy A's `mark_processed`, held open.
    let mut marking = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let mut tx = marking.begin().await.unwrap();
    sqlx::query("INSERT INTO webpush_processed_events (event_id, processed_at) VALUES ($1, $2)")
        .bind(event_id)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM webpush_deliveries WHERE event_id = $1")
        .bind(event_id)
        .execute(&mut *tx)
        .await
        .unwrap();

    let claim = tokio::spawn({
        let store = store.clone();
        async move { store.claim_delivery(event_id, sub.id, lease).await }
    });
    let mut observer = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut observer)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never waited for the marking transaction"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.commit().await.unwrap();

    assert_eq!(claim.await.unwrap().unwrap(), Claim::Processed);
    assert!(store.is_processed(event_id).await.unwrap());
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webpush_deliveries")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the refused claim left a row behind");
}

/// A stand-in for the chat server's migrator: version 1, in the same `_sqlx_migrations`.
async fn server_migrator(dir: &std::path::Path) -> Migrator {
    std::fs::write(
        dir.join("0001_core.sql"),
        "CREATE TABLE server_things (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let mut migrator = Migrator::new(dir).await.unwrap();
    migrator.set_ignore_missing(true);
    migrator
}

#[tokio::test]
async fn migrations_share_the_database_with_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shared.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let server = server_migrator(migrations.path()).await;

    server.run(&pool).await.unwrap();
    let store = PushStore::from_sqlite(pool.clone()).await.unwrap();
    // Either side restarting later must accept the other's versions.
    server.run(&pool).await.unwrap();
    store.migrate().await.unwrap();

    let versions: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, vec![(1,), (1001,)]);
}

#[tokio::test]
async fn migrations_share_the_database_with_the_servers_on_postgres() {
    let Some(db) =
        TestDb::postgres("migrations_share_the_database_with_the_servers_on_postgres").await
    else {
        return;
    };
    let migrations = tempfile::tempdir().unwrap();
    let server = server_migrator(migrations.path()).await;
    // A second store from the same database, as the server would build it from its pool.
    let url = db.url().to_owned();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    server.run(&pool).await.unwrap();
    let store = PushStore::from_postgres(pool.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let versions: Vec<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, vec![(1,), (1001,)]);
    pool.close().await;
}
