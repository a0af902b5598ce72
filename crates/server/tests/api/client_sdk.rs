//! `nebula-client` (crates/client) against the real server: the example bot's loop answers
//! `!ping`, a dropped connection resumes without loss, duplicates or disorder, the example
//! binary itself answers `!ping`, and the crate has a call for every route of the OpenAPI
//! document.

use std::time::Duration;

use nebula_client::{Client, Session, SessionEvent};
use nebula_wire::Message;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, http_client};
use crate::on_both_backends;
use crate::ws_client::PATIENCE;

on_both_backends!(
    the_rust_client_resumes_and_answers_pings,
    the_example_bot_binary_answers_pings,
);

/// The next event matching `pick`, logging every event on the way.
async fn until(
    session: &Session,
    seen: &mut Vec<SessionEvent>,
    pick: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline, session.next_event())
            .await
            .unwrap_or_else(|_| panic!("no such event in time; seen: {seen:#?}"))
            .expect("session ended");
        seen.push(event.clone());
        if pick(&event) {
            return event;
        }
    }
}

async fn the_rust_client_resumes_and_answers_pings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let _ = http_client(); // installs the TLS provider reqwest needs here
    let mut alice = Client::new(&app.base);
    alice
        .register("sdk_alice", "correct horse battery")
        .await
        .unwrap();
    let mut bob = Client::new(&app.base);
    bob.register("sdk_bob", "correct horse battery")
        .await
        .unwrap();
    let room = alice.create_room("sdk").await.unwrap();
    bob.join(room.id).await.unwrap();

    // Alice's session runs the example bot's loop.
    let bot = alice.session();
    bot.subscribe(room.id);
    let mut bot_seen = Vec::new();
    until(&bot, &mut bot_seen, |e| {
        matches!(
            e,
            SessionEvent::Server(nebula_wire::ServerEvent::Subscribed { .. })
        )
    })
    .await;
    let bot_task = tokio::spawn(async move {
        while let Some(event) = bot.next_event().await {
            if let SessionEvent::Message(message) = event
                && message.content == "!ping"
                && message.sender_username != "sdk_alice"
            {
                let id = Uuid::now_v7().to_string();
                bot.send_with(message.room_id, "pong", id, Some(message.id))
                    .await
                    .unwrap();
            }
        }
    });

    let session = bob.session();
    session.subscribe(room.id);
    let mut seen = Vec::new();
    until(&session, &mut seen, |e| {
        matches!(
            e,
            SessionEvent::Server(nebula_wire::ServerEvent::Subscribed { .. })
        )
    })
    .await;
    let ping = session.send(room.id, "!ping").await.unwrap();
    let pong = until(
        &session,
        &mut seen,
        |e| matches!(e, SessionEvent::Message(m) if m.content == "pong"),
    )
    .await;
    let SessionEvent::Message(pong) = pong else {
        unreachable!()
    };
    assert_eq!(pong.reply_to.map(|r| r.id), Some(ping.id));

    // A dropped connection: what happens meanwhile arrives after the resume, once, in order.
    session.pause();
    until(&session, &mut seen, |e| {
        matches!(e, SessionEvent::Disconnected)
    })
    .await;
    let first = alice.post_message(room.id, "while away 1").await.unwrap();
    alice.post_message(room.id, "while away 2").await.unwrap();
    alice
        .edit_message(room.id, pong.id, "pong (edited)")
        .await
        .unwrap();
    // Sent while offline: it goes out after the resume.
    let queued = {
        let session = session.clone();
        tokio::spawn(async move {
            session
                .send_with(room.id, "queued", "queued-1".into(), None)
                .await
        })
    };
    session.resume();
    let mine = queued.await.unwrap().unwrap();
    let again = session
        .send_with(room.id, "queued", "queued-1".into(), None)
        .await
        .unwrap();
    assert_eq!(again.id, mine.id, "the same client_msg_id is stored once");
    let last = alice.post_message(room.id, "after").await.unwrap();
    until(
        &session,
        &mut seen,
        |e| matches!(e, SessionEvent::Message(m) if m.id == last.id),
    )
    .await;
    assert!(first.seq < last.seq);
    let edited: Vec<&Message> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Updated(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(edited.len(), 1, "{edited:?}");
    assert_eq!(edited[0].id, pong.id);
    assert_eq!(
        edited[0].content, "pong (edited)",
        "the edit made while away"
    );
    let seqs: Vec<i64> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=last.seq).collect::<Vec<_>>(),
        "every message once, in order"
    );
    bot_task.abort();
}

/// The README's Rust bot is the example the test below runs.
#[test]
fn the_readme_shows_the_example_bot_verbatim() {
    let readme = include_str!("../../../../README.md");
    let bot = include_str!("../../../client/examples/ping_bot.rs");
    assert!(
        readme.contains(&format!("```rust\n{bot}```")),
        "README.md: the Rust bot section is out of date"
    );
}

