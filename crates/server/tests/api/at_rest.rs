//! Encryption at rest (`ENCRYPTION_KEYS`): what an operator and an attacker with the database
//! or the media store would see. Content, edit history and files are ciphertext on disk and
//! plaintext through the API; a ciphertext moved elsewhere does not decrypt; rows and files
//! written before keys still read; `nebula rekey` rotates under live edits; backups carry
//! ciphertext and restore with the same keys.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nebula::config::Config;
use nebula_wire::{Message, MessageHistory, Room};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backend, Session, TestApp, TestDb, password_of};
use crate::media::{MediaKind, MediaSetup, png, uploaded};
use crate::{on_both_backends, on_every_store};

on_both_backends!(
    content_and_edit_history_are_ciphertext_in_the_database_and_text_through_the_api,
    a_ciphertext_copied_to_another_message_does_not_decrypt,
    rekey_rotates_everything_under_live_edits_and_the_old_key_can_go,
);
on_every_store!(files_and_thumbnails_are_ciphertext_in_the_store_and_served_as_uploaded);

/// A key spec `id:base64` for a 32-byte key derived from `seed`.
fn key(id: &str, seed: u8) -> String {
    format!("{id}:{}", STANDARD.encode([seed; 32]))
}

fn keys(list: &[&str]) -> impl FnOnce(&mut Config) {
    let joined = list.join(",");
    move |config: &mut Config| config.encryption_keys = Some(joined)
}

/// Rows of `table` whose `content` contains `needle`, behind the server's back.
async fn rows_containing(app: &TestApp, table: &str, needle: &str) -> i64 {
    app.query_i64(&format!(
        "SELECT COUNT(*) FROM {table} WHERE content LIKE '%{needle}%'"
    ))
    .await
}

async fn page(who: &Session, room: Uuid) -> Vec<Message> {
    let reply = who.history(room, "?limit=100").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    serde_json::from_value(reply.json::<Value>()["messages"].clone()).unwrap()
}

