//! Counters every connection task updates while the run goes on, read by the progress
//! display and the drain check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use nebula_wire::Seq;
use uuid::Uuid;

use crate::latency::Latency;

/// Shared by all tasks of one run. Plain relaxed atomics: each counter is independent and
/// only read for display or compared after the tasks that write it have quiesced.
pub struct Live {
    /// The one clock every send stamp and latency is measured on.
    origin: Instant,
    /// Sends (`edits`: changes requested).
    pub sent: AtomicU64,
    /// Sends acknowledged (`edits`: changes answered with success).
    pub acked: AtomicU64,
    /// Sends answered with an `error` event instead of an ack (`edits`: changes refused or
    /// failed).
    pub failed: AtomicU64,
    /// `message.new` and `message.updated` events received by all subscribers.
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
    /// When each change to a base message started (`edits`).
    pub changes: ChangeLog,
    /// Highest acknowledged seq per room index: what every subscriber must reach.
    room_acked: Vec<AtomicI64>,
    /// Acknowledged changes per room index: how many `message.updated` every subscriber
    /// must receive.
    room_changes: Vec<AtomicU64>,
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
    /// Counters for `rooms` rooms; `messages` are the ids of the messages changes may be made
    /// to (see [`ChangeLog`]).
    pub fn new(rooms: usize, messages: impl IntoIterator<Item = Uuid>) -> anyhow::Result<Live> {
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
            changes: ChangeLog::new(messages),
            room_acked: (0..rooms).map(|_| AtomicI64::new(0)).collect(),
            room_changes: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
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

    /// One more change acknowledged in `room`.
    pub fn changed(&self, room: usize) {
        if let Some(changes) = self.room_changes.get(room) {
            bump(changes);
        }
    }

    pub fn room_changes(&self, room: usize) -> u64 {
        self.room_changes
            .get(room)
            .map_or(0, |changes| changes.load(Ordering::Relaxed))
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

/// When each change to each changeable message started, in the order they were made.
///
/// A sender never has two changes to one message in flight: it waits for one to be answered
/// (after its commit) before making the next. So the changes to a message commit in the
/// order they started, and the n-th `message.updated` of that message a subscriber receives
/// is the n-th change to it: its latency is counted from that change's start, with no
/// timestamp carried through the server.
pub struct ChangeLog {
    index: HashMap<Uuid, usize>,
    started_us: Vec<Mutex<Vec<u64>>>,
}

impl ChangeLog {
    pub fn new(messages: impl IntoIterator<Item = Uuid>) -> ChangeLog {
        let index: HashMap<Uuid, usize> = messages
            .into_iter()
            .enumerate()
            .map(|(slot, id)| (id, slot))
            .collect();
        let started_us = (0..index.len()).map(|_| Mutex::new(Vec::new())).collect();
        ChangeLog { index, started_us }
    }

    /// Messages in the log.
    pub fn len(&self) -> usize {
        self.started_us.len()
    }

    /// The log's slot for a message, if changes to it are logged.
    pub fn slot(&self, message_id: &Uuid) -> Option<usize> {
        self.index.get(message_id).copied()
    }

    /// A change to the message in `slot` starts at `at_us`.
    pub fn start(&self, slot: usize, at_us: u64) {
        self.with(slot, |started| started.push(at_us));
    }

    /// The last change started in `slot` will make no `message.updated` (it was refused).
    pub fn withdraw(&self, slot: usize) {
        self.with(slot, |started| {
            started.pop();
        });
    }

    /// When the `nth` (0-based) change to the message in `slot` started.
    pub fn started_at(&self, slot: usize, nth: usize) -> Option<u64> {
        self.with(slot, |started| started.get(nth).copied())
            .flatten()
    }

    fn with<T>(&self, slot: usize, f: impl FnOnce(&mut Vec<u64>) -> T) -> Option<T> {
        let started = self.started_us.get(slot)?;
        Some(f(&mut started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_log_pairs_the_nth_update_with_the_nth_change() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let log = ChangeLog::new([a, b]);
        assert_eq!(log.len(), 2);
        let slot = log.slot(&b).unwrap();
        assert_eq!(log.slot(&Uuid::new_v4()), None);
        log.start(slot, 100);
        log.start(slot, 250);
        log.withdraw(slot); // refused: no update will come for it
        log.start(slot, 300);
        assert_eq!(log.started_at(slot, 0), Some(100));
        assert_eq!(log.started_at(slot, 1), Some(300));
        assert_eq!(log.started_at(slot, 2), None);
        assert_eq!(log.started_at(7, 0), None);
    }
}
