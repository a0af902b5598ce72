//! Backups kept in S3-compatible object storage: `--out s3://bucket/prefix` uploads the
//! archive while it is being written (multipart, a few parts in memory at most, never the
//! whole archive), `--keep N` then deletes all but the newest N backups under that prefix, and
//! `--from s3://bucket/prefix` restores the newest of them (or a named `….tar` object).
//!
//! The bucket is reached with the media store's settings (`S3_ENDPOINT`, `S3_REGION`,
//! `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`) through the same `object_store` client.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::dump::Snapshot;
use super::format::Manifest;
use crate::media::StoreLocation;
use crate::media::storage::{MULTIPART_CHUNK, S3Settings};

/// Names of the backups `nebula backup` names itself: `nebula-<UTC time>.tar`, which sort by
/// name in the order they were taken. Retention only ever deletes objects named so.
const NAME_PREFIX: &str = "nebula-";
const NAME_SUFFIX: &str = ".tar";

/// Where `--out` or `--from` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// `key` is either one object (ending in `.tar`) or a prefix of `nebula-….tar` backups.
    S3 {
        bucket: String,
        key: String,
    },
}

impl Location {
    pub fn parse(raw: &str) -> anyhow::Result<Location> {
        if !raw.starts_with("s3://") {
            return Ok(Location::File(raw.into()));
        }
        match StoreLocation::parse(raw) {
            Ok(StoreLocation::S3 { bucket, prefix }) => Ok(Location::S3 {
                bucket,
                key: prefix,
            }),
            Ok(StoreLocation::Fs(_)) | Err(_) => {
                bail!("{raw}: an S3 location is s3://bucket[/prefix][/name.tar]")
            }
        }
    }
}

/// One bucket, as `nebula backup` and `nebula restore` use it.
pub struct Bucket {
    name: String,
    store: AmazonS3,
}

impl Bucket {
    pub fn open(settings: &S3Settings, name: &str) -> anyhow::Result<Bucket> {
        Ok(Bucket {
            name: name.to_owned(),
            store: settings.bucket(name)?,
        })
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// The object a new backup goes to: `key` itself when it names a `.tar`, else a new
    /// `nebula-<time>.tar` under the prefix `key`.
    pub fn new_key(key: &str, at: chrono::DateTime<chrono::Utc>) -> String {
        if key.ends_with(NAME_SUFFIX) {
            return key.to_owned();
        }
        let name = format!(
            "{NAME_PREFIX}{}{NAME_SUFFIX}",
            at.format("%Y%m%dT%H%M%S%.3fZ")
        );
        if key.is_empty() {
            name
        } else {
            format!("{key}/{name}")
        }
    }

    /// Streams the snapshot's archive into `key`: a blocking thread writes the tar into a
    /// bounded channel, this task uploads it part by part. The object appears only when the
    /// whole archive was written (a failed upload is aborted, leaving nothing behind).
    pub async fn upload(&self, snapshot: Snapshot, key: &str) -> anyhow::Result<Manifest> {
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let writer = tokio::task::spawn_blocking(move || {
            let mut pipe = std::io::BufWriter::with_capacity(PIPE_CHUNK, ChannelWriter(tx));
            let manifest = snapshot.write_archive(&mut pipe)?;
            pipe.flush()?;
            Ok::<_, anyhow::Error>(manifest)
        });
        let upload = self
            .store
            .put_multipart(&ObjectPath::from(key))
            .await
            .with_context(|| format!("cannot start uploading {}", self.url(key)))?;
        let mut multipart = WriteMultipart::new_with_chunk_size(upload, MULTIPART_CHUNK);
        let sent: anyhow::Result<()> = async {
            while let Some(chunk) = rx.recv().await {
                // At most two parts in flight (plus the one being filled).
                multipart.wait_for_capacity(2).await?;
                multipart.put(chunk);
            }
            Ok(())
        }
        .await;
        // Unblocks the writer if the upload failed first.
        drop(rx);
        let written = writer.await.context("the archive writer panicked")?;
        match (sent, written) {
            (Ok(()), Ok(manifest)) => {
                multipart
                    .finish()
                    .await
                    .with_context(|| format!("cannot complete the upload of {}", self.url(key)))?;
                Ok(manifest)
            }
            (sent, written) => {
                let _ = multipart.abort().await;
                // The upload's error explains a writer's broken pipe, so it comes first.
                sent.with_context(|| format!("cannot upload {}", self.url(key)))?;
                written
            }
        }
    }

    /// The `nebula-….tar` backups directly under `prefix`, oldest first.
    pub async fn backups(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&ObjectPath::from(prefix)))
            .await
            .with_context(|| format!("cannot list {}", self.url(prefix)))?;
        let mut keys: Vec<String> = listing
            .objects
            .into_iter()
            .filter(|object| {
                object.location.filename().is_some_and(|name| {
                    name.starts_with(NAME_PREFIX) && name.ends_with(NAME_SUFFIX)
                })
            })
            .map(|object| object.location.to_string())
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Deletes all but the newest `keep` backups under `prefix`; returns what it deleted.
    pub async fn prune(&self, prefix: &str, keep: usize) -> anyhow::Result<Vec<String>> {
        let backups = self.backups(prefix).await?;
        let excess = backups.len().saturating_sub(keep);
        let doomed = backups[..excess].to_vec();
        for key in &doomed {
            self.store
                .delete(&ObjectPath::from(key.as_str()))
                .await
                .with_context(|| format!("cannot delete the old backup {}", self.url(key)))?;
        }
        Ok(doomed)
    }

    /// The object `--from` names: `key` itself when it is a `.tar`, else the newest backup
    /// under the prefix `key`.
    pub async fn resolve(&self, key: &str) -> anyhow::Result<String> {
        if key.ends_with(NAME_SUFFIX) {
            return Ok(key.to_owned());
        }
        self.backups(key)
            .await?
            .pop()
            .with_context(|| format!("no nebula backups under {}", self.url(key)))
    }

    /// Copies the object into a local temporary file (restore reads an archive twice: once
    /// to check every checksum, then to load it), a chunk at a time.
    pub async fn download(&self, key: &str) -> anyhow::Result<tempfile::NamedTempFile> {
        let local = tempfile::Builder::new()
            .prefix(".nebula-restore-")
            .suffix(".tar")
            .tempfile()
            .context("cannot create a temporary file for the download")?;
        let object = match self.store.get(&ObjectPath::from(key)).await {
            Ok(object) => object,
            Err(object_store::Error::NotFound { .. }) => bail!("{} does not exist", self.url(key)),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", self.url(key)));
            }
        };
        let mut stream = object.into_stream();
        let mut file = tokio::fs::File::from_std(local.reopen()?);
        while let Some(chunk) = stream
            .try_next()
            .await
            .with_context(|| format!("cannot read {}", self.url(key)))?
        {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(local)
    }
}

/// Bytes handed to the uploader at a time.
const PIPE_CHUNK: usize = 1024 * 1024;

/// The writing end of the archive pipe (used from a blocking thread, behind a `BufWriter`).
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("backups/x.tar").unwrap(),
            Location::File("backups/x.tar".into())
        );
        assert_eq!(
            Location::parse("s3://b/nightly/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "nightly".into()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
    }

    #[test]
    fn new_backups_are_named_to_sort_by_time() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T14:05:09.123Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            Bucket::new_key("nightly", at),
            "nightly/nebula-20261207T140509.123Z.tar"
        );
        assert_eq!(Bucket::new_key("", at), "nebula-20261207T140509.123Z.tar");
        assert_eq!(Bucket::new_key("a/b.tar", at), "a/b.tar");
    }
}
