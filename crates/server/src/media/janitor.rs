//! Removes what nothing needs any more: expired stories, then media no message or story
//! references (at once once they were attached somewhere, a day after upload if they never
//! were), record first and then the stored objects.
//!
//! It runs every `MEDIA_SWEEP_SECONDS` on every node (the work is idempotent: a record is
//! deleted only if still unreferenced, and deleting an object twice is fine), and at once when
//! woken after a message or story delete.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{MediaStorage, object_key, thumbnail_key};
use crate::store::Store;

/// Media collected per pass; the next pass takes the rest.
const BATCH: i64 = 200;

/// Wakes the janitor early (after deletes).
#[derive(Debug, Clone, Default)]
pub struct JanitorHandle(Arc<Notify>);

impl JanitorHandle {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Runs the janitor until `shutdown`.
pub async fn run(
    store: Store,
    storage: MediaStorage,
    every: Duration,
    orphan_after: Duration,
    handle: JanitorHandle,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = handle.0.notified() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(err) = sweep(&store, &storage, orphan_after).await {
            tracing::warn!(error = %err, "media janitor pass failed; retrying next time");
        }
    }
}

/// One pass; returns how many media were removed.
pub async fn sweep(
    store: &Store,
    storage: &MediaStorage,
    orphan_after: Duration,
) -> anyhow::Result<usize> {
    let now = crate::store::now();
    let expired = store.delete_expired_stories(now).await?;
    if expired > 0 {
        tracing::info!(expired, "expired stories deleted");
    }
    let orphan_before =
        now - chrono::Duration::from_std(orphan_after).unwrap_or(chrono::Duration::days(1));
    let mut removed = 0;
    for id in store.collectable_media(orphan_before, BATCH).await? {
        if store.delete_unreferenced_media(id).await? {
            // The thumbnail first: once the file itself is gone, nothing of it is left.
            storage.delete(&thumbnail_key(id)).await?;
            storage.delete(&object_key(id)).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        metrics::counter!("nebula_media_collected_total").increment(removed as u64);
        tracing::info!(removed, "unreferenced media removed");
    }
    Ok(removed)
}
