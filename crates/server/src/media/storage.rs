//! The media store: one interface ([`object_store::ObjectStore`]) over a local directory or an
//! S3-compatible bucket, chosen by `MEDIA_STORE`. Nodes of a cluster share the bucket, so any
//! node serves any upload.
//!
//! With `ENCRYPTION_KEYS`, every object is written encrypted and read back decrypted here, in
//! one place (see `crate::at_rest::files`); callers only ever see plaintext. Objects written
//! before keys were set are recognised and served as they are.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::at_rest::Keyring;
use crate::at_rest::files::{self, Header, Opener};
use crate::config::Config;

/// Where `MEDIA_STORE` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `fs://path`: a directory, created on first start.
    Fs(std::path::PathBuf),
    /// `s3://bucket[/prefix]`.
    S3 { bucket: String, prefix: String },
}

impl StoreLocation {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("fs://") {
            if path.is_empty() {
                return Err("fs:// needs a directory, e.g. fs://./media".into());
            }
            return Ok(StoreLocation::Fs(path.into()));
        }
        if let Some(rest) = raw.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("s3:// needs a bucket, e.g. s3://nebula-media".into());
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        Err("must start with fs:// or s3://".into())
    }
}

/// S3 refuses multipart parts under 5 MiB (but the last).
pub const MULTIPART_CHUNK: usize = 5 * 1024 * 1024;

/// Where an S3-compatible service is and how to sign for it: `S3_ENDPOINT`, `S3_REGION`,
/// `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`, shared by the media store and `nebula backup`.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl S3Settings {
    pub fn from_config(config: &Config) -> Self {
        S3Settings {
            endpoint: config.s3_endpoint.clone(),
            region: config.s3_region.clone(),
            access_key_id: config.s3_access_key_id.clone(),
            secret_access_key: config.s3_secret_access_key.clone(),
        }
    }

    /// A client for one bucket (path-style requests when an endpoint is given, which is what
    /// local S3-compatible servers expect).
    pub fn bucket(&self, bucket: &str) -> anyhow::Result<object_store::aws::AmazonS3> {
        // object_store's S3 client talks TLS through reqwest with rustls and no provider
        // compiled in (no aws-lc): install ring's, once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&self.region);
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &self.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(builder.build()?)
    }
}

/// Handle to the media store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MediaStorage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Bytes buffered per multipart part: S3 refuses parts under 5 MiB (but the last); the
    /// local store writes each part to disk at once, so a small one keeps memory flat.
    chunk: usize,
    /// Encryption at rest (empty: objects are stored as uploaded).
    keyring: Keyring,
}

/// A stored object's bytes as a stream, with its length.
pub struct StoredObject {
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, object_store::Error>>,
}

impl MediaStorage {
    /// Opens the store `MEDIA_STORE` names (creating a local directory if needed).
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let location = StoreLocation::parse(&config.media_store)
            .map_err(|reason| anyhow::anyhow!("MEDIA_STORE: {reason}"))?;
        match location {
            StoreLocation::Fs(dir) => {
                std::fs::create_dir_all(&dir).map_err(|err| {
                    anyhow::anyhow!("MEDIA_STORE: cannot create {}: {err}", dir.display())
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir)?;
                Ok(MediaStorage {
                    store: Arc::new(store),
                    prefix: String::new(),
                    chunk: 256 * 1024,
                    keyring: Keyring::default(),
                })
            }
            StoreLocation::S3 { bucket, prefix } => Ok(MediaStorage {
                store: Arc::new(S3Settings::from_config(config).bucket(&bucket)?),
                prefix,
                chunk: MULTIPART_CHUNK,
                keyring: Keyring::default(),
            }),
        }
    }

    /// This store, encrypting what it writes with `keyring` (set once at start).
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = keyring;
        self
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Copies a local file into the store part by part (encrypted chunk by chunk with keys):
    /// at most one part is in memory.
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> anyhow::Result<()> {
        let mut source = tokio::fs::File::open(file).await?;
        let upload = self.store.put_multipart(&self.path(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.chunk);
        let mut sealer = self.keyring.file_sealer(key);
        let copied: anyhow::Result<()> = async {
            let Some(sealer) = sealer.as_mut() else {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = source.read(&mut buffer).await?;
                    if read == 0 {
                        return Ok(());
                    }
                    writer.wait_for_capacity(2).await?;
                    writer.write(&buffer[..read]);
                }
            };
            writer.write(sealer.header());
            // A chunk is sealed once the next one is read: only then is it known to be last.
            let mut current = read_chunk(&mut source).await?;
            loop {
                let next = read_chunk(&mut source).await?;
                let last = next.is_empty();
                writer.wait_for_capacity(2).await?;
                writer.write(&sealer.seal(&current, last));
                if last {
                    return Ok(());
                }
                current = next;
            }
        }
        .await;
        match copied {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(err) => {
                let _ = writer.abort().await;
                Err(err)
            }
        }
    }

