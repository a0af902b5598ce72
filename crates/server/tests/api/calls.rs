//! Call signalling over the WebSocket (`call.*`) and `GET /voip/turn`, whose credentials are
//! checked against a real coturn. The cross-node relay is in `cluster.rs`.

use std::process::Stdio;
use std::time::Duration;

use nebula_wire::{CallMedia, ClientEvent, ServerEvent, TurnCredentials};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, Session, TestApp, services_required};
use crate::on_both_backends;
use crate::ws_client::WsClient;

on_both_backends!(
    a_call_is_relayed_both_ways_with_its_sender,
    the_callee_can_reject,
    answering_on_one_connection_ends_the_ringing_on_the_others,
    a_connection_opened_while_a_call_rings_rings_too,
    users_without_a_shared_room_cannot_call,
    bad_call_events_are_refused_and_the_socket_stays_open,
    an_unanswered_call_times_out_for_both_sides,
    a_party_disconnecting_ends_the_call,
    turn_credentials_need_configuring,
);

/// Two users sharing a room.
async fn pair(app: &TestApp) -> (Session, Session) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = alice.create_room("calls", false).await;
    assert_eq!(bob.join(room.id).await.status, StatusCode::CREATED);
    (alice, bob)
}

/// A `/ws` socket that is ready: the server answered a ping on it, so the connection is
/// registered for call events.
async fn connect(session: &Session) -> WsClient {
    let mut ws = session.ws("/ws").await;
    assert!(pending_calls(&mut ws).await.is_empty());
    ws
}

fn invite(call_id: Uuid, to: Uuid) -> ClientEvent {
    ClientEvent::CallInvite {
        call_id,
        to_user_id: to,
        media: CallMedia::Audio,
        sdp: "v=0 offer".into(),
    }
}

fn is_call(event: &ServerEvent) -> bool {
    event.type_name().starts_with("call.") || matches!(event, ServerEvent::Error { .. })
}

/// The next call event (or error) on a socket.
async fn next_call(ws: &mut WsClient) -> ServerEvent {
    ws.expect(is_call).await
}

/// Call events received before the server answers a ping (so: none pending, when empty).
async fn pending_calls(ws: &mut WsClient) -> Vec<ServerEvent> {
    ws.send(ClientEvent::Ping).await;
    let mut seen = Vec::new();
    loop {
        match ws.next_event().await {
            ServerEvent::Pong => return seen,
            event if is_call(&event) => seen.push(event),
            _ => {}
        }
    }
}

fn assert_error(event: &ServerEvent, code: &str) {
    match event {
        ServerEvent::Error { code: got, .. } => assert_eq!(got, code, "{event:?}"),
        other => panic!("expected error {code}, got {other:?}"),
    }
}

fn assert_hangup(event: &ServerEvent, call: Uuid, reason: &str) {
    match event {
        ServerEvent::CallHangup {
            call_id,
            reason: Some(got),
            ..
        } => assert_eq!((*call_id, got.as_str()), (call, reason), "{event:?}"),
        other => panic!("expected call.hangup {reason}, got {other:?}"),
    }
}