async fn versions(who: &Session, room: Uuid, message: Uuid) -> Vec<String> {
    let reply = who
        .get(&format!("/rooms/{room}/messages/{message}/history"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let history: MessageHistory = reply.json();
    history.versions.into_iter().map(|v| v.content).collect()
}

async fn content_and_edit_history_are_ciphertext_in_the_database_and_text_through_the_api(
    backend: Backend,
) {
    let app = TestApp::spawn_with(backend, keys(&[&key("k1", 1)])).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Plans", false).await;
    let posted = alice.say(room.id, "the zebra plan").await;
    assert_eq!(posted.content, "the zebra plan");
    let edited = alice.edit(room.id, posted.id, "the yak plan").await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text());

    assert_eq!(rows_containing(&app, "messages", "yak").await, 0);
    assert_eq!(rows_containing(&app, "message_versions", "zebra").await, 0);
    assert_eq!(rows_containing(&app, "messages", "nbe1:k1:").await, 1);
    assert_eq!(
        rows_containing(&app, "message_versions", "nbe1:k1:").await,
        1
    );

    assert_eq!(page(&alice, room.id).await[0].content, "the yak plan");
    assert_eq!(
        alice.message(room.id, posted.id).await.content,
        "the yak plan"
    );
    assert_eq!(
        versions(&alice, room.id, posted.id).await,
        ["the zebra plan"]
    );
    let changes = alice.get(&format!("/rooms/{}/changes", room.id)).await;
    assert!(
        changes.text().contains("the yak plan"),
        "{}",
        changes.text()
    );
    let export = alice.get("/me/export").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(export.text().contains("the yak plan"), "{}", export.text());
    // Messages posted again under the same client_msg_id find the (decrypted) original.
    let body = serde_json::json!({"content": "once", "client_msg_id": "c-1"});
    let first: Message = alice.post_message(room.id, body.clone()).await.json();
    let again = alice.post_message(room.id, body).await;
    assert_eq!(again.json::<Message>().id, first.id);
    assert_eq!(again.json::<Message>().content, "once");

    // Rows written before keys were configured still read, beside encrypted ones.
    let mut app = app;
    app.restart_with(|c| c.encryption_keys = None).await;
    let alice = relogin(&app, "alice").await;
    alice.say(room.id, "a plain line").await;
    assert_eq!(rows_containing(&app, "messages", "a plain line").await, 1);
    app.restart_with(keys(&[&key("k1", 1)])).await;
    let alice = relogin(&app, "alice").await;
    let contents: Vec<String> = page(&alice, room.id)
        .await
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(contents, ["the yak plan", "once", "a plain line"]);
}

async fn relogin(app: &TestApp, username: &str) -> Session {
    let reply = app
        .post_json(
            "/auth/login",
            serde_json::json!({"username": username, "password": password_of(username)}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body: Value = reply.json();
    app.session(
        body["token"].as_str().unwrap().to_owned(),
        serde_json::from_value(body["user"].clone()).unwrap(),
    )
}

async fn a_ciphertext_copied_to_another_message_does_not_decrypt(backend: Backend) {
    let app = TestApp::spawn_with(backend, keys(&[&key("k1", 1)])).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Plans", false).await;
    let first = alice.say(room.id, "first words").await;
    let second = alice.say(room.id, "second words").await;
    assert_eq!(
        alice.edit(room.id, first.id, "edited").await.status,
        StatusCode::OK
    );
    // An attacker with write access to the database moves a ciphertext.
    app.execute_sql(
        "UPDATE messages SET content = (SELECT m.content FROM messages m \
         WHERE m.room_id = messages.room_id AND m.seq = 1) WHERE seq = 2",
    )
    .await;
    let reply = alice
        .get(&format!("/rooms/{}/messages/{}", room.id, second.id))
        .await;
    reply.assert_problem(500, "internal_error");
    assert!(!reply.text().contains("edited") && !reply.text().contains("nbe1"));
    alice
        .history(room.id, "")
        .await
        .assert_problem(500, "internal_error");
    // The untouched message still reads; its version moved to the other message does not.
    assert_eq!(alice.message(room.id, first.id).await.content, "edited");
    // A version's ciphertext is bound to its rev too.
    app.execute_sql("UPDATE message_versions SET rev = rev + 1000")
        .await;
    alice
        .get(&format!("/rooms/{}/messages/{}/history", room.id, first.id))
        .await
        .assert_problem(500, "internal_error");
}

async fn files_and_thumbnails_are_ciphertext_in_the_store_and_served_as_uploaded(
    backend: Backend,
    kind: MediaKind,
) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |c| {
        media.apply(c);
        c.encryption_keys = Some(key("k1", 1));
    })
    .await;
    let alice = app.register("alice").await;
    let picture = png(300, 200);
    let image = uploaded(&alice, "p.png", picture.clone(), "image/png").await;
    // Several sealing chunks, the last one short.
    let document: Vec<u8> = (0..200_003u32).map(|i| (i % 253) as u8).collect();
    let file = uploaded(
        &alice,
        "d.bin",
        document.clone(),
        "application/octet-stream",
    )
    .await;
    assert_eq!(file.size, document.len() as i64);

    let raw = media.storage();
    let stored = |key: String| {
        let raw = raw.clone();
        async move { raw.read_stored(&key).await.unwrap().expect("stored") }
    };
    let stored_image = stored(nebula::media::object_key(image.id)).await;
    let stored_thumb = stored(nebula::media::thumbnail_key(image.id)).await;
    let stored_document = stored(nebula::media::object_key(file.id)).await;
    for bytes in [&stored_image, &stored_thumb, &stored_document] {
        assert!(!bytes.starts_with(b"\x89PNG"));
        assert!(bytes.starts_with(b"\x89NBF1"));
    }
    assert!(
        !stored_document
            .windows(64)
            .any(|w| w == &document[1000..1064])
    );

    let served = alice.get(&format!("/media/{}", image.id)).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, picture);
    let served = alice.get(&format!("/media/{}", file.id)).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, document);
    assert_eq!(
        served.headers["content-length"].to_str().unwrap(),
        document.len().to_string()
    );
    let thumb = alice.get(&format!("/media/{}/thumbnail", image.id)).await;
    assert_eq!(thumb.status, StatusCode::OK);
    let decoded = image::load_from_memory(&thumb.body).expect("thumbnail decodes");
    assert_eq!((decoded.width(), decoded.height()), (300, 200));

    // A stored file moved to another media id does not decrypt: 500, not someone's bytes.
    raw.put_bytes(&nebula::media::object_key(file.id), stored_image)
        .await
        .unwrap();
    let moved = alice.get(&format!("/media/{}", file.id)).await;
    moved.assert_problem(500, "internal_error");
    // Files stored before keys (plaintext) are served as they are.
    raw.put_bytes(&nebula::media::object_key(file.id), document.clone())
        .await
        .unwrap();
    assert_eq!(
        alice.get(&format!("/media/{}", file.id)).await.body,
        document
    );
}