    /// Stores small bytes (thumbnails) in one request.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let bytes = self.keyring.seal_file(key, &bytes).unwrap_or(bytes);
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The object's bytes (decrypted), or `None` if it does not exist.
    ///
    /// An encrypted object's first chunk is opened before this returns, so a missing key or
    /// an object moved from another media id is an error here (a 500), not a response that
    /// breaks off after its headers.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<StoredObject>> {
        let Some((total, head, header, raw)) = self.raw(key).await? else {
            return Ok(None);
        };
        let (len, key_id) = match header {
            Header::Sealed { len, key_id } => (len, key_id),
            Header::Plain | Header::Incomplete => {
                let first = futures_util::stream::iter([Ok(Bytes::from(head))]);
                return Ok(Some(StoredObject {
                    size: total,
                    stream: first.chain(raw).boxed(),
                }));
            }
        };
        let undecryptable =
            |cause| anyhow::anyhow!("cannot decrypt the stored object {key}: {cause}");
        let size = files::plaintext_len(total, len)
            .ok_or_else(|| undecryptable(crate::at_rest::Undecryptable::Malformed))?;
        let opener = self
            .keyring
            .file_opener(key, &head[..len], &key_id)
            .map_err(undecryptable)?;
        let mut decrypted = Decrypted {
            opener,
            raw,
            ready: None,
            done: false,
        };
        let first = decrypted.opener.push(&head[len..]).map_err(undecryptable)?;
        decrypted.ready = if first.is_empty() {
            decrypted
                .next_plain()
                .await
                .map_err(|err| anyhow::anyhow!("cannot decrypt the stored object {key}: {err}"))?
        } else {
            Some(Bytes::from(first))
        };
        Ok(Some(StoredObject {
            size,
            stream: decrypted.into_stream(),
        }))
    }

    /// The object's stored size, its first bytes (at least its header, when it has one), what
    /// they say, and the rest of its bytes.
    async fn raw(&self, key: &str) -> anyhow::Result<Option<(u64, Vec<u8>, Header, RawStream)>> {
        let result = match self.store.get(&self.path(key)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let total = result.meta.size;
        let mut raw = result.into_stream().boxed();
        let mut head = Vec::new();
        let header = loop {
            match files::parse_header(&head, false) {
                Header::Incomplete => match raw.next().await {
                    Some(bytes) => head.extend_from_slice(&bytes?),
                    None => break files::parse_header(&head, true),
                },
                decided => break decided,
            }
        };
        Ok(Some((total, head, header, raw)))
    }

    /// Rewrites an object under the current key if it is not already (plaintext or an older
    /// key): decrypted to a temporary file, then written back whole (object stores replace
    /// atomically). Whether it rewrote it; `false` for an object that does not exist.
    pub async fn rekey(&self, key: &str) -> anyhow::Result<bool> {
        let Some((_, _, header, _)) = self.raw(key).await? else {
            return Ok(false);
        };
        if !self.keyring.file_needs_rekey(&header) {
            return Ok(false);
        }
        let Some(object) = self.get(key).await? else {
            return Ok(false);
        };
        let spool = tempfile::NamedTempFile::new()?;
        let mut file = tokio::fs::File::create(spool.path()).await?;
        let mut stream = object.stream;
        while let Some(bytes) = stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes?).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        drop(file);
        self.put_file(key, spool.path()).await?;
        Ok(true)
    }

    /// The object's bytes exactly as stored (tests: encrypted objects stay encrypted).
    pub async fn read_stored(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.store.get(&self.path(key)).await {
            Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The whole object (tests and the storage suite; never used for uploads).
    pub async fn read_all(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(object) = self.get(key).await? else {
            return Ok(None);
        };
        let chunks: Vec<Bytes> = object.stream.try_collect().await?;
        Ok(Some(chunks.concat()))
    }

    /// Removes an object; one that is already gone is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

type RawStream = BoxStream<'static, Result<Bytes, object_store::Error>>;

/// Fills a buffer of one sealing chunk from `source`; shorter only at the end of the file.
async fn read_chunk(source: &mut tokio::fs::File) -> std::io::Result<Vec<u8>> {
    let mut chunk = vec![0u8; files::CHUNK];
    let mut filled = 0;
    while filled < chunk.len() {
        let read = source.read(&mut chunk[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    chunk.truncate(filled);
    Ok(chunk)
}

/// An encrypted object's stream, decrypted as it arrives.
struct Decrypted {
    opener: Opener,
    raw: RawStream,
    /// Plaintext decrypted but not yet handed out.
    ready: Option<Bytes>,
    done: bool,
}

impl Decrypted {
    /// The next non-empty piece of plaintext, `None` at the end.
    async fn next_plain(&mut self) -> Result<Option<Bytes>, object_store::Error> {
        let failed = |cause: crate::at_rest::Undecryptable| object_store::Error::Generic {
            store: "encryption at rest",
            source: Box::new(cause),
        };
        while !self.done {
            match self.raw.next().await {
                Some(bytes) => {
                    let plain = self.opener.push(&bytes?).map_err(failed)?;
                    if !plain.is_empty() {
                        return Ok(Some(Bytes::from(plain)));
                    }
                }
                None => {
                    self.done = true;
                    let plain = self.opener.finish().map_err(failed)?;
                    if !plain.is_empty() {
                        return Ok(Some(Bytes::from(plain)));
                    }
                }
            }
        }
        Ok(None)
    }

    fn into_stream(self) -> RawStream {
        futures_util::stream::try_unfold(self, |mut this| async move {
            if let Some(ready) = this.ready.take().filter(|b| !b.is_empty()) {
                return Ok(Some((ready, this)));
            }
            Ok(this.next_plain().await?.map(|plain| (plain, this)))
        })
        .boxed()
    }
}