async fn a_call_is_relayed_both_ways_with_its_sender(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let mut caller = connect(&alice).await;
    let mut callee = connect(&bob).await;
    let call = Uuid::new_v4();
    caller
        .send(ClientEvent::CallInvite {
            call_id: call,
            to_user_id: bob.user.id,
            media: CallMedia::Video,
            sdp: "v=0 offer".into(),
        })
        .await;
    assert_eq!(
        next_call(&mut callee).await,
        ServerEvent::CallInvite {
            call_id: call,
            from: alice.user.clone(),
            media: CallMedia::Video,
            sdp: "v=0 offer".into(),
        }
    );
    // Trickle ICE from the caller while it rings.
    caller
        .send(ClientEvent::CallCandidate {
            call_id: call,
            candidate: json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}),
        })
        .await;
    assert_eq!(
        next_call(&mut callee).await,
        ServerEvent::CallCandidate {
            call_id: call,
            from: alice.user.clone(),
            candidate: json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}),
        }
    );
    callee
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 answer".into(),
        })
        .await;
    assert_eq!(
        next_call(&mut caller).await,
        ServerEvent::CallAnswer {
            call_id: call,
            from: bob.user.clone(),
            sdp: "v=0 answer".into(),
        }
    );
    callee
        .send(ClientEvent::CallCandidate {
            call_id: call,
            candidate: json!({"candidate": "candidate:2"}),
        })
        .await;
    assert_eq!(
        next_call(&mut caller).await,
        ServerEvent::CallCandidate {
            call_id: call,
            from: bob.user.clone(),
            candidate: json!({"candidate": "candidate:2"}),
        }
    );
    caller.send(ClientEvent::CallHangup { call_id: call }).await;
    assert_eq!(
        next_call(&mut callee).await,
        ServerEvent::CallHangup {
            call_id: call,
            from: Some(alice.user.clone()),
            reason: None,
        }
    );
    // Over: the call is forgotten.
    callee
        .send(ClientEvent::CallCandidate {
            call_id: call,
            candidate: json!({}),
        })
        .await;
    assert_error(&next_call(&mut callee).await, "call_not_found");
    assert!(pending_calls(&mut caller).await.is_empty());
}

async fn a_connection_opened_while_a_call_rings_rings_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let mut caller = connect(&alice).await;
    let mut phone = connect(&bob).await;
    let call = Uuid::new_v4();
    caller.send(invite(call, bob.user.id)).await;
    assert!(matches!(
        next_call(&mut phone).await,
        ServerEvent::CallInvite { .. }
    ));

    // Bob's laptop comes online mid-ring: it rings too, with the same invite.
    let mut laptop = bob.ws("/ws").await;
    assert_eq!(
        next_call(&mut laptop).await,
        ServerEvent::CallInvite {
            call_id: call,
            from: alice.user.clone(),
            media: CallMedia::Audio,
            sdp: "v=0 offer".into(),
        }
    );
    // And it can answer: the call is known there like on the phone.
    laptop
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 answer".into(),
        })
        .await;
    assert!(matches!(
        next_call(&mut caller).await,
        ServerEvent::CallAnswer { .. }
    ));
    assert_hangup(&next_call(&mut phone).await, call, "answered_elsewhere");
    // Once answered, a further connection of bob's does not ring (`connect` checks that its
    // socket got no call event before its pong), nor does a new one of the caller's.
    connect(&bob).await;
    connect(&alice).await;
}

async fn the_callee_can_reject(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let mut caller = connect(&alice).await;
    let mut callee = connect(&bob).await;
    let call = Uuid::new_v4();
    caller.send(invite(call, bob.user.id)).await;
    assert!(matches!(
        next_call(&mut callee).await,
        ServerEvent::CallInvite { .. }
    ));
    callee.send(ClientEvent::CallReject { call_id: call }).await;
    assert_eq!(
        next_call(&mut caller).await,
        ServerEvent::CallReject {
            call_id: call,
            from: bob.user.clone(),
        }
    );
    // The call is over for the caller too.
    caller.send(ClientEvent::CallHangup { call_id: call }).await;
    assert_error(&next_call(&mut caller).await, "call_not_found");
}

async fn answering_on_one_connection_ends_the_ringing_on_the_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let mut caller = connect(&alice).await;
    let mut phone = connect(&bob).await;
    let mut laptop = connect(&bob).await;
    let call = Uuid::new_v4();
    caller.send(invite(call, bob.user.id)).await;
    for ws in [&mut phone, &mut laptop] {
        assert!(matches!(
            next_call(ws).await,
            ServerEvent::CallInvite { call_id, .. } if call_id == call
        ));
    }
    laptop
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 answer".into(),
        })
        .await;
    assert!(matches!(
        next_call(&mut caller).await,
        ServerEvent::CallAnswer { .. }
    ));
    assert_hangup(&next_call(&mut phone).await, call, "answered_elsewhere");
    // From now on only the laptop hears the call …
    caller
        .send(ClientEvent::CallCandidate {
            call_id: call,
            candidate: json!({"candidate": "c"}),
        })
        .await;
    assert!(matches!(
        next_call(&mut laptop).await,
        ServerEvent::CallCandidate { .. }
    ));
    assert!(pending_calls(&mut phone).await.is_empty());
    // … and only the laptop speaks for Bob.
    phone
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 late".into(),
        })
        .await;
    assert_error(&next_call(&mut phone).await, "call_not_found");
    laptop.send(ClientEvent::CallHangup { call_id: call }).await;
    assert_eq!(
        next_call(&mut caller).await,
        ServerEvent::CallHangup {
            call_id: call,
            from: Some(bob.user.clone()),
            reason: None,
        }
    );
    assert!(pending_calls(&mut phone).await.is_empty());
}

