//! `nebula rekey`: rewrites every message content, edit-history version and stored file that
//! is not under the current key (the first of `ENCRYPTION_KEYS`), plaintext included, while the
//! server runs. Afterwards the older keys can be removed from `ENCRYPTION_KEYS`.
//!
//! Safe beside running servers: database rewrites are conditional on the value read (see
//! `store::reseal`), and files are immutable once uploaded, replaced whole. Resumable and
//! idempotent: a run walks everything by id and skips what is already under the current key,
//! so an interrupted run is simply started again.

use uuid::Uuid;

use crate::media::{MediaStorage, object_key, thumbnail_key};
use crate::store::Store;

/// What a run has done so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub messages_scanned: u64,
    /// Message contents and versions rewritten.
    pub texts_rewritten: u64,
    /// Texts that changed under every try (written by a server meanwhile, under its own key:
    /// run again once every server has the new key first).
    pub texts_raced: u64,
    pub media_scanned: u64,
    /// Files (uploads and thumbnails) rewritten.
    pub files_rewritten: u64,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages scanned, {} texts re-encrypted ({} changed concurrently, left for the next run); \
             {} media scanned, {} files re-encrypted",
            self.messages_scanned,
            self.texts_rewritten,
            self.texts_raced,
            self.media_scanned,
            self.files_rewritten
        )
    }
}

/// Re-encrypts everything not under the current key, `batch` rows at a time, calling `report`
/// after each batch.
pub async fn run(
    store: &Store,
    storage: &MediaStorage,
    batch: i64,
    mut report: impl FnMut(&Progress),
) -> anyhow::Result<Progress> {
    let Some(current) = store.keyring().current_id() else {
        anyhow::bail!("ENCRYPTION_KEYS is not set: there is no key to re-encrypt with");
    };
    tracing::info!(key = current, "re-encrypting under the current key");
    let batch = batch.max(1);
    let mut progress = Progress::default();
    let mut after = Uuid::nil();
    loop {
        let done = store.reseal_messages(after, batch).await?;
        let Some(last) = done.last else { break };
        after = last;
        progress.messages_scanned += done.scanned;
        progress.texts_rewritten += done.rewritten;
        progress.texts_raced += done.raced;
        report(&progress);
    }
    let mut after = Uuid::nil();
    loop {
        let media = store.media_after(after, batch).await?;
        let Some(&(last, _)) = media.last() else {
            break;
        };
        after = last;
        for (id, has_thumbnail) in media {
            progress.media_scanned += 1;
            let mut rewrote = false;
            if storage.rekey(&object_key(id)).await? {
                progress.files_rewritten += 1;
                rewrote = true;
            }
            if has_thumbnail && storage.rekey(&thumbnail_key(id)).await? {
                progress.files_rewritten += 1;
                rewrote = true;
            }
            // Collected while we rewrote it: the rewrite may have put back what the janitor
            // had just removed, so remove it again.
            if rewrote && store.media(id).await?.is_none() {
                storage.delete(&thumbnail_key(id)).await?;
                storage.delete(&object_key(id)).await?;
            }
        }
        report(&progress);
    }
    Ok(progress)
}
