//! `nebula backup` and `nebula restore`, run as an operator would (the real binary): a snapshot
//! taken while messages keep arriving, restored into the other backend, compared row by row;
//! and the archives restore refuses.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use nebula::backup::format::{Manifest, coerce};
use nebula::backup::{Db, read_rows};
use nebula_wire::Room;
use reqwest::StatusCode;
use serde_json::{Value as Json, json};

use crate::helpers::{Backend, Session, TestApp, TestDb, password_of};
use crate::media::{png, uploaded};

/// Backups in S3-compatible object storage (`s3s-fs`).
mod s3;

/// Runs `nebula ARGS` with the database and media store given, as the operator would.
async fn nebula(args: &[&str], database_url: &str, media: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_nebula"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("MEDIA_STORE", format!("fs://{}", media.display()))
        .output()
        .await
        .expect("run nebula")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Users, a room with replies, an edit, reactions, a deletion and an attachment, a direct
/// room and a contact: rows in most tables.
async fn populate(app: &TestApp) -> (Session, Session, Room) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("General", false).await;
    assert!(bob.join(room.id).await.status.is_success());
    let first = alice.say(room.id, "hello").await;
    let reply = bob
        .post_message(room.id, json!({"content": "hi", "reply_to": first.id}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(
        alice.edit(room.id, first.id, "hello, all").await.status,
        StatusCode::OK
    );
    assert!(bob.react(room.id, first.id, "👍").await.status.is_success());
    let gone = bob.say(room.id, "oops").await;
    assert!(
        bob.delete_message(room.id, gone.id)
            .await
            .status
            .is_success()
    );
    let picture = uploaded(&alice, "p.png", png(8, 8), "image/png").await;
    let attached = alice
        .post_message(
            room.id,
            json!({"content": "look", "attachments": [picture.id]}),
        )
        .await;
    assert_eq!(attached.status, StatusCode::CREATED, "{}", attached.text());
    let dm = alice.post("/dms", json!({"user_id": bob.user.id})).await;
    assert!(dm.status.is_success(), "dm: {}", dm.text());
    let request = bob
        .post("/contacts/requests", json!({"user_id": alice.user.id}))
        .await;
    assert!(request.status.is_success(), "contact: {}", request.text());
    (alice, bob, room)
}

/// The source keeps taking messages from `alice` until `stop`; returns how many were sent.
fn keep_writing(
    alice: Session,
    room: Room,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: the history comparison reads one keyset page of 100.
        while !stop.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) < 80 {
            let n = sent.load(Ordering::SeqCst);
            alice.say(room.id, &format!("load {n}")).await;
            sent.fetch_add(1, Ordering::SeqCst);
        }
    })
}

/// Every table of the archive equals the restored database's, row for row, once the archive's
/// values are converted to the target's column types.
async fn assert_same_rows(archive: &Path, target_url: &str) {
    let (manifest, tables) = read_rows(archive).expect("archive reads");
    let mut db = Db::connect(target_url, false).await.unwrap();
    for entry in &manifest.tables {
        let schema = db.table_schema(&entry.name).await.unwrap();
        let positions: Vec<usize> = entry
            .columns
            .iter()
            .map(|c| {
                schema
                    .columns
                    .iter()
                    .position(|(name, _)| name == c)
                    .unwrap()
            })
            .collect();
        let mut expected: Vec<String> = tables[&entry.name]
            .iter()
            .map(|row| {
                let values: Vec<_> = row
                    .iter()
                    .zip(&positions)
                    .map(|(v, &i)| coerce(v.clone(), schema.columns[i].1).unwrap())
                    .collect();
                format!("{values:?}")
            })
            .collect();
        let mut actual = Vec::new();
        db.for_each_row(&schema, |row| {
            let values: Vec<_> = positions.iter().map(|&i| row[i].clone()).collect();
            actual.push(format!("{values:?}"));
            Ok(())
        })
        .await
        .unwrap();
        expected.sort();
        actual.sort();
        assert_eq!(expected.len() as u64, entry.rows);
        assert_eq!(
            actual, expected,
            "table {} differs after the restore",
            entry.name
        );
    }
}

