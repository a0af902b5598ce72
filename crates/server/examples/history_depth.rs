//! History page latency against depth, through a running server's HTTP route.
//!
//! ```text
//! cargo run --release -p nebula --example history_depth -- \
//!     http://127.0.0.1:3838 <room_id> <cursor>[,<cursor>…] [requests] [clients]
//! ```
//!
//! Registers a user, joins the (public) room, then for each cursor asks
//! `GET /rooms/{room}/messages?before_seq=<cursor>&limit=50` `requests` times (after as many
//! warm-up requests), from `clients` concurrent connections, checks every answer (50 messages,
//! consecutive seqs just below the cursor) and prints the latency percentiles as a Markdown
//! table. The smallest cursor (51) is the deepest page of a room, its `last_seq + 1` the
//! shallowest. Used for the 10-million-message run in docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

const LIMIT: i64 = 50;

struct Target {
    http: reqwest::Client,
    base: String,
    token: String,
    room: String,
}

impl Target {
    /// One page just below `cursor`, checked; returns how long the request took.
    async fn page(&self, cursor: i64) -> anyhow::Result<Duration> {
        let url = format!(
            "{}/rooms/{}/messages?before_seq={cursor}&limit={LIMIT}",
            self.base, self.room
        );
        let started = Instant::now();
        let response = self.http.get(&url).bearer_auth(&self.token).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        let took = started.elapsed();
        ensure!(status.is_success(), "{url}: {status}");
        let page: Value = serde_json::from_slice(&body)?;
        let seqs: Vec<i64> = page["messages"]
            .as_array()
            .context("no messages")?
            .iter()
            .filter_map(|m| m["seq"].as_i64())
            .collect();
        let first = (cursor - LIMIT).max(1);
        ensure!(
            seqs == (first..cursor).collect::<Vec<_>>(),
            "{url}: seqs {:?}…",
            seqs.first()
        );
        Ok(took)
    }
}

/// The `q`-quantile of sorted durations, in milliseconds.
fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted
        .get(index)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, room, cursors, rest @ ..] = args.as_slice() else {
        bail!("usage: history_depth <url> <room_id> <cursor>[,<cursor>…] [requests] [clients]");
    };
    let cursors: Vec<i64> = cursors
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let requests: usize = rest.first().map_or(Ok(2000), |s| s.parse())?;
    let clients: usize = rest.get(1).map_or(Ok(1), |s| s.parse())?;

    // reqwest is built without a TLS provider of its own (plain http here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build()?;
    let username = format!("depth_{}", uuid::Uuid::new_v4().simple())[..20].to_owned();
    let registered: Value = http
        .post(format!("{base}/auth/register"))
        .json(&json!({"username": username, "password": "history-depth-password"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = registered["token"].as_str().context("no token")?.to_owned();
    http.post(format!("{base}/rooms/{room}/members"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?;
    let target = std::sync::Arc::new(Target {
        http,
        base: base.clone(),
        token,
        room: room.clone(),
    });

    println!("| before_seq | requests × clients | p50 ms | p90 ms | p99 ms | max ms | pages/s |");
    println!("|---|---|---|---|---|---|---|");
    for cursor in cursors {
        for _ in 0..requests.min(500) {
            target.page(cursor).await?;
        }
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let target = target.clone();
            let share = requests / clients;
            tasks.push(tokio::spawn(async move {
                let mut took = Vec::with_capacity(share);
                for _ in 0..share {
                    took.push(target.page(cursor).await?);
                }
                anyhow::Ok(took)
            }));
        }
        let mut took = Vec::with_capacity(requests);
        for task in tasks {
            took.extend(task.await??);
        }
        let elapsed = started.elapsed();
        took.sort_unstable();
        println!(
            "| {cursor} | {} × {clients} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            took.len() / clients,
            quantile(&took, 0.50),
            quantile(&took, 0.90),
            quantile(&took, 0.99),
            quantile(&took, 1.0),
            took.len() as f64 / elapsed.as_secs_f64(),
        );
    }
    Ok(())
}