async fn users_without_a_shared_room_cannot_call(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let carol = app.register("carol").await;
    let mut caller = connect(&alice).await;
    let mut stranger = connect(&carol).await;
    let call = Uuid::new_v4();
    caller.send(invite(call, carol.user.id)).await;
    let refused = next_call(&mut caller).await;
    assert_error(&refused, "cannot_message_user");
    assert!(
        matches!(&refused, ServerEvent::Error { reference: Some(r), .. } if *r == call.to_string())
    );
    assert!(pending_calls(&mut stranger).await.is_empty());
    // A user that does not exist is no different.
    caller.send(invite(Uuid::new_v4(), Uuid::new_v4())).await;
    assert_error(&next_call(&mut caller).await, "cannot_message_user");
    // Sharing a room makes a call possible, unless either of the two blocked the other.
    let mut callee = connect(&bob).await;
    let blocked = bob.put(&format!("/blocks/{}", alice.user.id)).await;
    assert_eq!(blocked.status, StatusCode::NO_CONTENT, "{}", blocked.text());
    caller.send(invite(Uuid::new_v4(), bob.user.id)).await;
    assert_error(&next_call(&mut caller).await, "cannot_message_user");
    let mut blocker = connect(&bob).await;
    blocker.send(invite(Uuid::new_v4(), alice.user.id)).await;
    assert_error(&next_call(&mut blocker).await, "cannot_message_user");
    assert!(pending_calls(&mut callee).await.is_empty());
}

async fn bad_call_events_are_refused_and_the_socket_stays_open(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let mut ws = connect(&alice).await;
    let unknown = Uuid::new_v4();
    let bad = [
        (
            json!({"type": "call.answer", "call_id": unknown, "sdp": "v=0"}),
            "call_not_found",
        ),
        (
            json!({"type": "call.hangup", "call_id": unknown}),
            "call_not_found",
        ),
        (
            json!({"type": "call.candidate", "call_id": unknown, "candidate": {}}),
            "call_not_found",
        ),
        (
            json!({"type": "call.invite", "call_id": Uuid::new_v4(), "to_user_id": bob.user.id, "media": "audio"}),
            "invalid_event",
        ),
        (
            json!({"type": "call.invite", "call_id": Uuid::new_v4(), "to_user_id": bob.user.id, "media": "screen", "sdp": "v=0"}),
            "invalid_event",
        ),
        (
            json!({"type": "call.invite", "call_id": "not-a-uuid", "to_user_id": bob.user.id, "media": "audio", "sdp": "v=0"}),
            "invalid_event",
        ),
        (
            json!({"type": "call.invite", "call_id": Uuid::new_v4(), "to_user_id": bob.user.id, "media": "audio", "sdp": " "}),
            "validation_failed",
        ),
        (
            json!({"type": "call.invite", "call_id": Uuid::new_v4(), "to_user_id": alice.user.id, "media": "audio", "sdp": "v=0"}),
            "validation_failed",
        ),
    ];
    for (event, code) in bad {
        ws.send_raw(&event.to_string()).await;
        let answer = next_call(&mut ws).await;
        assert_error(&answer, code);
        if let ServerEvent::Error { message, .. } = &answer {
            assert!(!message.is_empty());
        }
    }
    // Still open and serving.
    ws.send(ClientEvent::Ping).await;
    assert_eq!(ws.next_event().await, ServerEvent::Pong);
    // A call id in use cannot be invited again, and the caller cannot answer itself.
    let call = Uuid::new_v4();
    let mut callee = connect(&bob).await;
    ws.send(invite(call, bob.user.id)).await;
    next_call(&mut callee).await;
    ws.send(invite(call, bob.user.id)).await;
    assert_error(&next_call(&mut ws).await, "call_exists");
    ws.send(ClientEvent::CallAnswer {
        call_id: call,
        sdp: "v=0".into(),
    })
    .await;
    assert_error(&next_call(&mut ws).await, "invalid_call_state");
}

