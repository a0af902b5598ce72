//! Delivery accounting: did one subscriber see every message of its room exactly once and in
//! order?
//!
//! The contract promises each subscriber `message.new` in strictly increasing `seq` without
//! gaps, starting right after the `last_seq` its `subscribed` answer named. A tracker per
//! (room, connection) remembers which seqs arrived in a bitmap (one bit per message, so a
//! million messages cost 128 KiB), which is enough to tell the three failures apart:
//! - **duplicate**: a seq that arrived before (or was at or below the subscription point);
//! - **out of order**: a new seq lower than the highest seen so far (a gap filled late);
//! - **missing**: a seq up to the room's last one that never arrived.
//!
//! The same tracker checks `message.updated` by `rev` (the `edits` scenario): within a room
//! `rev` only grows, so a rev at or below the subscription's `last_rev` or one already
//! received is a duplicate and a rev lower than the highest so far is out of order. Revs need
//! not be consecutive (the contract says clients must not count on it), so what is missing is
//! counted instead: every acknowledged change must reach every subscriber once
//! ([`SeqTracker::delivery_of`]).

use nebula_wire::Seq;
use serde::Serialize;

/// Seqs further than this above the subscription point are not tracked individually (a
/// server bug could send absurd values; the bitmap must not grow without bound).
const MAX_TRACKED: u64 = 1 << 30;

/// What one subscriber saw of one room.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// `last_seq` at subscription: everything at or below it is history, not expected live.
    base: Seq,
    highest: Seq,
    seen: Vec<u64>,
    received: u64,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
}

/// Totals of one or more trackers, measured against the rooms' last seqs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// `message.new` events received.
    pub delivered: u64,
    /// Seqs each subscriber should have received: from its subscription point to its room's
    /// last seq.
    pub expected: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl Delivery {
    pub fn add(&mut self, other: Delivery) {
        self.delivered += other.delivered;
        self.expected += other.expected;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
    }

    /// No message missing, repeated or reordered.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.out_of_order == 0
    }
}

impl SeqTracker {
    /// A subscriber whose `subscribed` answer said `last_seq`.
    pub fn new(last_seq: Seq) -> SeqTracker {
        SeqTracker {
            base: last_seq,
            highest: last_seq,
            seen: Vec::new(),
            received: 0,
            distinct: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    /// The highest seq received so far (the subscription point before any).
    pub fn highest(&self) -> Seq {
        self.highest
    }

    /// How many different seqs above the subscription point arrived.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Records one `message.new`.
    pub fn record(&mut self, seq: Seq) {
        self.received += 1;
        let Some(offset) = seq
            .checked_sub(self.base + 1)
            .and_then(|offset| u64::try_from(offset).ok())
        else {
            // At or below the subscription point: the subscriber already had it.
            self.duplicates += 1;
            return;
        };
        if offset >= MAX_TRACKED {
            self.out_of_order += 1;
            return;
        }
        let (word, bit) = ((offset / 64) as usize, 1u64 << (offset % 64));
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.distinct += 1;
        if seq < self.highest {
            self.out_of_order += 1;
        } else {
            self.highest = seq;
        }
    }

    /// The verdict, given the room's last seq as known to the whole run (from acks and every
    /// subscriber), so a subscriber that missed the room's final messages is caught too.
    pub fn delivery(&self, room_last_seq: Seq) -> Delivery {
        let last = room_last_seq.max(self.highest);
        let expected = u64::try_from(last - self.base).unwrap_or(0);
        Delivery {
            delivered: self.received,
            expected,
            missing: expected.saturating_sub(self.distinct),
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
        }
    }

    /// The verdict for a counter that may skip values (`rev`), given how many different
    /// values this subscriber should have received.
    pub fn delivery_of(&self, expected: u64) -> Delivery {
        Delivery {
            delivered: self.received,
            expected,
            missing: expected.saturating_sub(self.distinct),
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(base: Seq, seqs: &[Seq]) -> SeqTracker {
        let mut tracker = SeqTracker::new(base);
        for &seq in seqs {
            tracker.record(seq);
        }
        tracker
    }

    #[test]
    fn a_perfect_stream_is_clean() {
        let delivery = tracker(0, &[1, 2, 3, 4]).delivery(4);
        assert_eq!(
            delivery,
            Delivery {
                delivered: 4,
                expected: 4,
                ..Delivery::default()
            }
        );
        assert!(delivery.is_clean());
    }

    #[test]
    fn counts_from_the_subscription_point() {
        let delivery = tracker(10, &[11, 12]).delivery(12);
        assert_eq!((delivery.expected, delivery.missing), (2, 0));
    }

    #[test]
    fn a_gap_is_missing() {
        let delivery = tracker(0, &[1, 2, 4, 5]).delivery(5);
        assert_eq!((delivery.missing, delivery.out_of_order), (1, 0));
        assert!(!delivery.is_clean());
    }

    #[test]
    fn messages_after_the_last_received_are_missing() {
        // The room reached seq 6 (known from an ack) but this subscriber stopped at 3.
        let delivery = tracker(0, &[1, 2, 3]).delivery(6);
        assert_eq!((delivery.expected, delivery.missing), (6, 3));
    }

    #[test]
    fn a_late_seq_is_out_of_order_not_missing() {
        let delivery = tracker(0, &[1, 3, 2, 4]).delivery(4);
        assert_eq!(
            (delivery.missing, delivery.out_of_order, delivery.duplicates),
            (0, 1, 0)
        );
    }

    #[test]
    fn a_repeat_is_a_duplicate_not_out_of_order() {
        let delivery = tracker(0, &[1, 2, 2, 3, 1]).delivery(3);
        assert_eq!(
            (
                delivery.delivered,
                delivery.duplicates,
                delivery.out_of_order
            ),
            (5, 2, 0)
        );
        assert_eq!(delivery.missing, 0);
    }

    #[test]
    fn history_below_the_subscription_point_is_a_duplicate() {
        let delivery = tracker(5, &[5, 6]).delivery(6);
        assert_eq!((delivery.duplicates, delivery.expected), (1, 1));
    }

    #[test]
    fn tracks_across_bitmap_words() {
        let seqs: Vec<Seq> = (1..=200).collect();
        let mut delivery = tracker(0, &seqs).delivery(200);
        assert!(delivery.is_clean());
        delivery.add(tracker(0, &[64, 65, 130]).delivery(130));
        assert_eq!(delivery.missing, 127);
        assert_eq!(delivery.delivered, 203);
    }

    #[test]
    fn revs_may_skip_but_must_grow() {
        // Subscribed at rev 40; other changes in the room took revs 42 and 44.
        let clean = tracker(40, &[41, 43, 45, 46]);
        assert_eq!(clean.distinct(), 4);
        assert!(clean.delivery_of(4).is_clean());
        let late = tracker(40, &[41, 45, 43, 46]).delivery_of(4);
        assert_eq!(
            (late.out_of_order, late.duplicates, late.missing),
            (1, 0, 0)
        );
        assert!(!late.is_clean());
        let repeated = tracker(40, &[41, 43, 43, 40]).delivery_of(2);
        assert_eq!((repeated.duplicates, repeated.out_of_order), (2, 0));
        assert!(!repeated.is_clean());
        let short = tracker(40, &[41, 43]).delivery_of(3);
        assert_eq!((short.missing, short.expected), (1, 3));
    }

    #[test]
    fn absurd_seqs_do_not_grow_memory() {
        let mut tracker = SeqTracker::new(0);
        tracker.record(Seq::MAX);
        assert_eq!(tracker.delivery(0).out_of_order, 1);
        assert!(tracker.seen.is_empty());
    }
}
