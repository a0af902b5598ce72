//! The simulator against the Socket.IO + PostgreSQL peer (`shared/peer-socketio`), when it
//! can run here: needs `node`, the peer's `node_modules` (`npm ci` in a copy of it) and its
//! PostgreSQL database. Otherwise the test says why and passes without running.
//!
//! Where the peer is looked for: `$NEBULA_PEER_DIR`, then `shared/peer-socketio` beside the
//! repository, then `/tmp/peer` (the README's `cp -r … /tmp/peer && npm ci`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nebula_bench::{Options, Scenario, Target};
use tokio::process::{Child, Command};

fn peer_dir() -> Option<PathBuf> {
    let beside_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peer-socketio");
    std::env::var_os("NEBULA_PEER_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([beside_repo, PathBuf::from("/tmp/peer")])
        .find(|dir| dir.join("node_modules/socket.io").is_dir() && dir.join("server.js").is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Starts the peer and waits for its `/health`; `Err` says why it could not.
async fn start_peer(dir: &Path) -> Result<(Child, String), String> {
    let port = free_port();
    let mut child = Command::new("node")
        .arg("server.js")
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot run node: {err}"))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut output = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = stderr.read_to_string(&mut output).await;
            }
            return Err(format!("the peer exited ({status}): {}", output.trim()));
        }
        let healthy = http
            .get(format!("{url}/health"))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if healthy {
            return Ok((child, url));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("the peer did not answer /health within 15 s (is its PostgreSQL database there?)".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chat_run_against_the_socketio_peer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(dir) = peer_dir() else {
        println!(
            "skipped: no Socket.IO peer with node_modules (set NEBULA_PEER_DIR, or \
             `cp -r shared/peer-socketio /tmp/peer && cd /tmp/peer && npm ci`)"
        );
        return;
    };
    let (mut peer, url) = match start_peer(&dir).await {
        Ok(started) => started,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };

    let mut options = Options::new(url, Scenario::Chat);
    options.target = Target::Socketio;
    options.users = 9;
    options.rooms = 3;
    options.senders = 4;
    options.rate = 20.0;
    options.duration = Duration::from_secs(3);
    options.message_size = 64;
    options.server_pids = peer.id().into_iter().collect();
    let report = nebula_bench::run(options, std::future::pending())
        .await
        .expect("the run completes");
    println!("{report}");
    let _ = peer.kill().await;

    assert_eq!(report.connections, 9, "{report}");
    assert!(
        report.sent >= 100,
        "senders should manage ~240 sends: {report}"
    );
    assert_eq!(report.acked, report.sent, "{report}");
    assert_eq!((report.failed, report.unanswered), (0, 0), "{report}");
    let delivery = report.delivery;
    assert_eq!(delivery.missing, 0, "{report}");
    assert_eq!(delivery.duplicates, 0, "{report}");
    // Not asserted: out-of-order. The peer broadcasts each message when its INSERT returns,
    // and two inserts into one room on different pool connections can return in the
    // opposite order of their seqs; the report counts that, it is the peer's behaviour.
    assert_eq!(delivery.expected, report.sent * 3, "{report}");
    assert_eq!(delivery.delivered, delivery.expected, "{report}");
    assert_eq!(report.ack_latency.count, report.acked);
    assert_eq!(report.e2e_latency.count, delivery.delivered);
    assert!(report.closes.is_empty(), "{report}");
    assert!(
        report.costs.server_cpu_us_per_delivery.is_some(),
        "{report}"
    );
}
