//! Counters every connection task updates while the run goes on, read by the progress
//! display and the drain check.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use nebula_wire::Seq;

use crate::latency::Latency;

/// Shared by all tasks of one run. Plain relaxed atomics: each counter is independent and
/// only read for display or compared after the tasks that write it have quiesced.
pub struct Live {
    /// The one clock every send stamp and latency is measured on.
    origin: Instant,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    /// Sends answered with an `error` event instead of an ack.
    pub failed: AtomicU64,
    pub delivered: AtomicU64,
    /// `error` events of any kind.
    pub errors: AtomicU64,
    /// Frames that are neither messages, acks nor errors (presence, `subscribed`, …): how the
    /// run sees the traffic that connecting everyone causes die down.
    pub other: AtomicU64,
    /// Sockets currently open.
    pub open: AtomicI64,
    pub ack_latency: Latency,
    pub e2e_latency: Latency,
    /// Highest acknowledged seq per room index: what every subscriber must reach.
    room_acked: Vec<AtomicI64>,
}

/// A consistent-enough copy of the counters for display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub delivered: u64,
    pub errors: u64,
    pub open: i64,
}

impl Live {
    pub fn new(rooms: usize) -> anyhow::Result<Live> {
        Ok(Live {
            origin: Instant::now(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            other: AtomicU64::new(0),
            open: AtomicI64::new(0),
            ack_latency: Latency::new()?,
            e2e_latency: Latency::new()?,
            room_acked: (0..rooms).map(|_| AtomicI64::new(0)).collect(),
        })
    }

    /// Microseconds since the run's clock origin.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn acked_seq(&self, room: usize, seq: Seq) {
        if let Some(highest) = self.room_acked.get(room) {
            highest.fetch_max(seq, Ordering::Relaxed);
        }
    }

    pub fn room_acked(&self, room: usize) -> Seq {
        self.room_acked
            .get(room)
            .map_or(0, |highest| highest.load(Ordering::Relaxed))
    }

    pub fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
