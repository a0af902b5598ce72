//! `nebula backup --out s3://…` and `nebula restore --from s3://…` against a real local S3
//! server (`s3s-fs`, which checks signatures): backups named by time under a prefix, the
//! newest N kept, the newest restored by default, a large media file streamed through without
//! being held in memory, and the mistakes an operator can make.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use futures_util::TryStreamExt;
use nebula::media::S3Settings;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

use super::{assert_same_rows, login, stderr};
use crate::helpers::{Backend, TestApp, TestDb};
use crate::media::S3Server;
use crate::media::s3::{ACCESS_KEY, BUCKET, SECRET_KEY};

/// A private S3 server and the operator's environment for it.
struct Bucket {
    server: S3Server,
    _dir: tempfile::TempDir,
}

impl Bucket {
    async fn start() -> Option<Bucket> {
        let dir = tempfile::tempdir().unwrap();
        let server = S3Server::start(dir.path()).await?;
        Some(Bucket { server, _dir: dir })
    }

    /// Runs `nebula ARGS` as the operator would, with the bucket's endpoint and keys.
    async fn nebula(&self, args: &[&str], database_url: &str, media: &Path) -> Output {
        self.nebula_as(args, database_url, media, SECRET_KEY).await
    }

    async fn nebula_as(
        &self,
        args: &[&str],
        database_url: &str,
        media: &Path,
        secret: &str,
    ) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_nebula"))
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("MEDIA_STORE", format!("fs://{}", media.display()))
            .env("S3_ENDPOINT", &self.server.endpoint)
            .env("S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("S3_SECRET_ACCESS_KEY", secret)
            .env_remove("BACKUP_KEEP")
            .output()
            .await
            .expect("run nebula")
    }

    /// The keys under `prefix`, sorted, looked at behind nebula's back.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let store = S3Settings {
            endpoint: Some(self.server.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
        }
        .bucket(BUCKET)
        .unwrap();
        let mut keys: Vec<String> = store
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The object a successful backup reports it wrote.
fn written(output: &Output) -> String {
    assert!(output.status.success(), "backup: {}", stderr(output));
    let out = stdout(output);
    let url = out
        .lines()
        .next()
        .and_then(|line| line.rsplit_once(" to "))
        .map(|(_, url)| url.to_owned())
        .unwrap_or_else(|| panic!("no destination in {out}"));
    url.strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned()
}

async fn nightly_backups_are_kept_to_n_and_the_newest_restores(source: Backend, target: Backend) {
    let Some(bucket) = Bucket::start().await else {
        return;
    };
    let media = tempfile::tempdir().unwrap();
    let media_url = format!("fs://{}", media.path().display());
    let app = TestApp::spawn_with(source, |c| c.media_store = media_url.clone()).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("General", false).await;
    let prefix = format!("s3://{BUCKET}/nightly");

    let mut taken = Vec::new();
    for (n, line) in ["monday", "tuesday", "wednesday"].iter().enumerate() {
        alice.say(room.id, line).await;
        let mut args = vec!["backup", "--out", prefix.as_str()];
        if n == 2 {
            args.extend(["--keep", "2"]);
        }
        let output = bucket.nebula(&args, &app.database_url, media.path()).await;
        let key = written(&output);
        assert!(
            key.starts_with("nightly/nebula-") && key.ends_with(".tar"),
            "{key}"
        );
        if n == 2 {
            assert!(
                stdout(&output).contains(&format!("deleted 1 older backups: {}", taken[0])),
                "{}",
                stdout(&output)
            );
        }
        taken.push(key);
    }
    assert_eq!(
        bucket.keys("nightly").await,
        taken[1..].to_vec(),
        "monday's backup was deleted, two kept"
    );

    // `--from` a prefix restores the newest backup: wednesday's.
    let (newest_db, newest_url) = TestDb::create(&target).await;
    let restored_media = tempfile::tempdir().unwrap();
    let output = bucket
        .nebula(
            &["restore", "--from", &prefix],
            &newest_url,
            restored_media.path(),
        )
        .await;
    assert!(output.status.success(), "restore: {}", stderr(&output));
    assert!(stdout(&output).contains(&taken[2]), "{}", stdout(&output));
    let copy = TestApp::spawn_on(newest_db, newest_url.clone(), |_| {}).await;
    let alice_again = login(&copy, "alice").await;
    let lines: Vec<String> = alice_again
        .history(room.id, "?limit=10")
        .await
        .json::<serde_json::Value>()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines, ["monday", "tuesday", "wednesday"]);

    // A named object restores exactly that one: tuesday's, row for row.
    let (_older_db, older_url) = TestDb::create(&target).await;
    let tuesday = format!("s3://{BUCKET}/{}", taken[1]);
    let output = bucket
        .nebula(
            &["restore", "--from", &tuesday],
            &older_url,
            restored_media.path(),
        )
        .await;
    assert!(output.status.success(), "restore: {}", stderr(&output));
    let local = tempfile::tempdir().unwrap();
    let archive = local.path().join("tuesday.tar");
    download(&bucket, &taken[1], &archive).await;
    assert_same_rows(&archive, &older_url).await;
    let (_, rows) = nebula::backup::read_rows(&archive).unwrap();
    assert_eq!(
        rows["messages"].len(),
        2,
        "tuesday's backup holds two messages"
    );
}

