//! Several `nebula` processes sharing PostgreSQL and a cluster engine: events, order, presence
//! and rate limits across nodes, and what happens when the engine or a node dies.
//!
//! Every test runs twice, once per engine (`…::redis` with `REDIS_URL`, `…::nats` with
//! `NATS_URL`). Each starts real node processes (the `nebula` binary) on loopback ports, with
//! its own database and its own key prefix (Redis keys and channels; NATS subjects and
//! key-value buckets). Fault tests run a private `redis-server` or `nats-server -js` so they
//! can stop it without disturbing anything else.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use nebula_wire::{AuthResponse, ClientEvent, Message, PresenceStatus, ServerEvent, TypingState};
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::helpers::{Backend, Session, TestDb, http_client, password_of, services_required};
use crate::ws_client::{PATIENCE, WsClient};

const JWT_SECRET: &str = "cluster-tests-secret-0123456789abcdef0123";

/// The cluster engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Redis,
    Nats,
}

impl Engine {
    /// The variable naming the machine's shared server of this engine.
    fn env_var(self) -> &'static str {
        match self {
            Engine::Redis => "NEBULA_TEST_REDIS_URL",
            Engine::Nats => "NEBULA_TEST_NATS_URL",
        }
    }
}

/// Runs a cluster test once per engine: `redis` and `nats`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Engine::Redis).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                super::$name(super::Engine::Nats).await
            }
        }
    )*};
}

/// A notification's trace from the outbox through RabbitMQ and the notifier to the push.
mod push_traces;
/// A message's OpenTelemetry trace across nodes.
mod traces;

on_both_engines!(
    events_cross_nodes_in_order_with_senders_on_every_node,
    presence_changes_once_per_transition_across_nodes,
    the_online_list_pages_through_every_node_in_username_order,
    a_killed_node_goes_offline_and_its_clients_resume_elsewhere,
    a_node_paused_past_its_liveness_brings_its_users_back_online,
    a_direct_room_opened_on_one_node_is_announced_to_the_peer_on_another,
    an_engine_restart_mid_stream_loses_nothing,
    nodes_started_while_the_engine_is_down_join_up_once_it_starts,
    rate_limits_hold_across_nodes,
    a_removed_member_on_another_node_hears_nothing_when_the_bus_lost_the_removal,
    concurrent_changes_of_one_message_from_every_node_converge_on_every_subscriber,
    a_pubsub_outage_loses_no_change,
    a_call_is_signalled_between_nodes,
    an_unanswered_call_times_out_on_both_nodes,
    the_same_direct_room_requested_at_once_on_two_nodes_is_one_room,
    a_direct_message_is_pushed_only_to_users_connected_on_no_node,
    a_connection_opened_mid_ring_on_another_node_rings_too,
    logout_all_and_deactivation_on_one_node_close_sockets_on_another,
);

/// PostgreSQL and the engine's shared server URL, or `None` (printed) when the environment
/// does not provide them.
fn services(test: &str, engine: Engine) -> Option<(Backend, String)> {
    let var = engine.env_var();
    let url = std::env::var(var).ok().filter(|url| !url.is_empty());
    let Some(url) = url else {
        assert!(
            !services_required(),
            "{test}: {var} is unset (NEBULA_TEST_REQUIRE_SERVICES=1)"
        );
        eprintln!(
            "skipped {test} on {engine:?}: {var} is unset (cluster tests need it and PostgreSQL)"
        );
        return None;
    };
    Some((Backend::postgres()?, url))
}

/// A free loopback port (free a moment ago).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One `nebula` process.
struct Node {
    port: u16,
    child: Child,
}

/// A cluster of node processes on one database and one engine.
struct TestCluster {
    nodes: Vec<Node>,
    database_url: String,
    engine_url: String,
    prefix: String,
    extra_env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
    _db: TestDb,
}

impl TestCluster {
    async fn start(
        backend: &Backend,
        engine_url: &str,
        nodes: usize,
        extra_env: &[(&'static str, &str)],
    ) -> TestCluster {
        let (db, database_url) = TestDb::create(backend).await;
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            database_url,
            engine_url: engine_url.to_owned(),
            prefix: format!("test-{}", Uuid::new_v4().simple()),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect(),
            dir: tempfile::tempdir().expect("temp dir"),
            _db: db,
        };
        for _ in 0..nodes {
            cluster.add_node().await;
        }
        cluster
    }

    /// Starts one more node and waits until it is healthy.
    async fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        let port = free_port();
        let log = std::fs::File::create(self.dir.path().join(format!("node{index}.log")))
            .expect("log file");
        let engine_var = if self.engine_url.starts_with("nats://") {
            "NATS_URL"
        } else {
            "REDIS_URL"
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_nebula"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BACKEND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &self.database_url)
            .env(engine_var, &self.engine_url)
            .env("REDIS_PREFIX", &self.prefix)
            .env("NATS_PREFIX", &self.prefix)
            .env("JWT_SECRET", JWT_SECRET)
            .env(
                "MEDIA_STORE",
                format!("fs://{}", self.dir.path().join("media").display()),
            )
            .env("DEV_MODE", "false")
            .env("RATE_LIMIT_AUTH_PER_MINUTE", "0")
            .env("RATE_LIMIT_MESSAGES_PER_SECOND", "0")
            .env("BUS_RECONCILE_SECONDS", "1")
            .env("PRESENCE_TTL_SECONDS", "3")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start nebula");
        self.nodes.push(Node { port, child });
        self.wait_healthy(index).await;
        index
    }

    fn base(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[node].port)
    }

    async fn wait_healthy(&self, node: usize) {
        let http = http_client();
        for _ in 0..200 {
            if let Ok(reply) = http
                .get(format!("{}/health/ready", self.base(node)))
                .send()
                .await
                && reply.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {node} did not become ready; log: {}", self.log(node));
    }

    fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{node}.log"))).unwrap_or_default()
    }

