//! A node-to-node channel on the cluster engine: fire-and-forget announcements (calls, account
//! standings) published in order and listened to with resubscription, until shutdown.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Cluster, EngineError};

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Sends queued payloads to `channel`, in order; `what` names them in logs.
pub async fn publish(
    cluster: Cluster,
    channel: String,
    what: &'static str,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(bytes) = queue.recv().await {
        if let Err(err) = cluster.publish(&channel, bytes).await {
            tracing::warn!(error = %err, engine = cluster.engine_name(), what, "publishing failed");
        }
    }
}

/// Listens to `channel` until shutdown, subscribing again with backoff whenever the
/// subscription is lost. `subscribed` runs after every (re)subscription (payloads may have been
/// missed meanwhile); `receive` gets each payload and returns `false` once its owner is gone.
pub async fn listen(
    cluster: Cluster,
    channel: String,
    what: &'static str,
    mut subscribed: impl FnMut(),
    mut receive: impl FnMut(&[u8]) -> bool,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut stream = cluster.subscribe(&channel).await?;
            subscribed();
            while let Some(payload) = stream.next().await {
                if !receive(&payload) {
                    break;
                }
            }
            Ok::<(), EngineError>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = session => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, what, "channel unavailable");
                } else {
                    tracing::warn!(what, "channel lost; subscribing again");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