/// Copies an object to a local file (to inspect an archive the test did not write).
async fn download(bucket: &Bucket, key: &str, to: &Path) {
    let store = S3Settings {
        endpoint: Some(bucket.server.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
    }
    .bucket(BUCKET)
    .unwrap();
    let object = object_store::ObjectStoreExt::get(&store, &ObjectPath::from(key))
        .await
        .unwrap();
    std::fs::write(to, object.bytes().await.unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_nightly_backups_to_s3_restore_into_postgres() {
    if let Some(postgres) = Backend::postgres() {
        nightly_backups_are_kept_to_n_and_the_newest_restores(Backend::Sqlite, postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nightly_backups_to_s3_restore_into_sqlite() {
    if let Some(postgres) = Backend::postgres() {
        nightly_backups_are_kept_to_n_and_the_newest_restores(postgres, Backend::Sqlite).await;
    }
}

/// Peak resident memory (`VmHWM`, KiB) of a child, polled until it exits.
async fn peak_rss_kib(mut child: tokio::process::Child) -> (std::process::ExitStatus, u64, String) {
    let pid = child.id().unwrap();
    let mut peak = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        stderr.read_to_string(&mut err).await.unwrap();
    }
    (status, peak, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_media_file_is_streamed_to_the_bucket_not_held_in_memory() {
    let Some(bucket) = Bucket::start().await else {
        return;
    };
    let media = tempfile::tempdir().unwrap();
    let media_url = format!("fs://{}", media.path().display());
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.media_store = media_url.clone()).await;
    app.register("alice").await;
    // 128 MiB of video, say: far more than the few multipart parts in flight.
    const SIZE: usize = 128 * 1024 * 1024;
    std::fs::create_dir_all(media.path().join("media")).unwrap();
    let big: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(media.path().join("media").join("big-video"), &big).unwrap();
    drop(big);

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_nebula"))
        .args(["backup", "--out", &format!("s3://{BUCKET}/big")])
        .env("DATABASE_URL", &app.database_url)
        .env("MEDIA_STORE", &media_url)
        .env("S3_ENDPOINT", &bucket.server.endpoint)
        .env("S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("S3_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("BACKUP_KEEP")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (status, peak_kib, err) = peak_rss_kib(child).await;
    assert!(status.success(), "backup: {err}");
    let keys = bucket.keys("big").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let peak_mib = peak_kib / 1024;
    eprintln!("peak RSS of a backup with a 128 MiB file: {peak_mib} MiB");
    assert!(peak_mib > 0, "the child's memory was never read");
    assert!(
        peak_mib < 96,
        "the backup held {peak_mib} MiB: the archive was buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_mistakes_are_refused_with_a_reason() {
    let Some(bucket) = Bucket::start().await else {
        return;
    };
    let media = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.register("alice").await;
    let db = app.database_url.clone();
    let local = media.path().join("x.tar");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "backup".into(),
                "--out".into(),
                local.display().to_string(),
                "--keep".into(),
                "2".into(),
            ],
            "--keep (BACKUP_KEEP) needs --out s3://bucket/prefix",
        ),
        (
            vec![
                "backup".into(),
                "--out".into(),
                format!("s3://{BUCKET}/one.tar"),
                "--keep".into(),
                "2".into(),
            ],
            "needs a prefix, not one object",
        ),
        (
            vec![
                "backup".into(),
                "--out".into(),
                format!("s3://{BUCKET}/p"),
                "--keep".into(),
                "0".into(),
            ],
            "--keep",
        ),
        (
            vec!["backup".into(), "--out".into(), "s3:///nightly".into()],
            "an S3 location is s3://bucket",
        ),
        (
            vec![
                "restore".into(),
                "--from".into(),
                format!("s3://{BUCKET}/empty"),
            ],
            "no nebula backups under s3://nebula-media/empty",
        ),
        (
            vec![
                "restore".into(),
                "--from".into(),
                format!("s3://{BUCKET}/gone.tar"),
            ],
            "s3://nebula-media/gone.tar does not exist",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = bucket.nebula(&args, &db, media.path()).await;
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // Wrong credentials: refused by the server, and nothing is left in the bucket.
    let output = bucket
        .nebula_as(
            &["backup", "--out", &format!("s3://{BUCKET}/nightly")],
            &db,
            media.path(),
            "not-the-secret",
        )
        .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot start uploading s3://nebula-media/nightly/nebula-"),
        "{}",
        stderr(&output)
    );
    assert!(bucket.keys("").await.is_empty());
    // A good backup, then a restore into a database that already has rows: refused.
    let output = bucket
        .nebula(
            &["backup", "--out", &format!("s3://{BUCKET}/nightly")],
            &db,
            media.path(),
        )
        .await;
    written(&output);
    let output = bucket
        .nebula(
            &["restore", "--from", &format!("s3://{BUCKET}/nightly")],
            &db,
            media.path(),
        )
        .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("rows"), "{}", stderr(&output));
}
