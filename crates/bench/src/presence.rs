//! The `presence` scenario's probe: with every other user online and subscribed to one room,
//! one more socket subscribes, waits for `subscribed` (which lists the room's online
//! members), unsubscribes, and does it again. Each round is one latency sample: the time from
//! writing `subscribe` to reading its `subscribed`.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use nebula_wire::ClientEvent;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::client::{Socket, connect};
use crate::latency::{Latency, LatencySummary, LocalSamples};
use crate::target::nebula;

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

/// Opens `endpoint?token=…` and subscribes to `room_id` `rounds` times.
pub async fn probe(
    endpoint: &str,
    token: &str,
    room_id: &str,
    rounds: usize,
) -> anyhow::Result<SubscribeProbe> {
    let mut socket = connect(&format!("{endpoint}?token={token}"))
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
        let (_, bytes) =
            tokio::time::timeout(ROUND_TIMEOUT, nebula::subscribe(&mut socket, room_id))
                .await
                .context("no `subscribed` in time")??;
        samples.record(started.elapsed());
        subscribed_bytes = subscribed_bytes.max(bytes);
        tokio::time::timeout(ROUND_TIMEOUT, unsubscribe(&mut socket, room_id))
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

#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    room_id: Option<Cow<'a, str>>,
}

async fn unsubscribe(socket: &mut Socket, room_id: &str) -> anyhow::Result<()> {
    let room = uuid::Uuid::parse_str(room_id)?;
    let frame = ClientEvent::Unsubscribe { room_id: room };
    socket
        .send(Frame::text(serde_json::to_string(&frame)?))
        .await?;
    while let Some(frame) = socket.next().await {
        if let Frame::Text(text) = frame? {
            let event: Typed<'_> = serde_json::from_str(text.as_str())?;
            if event.kind == "unsubscribed" && event.room_id.as_deref() == Some(room_id) {
                return Ok(());
            }
        }
    }
    bail!("the probe socket closed before `unsubscribed`")
}