/// History as the API shows it, attachments reduced to their ids (their URLs are signed
/// with an expiry, so they differ between two reads).
async fn history(who: &Session, room: &Room, through: i64) -> Vec<Json> {
    let page: Json = who
        .history(
            room.id,
            &format!("?after_seq=0&before_seq={}&limit=100", through + 1),
        )
        .await
        .json();
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let ids: Vec<Json> = m["attachments"]
                .as_array()
                .map(|a| a.iter().map(|f| f["id"].clone()).collect())
                .unwrap_or_default();
            m["attachments"] = Json::Array(ids);
            m
        })
        .collect()
}

async fn login(app: &TestApp, username: &str) -> Session {
    let reply = app
        .post_json(
            "/auth/login",
            json!({"username": username, "password": password_of(username)}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.text());
    let auth: nebula_wire::AuthResponse = reply.json();
    app.session(auth.token, auth.user)
}

/// Backs up `source` under write load, restores into a fresh `target`, and checks the copy.
async fn round_trip(source: Backend, target: Backend) {
    let source_media = tempfile::tempdir().unwrap();
    let media_url = format!("fs://{}", source_media.path().display());
    let app = TestApp::spawn_with(source, |c| c.media_store = media_url.clone()).await;
    let (alice, _bob, room) = populate(&app).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicI64::new(0));
    let writer = keep_writing(alice.clone(), room.clone(), stop.clone(), sent.clone());
    while sent.load(Ordering::SeqCst) < 3 {
        tokio::task::yield_now().await;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("nebula.backup");
    let before = sent.load(Ordering::SeqCst);
    let output = nebula(
        &["backup", "--out", archive.to_str().unwrap()],
        &app.database_url,
        source_media.path(),
    )
    .await;
    let during = sent.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    assert!(output.status.success(), "backup: {}", stderr(&output));
    assert!(during > 0, "no message was sent while the backup ran");

    let (manifest, tables) = read_rows(&archive).unwrap();
    assert!(!manifest.media.is_empty(), "the upload is in the archive");
    for table in [
        "users",
        "rooms",
        "room_members",
        "messages",
        "message_versions",
        "message_reactions",
        "media",
        "message_media",
        "direct_rooms",
        "contact_requests",
    ] {
        assert!(!tables[table].is_empty(), "{table} has rows to back up");
    }
    assert!(!tables.contains_key("_sqlx_migrations"));

    let (target_db, target_url) = TestDb::create(&target).await;
    let target_media = tempfile::tempdir().unwrap();
    let output = nebula(
        &["restore", "--from", archive.to_str().unwrap()],
        &target_url,
        target_media.path(),
    )
    .await;
    assert!(output.status.success(), "restore: {}", stderr(&output));
    assert_same_rows(&archive, &target_url).await;
    for file in &manifest.media {
        let relative = file.path.strip_prefix("media/").unwrap();
        assert_eq!(
            std::fs::read(target_media.path().join(relative)).unwrap(),
            std::fs::read(source_media.path().join(relative)).unwrap()
        );
    }

    // One snapshot: each room's counter matches the messages the snapshot holds.
    let restored_url = format!("fs://{}", target_media.path().display());
    let copy = TestApp::spawn_on(target_db, target_url, |c| c.media_store = restored_url).await;
    let torn = copy
        .query_i64(
            "SELECT COUNT(*) FROM rooms r WHERE r.last_seq <> \
             (SELECT COALESCE(MAX(m.seq), 0) FROM messages m WHERE m.room_id = r.id)",
        )
        .await;
    assert_eq!(torn, 0, "a room's last_seq disagrees with its messages");
    let snapshot_seq = copy
        .query_i64("SELECT last_seq FROM rooms WHERE name = 'General'")
        .await;
    assert!(snapshot_seq > 5);

    let alice_again = login(&copy, "alice").await;
    assert_eq!(
        history(&alice_again, &room, snapshot_seq).await,
        history(&alice, &room, snapshot_seq).await,
        "history differs after the restore"
    );
    let next = alice_again.say(room.id, "after the move").await;
    assert_eq!(
        next.seq,
        snapshot_seq + 1,
        "seqs continue where the backup left them"
    );
    let last_rev = copy
        .query_i64("SELECT last_rev FROM rooms WHERE name = 'General'")
        .await;
    assert_eq!(next.rev, last_rev);
    assert!(
        last_rev > snapshot_seq,
        "revs continue past the edits and deletions"
    );
    let bob_again = login(&copy, "bob").await;
    assert!(
        bob_again
            .react(room.id, next.id, "🎉")
            .await
            .status
            .is_success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_under_write_load() {
    if let Some(postgres) = Backend::postgres() {
        round_trip(Backend::Sqlite, postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_sqlite_under_write_load() {
    if let Some(postgres) = Backend::postgres() {
        round_trip(postgres, Backend::Sqlite).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_under_write_load() {
    round_trip(Backend::Sqlite, Backend::Sqlite).await;
}

/// A backup of a small SQLite server, and a scratch directory for its media.
async fn small_backup() -> (TestApp, tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let media = work.path().join("media");
    let media_url = format!("fs://{}", media.display());
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.media_store = media_url).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("General", false).await;
    alice.say(room.id, "a line worth keeping").await;
    let archive = work.path().join("nebula.backup");
    let output = nebula(
        &["backup", "--out", archive.to_str().unwrap()],
        &app.database_url,
        &media,
    )
    .await;
    assert!(output.status.success(), "backup: {}", stderr(&output));
    (app, work, archive)
}

/// Rewrites the archive's entries through `edit(path, bytes)`.
fn rewrite(archive: &Path, mut edit: impl FnMut(&str, &mut Vec<u8>)) {
    let mut entries = Vec::new();
    let mut reader = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        edit(&path, &mut bytes);
        entries.push((path, bytes));
    }
    let mut writer = tar::Builder::new(std::fs::File::create(archive).unwrap());
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        writer
            .append_data(&mut header, path, bytes.as_slice())
            .unwrap();
    }
    writer.finish().unwrap();
}

async fn refused(archive: &Path, target: &Backend, expected: &str) {
    let (_db, url) = TestDb::create(target).await;
    let media = tempfile::tempdir().unwrap();
    let output = nebula(
        &["restore", "--from", archive.to_str().unwrap()],
        &url,
        media.path(),
    )
    .await;
    assert!(!output.status.success(), "restore should have been refused");
    assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    // Nothing was written: the target holds no row (and, refused before migrating, no table).
    if let Ok(mut db) = Db::connect(&url, false).await {
        for table in db.tables().await.unwrap() {
            assert!(!db.has_rows(&table).await.unwrap(), "{table} was written");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_archive_is_refused_before_anything_is_written() {
    let (_app, _work, archive) = small_backup().await;
    rewrite(&archive, |path, bytes| {
        if path == "tables/messages.jsonl" {
            let text = String::from_utf8(bytes.clone()).unwrap();
            *bytes = text.replace("worth keeping", "worth changing").into_bytes();
        }
    });
    refused(
        &archive,
        &Backend::Sqlite,
        "checksum mismatch: tables/messages.jsonl",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_from_a_newer_schema_is_refused() {
    let (_app, _work, archive) = small_backup().await;
    rewrite(&archive, |path, bytes| {
        if path == "manifest.json" {
            let mut manifest: Manifest = serde_json::from_slice(bytes).unwrap();
            manifest.schema_version = 9999;
            *bytes = serde_json::to_vec(&manifest).unwrap();
        }
    });
    refused(&archive, &Backend::Sqlite, "newer than this nebula's").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_rows_is_refused() {
    let (app, work, archive) = small_backup().await;
    // The source itself, running, has rows.
    let output = nebula(
        &["restore", "--from", archive.to_str().unwrap()],
        &app.database_url,
        &work.path().join("media"),
    )
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not empty"), "{}", stderr(&output));
    // An empty database takes it once; a second restore into it is refused.
    let (_db, url) = TestDb::create(&Backend::Sqlite).await;
    let media = tempfile::tempdir().unwrap();
    let first = nebula(
        &["restore", "--from", archive.to_str().unwrap()],
        &url,
        media.path(),
    )
    .await;
    assert!(first.status.success(), "{}", stderr(&first));
    let again = nebula(
        &["restore", "--from", archive.to_str().unwrap()],
        &url,
        media.path(),
    )
    .await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut db = Db::connect(&url, false).await.unwrap();
    let users = db.table_schema("users").await.unwrap();
    db.for_each_row(&users, |_| {
        *counts.entry("users".into()).or_default() += 1;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(counts["users"], 1, "the refused restore added nothing");
}