async fn an_unanswered_call_times_out_for_both_sides(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.call_ring_timeout_seconds = 1).await;
    let (alice, bob) = pair(&app).await;
    let mut caller = connect(&alice).await;
    let mut callee = connect(&bob).await;
    let call = Uuid::new_v4();
    caller.send(invite(call, bob.user.id)).await;
    assert!(matches!(
        next_call(&mut callee).await,
        ServerEvent::CallInvite { .. }
    ));
    // Waits for the events themselves (PATIENCE bounds the wait), no fixed sleep.
    assert_hangup(&next_call(&mut caller).await, call, "timeout");
    assert_hangup(&next_call(&mut callee).await, call, "timeout");
    callee
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 too late".into(),
        })
        .await;
    assert_error(&next_call(&mut callee).await, "call_not_found");
    // An answered call does not time out.
    let answered = Uuid::new_v4();
    caller.send(invite(answered, bob.user.id)).await;
    next_call(&mut callee).await;
    callee
        .send(ClientEvent::CallAnswer {
            call_id: answered,
            sdp: "v=0".into(),
        })
        .await;
    assert!(matches!(
        next_call(&mut caller).await,
        ServerEvent::CallAnswer { .. }
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the ring timeout on purpose
    assert!(pending_calls(&mut caller).await.is_empty());
    assert!(pending_calls(&mut callee).await.is_empty());
}

async fn a_party_disconnecting_ends_the_call(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (alice, bob) = pair(&app).await;
    let mut caller = connect(&alice).await;
    let mut callee = connect(&bob).await;
    let call = Uuid::new_v4();
    caller.send(invite(call, bob.user.id)).await;
    next_call(&mut callee).await;
    drop(caller);
    assert_hangup(&next_call(&mut callee).await, call, "disconnected");
}

async fn turn_credentials_need_configuring(backend: Backend) {
    let app = TestApp::spawn(backend.clone()).await;
    let alice = app.register("alice").await;
    alice
        .get("/voip/turn")
        .await
        .assert_problem(404, "turn_not_configured");
    assert_eq!(app.get("/voip/turn").await.status, StatusCode::UNAUTHORIZED);

    let app = TestApp::spawn_with(backend, |config| {
        config.turn_uris = Some("turn:127.0.0.1:3478, turns:turn.example.com:5349".into());
        config.turn_secret = Some("s3cret".into());
        config.turn_ttl_seconds = 600;
    })
    .await;
    let alice = app.register("alice").await;
    let reply = alice.get("/voip/turn").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let credentials: TurnCredentials = reply.json();
    assert_eq!(
        credentials.uris,
        ["turn:127.0.0.1:3478", "turns:turn.example.com:5349"]
    );
    assert_eq!(credentials.ttl, 600);
    let (expiry, user) = credentials.username.split_once(':').unwrap();
    assert_eq!(user, alice.user.id.to_string());
    let expiry: i64 = expiry.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(credentials.password.len(), 28, "base64 of a SHA-1 HMAC");
}

#[test]
fn turn_settings_are_validated() {
    use nebula::config::Config;
    let base = || Config::for_database("sqlite::memory:");
    let refused = |config: Config| config.validate().unwrap_err().setting;
    let mut only_uris = base();
    only_uris.turn_uris = Some("turn:127.0.0.1:3478".into());
    assert_eq!(refused(only_uris), "TURN_SECRET");
    let mut only_secret = base();
    only_secret.turn_secret = Some("x".into());
    assert_eq!(refused(only_secret), "TURN_URIS");
    let mut bad_uri = base();
    bad_uri.turn_uris = Some("http://example.com".into());
    bad_uri.turn_secret = Some("x".into());
    assert_eq!(refused(bad_uri), "TURN_URIS");
    let mut bad_timeout = base();
    bad_timeout.call_ring_timeout_seconds = 0;
    assert_eq!(refused(bad_timeout), "CALL_RING_TIMEOUT_SECONDS");
}

/// A free loopback UDP port (free a moment ago).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `turnutils_uclient` against the server: an allocation, then a few packets relayed
/// between two clients through it. `Ok` with its output when it succeeded.
async fn allocate(port: u16, username: &str, password: &str) -> Result<String, String> {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("turnutils_uclient")
            .args(["-y", "-n", "2", "-m", "1", "-u", username, "-w", password])
            .args(["-p", &port.to_string(), "-e", "127.0.0.1", "127.0.0.1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("turnutils_uclient finishes")
    .expect("run turnutils_uclient");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let relayed = text.contains("tot_recv_msgs=") && !text.contains("tot_recv_msgs=0\n");
    if output.status.success() && relayed && !text.contains("Cannot complete Allocation") {
        Ok(text)
    } else {
        Err(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_turn_credentials_work_on_a_real_coturn() {
    if which("turnserver").is_none() || which("turnutils_uclient").is_none() {
        assert!(
            !services_required(),
            "NEBULA_TEST_REQUIRE_SERVICES=1 but coturn is not installed (apt-get install coturn)"
        );
        eprintln!("skipped: turnserver is not installed (apt-get install coturn)");
        return;
    }
    let secret = format!("secret-{}", Uuid::new_v4().simple());
    let port = free_udp_port();
    let relay_min = 40_000 + (port % 20_000);
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("turnserver.log")).unwrap();
    let mut turnserver = tokio::process::Command::new("turnserver")
        .args([
            "-n",
            "--use-auth-secret",
            "--realm",
            "nebula",
            "--no-tls",
            "--no-dtls",
        ])
        .arg(format!("--static-auth-secret={secret}"))
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args(["--listening-port", &port.to_string()])
        .args(["--min-port", &relay_min.to_string()])
        .args(["--max-port", &(relay_min + 200).to_string()])
        .args(["--allow-loopback-peers", "--no-cli", "--log-file", "stdout"])
        .arg(format!(
            "--pidfile={}",
            dir.path().join("turn.pid").display()
        ))
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start turnserver");

    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.turn_uris = Some(format!("turn:127.0.0.1:{port}?transport=udp"));
        config.turn_secret = Some(secret.clone());
    })
    .await;
    let alice = app.register("alice").await;
    let credentials: TurnCredentials = alice.get("/voip/turn").await.json();
    assert_eq!(credentials.ttl, 86_400, "the default TTL");

    // The server may need a moment to listen: retry the good credentials until it answers.
    let mut outcome = Err(String::new());
    for _ in 0..50 {
        outcome = allocate(port, &credentials.username, &credentials.password).await;
        if outcome.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = || std::fs::read_to_string(dir.path().join("turnserver.log")).unwrap_or_default();
    if let Err(output) = &outcome {
        panic!(
            "allocation with issued credentials failed:\n{output}\nturnserver:\n{}",
            log()
        );
    }
    let wrong = allocate(port, &credentials.username, "d3JvbmcgcGFzc3dvcmQ=").await;
    assert!(
        wrong
            .as_ref()
            .is_err_and(|output| output.contains("Cannot complete Allocation")),
        "a wrong password must be refused by the server: {wrong:?}"
    );
    let (_, user) = credentials.username.split_once(':').unwrap();
    let expired = format!("{}:{user}", chrono::Utc::now().timestamp() - 60);
    let expired_password = {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(expired.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let stale = allocate(port, &expired, &expired_password).await;
    assert!(
        stale
            .as_ref()
            .is_err_and(|output| output.contains("Cannot complete Allocation")),
        "expired credentials must be refused by the server: {stale:?}"
    );
    let _ = turnserver.kill().await;
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
