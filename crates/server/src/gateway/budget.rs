//! Per-connection frame budget: a token bucket (GCRA) for every frame that is not a message.
//!
//! Only the bucket's "theoretical arrival time" lives in the connection (16 bytes); the rate
//! comes from the config at each call, so an idle connection pays nothing else for it.

use std::time::{Duration, Instant};

/// Bursts allowed, as a multiple of the per-second rate: a client that reconnects subscribes
/// to all its rooms at once.
pub(super) const BURST_FACTOR: u32 = 5;

#[derive(Debug)]
pub(super) struct FrameBudget {
    tat: Instant,
}

impl FrameBudget {
    pub(super) fn new() -> Self {
        FrameBudget {
            tat: Instant::now(),
        }
    }

    /// Takes one frame at `per_second` (0: unlimited); `false` when the bucket is empty.
    pub(super) fn take(&mut self, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let interval = Duration::from_secs(1) / per_second;
        let now = Instant::now();
        let next = self.tat.max(now) + interval;
        // A full bucket holds `BURST_FACTOR` seconds' worth of frames.
        if next.duration_since(now) > Duration::from_secs(BURST_FACTOR.into()) {
            return false;
        }
        self.tat = next;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut budget = FrameBudget::new();
        let taken = (0..1000).filter(|_| budget.take(20)).count();
        // The burst, plus at most a token or two refilled while the loop ran.
        assert!((100..=102).contains(&taken), "{taken}");
        assert!(FrameBudget::new().take(0));
    }
}