    /// The end of every node's log on stderr, for a test that failed.
    fn print_logs(&self) {
        for node in 0..self.nodes.len() {
            let log = self.log(node);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- node {node} log (last {} lines) ---", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to a node's process.
    fn signal(&self, node: usize, signal: &str) {
        let pid = self.nodes[node].child.id().expect("node running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL: no goodbye, no presence cleanup.
    async fn kill(&mut self, node: usize) {
        self.nodes[node].child.kill().await.expect("kill node");
    }

    async fn register(&self, node: usize, username: &str) -> Session {
        let http = http_client();
        let reply = http
            .post(format!("{}/auth/register", self.base(node)))
            .json(&json!({"username": username, "password": password_of(username)}))
            .send()
            .await
            .expect("register");
        assert_eq!(reply.status(), StatusCode::CREATED);
        let auth: AuthResponse = reply.json().await.expect("auth body");
        Session {
            http,
            base: self.base(node),
            token: auth.token,
            user: auth.user,
        }
    }

    async fn health(&self, node: usize) -> serde_json::Value {
        http_client()
            .get(format!("{}/health", self.base(node)))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A failed cluster test shows what the nodes logged (CI keeps only the test output).
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

/// The same user, talking to another node.
fn on(session: &Session, cluster: &TestCluster, node: usize) -> Session {
    Session {
        base: cluster.base(node),
        ..session.clone()
    }
}

/// Events received until a `pong` (everything the server sent before answering a ping).
async fn drain(ws: &mut WsClient) -> Vec<ServerEvent> {
    ws.send(ClientEvent::Ping).await;
    let mut seen = Vec::new();
    loop {
        match ws.next_event().await {
            ServerEvent::Pong => return seen,
            event => seen.push(event),
        }
    }
}

fn presence_of(events: &[ServerEvent], user: Uuid) -> Vec<PresenceStatus> {
    events
        .iter()
        .filter_map(|event| match event {
            ServerEvent::Presence {
                user: u, status, ..
            } if u.id == user => Some(*status),
            _ => None,
        })
        .collect()
}

/// Reads `message.new` until `count` arrived; asserts strictly increasing, gap-free seqs.
async fn expect_seqs(ws: &mut WsClient, from: i64, count: usize, who: &str) {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        seqs.push(ws.next_message().await.seq);
    }
    let expected: Vec<i64> = (from..from + count as i64).collect();
    assert_eq!(seqs, expected, "{who}'s view");
}

async fn events_cross_nodes_in_order_with_senders_on_every_node(engine: Engine) {
    let Some((backend, url)) = services("events_cross_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 3, &[]).await;
    let owner = cluster.register(0, "owner").await;
    let room = owner.create_room("Everywhere", false).await;

    let mut watchers = Vec::new();
    let mut senders = Vec::new();
    for node in 0..3 {
        let watcher = cluster.register(node, &format!("watcher{node}")).await;
        watcher.join(room.id).await;
        watchers.push(watcher.subscribed(room.id).await);
        let sender = cluster.register(node, &format!("sender{node}")).await;
        sender.join(room.id).await;
        senders.push(sender.subscribed(room.id).await);
    }
    // Typing and membership events cross nodes too.
    senders[0]
        .send(ClientEvent::Typing {
            room_id: room.id,
            state: TypingState::Start,
        })
        .await;
    let typing = watchers[2]
        .expect(|e| matches!(e, ServerEvent::Typing { .. }))
        .await;
    assert!(matches!(typing, ServerEvent::Typing { username, .. } if username == "sender0"));
    let late = cluster.register(1, "late").await;
    late.join(room.id).await;
    // (Earlier joins of the other watchers and senders arrive first; skip to this one.)
    watchers[0]
        .expect(|e| matches!(e, ServerEvent::MemberJoined { user, .. } if user.username == "late"))
        .await;

    let mut tasks = tokio::task::JoinSet::new();
    for (n, mut ws) in senders.into_iter().enumerate() {
        tasks.spawn(async move {
            ws.send_numbered(room.id, n, 50).await;
            ws
        });
    }
    while let Some(ws) = tasks.join_next().await {
        let mut ws = ws.unwrap();
        expect_seqs(&mut ws, 1, 150, "a sender").await;
    }
    for (node, ws) in watchers.iter_mut().enumerate() {
        expect_seqs(ws, 1, 150, &format!("the watcher on node {node}")).await;
    }
}

async fn presence_changes_once_per_transition_across_nodes(engine: Engine) {
    let Some((backend, url)) = services("presence_across_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 3, &[]).await;
    let bob = cluster.register(0, "bob").await;
    let room = bob.create_room("Lounge", false).await;
    let alice = cluster.register(1, "alice").await;
    alice.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    let _ = drain(&mut bob_ws).await;

    let mut first = on(&alice, &cluster, 1).subscribed(room.id).await;
    // Her first connection anywhere: bob sees her online (once).
    let online = bob_ws
        .expect(|e| matches!(e, ServerEvent::Presence { .. }))
        .await;
    assert!(
        matches!(online, ServerEvent::Presence { status: PresenceStatus::Online, ref user, .. } if user.id == alice.user.id),
        "bob first hears alice come online, got {online:?}"
    );
    // A second connection on another node is not a transition, and it lists both as online.
    let mut second = on(&alice, &cluster, 2).ws("/ws").await;
    second
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: None,
            since_rev: None,
        })
        .await;
    let subscribed = second
        .expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
        .await;
    let ServerEvent::Subscribed { online, .. } = subscribed else {
        unreachable!()
    };
    let names: HashSet<String> = online.into_iter().map(|u| u.username).collect();
    assert_eq!(names, HashSet::from(["alice".to_owned(), "bob".to_owned()]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = presence_of(&drain(&mut bob_ws).await, alice.user.id);
    assert!(extra.is_empty(), "no second online, got {extra:?}");

    // Closing one of two connections is not a transition; closing the last one is.
    first.stream.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = presence_of(&drain(&mut bob_ws).await, alice.user.id);
    assert!(extra.is_empty(), "still online elsewhere, got {extra:?}");
    second.stream.close(None).await.unwrap();
    let offline = bob_ws
        .expect(|e| matches!(e, ServerEvent::Presence { .. }))
        .await;
    assert!(
        matches!(offline, ServerEvent::Presence { status: PresenceStatus::Offline, ref user, .. } if user.id == alice.user.id),
        "bob hears alice go offline after her last connection closed, got {offline:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let extra = presence_of(&drain(&mut bob_ws).await, alice.user.id);
    assert!(extra.is_empty(), "offline exactly once, got {extra:?}");
}

/// `GET /rooms/{id}/online` on one node lists the users connected to every node, in
/// case-insensitive username order, page after page, with the cluster-wide count.
async fn the_online_list_pages_through_every_node_in_username_order(engine: Engine) {
    let Some((backend, url)) = services("online_list_across_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 2, &[]).await;
    let ann = cluster.register(0, "ann").await;
    let room = ann.create_room("Roll call", false).await;
    let mut sockets = vec![ann.subscribed(room.id).await];
    for name in ["Zed", "bob", "Carol", "dave", "eve"] {
        // Everyone else connects to node 1, so node 0 only knows them through the engine.
        let user = cluster.register(1, name).await;
        assert_eq!(user.join(room.id).await.status, StatusCode::CREATED);
        sockets.push(user.subscribed(room.id).await);
    }
    let mut total = 0;
    for _ in 0..100 {
        let page: nebula_wire::OnlinePage = ann
            .get(&format!("/rooms/{}/online?limit=100", room.id))
            .await
            .json();
        total = page.online_count;
        if total == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total, 6, "everyone online, as node 0 sees it");
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(name) => format!("limit=2&after={name}"),
            None => "limit=2".to_owned(),
        };
        let page: nebula_wire::OnlinePage = ann
            .get(&format!("/rooms/{}/online?{query}", room.id))
            .await
            .json();
        assert!(page.users.len() <= 2);
        assert_eq!(page.online_count, 6);
        names.extend(page.users.into_iter().map(|user| user.username));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(names, ["ann", "bob", "Carol", "dave", "eve", "Zed"]);
}

/// `dm.opened` (an event addressed to a user, not a room) reaches the peer's connection on
/// another node, once, and the opener's other connection on a third.
async fn a_direct_room_opened_on_one_node_is_announced_to_the_peer_on_another(engine: Engine) {
    let Some((backend, url)) = services("user_events_across_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 3, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let bob = cluster.register(1, "bob").await;
    let mut bobs = bob.ws("/ws").await;
    let mut alices_other = on(&alice, &cluster, 2).ws("/ws").await;
    for ws in [&mut bobs, &mut alices_other] {
        ws.send(ClientEvent::Ping).await;
        ws.expect(|e| matches!(e, ServerEvent::Pong)).await;
    }
    let reply = alice.post("/dms", json!({"user_id": bob.user.id})).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let dm: nebula_wire::Room = reply.json();
    for (ws, peer) in [(&mut bobs, alice.user.id), (&mut alices_other, bob.user.id)] {
        let event = ws.next_event().await;
        let ServerEvent::DmOpened { room } = event else {
            panic!("{event:?}");
        };
        assert_eq!(room.id, dm.id);
        assert_eq!(room.peer.map(|p| p.id), Some(peer));
        // Once: the next thing this connection hears is the answer to a ping sent now.
        ws.send(ClientEvent::Ping).await;
        let next = ws.next_event().await;
        assert!(matches!(next, ServerEvent::Pong), "{next:?}");
    }
}

/// A node that stops beating for longer than the presence TTL without dying (here SIGSTOP; in
/// life a long pause, CPU starvation, a cut network) is swept by the others, so its users are
/// announced offline; once it runs again it notices its own lapse and adds them back, and the
/// room hears them come online — instead of them staying invisible while connected.
async fn a_node_paused_past_its_liveness_brings_its_users_back_online(engine: Engine) {
    let Some((backend, url)) = services("paused_node", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 2, &[]).await;
    let bob = cluster.register(0, "bob").await;
    let room = bob.create_room("Patient", false).await;
    let alice = cluster.register(1, "alice").await;
    alice.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    let _alice_ws = alice.subscribed(room.id).await;
    let is_presence = |status: PresenceStatus| {
        let alice = alice.user.id;
        move |e: &ServerEvent| matches!(e, ServerEvent::Presence { status: s, user, .. } if *s == status && user.id == alice)
    };
    bob_ws.expect(is_presence(PresenceStatus::Online)).await;

    cluster.signal(1, "STOP");
    // Node 0 sweeps the silent node after the TTL (3 s) and one of its own beats.
    bob_ws.expect(is_presence(PresenceStatus::Offline)).await;
    cluster.signal(1, "CONT");
    bob_ws.expect(is_presence(PresenceStatus::Online)).await;

    // Every node lists her again, and she is still connected where she was.
    for node in 0..2 {
        let page: nebula_wire::OnlinePage = on(&bob, &cluster, node)
            .get(&format!("/rooms/{}/online", room.id))
            .await
            .json();
        let names: Vec<&str> = page.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["alice", "bob"], "online as node {node} sees it");
    }
    alice.say(room.id, "back").await;
    let message = bob_ws.next_message().await;
    assert_eq!(message.content, "back");
}

async fn a_killed_node_goes_offline_and_its_clients_resume_elsewhere(engine: Engine) {
    let Some((backend, url)) = services("killed_node", engine) else {
        return;
    };
    let mut cluster = TestCluster::start(&backend, &url, 3, &[]).await;
    let bob = cluster.register(0, "bob").await;
    let room = bob.create_room("Resilient", false).await;
    let alice = cluster.register(1, "alice").await;
    alice.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    let mut alice_ws = alice.subscribed(room.id).await;
    bob_ws
        .expect(|e| {
            matches!(
                e,
                ServerEvent::Presence {
                    status: PresenceStatus::Online,
                    ..
                }
            )
        })
        .await;

    for n in 1..=10 {
        bob.say(room.id, &format!("before {n}")).await;
    }
    expect_seqs(&mut alice_ws, 1, 10, "alice before the crash").await;

    // Alice's node dies without a word; messages keep coming meanwhile.
    cluster.kill(1).await;
    for n in 11..=30 {
        bob.say(room.id, &format!("during {n}")).await;
    }
    // Her presence expires (TTL 3 s) and bob is told, once.
    let offline = tokio::time::timeout(
        PATIENCE,
        bob_ws.expect(|e| matches!(e, ServerEvent::Presence { .. })),
    )
    .await
    .expect("offline within the presence TTL");
    assert!(
        matches!(offline, ServerEvent::Presence { status: PresenceStatus::Offline, ref user, .. } if user.id == alice.user.id)
    );

    // She reconnects to another node with the last seq she saw: nothing missing, nothing twice.
    let mut resumed = on(&alice, &cluster, 2).ws("/ws").await;
    resumed
        .send(ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: Some(10),
            since_rev: None,
        })
        .await;
    expect_seqs(&mut resumed, 11, 20, "alice after resuming").await;
    bob.say(room.id, "after").await;
    expect_seqs(&mut resumed, 31, 1, "alice, live again").await;
}

/// A private `redis-server` or `nats-server -js` a test may stop and restart.
struct PrivateEngine {
    engine: Engine,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateEngine {
    async fn start(engine: Engine) -> PrivateEngine {
        let mut private = PrivateEngine {
            engine,
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        private.restart().await;
        private
    }

    fn url(&self) -> String {
        match self.engine {
            Engine::Redis => format!("redis://127.0.0.1:{}", self.port),
            Engine::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the server (again). NATS keeps its JetStream store in the temp dir across
    /// restarts, as a real deployment would; Redis keeps nothing.
    async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.engine {
            Engine::Redis => {
                let mut command = Command::new("redis-server");
                command
                    .args([
                        "--port",
                        &port,
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .arg("--dir")
                    .arg(self.dir.path());
                command
            }
            Engine::Nats => {
                let mut command = Command::new("nats-server");
                command
                    .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(self.dir.path());
                command
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server and nats-server must be installed for the fault tests");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop the private engine");
        }
    }
}

async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("port {port} never opened");
}

async fn an_engine_restart_mid_stream_loses_nothing(engine: Engine) {
    let Some((backend, _)) = services("redis_restart", engine) else {
        return;
    };
    let mut engine = PrivateEngine::start(engine).await;
    let cluster = TestCluster::start(&backend, &engine.url(), 2, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Stormy", false).await;
    let bob = cluster.register(1, "bob").await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;

    for n in 1..=20 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    engine.stop().await;
    // Nodes keep serving: messages are stored and acknowledged; health says degraded.
    for n in 21..=40 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    let mut degraded = false;
    for _ in 0..50 {
        let health = cluster.health(1).await;
        if health["status"] == "degraded" {
            assert!(
                health["checks"]["bus"]
                    .as_str()
                    .unwrap()
                    .starts_with("error")
            );
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(degraded, "/health reports the bus outage");
    engine.restart().await;
    for n in 41..=60 {
        alice.say(room.id, &format!("m{n}")).await;
    }
    // Bob, on the other node, gets every message exactly once and in order.
    expect_seqs(&mut bob_ws, 1, 60, "bob across the outage").await;
    for _ in 0..100 {
        if cluster.health(1).await["status"] == "ok" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node 1 never reported healthy again");
}

/// Nodes start and serve while their engine is not running yet; once it starts they connect
/// by themselves, report healthy, and what was posted meanwhile reaches the other node.
async fn nodes_started_while_the_engine_is_down_join_up_once_it_starts(engine: Engine) {
    let Some((backend, _)) = services("engine_down_at_start", engine) else {
        return;
    };
    let mut engine = PrivateEngine::start(engine).await;
    engine.stop().await;
    let cluster = TestCluster::start(&backend, &engine.url(), 2, &[]).await;
    assert_eq!(cluster.health(1).await["status"], "degraded");
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Early", false).await;
    let bob = cluster.register(1, "bob").await;
    assert_eq!(bob.join(room.id).await.status, StatusCode::CREATED);
    let mut bob_ws = bob.subscribed(room.id).await;
    for n in 1..=5 {
        alice.say(room.id, &format!("before {n}")).await;
    }
    engine.restart().await;
    for _ in 0..100 {
        if cluster.health(0).await["status"] == "ok" && cluster.health(1).await["status"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.health(1).await["status"], "ok", "node 1 connected");
    for n in 6..=10 {
        alice.say(room.id, &format!("after {n}")).await;
    }
    expect_seqs(&mut bob_ws, 1, 10, "bob, on the other node").await;
}

async fn rate_limits_hold_across_nodes(engine: Engine) {
    let Some((backend, url)) = services("rate_limits_across_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(
        &backend,
        &url,
        2,
        &[("RATE_LIMIT_MESSAGES_PER_SECOND", "5")],
    )
    .await;
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Limited", false).await;
    let (mut accepted, mut limited) = (0, 0);
    let started = std::time::Instant::now();
    for n in 0..40 {
        let session = on(&alice, &cluster, n % 2);
        let reply = session
            .post_message(room.id, json!({"content": format!("m{n}")}))
            .await;
        match reply.status.as_u16() {
            201 => accepted += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // A burst of 3 × 5 across the whole cluster, plus what refilled (5/s) while the loop ran,
    // however slow the machine; two independent nodes would have allowed twice both.
    let refilled = (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (15..=15 + refilled).contains(&accepted),
        "{accepted} accepted, at most 15 + {refilled} refilled"
    );
    assert_eq!(accepted + limited, 40);
}

/// Keeps breaking the nodes' event stream until `stop`, then hands the engine back: Redis
/// kills every pub/sub connection every few milliseconds (commands keep working); NATS, whose
/// connections carry everything, is stopped and restarted over and over.
async fn keep_dropping_pubsub(
    mut engine: PrivateEngine,
    stop: tokio_util::sync::CancellationToken,
) -> PrivateEngine {
    match engine.engine {
        Engine::Redis => {
            let client = redis::Client::open(engine.url()).expect("redis url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis connection");
            while !stop.is_cancelled() {
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Engine::Nats => {
            while !stop.is_cancelled() {
                engine.stop().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                engine.restart().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    engine
}

/// Bob, subscribed on node 1, is removed on node 0 while node 1's pub/sub connection keeps
/// dying, so node 1 never hears the `member.left`; messages are posted meanwhile. Once node 1
/// is back it must drop bob's subscription (from the database) before it delivers anything.
async fn a_removed_member_on_another_node_hears_nothing_when_the_bus_lost_the_removal(
    engine: Engine,
) {
    let Some((backend, _)) = services("removal_lost_on_the_bus", engine) else {
        return;
    };
    let engine = PrivateEngine::start(engine).await;
    let cluster = TestCluster::start(&backend, &engine.url(), 2, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Club", false).await;
    let bob = cluster.register(1, "bob").await;
    assert_eq!(bob.join(room.id).await.status, StatusCode::CREATED);
    let mut bob_ws = bob.subscribed(room.id).await;
    alice.say(room.id, "welcome").await;
    assert_eq!(bob_ws.next_message().await.content, "welcome");

    let stop = tokio_util::sync::CancellationToken::new();
    let killer = tokio::spawn(keep_dropping_pubsub(engine, stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let removed = alice
        .delete(&format!("/rooms/{}/members/{}", room.id, bob.user.id))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    for n in 0..3 {
        alice.say(room.id, &format!("during {n}")).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let _engine = killer.await.expect("killer");
    for n in 0..3 {
        alice.say(room.id, &format!("after {n}")).await;
    }

    // Node 1 repairs from the database: bob gets his own member.left, and no message first.
    let left = bob_ws
        .expect(|e| {
            matches!(
                e,
                ServerEvent::MemberLeft { .. } | ServerEvent::MessageNew { .. }
            )
        })
        .await;
    assert!(
        matches!(&left, ServerEvent::MemberLeft { user, .. } if user.id == bob.user.id),
        "bob must be dropped before any later message: {left:?}"
    );
    alice.say(room.id, "much later").await;
    let seen = drain(&mut bob_ws).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ServerEvent::MessageNew { .. })),
        "{seen:?}"
    );
    // And he cannot send there from that socket.
    bob_ws
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "still here?".into(),
            client_msg_id: None,
            reply_to: None,
            attachments: None,
        })
        .await;
    let refused = bob_ws
        .expect(|e| matches!(e, ServerEvent::Error { .. }))
        .await;
    assert!(
        matches!(&refused, ServerEvent::Error { code, .. } if code == "not_a_member"),
        "{refused:?}"
    );
}

/// Reads a subscriber's events until it has the version of `message` at `rev`; asserts that
/// the versions it got only ever moved forward, and returns the last.
async fn follow_until(ws: &mut WsClient, message: Uuid, rev: i64, who: &str) -> Message {
    let mut last: Option<Message> = None;
    while last.as_ref().is_none_or(|m| m.rev < rev) {
        let (ServerEvent::MessageNew { message: m } | ServerEvent::MessageUpdated { message: m }) =
            ws.expect(|e| {
                matches!(
                    e,
                    ServerEvent::MessageNew { .. } | ServerEvent::MessageUpdated { .. }
                )
            })
            .await
        else {
            unreachable!()
        };
        if m.id != message {
            continue;
        }
        if let Some(previous) = &last {
            assert!(
                m.rev > previous.rev,
                "{who}: rev {} after {}",
                m.rev,
                previous.rev
            );
        }
        last = Some(m);
    }
    last.unwrap()
}

/// Edits by its author and reactions by others from all three nodes at once, and a delete in
/// the middle of them: every subscriber, on every node, ends on the version with the highest
/// rev — the one the database holds.
async fn concurrent_changes_of_one_message_from_every_node_converge_on_every_subscriber(
    engine: Engine,
) {
    let Some((backend, url)) = services("changes_converge", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 3, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Busy", false).await;
    let message = alice.say(room.id, "change me").await;
    let mut watchers = Vec::new();
    let mut reactors = Vec::new();
    for node in 0..3 {
        let watcher = cluster.register(node, &format!("watcher{node}")).await;
        watcher.join(room.id).await;
        watchers.push(watcher.subscribed(room.id).await);
        let reactor = cluster.register(node, &format!("reactor{node}")).await;
        reactor.join(room.id).await;
        reactors.push(reactor);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (node, reactor) in reactors.into_iter().enumerate() {
        let author = on(&alice, &cluster, node);
        tasks.spawn(async move {
            for n in 0..8 {
                let edit = author
                    .edit(room.id, message.id, &format!("edit {node}.{n}"))
                    .await;
                assert!(matches!(edit.status.as_u16(), 200 | 409), "{}", edit.text());
                for emoji in ["👍", "🎉"] {
                    let status = reactor.react(room.id, message.id, emoji).await.status;
                    assert!(matches!(status.as_u16(), 204 | 409), "{status}");
                }
                if n % 2 == 1 {
                    reactor.unreact(room.id, message.id, "🎉").await;
                }
                if node == 1 && n == 5 {
                    let deleted = author.delete_message(room.id, message.id).await;
                    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let stored = alice.message(room.id, message.id).await;
    assert!(stored.deleted_at.is_some() && stored.content.is_empty());
    for (node, ws) in watchers.iter_mut().enumerate() {
        let seen = follow_until(ws, message.id, stored.rev, &format!("node {node}")).await;
        assert_eq!(seen, stored, "the watcher on node {node}");
    }
}

/// Pub/sub keeps dropping while messages are edited, reacted to, deleted and posted on one
/// node: a subscriber on the other node, which hears none of it live, still ends with every
/// change in its latest version, the new message once, and nothing out of order.
async fn a_pubsub_outage_loses_no_change(engine: Engine) {
    let Some((backend, _)) = services("pubsub_outage_changes", engine) else {
        return;
    };
    let engine = PrivateEngine::start(engine).await;
    let cluster = TestCluster::start(&backend, &engine.url(), 2, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Stormy", false).await;
    let bob = cluster.register(1, "bob").await;
    bob.join(room.id).await;
    let mut bob_ws = bob.subscribed(room.id).await;
    let mut posted = Vec::new();
    for n in 1..=3 {
        posted.push(alice.say(room.id, &format!("m{n}")).await);
    }
    expect_seqs(&mut bob_ws, 1, 3, "bob before the outage").await;

    let stop = tokio_util::sync::CancellationToken::new();
    let killer = tokio::spawn(keep_dropping_pubsub(engine, stop.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    alice.edit(room.id, posted[0].id, "m1 edited").await;
    alice.react(room.id, posted[1].id, "👍").await;
    alice.delete_message(room.id, posted[2].id).await;
    let fourth = alice.say(room.id, "m4").await;
    // The very last change of the outage has no successor to reveal it, and it supersedes
    // the reaction above (the feed no longer holds that version).
    alice.edit(room.id, posted[1].id, "m2 edited").await;
    stop.cancel();
    let _engine = killer.await.expect("killer");

    let feed: nebula_wire::ChangesPage = alice
        .get(&format!("/rooms/{}/changes?since_rev=3", room.id))
        .await
        .json();
    let mut latest: std::collections::HashMap<Uuid, Message> = std::collections::HashMap::new();
    let mut seqs = Vec::new();
    while latest.values().map(|m| m.rev).max().unwrap_or(0) < feed.last_rev {
        match bob_ws.next_event().await {
            ServerEvent::MessageNew { message } => {
                seqs.push(message.seq);
                latest.insert(message.id, message);
            }
            ServerEvent::MessageUpdated { message } => {
                if let Some(known) = latest.get(&message.id) {
                    assert!(message.rev > known.rev, "{message:?} after {known:?}");
                }
                latest.insert(message.id, message);
            }
            _ => {}
        }
    }
    assert_eq!(seqs, [4], "the new message, once");
    for message in feed.messages {
        assert_eq!(
            latest.get(&message.id),
            Some(&message),
            "seq {}",
            message.seq
        );
    }
    assert_eq!(latest[&fourth.id].content, "m4");
}

/// A `/ws` socket that answered a ping: registered for call events on its node.
async fn call_socket(session: &Session) -> WsClient {
    let mut ws = session.ws("/ws").await;
    let _ = drain(&mut ws).await;
    ws
}

fn is_call_event(event: &ServerEvent) -> bool {
    event.type_name().starts_with("call.") || matches!(event, ServerEvent::Error { .. })
}

async fn a_call_is_signalled_between_nodes(engine: Engine) {
    let Some((backend, url)) = services("a_call_is_signalled_between_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 3, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let bob = cluster.register(1, "bob").await;
    let room = alice.create_room("Calls", false).await;
    bob.join(room.id).await;
    // Alice on node 0; Bob's phone on node 1 and laptop on node 2.
    let mut caller = call_socket(&alice).await;
    let mut phone = call_socket(&bob).await;
    let mut laptop = call_socket(&on(&bob, &cluster, 2)).await;
    let call = Uuid::new_v4();
    caller
        .send(ClientEvent::CallInvite {
            call_id: call,
            to_user_id: bob.user.id,
            media: nebula_wire::CallMedia::Audio,
            sdp: "v=0 offer".into(),
        })
        .await;
    for ws in [&mut phone, &mut laptop] {
        let invite = ws.expect(is_call_event).await;
        assert!(
            matches!(&invite, ServerEvent::CallInvite { call_id, from, .. } if *call_id == call && from.id == alice.user.id),
            "{invite:?}"
        );
    }
    laptop
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 answer".into(),
        })
        .await;
    assert_eq!(
        caller.expect(is_call_event).await,
        ServerEvent::CallAnswer {
            call_id: call,
            from: bob.user.clone(),
            sdp: "v=0 answer".into(),
        }
    );
    assert!(matches!(
        phone.expect(is_call_event).await,
        ServerEvent::CallHangup { reason: Some(reason), .. } if reason == "answered_elsewhere"
    ));
    // Candidates both ways, between node 0 and node 2 only.
    caller
        .send(ClientEvent::CallCandidate {
            call_id: call,
            candidate: json!({"candidate": "from-alice"}),
        })
        .await;
    assert!(matches!(
        laptop.expect(is_call_event).await,
        ServerEvent::CallCandidate { candidate, from, .. } if candidate == json!({"candidate": "from-alice"}) && from.id == alice.user.id
    ));
    laptop
        .send(ClientEvent::CallCandidate {
            call_id: call,
            candidate: json!({"candidate": "from-bob"}),
        })
        .await;
    assert!(matches!(
        caller.expect(is_call_event).await,
        ServerEvent::CallCandidate { candidate, from, .. } if candidate == json!({"candidate": "from-bob"}) && from.id == bob.user.id
    ));
    // The phone is out of the call: refused by the caller's node, heard on node 1.
    phone.send(ClientEvent::CallHangup { call_id: call }).await;
    assert!(matches!(
        phone.expect(is_call_event).await,
        ServerEvent::Error { code, .. } if code == "call_not_found"
    ));
    laptop.send(ClientEvent::CallHangup { call_id: call }).await;
    assert_eq!(
        caller.expect(is_call_event).await,
        ServerEvent::CallHangup {
            call_id: call,
            from: Some(bob.user.clone()),
            reason: None,
        }
    );
    assert!(drain(&mut phone).await.iter().all(|e| !is_call_event(e)));
}

async fn an_unanswered_call_times_out_on_both_nodes(engine: Engine) {
    let Some((backend, url)) = services("an_unanswered_call_times_out_on_both_nodes", engine)
    else {
        return;
    };
    let cluster =
        TestCluster::start(&backend, &url, 2, &[("CALL_RING_TIMEOUT_SECONDS", "1")]).await;
    let alice = cluster.register(0, "alice").await;
    let bob = cluster.register(1, "bob").await;
    let room = alice.create_room("Calls", false).await;
    bob.join(room.id).await;
    let mut caller = call_socket(&alice).await;
    let mut callee = call_socket(&bob).await;
    let call = Uuid::new_v4();
    caller
        .send(ClientEvent::CallInvite {
            call_id: call,
            to_user_id: bob.user.id,
            media: nebula_wire::CallMedia::Video,
            sdp: "v=0 offer".into(),
        })
        .await;
    assert!(matches!(
        callee.expect(is_call_event).await,
        ServerEvent::CallInvite { .. }
    ));
    for ws in [&mut caller, &mut callee] {
        assert_eq!(
            ws.expect(is_call_event).await,
            ServerEvent::CallHangup {
                call_id: call,
                from: None,
                reason: Some("timeout".into()),
            }
        );
    }
    // Node 1 forgot the call too.
    callee
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0".into(),
        })
        .await;
    assert!(matches!(
        callee.expect(is_call_event).await,
        ServerEvent::Error { code, .. } if code == "call_not_found"
    ));
}

async fn the_same_direct_room_requested_at_once_on_two_nodes_is_one_room(engine: Engine) {
    let Some((backend, url)) = services("direct_room_on_two_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 2, &[]).await;
    // Several pairs, each asked for from both sides on both nodes at the same moment.
    for pair in 0..4 {
        let alice = cluster.register(0, &format!("alice{pair}")).await;
        let bob = cluster.register(1, &format!("bob{pair}")).await;
        let on = |who: &Session, node: usize| Session {
            base: cluster.base(node),
            ..who.clone()
        };
        let callers = [
            (on(&alice, 0), bob.user.id),
            (on(&alice, 1), bob.user.id),
            (on(&bob, 0), alice.user.id),
            (on(&bob, 1), alice.user.id),
        ];
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(callers.len()));
        let mut tasks = Vec::new();
        for (caller, peer) in callers {
            let start = start.clone();
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                caller.post("/dms", json!({"user_id": peer})).await
            }));
        }
        let mut rooms = HashSet::new();
        let mut created = 0;
        for task in tasks {
            let reply = task.await.expect("task");
            assert!(
                matches!(reply.status, StatusCode::CREATED | StatusCode::OK),
                "{}",
                reply.text()
            );
            created += usize::from(reply.status == StatusCode::CREATED);
            rooms.insert(reply.json::<nebula_wire::Room>().id);
        }
        assert_eq!(rooms.len(), 1, "pair {pair}: one room");
        assert_eq!(created, 1, "pair {pair}: created once");
    }
    // No room was left half-made by a losing request.
    let pool = sqlx::PgPool::connect(&cluster.database_url).await.unwrap();
    let direct: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE kind = 'direct'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(direct, 4);
    pool.close().await;
}

/// Revocations cross nodes: a logout-all on one node closes the user's socket on another with
/// 4001 and its tokens stop working there, and so does an admin's deactivation; the cached
/// standings of the other node do not let an old token through.
async fn logout_all_and_deactivation_on_one_node_close_sockets_on_another(engine: Engine) {
    let Some((backend, url)) = services("revocations_cross_nodes", engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 2, &[]).await;
    let admin = cluster.register(0, "admin").await;
    let granted = std::process::Command::new(env!("CARGO_BIN_EXE_nebula"))
        .env_clear()
        .env("DATABASE_URL", &cluster.database_url)
        .args(["admin", "grant", "admin"])
        .output()
        .expect("nebula admin grant");
    assert!(granted.status.success(), "{granted:?}");

    let alice = cluster.register(0, "alice").await;
    let alice_on_b = on(&alice, &cluster, 1);
    // Node B has seen (and cached) alice's standing before the revocation.
    assert_eq!(alice_on_b.get("/me").await.status, StatusCode::OK);
    let mut socket = alice_on_b.ws("/ws").await;
    assert_eq!(
        alice.post("/auth/logout-all", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let (ended, _) = socket.until_closed().await;
    assert!(
        matches!(ended, crate::ws_client::Ended::Closed(Some(4001))),
        "{ended:?}"
    );
    alice_on_b
        .get("/me")
        .await
        .assert_problem(401, "token_revoked");

    let bob = cluster.register(1, "bob").await;
    assert_eq!(bob.get("/me").await.status, StatusCode::OK);
    let mut socket = bob.ws("/ws").await;
    let reply = admin
        .post(
            &format!("/admin/users/{}/deactivate", bob.user.id),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let started = std::time::Instant::now();
    let (ended, _) = socket.until_closed().await;
    assert!(
        matches!(ended, crate::ws_client::Ended::Closed(Some(4001))),
        "{ended:?}"
    );
    // Announced across nodes, not found when the other node's token cache expires (30 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed within seconds"
    );
    bob.get("/me")
        .await
        .assert_problem(401, "account_deactivated");
    let login = http_client()
        .post(format!("{}/auth/login", cluster.base(1)))
        .json(&json!({"username": "bob", "password": password_of("bob")}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
}

/// Node processes pushing in-process to a loopback push endpoint with these keys.
fn embedded_push_env(vapid: &nebula_notifier::GeneratedVapidKeys) -> Vec<(&'static str, String)> {
    vec![
        ("WEBPUSH_VAPID_PRIVATE_KEY", vapid.private_key.clone()),
        ("WEBPUSH_VAPID_PUBLIC_KEY", vapid.public_key.clone()),
        (
            "WEBPUSH_VAPID_SUBJECT",
            crate::notifications::SUBJECT.to_owned(),
        ),
        ("WEBPUSH_ALLOW_PRIVATE_ENDPOINTS", "true".to_owned()),
    ]
}

/// "No open connection" is cluster-wide: bob's socket is on node 1, the message is sent on
/// node 0, and whichever node relays the outbox sees him connected; carol, connected
/// nowhere, is pushed.
async fn a_direct_message_is_pushed_only_to_users_connected_on_no_node(engine: Engine) {
    let test = "a_direct_message_is_pushed_only_to_users_connected_on_no_node";
    let Some((backend, url)) = services(test, engine) else {
        return;
    };
    use crate::notifications::push_endpoint::PushEndpoint;
    let vapid = nebula_notifier::generate_vapid_keys();
    let env = embedded_push_env(&vapid);
    let env: Vec<(&'static str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cluster = TestCluster::start(&backend, &url, 2, &env).await;
    let endpoint = PushEndpoint::start(&vapid.public_key, crate::notifications::SUBJECT).await;
    let alice = cluster.register(0, "alice").await;
    let bob = cluster.register(1, "bob").await;
    let carol = cluster.register(1, "carol").await;
    let (bobs_browser, carols_browser) = (endpoint.new_browser(), endpoint.new_browser());
    crate::notifications::subscribe(&bob, &bobs_browser).await;
    crate::notifications::subscribe(&carol, &carols_browser).await;
    let open = |with: &Session| {
        let body = json!({"user_id": with.user.id});
        let alice = alice.clone();
        async move { alice.post("/dms", body).await.json::<nebula_wire::Room>() }
    };
    let with_bob = open(&bob).await;
    let with_carol = open(&carol).await;

    // Bob's socket on node 1 subscribes to the room; once alice (node 0) hears him online
    // there, node 1 has also told the engine about his connection (its presence changes are
    // applied in order, the connection's first).
    let mut alices_socket = alice.subscribed(with_bob.id).await;
    let _bobs_socket = bob.subscribed(with_bob.id).await;
    alices_socket
        .expect(|event| {
            matches!(event, ServerEvent::Presence { user, status: PresenceStatus::Online, .. }
                if user.id == bob.user.id)
        })
        .await;
    alice.say(with_bob.id, "you are online on node 1").await;
    alice.say(with_carol.id, "you are online nowhere").await;
    endpoint
        .wait_until(PATIENCE, "carol's push", |e| {
            !e.others_for(&carols_browser).is_empty()
        })
        .await;
    let pool = sqlx::PgPool::connect(&cluster.database_url).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        if rows == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    assert!(endpoint.errors().is_empty(), "{:?}", endpoint.errors());
    assert_eq!(
        endpoint.requests_for(&bobs_browser),
        0,
        "bob is connected on node 1"
    );
    assert_eq!(endpoint.others_for(&carols_browser).len(), 1);
}

/// A connection that opens on another node than the call's owner while the call rings
/// gets the invite, and can answer it.
async fn a_connection_opened_mid_ring_on_another_node_rings_too(engine: Engine) {
    let test = "a_connection_opened_mid_ring_on_another_node_rings_too";
    let Some((backend, url)) = services(test, engine) else {
        return;
    };
    let cluster = TestCluster::start(&backend, &url, 2, &[]).await;
    let alice = cluster.register(0, "alice").await;
    let bob = cluster.register(1, "bob").await;
    let room = alice.create_room("Calls", false).await;
    bob.join(room.id).await;
    let mut caller = call_socket(&alice).await;
    let mut phone = call_socket(&bob).await;
    let call = Uuid::new_v4();
    caller
        .send(ClientEvent::CallInvite {
            call_id: call,
            to_user_id: bob.user.id,
            media: nebula_wire::CallMedia::Audio,
            sdp: "v=0 offer".into(),
        })
        .await;
    assert!(matches!(
        phone.expect(is_call_event).await,
        ServerEvent::CallInvite { .. }
    ));
    let mut laptop = bob.ws("/ws").await; // node 1; the call is owned by node 0
    let invite = laptop.expect(is_call_event).await;
    assert!(
        matches!(&invite, ServerEvent::CallInvite { call_id, from, .. } if *call_id == call && from.id == alice.user.id),
        "{invite:?}"
    );
    laptop
        .send(ClientEvent::CallAnswer {
            call_id: call,
            sdp: "v=0 answer".into(),
        })
        .await;
    assert!(matches!(
        caller.expect(is_call_event).await,
        ServerEvent::CallAnswer { .. }
    ));
    assert!(matches!(
        phone.expect(is_call_event).await,
        ServerEvent::CallHangup { reason: Some(reason), .. } if reason == "answered_elsewhere"
    ));
}
