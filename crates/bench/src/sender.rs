//! The write half of a sending connection: `message.send` at a fixed pace, or as fast as the
//! in-flight window allows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_util::sync::CancellationToken;

use crate::client::{Connection, SharedSink};
use crate::frames::SendTemplate;
use crate::live::{Live, bump};

/// Frames written before one flush when sending flat out: amortises the syscall.
const FLUSH_EVERY: usize = 64;
/// After `stop`, how long a send already under way may take to go out.
const SEND_GRACE: Duration = Duration::from_secs(5);

/// How one connection sends.
pub struct SendPlan {
    pub template: SendTemplate,
    /// Time between sends; `None` = flat out.
    pub interval: Option<Duration>,
    /// When the first send is due: senders are staggered over one interval so they do not
    /// all fire on the same tick.
    pub first_at: Instant,
}

/// A connection handed back after sending, with its failures by kind (for `message.send`,
/// the write error that ended sending early, if any).
pub type Finished = (Connection, BTreeMap<String, u64>);

/// Sends until `stop` is cancelled, then hands the connection back. A write error ends
/// sending on this connection and is returned beside it.
pub async fn send_until(
    connection: Connection,
    plan: SendPlan,
    live: Arc<Live>,
    stop: CancellationToken,
) -> Finished {
    let sink = connection.sink.clone();
    let mut sending = Sending {
        sink: &sink,
        window: connection.window.clone(),
        template: &plan.template,
        live: &live,
        stop: &stop,
        next: 0,
    };
    let result = match plan.interval {
        Some(interval) => sending.paced(interval, plan.first_at).await,
        None => sending.flat_out().await,
    };
    let errors = result
        .err()
        .map(|err| (format!("send failed: {err}"), 1))
        .into_iter()
        .collect();
    (connection, errors)
}

struct Sending<'a> {
    sink: &'a SharedSink,
    window: Arc<Semaphore>,
    template: &'a SendTemplate,
    live: &'a Live,
    stop: &'a CancellationToken,
    /// Number of the next send on this connection.
    next: u64,
}

impl Sending<'_> {
    /// One send per tick. Ticks missed while the window was full are skipped rather than
    /// sent in a burst later, so the offered rate never exceeds the target; the report's
    /// sent/s shows any shortfall.
    async fn paced(
        &mut self,
        interval: Duration,
        first_at: Instant,
    ) -> Result<(), tungstenite::Error> {
        let mut ticks = tokio::time::interval_at(first_at, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            if !self.reserve().await {
                return Ok(());
            }
            let frame = self.next_frame();
            let sink = self.sink;
            within_grace(
                self.stop,
                async move { sink.lock().await.send(frame).await },
            )
            .await?;
        }
    }

    /// As many sends as the window allows: wait for one free slot, then take every other free
    /// slot at once and write them with one flush.
    async fn flat_out(&mut self) -> Result<(), tungstenite::Error> {
        let mut batch = Vec::with_capacity(FLUSH_EVERY);
        while self.reserve().await {
            batch.push(self.next_frame());
            while batch.len() < FLUSH_EVERY && !self.stop.is_cancelled() {
                match self.window.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                batch.push(self.next_frame());
            }
            let (sink, frames) = (self.sink, batch.drain(..));
            within_grace(self.stop, async move {
                let mut sink = sink.lock().await;
                for frame in frames {
                    sink.feed(frame).await?;
                }
                sink.flush().await
            })
            .await?;
        }
        Ok(())
    }

    /// Waits for a free slot in the window; false once `stop` is cancelled.
    async fn reserve(&self) -> bool {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            permit = self.window.acquire() => match permit {
                Ok(permit) => {
                    // Given back by the reader when the ack (or error) arrives.
                    permit.forget();
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// The next frame, stamped now and counted as sent.
    fn next_frame(&mut self) -> Frame {
        let frame = self.template.frame(self.next, self.live.now_us());
        self.next += 1;
        bump(&self.live.sent);
        Frame::text(frame)
    }
}

/// Awaits a write, giving up `SEND_GRACE` after `stop` if the server stopped reading.
async fn within_grace(
    stop: &CancellationToken,
    write: impl Future<Output = Result<(), tungstenite::Error>>,
) -> Result<(), tungstenite::Error> {
    tokio::select! {
        result = write => result,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(SEND_GRACE).await;
        } => Err(tungstenite::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the server stopped reading",
        ))),
    }
}
