//! Files: uploads, safe serving, access, attachments and their collection, on SQLite and
//! PostgreSQL, each with the media store on disk and in a real local S3 server (`s3s-fs`,
//! which checks request signatures).

mod access;
mod attachments;
pub mod s3;
mod storage;
mod uploads;

use std::time::Duration;

use nebula::config::Config;
use nebula::media::MediaStorage;
use nebula_wire::Media;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{Reply, Session, send};
pub use s3::S3Server;

/// Which media store a test runs against.
#[derive(Debug, Clone, Copy)]
pub enum MediaKind {
    Fs,
    S3,
}

/// A media store for one test (or for the nodes of one cluster test), removed after it.
pub struct MediaSetup {
    pub store: String,
    s3: Option<S3Server>,
    _dir: tempfile::TempDir,
}

impl MediaSetup {
    /// `None` (with the reason printed) when the S3 server is not available and services are
    /// not required.
    pub async fn new(kind: MediaKind) -> Option<MediaSetup> {
        let dir = tempfile::tempdir().expect("temp dir");
        match kind {
            MediaKind::Fs => Some(MediaSetup {
                store: format!("fs://{}", dir.path().join("media").display()),
                s3: None,
                _dir: dir,
            }),
            MediaKind::S3 => {
                let server = S3Server::start(dir.path()).await?;
                Some(MediaSetup {
                    store: format!("s3://{}/nebula", s3::BUCKET),
                    s3: Some(server),
                    _dir: dir,
                })
            }
        }
    }

    /// Points a server's config at this store.
    pub fn apply(&self, config: &mut Config) {
        config.media_store = self.store.clone();
        if let Some(s3) = &self.s3 {
            config.s3_endpoint = Some(s3.endpoint.clone());
            config.s3_region = "us-east-1".into();
            config.s3_access_key_id = Some(s3::ACCESS_KEY.into());
            config.s3_secret_access_key = Some(s3::SECRET_KEY.into());
        }
    }

    /// The store as the server sees it, to look behind its back.
    pub fn storage(&self) -> MediaStorage {
        let mut config = Config::for_database("sqlite::memory:");
        self.apply(&mut config);
        MediaStorage::open(&config).expect("media store")
    }
}

/// Runs a test body for SQLite and PostgreSQL, each with the media store on disk and in S3.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::Backend;
            use $crate::media::MediaKind;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_fs() {
                super::$name(Backend::Sqlite, MediaKind::Fs).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_s3() {
                super::$name(Backend::Sqlite, MediaKind::S3).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_fs() {
                if let Some(backend) = Backend::postgres() {
                    super::$name(backend, MediaKind::Fs).await
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                if let Some(backend) = Backend::postgres() {
                    super::$name(backend, MediaKind::S3).await
                }
            }
        }
    )*};
}

/// `POST /media?filename=` with a raw body and a declared type.
pub async fn upload(who: &Session, filename: &str, bytes: Vec<u8>, declared: &str) -> Reply {
    let url = format!(
        "{}/media?filename={}",
        who.base,
        crate::helpers::percent_encode(filename)
    );
    send(
        who.http
            .post(url)
            .bearer_auth(&who.token)
            .header("content-type", declared)
            .body(bytes),
    )
    .await
}

/// An upload that must succeed.
pub async fn uploaded(who: &Session, filename: &str, bytes: Vec<u8>, declared: &str) -> Media {
    let reply = upload(who, filename, bytes, declared).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()
}

/// A real PNG with some pixels.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// A valid 20000 x 20000 one-bit PNG of ~90 KB: 400 megapixels once decoded.
pub fn bomb_png() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 20_000, 20_000);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::One);
        encoder.set_compression(png::Compression::High);
        let mut writer = encoder.write_header().expect("png header");
        let mut stream = writer.stream_writer().expect("png stream");
        let row = vec![0u8; 20_000 / 8];
        for _ in 0..20_000 {
            std::io::Write::write_all(&mut stream, &row).expect("png row");
        }
        stream.finish().expect("png end");
    }
    out
}

/// Waits (polling) until `check` holds, failing after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the store still holds an upload's bytes.
pub async fn stored(storage: &MediaStorage, id: Uuid) -> bool {
    storage
        .read_all(&nebula::media::object_key(id))
        .await
        .expect("media store reachable")
        .is_some()
}

/// The signed path's fetch, without any `Authorization` header.
pub async fn fetch_anonymously(who: &Session, path: &str) -> Reply {
    send(who.http.get(format!("{}{path}", who.base))).await
}