/// Runs `nebula ARGS` against a database and media directory, as an operator would.
async fn nebula(args: &[&str], database_url: &str, media: &Path, keys: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_nebula"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("MEDIA_STORE", format!("fs://{}", media.display()))
        .env("JWT_SECRET", crate::helpers::JWT_SECRET)
        .env_remove("ENCRYPTION_KEYS");
    if let Some(keys) = keys {
        command.env("ENCRYPTION_KEYS", keys);
    }
    command.output().await.expect("run nebula")
}

/// Everything a member reads about a room: its messages, each one's edit history.
async fn everything(who: &Session, room: &Room) -> Vec<(Message, Vec<String>)> {
    let mut all = Vec::new();
    for message in page(who, room.id).await {
        let history = versions(who, room.id, message.id).await;
        all.push((message, history));
    }
    all
}

async fn rekey_rotates_everything_under_live_edits_and_the_old_key_can_go(backend: Backend) {
    let media_dir = tempfile::tempdir().unwrap();
    let media_url = format!("fs://{}", media_dir.path().display());
    let (a, b) = (key("a", 1), key("b", 2));
    // Some rows and a file from before keys, then more under key a.
    let mut app = TestApp::spawn_with(backend, |c| c.media_store = media_url.clone()).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Rotation", false).await;
    alice.say(room.id, "kept from before keys").await;
    let old = alice.say(room.id, "old words").await;
    assert_eq!(
        alice
            .edit(room.id, old.id, "old words, edited")
            .await
            .status,
        StatusCode::OK
    );
    let old_picture = uploaded(&alice, "old.png", png(64, 64), "image/png").await;
    app.restart_with(keys(&[&a])).await;
    let alice = relogin(&app, "alice").await;
    let mut ids = Vec::new();
    for n in 0..30 {
        let message = alice.say(room.id, &format!("line {n}")).await;
        assert_eq!(
            alice
                .edit(room.id, message.id, &format!("line {n}, edited"))
                .await
                .status,
            StatusCode::OK
        );
        ids.push(message.id);
    }
    let new_picture = uploaded(&alice, "new.png", png(64, 64), "image/png").await;
    for picture in [&old_picture, &new_picture] {
        let body = serde_json::json!({"content": "see", "attachments": [picture.id]});
        assert_eq!(
            alice.post_message(room.id, body).await.status,
            StatusCode::CREATED
        );
    }

    // New key first, old key still listed: the servers write b and read both.
    app.restart_with(keys(&[&b, &a])).await;
    let alice = relogin(&app, "alice").await;
    // Edits keep coming while rekey runs.
    let stop = Arc::new(AtomicBool::new(false));
    let editor = {
        let (alice, stop, ids, room) = (alice.clone(), stop.clone(), ids.clone(), room.id);
        tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(Ordering::SeqCst) {
                for id in &ids {
                    let reply = alice.edit(room, *id, &format!("live edit {round}")).await;
                    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
                }
                round += 1;
            }
            round
        })
    };
    let both = format!("{b},{a}");
    let output = nebula(
        &["rekey", "--batch", "4"],
        &app.database_url,
        media_dir.path(),
        Some(&both),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let rounds = editor.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "rekey: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("re-encrypted:"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("messages scanned"),
        "progress is printed"
    );
    assert!(rounds > 0, "no edit ran during the rekey");
    let before = everything(&alice, &room).await;
    for (message, _) in &before {
        if ids.contains(&message.id) {
            assert_eq!(
                message.content,
                format!("live edit {}", rounds - 1),
                "the last edit won"
            );
        }
    }
    // Run again: nothing left to do (idempotent, and resumable from anywhere).
    let again = nebula(&["rekey"], &app.database_url, media_dir.path(), Some(&both)).await;
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.contains("0 texts re-encrypted") && again.contains("0 files re-encrypted"),
        "{again}"
    );
    let pictures = [
        alice.get(&format!("/media/{}", old_picture.id)).await.body,
        alice
            .get(&format!("/media/{}/thumbnail", old_picture.id))
            .await
            .body,
        alice.get(&format!("/media/{}", new_picture.id)).await.body,
    ];

    // Only b now: everything reads, identical.
    app.restart_with(keys(&[&b])).await;
    let alice = relogin(&app, "alice").await;
    assert_eq!(everything(&alice, &room).await.len(), before.len());
    let after = everything(&alice, &room).await;
    for ((was, was_history), (is, is_history)) in before.iter().zip(&after) {
        assert_eq!(
            (&was.content, was.rev, was_history),
            (&is.content, is.rev, is_history)
        );
    }
    assert_eq!(
        [
            alice.get(&format!("/media/{}", old_picture.id)).await.body,
            alice
                .get(&format!("/media/{}/thumbnail", old_picture.id))
                .await
                .body,
            alice.get(&format!("/media/{}", new_picture.id)).await.body,
        ],
        pictures
    );
    assert_eq!(pictures[0], png(64, 64));
    assert_eq!(rows_containing(&app, "messages", "nbe1:a:").await, 0);
    assert_eq!(
        rows_containing(&app, "message_versions", "nbe1:a:").await,
        0
    );
    assert_eq!(rows_containing(&app, "messages", "before keys").await, 0);
    assert_eq!(
        rows_containing(&app, "message_versions", "old words").await,
        0
    );
    assert_eq!(after[0].0.content, "kept from before keys");
    assert_eq!(after[1].1, ["old words"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_encryption_keys_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("n.db").display());
    let good = STANDARD.encode([7u8; 32]);
    let short = STANDARD.encode([7u8; 16]);
    for (keys, reason) in [
        (format!("k1:{short}"), "16 bytes; AES-256-GCM needs 32"),
        ("k1:%%%".to_owned(), "not valid base64"),
        (format!("k1:{good},k1:{good}"), "listed twice"),
        (good.clone(), "not `id:base64key`"),
    ] {
        let output = nebula(&[], &database, dir.path(), Some(&keys)).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{keys} was accepted");
        assert!(
            stderr.contains("ENCRYPTION_KEYS") && stderr.contains(reason),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&good) && !stderr.contains(&short),
            "a key was printed"
        );
        let rekey = nebula(&["rekey"], &database, dir.path(), Some(&keys)).await;
        assert!(!rekey.status.success());
    }
    let output = nebula(&["rekey"], &database, dir.path(), None).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ENCRYPTION_KEYS is not set"));
}