/// Routes of `/openapi.json` the crate deliberately has no typed call for, and why.
const NOT_IN_THE_CLIENT: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/metrics",
        "Prometheus text for scrapers, not for chat clients",
    ),
    (
        "GET",
        "/email/unsubscribe",
        "the HTML page an email's link opens in a browser",
    ),
    (
        "POST",
        "/email/unsubscribe",
        "the one-click unsubscribe a mail client posts (RFC 8058)",
    ),
    (
        "POST",
        "/webpush/subscribe",
        "browser push: the subscription comes from a browser's PushManager",
    ),
    (
        "DELETE",
        "/webpush/subscribe",
        "browser push: the subscription comes from a browser's PushManager",
    ),
    (
        "GET",
        "/webpush/vapid-public-key",
        "browser push: the key is handed to a browser's PushManager",
    ),
];

/// Every route of the OpenAPI document has a call in `nebula_client::routes::ALL` or a
/// reason in [`NOT_IN_THE_CLIENT`]; neither lists a route the server does not have.
#[tokio::test]
async fn the_rust_client_covers_every_route_of_the_openapi_document() {
    // Dev mode serves (and documents) the optional routes too: Web Push with throwaway keys.
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.dev_mode = true).await;
    let openapi: serde_json::Value = app.get("/openapi.json").await.json();
    let mut documented = Vec::new();
    // (method, path) → the 2xx statuses the document gives.
    let mut successes = std::collections::HashMap::new();
    for (path, operations) in openapi["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
                let mut codes: Vec<u16> = operation["responses"]
                    .as_object()
                    .map(|responses| {
                        responses
                            .keys()
                            .filter_map(|code| code.parse::<u16>().ok())
                            .filter(|code| (200..300).contains(code))
                            .collect()
                    })
                    .unwrap_or_default();
                codes.sort_unstable();
                successes.insert((method.to_uppercase(), path.clone()), codes);
            }
        }
    }
    // Each typed call accepts exactly the success statuses the document gives its route.
    let disagreeing: Vec<_> = nebula_client::routes::ALL
        .iter()
        .filter_map(|route| {
            let documented = successes.get(&(route.method.to_owned(), route.path.to_owned()))?;
            let mut expected = route.success.to_vec();
            expected.sort_unstable();
            (&expected != documented).then(|| {
                format!(
                    "{} {}: client {expected:?}, document {documented:?}",
                    route.method, route.path
                )
            })
        })
        .collect();
    assert!(
        disagreeing.is_empty(),
        "success statuses in nebula_client::routes differ from the OpenAPI document: {disagreeing:#?}"
    );
    assert!(documented.len() > 50, "{documented:?}");
    let in_client = |method: &str, path: &str| {
        nebula_client::routes::ALL
            .iter()
            .any(|r| r.method == method && r.path == path)
    };
    let allowed = |method: &str, path: &str| {
        NOT_IN_THE_CLIENT
            .iter()
            .any(|(m, p, _)| *m == method && *p == path)
    };
    let missing: Vec<_> = documented
        .iter()
        .filter(|(method, path)| !in_client(method, path) && !allowed(method, path))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a call in nebula-client: {missing:?}"
    );
    let is_documented = |method: &str, path: &str| {
        documented
            .iter()
            .any(|(m, p)| m.as_str() == method && p.as_str() == path)
    };
    let stale: Vec<_> = nebula_client::routes::ALL
        .iter()
        .map(|r| (r.method, r.path))
        .chain(NOT_IN_THE_CLIENT.iter().map(|(m, p, _)| (*m, *p)))
        .filter(|(method, path)| !is_documented(method, path))
        .collect();
    assert!(stale.is_empty(), "listed but not served: {stale:?}");
}

/// `crates/client/examples/ping_bot.rs` built, found next to this test binary's directory
/// (`target/<profile>/examples/`); built with cargo first when a narrow `cargo test -p nebula`
/// did not build it.
fn ping_bot_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    let profile_dir = deps
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join("ping_bot");
    let target_dir = profile_dir.parent().expect("target dir");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "nebula-client",
            "--example",
            "ping_bot",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the ping_bot example");
    assert!(binary.exists(), "{} after the build", binary.display());
    binary
}

/// The example bot, as a developer runs it (its own process, configured by environment),
/// answers `!ping` in a room with a `pong` that replies to it.
async fn the_example_bot_binary_answers_pings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.register("alice").await;
    let room = alice.create_room("bots", false).await;
    let binary = tokio::task::spawn_blocking(ping_bot_binary).await.unwrap();
    let mut bot = tokio::process::Command::new(binary)
        .env("NEBULA_URL", &app.base)
        .env("BOT_USER", "pingbot")
        .env("BOT_PASSWORD", "correct horse battery")
        .env("ROOM_ID", room.id.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the bot starts");
    let mut lines = tokio::io::BufReader::new(bot.stdout.take().expect("stdout"));
    let mut ready = String::new();
    tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut ready),
    )
    .await
    .expect("the bot says it is ready")
    .expect("read the bot's output");
    assert!(ready.contains(&room.id.to_string()), "{ready}");

    let mut ws = alice.subscribed(room.id).await;
    let ping = alice.say(room.id, "!ping").await;
    let pong = loop {
        let message = ws.next_message().await;
        if message.sender_username == "pingbot" {
            break message;
        }
    };
    assert_eq!(pong.content, "pong");
    assert_eq!(pong.reply_to.map(|r| r.id), Some(ping.id));
    assert!(
        bot.try_wait().unwrap().is_none(),
        "the bot keeps running after answering"
    );
}
