//! A node-to-node channel on the cluster engine: fire-and-forget announcements (calls, account
//! standings) published in order and listened to with resubscription, until shutdown.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Cluster, EngineError};

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long [`open`] waits for the engine to confirm the first subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a service's side of `channel`: a task that [`publish`]es what arrives on `queue`, and
/// one that [`listen`]s. Returns once the first subscription is confirmed, or after a short
/// wait (a node still starts while the engine is away; the listener keeps trying).
#[allow(clippy::too_many_arguments)]
pub async fn open(
    cluster: &Cluster,
    channel: String,
    what: &'static str,
    queue: mpsc::UnboundedReceiver<Vec<u8>>,
    mut subscribed: impl FnMut() + Send + 'static,
    receive: impl FnMut(&[u8]) -> bool + Send + 'static,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(publish(cluster.clone(), channel.clone(), what, queue));
    let (ready, first) = oneshot::channel();
    let mut ready = Some(ready);
    tasks.spawn(listen(
        cluster.clone(),
        channel,
        what,
        move || {
            subscribed();
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        },
        receive,
        shutdown,
    ));
    let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, first).await;
}

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