/// Backups hold ciphertext (the database's and the media store's bytes as they are), so a
/// restore, into either backend, reads with the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_ciphertext_and_restores_into_the_other_backend_with_the_same_keys() {
    let Some(postgres) = Backend::postgres() else {
        return;
    };
    let k = key("k1", 9);
    let source_media = tempfile::tempdir().unwrap();
    let media_url = format!("fs://{}", source_media.path().display());
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.media_store = media_url.clone();
        c.encryption_keys = Some(k.clone());
    })
    .await;
    let alice = app.register("alice").await;
    let room = alice.create_room("Vault", false).await;
    let message = alice.say(room.id, "the quokka secret").await;
    assert_eq!(
        alice
            .edit(room.id, message.id, "the wombat secret")
            .await
            .status,
        StatusCode::OK
    );
    let picture = uploaded(&alice, "p.png", png(32, 32), "image/png").await;
    let body = serde_json::json!({"content": "pic", "attachments": [picture.id]});
    assert_eq!(
        alice.post_message(room.id, body).await.status,
        StatusCode::CREATED
    );

    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("nebula.backup");
    let output = nebula(
        &["backup", "--out", archive.to_str().unwrap()],
        &app.database_url,
        source_media.path(),
        None,
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&archive).unwrap();
    for secret in [&b"quokka"[..], b"wombat", b"\x89PNG"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "plaintext in the backup"
        );
    }

    let (target_db, target_url) = TestDb::create(&postgres).await;
    let target_media = tempfile::tempdir().unwrap();
    let output = nebula(
        &["restore", "--from", archive.to_str().unwrap()],
        &target_url,
        target_media.path(),
        None,
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let restored_media = format!("fs://{}", target_media.path().display());
    let copy = TestApp::spawn_on(target_db, target_url, |c| {
        c.media_store = restored_media;
        c.encryption_keys = Some(k);
    })
    .await;
    let alice = relogin(&copy, "alice").await;
    assert_eq!(
        everything(&alice, &room)
            .await
            .iter()
            .map(|(m, h)| (m.content.clone(), h.clone()))
            .collect::<Vec<_>>(),
        [
            (
                "the wombat secret".to_owned(),
                vec!["the quokka secret".to_owned()]
            ),
            ("pic".to_owned(), vec![]),
        ]
    );
    assert_eq!(
        alice.get(&format!("/media/{}", picture.id)).await.body,
        png(32, 32)
    );
}
