//! The `presence` scenario's probe: with every other user online and subscribed to one room,
//! one more socket subscribes, waits for `subscribed` (which lists the room's online
//! members), unsubscribes, and does it again. Each round is one latency sample: the time from
//! writing `subscribe` to reading its `subscribed`.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::client::socket_config;
use crate::latency::{Latency, LatencySummary, LocalSamples};
use crate::setup::{Api, room_id};

/// Pause between rounds, so one round's aftermath (presence events to everyone) does not
/// land in the next one's latency.
const BETWEEN_ROUNDS: Duration = Duration::from_millis(100);
/// Longest one subscribe or unsubscribe may take.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the probe measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SubscribeProbe {
    /// `subscribe` written → `subscribed` read.
    pub latency: LatencySummary,
    /// Size of the largest `subscribed` frame (it lists the online members).
    pub subscribed_bytes: usize,
}

/// Opens `/ws` as `token`'s user and subscribes to `room_id` `rounds` times.
pub async fn probe(
    api: Option<&Api>,
    token: &str,
    room_id_text: &str,
    rounds: usize,
) -> anyhow::Result<SubscribeProbe> {
    let api = api.context("the presence probe needs Nebula's client")?;
    let room = room_id(room_id_text)?;
    let mut socket = api
        .as_user(token)
        .connect_with("/ws", Some(socket_config()))
        .await
        .context("opening the probe socket")?;
    let latency = Latency::new()?;
    let mut samples = LocalSamples::new(&latency);
    let mut subscribed_bytes = 0;
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(BETWEEN_ROUNDS).await;
        }
        let started = Instant::now();
        let subscribed = tokio::time::timeout(ROUND_TIMEOUT, socket.subscribe(room, None))
            .await
            .context("no `subscribed` in time")??;
        samples.record(started.elapsed());
        subscribed_bytes = subscribed_bytes.max(subscribed.frame_bytes);
        tokio::time::timeout(ROUND_TIMEOUT, socket.unsubscribe(room))
            .await
            .context("no `unsubscribed` in time")??;
    }
    samples.flush();
    let _ = socket.close(None).await;
    Ok(SubscribeProbe {
        latency: latency.summary(),
        subscribed_bytes,
    })
}
