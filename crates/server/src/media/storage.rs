//! The media store: one interface ([`object_store::ObjectStore`]) over a local directory or an
//! S3-compatible bucket, chosen by `MEDIA_STORE`. Nodes of a cluster share the bucket, so any
//! node serves any upload.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

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
                })
            }
            StoreLocation::S3 { bucket, prefix } => Ok(MediaStorage {
                store: Arc::new(S3Settings::from_config(config).bucket(&bucket)?),
                prefix,
                chunk: MULTIPART_CHUNK,
            }),
        }
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Copies a local file into the store part by part: at most one part is in memory.
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> anyhow::Result<()> {
        let mut source = tokio::fs::File::open(file).await?;
        let upload = self.store.put_multipart(&self.path(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.chunk);
        let mut buffer = vec![0u8; 64 * 1024];
        let copied: anyhow::Result<()> = async {
            loop {
                let read = source.read(&mut buffer).await?;
                if read == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(2).await?;
                writer.write(&buffer[..read]);
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
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The object's bytes, or `None` if it does not exist.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<StoredObject>> {
        match self.store.get(&self.path(key)).await {
            Ok(result) => Ok(Some(StoredObject {
                size: result.meta.size,
                stream: result.into_stream().boxed(),
            })),
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
