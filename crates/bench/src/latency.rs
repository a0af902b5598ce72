//! Latency histograms: recorded in microseconds, summarised as percentiles in milliseconds.
//!
//! Thousands of connection tasks record into one histogram per kind. Locking it per sample
//! would make the tasks contend, and a histogram per connection costs tens of KiB each, so
//! every task buffers samples in a small [`LocalSamples`] and merges them a batch at a time.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency tracked exactly (one hour, in µs); larger values are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;
/// Samples a task buffers before taking the lock.
const BATCH: usize = 256;

/// A shared histogram of latencies in microseconds.
pub struct Latency {
    histogram: Mutex<Histogram<u64>>,
}

/// Percentiles of one latency kind, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn new() -> Result<Latency, hdrhistogram::CreationError> {
        // Three significant digits: 0.1% resolution at every magnitude.
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3)?;
        Ok(Latency {
            histogram: Mutex::new(histogram),
        })
    }

    /// Adds a batch of samples (microseconds).
    pub fn record_all(&self, samples: &[u64]) {
        let mut histogram = self
            .histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &micros in samples {
            histogram.saturating_record(micros.clamp(1, MAX_MICROS));
        }
    }

    pub fn summary(&self) -> LatencySummary {
        let histogram = self
            .histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        summarize(&histogram)
    }
}

fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    LatencySummary {
        count: histogram.len(),
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
        mean_ms: histogram.mean() / 1000.0,
    }
}

/// A task's buffer in front of a shared [`Latency`].
pub struct LocalSamples<'a> {
    target: &'a Latency,
    buffer: Vec<u64>,
}

impl<'a> LocalSamples<'a> {
    pub fn new(target: &'a Latency) -> Self {
        LocalSamples {
            target,
            buffer: Vec::with_capacity(BATCH),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.record_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.buffer.push(micros);
        if self.buffer.len() >= BATCH {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.buffer.is_empty() {
            self.target.record_all(&self.buffer);
            self.buffer.clear();
        }
    }
}

impl Drop for LocalSamples<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let latency = Latency::new().unwrap();
        let samples: Vec<u64> = (1..=10_000).collect(); // 1 µs … 10 ms
        latency.record_all(&samples);
        let summary = latency.summary();
        assert_eq!(summary.count, 10_000);
        assert!(close(summary.p50_ms, 5.0), "{summary:?}");
        assert!(close(summary.p90_ms, 9.0), "{summary:?}");
        assert!(close(summary.p99_ms, 9.9), "{summary:?}");
        assert!(close(summary.p999_ms, 9.99), "{summary:?}");
        assert!(close(summary.max_ms, 10.0), "{summary:?}");
        assert!(close(summary.mean_ms, 5.0005), "{summary:?}");
    }

    #[test]
    fn one_slow_outlier_shows_only_at_the_top() {
        let latency = Latency::new().unwrap();
        let mut samples = vec![1_000u64; 999]; // 1 ms
        samples.push(2_000_000); // 2 s
        latency.record_all(&samples);
        let summary = latency.summary();
        assert!(close(summary.p50_ms, 1.0) && close(summary.p99_ms, 1.0));
        assert!(close(summary.max_ms, 2000.0), "{summary:?}");
    }

    #[test]
    fn empty_is_all_zero_and_extremes_are_clamped() {
        let latency = Latency::new().unwrap();
        assert_eq!(latency.summary(), LatencySummary::default());
        latency.record_all(&[0, u64::MAX]);
        let summary = latency.summary();
        assert_eq!(summary.count, 2);
        assert!(close(summary.max_ms, MAX_MICROS as f64 / 1000.0));
    }

    #[test]
    fn local_buffers_reach_the_histogram_in_batches_and_on_drop() {
        let latency = Latency::new().unwrap();
        {
            let mut local = LocalSamples::new(&latency);
            for _ in 0..BATCH {
                local.record(Duration::from_millis(3));
            }
            assert_eq!(latency.summary().count, BATCH as u64);
            local.record(Duration::from_millis(3));
        }
        assert_eq!(latency.summary().count, BATCH as u64 + 1);
    }
}
