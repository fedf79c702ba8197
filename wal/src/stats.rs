//! Counters and latency histograms the writer keeps (read by metrics exporters and benches).

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: relative error of a percentile is at most 1/8.
const SUB_BUCKETS: usize = 8;
/// Powers of two covered (1 us .. ~2^40 us).
const OCTAVES: usize = 40;

/// A lock-free log-linear histogram of microsecond values.
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..SUB_BUCKETS * OCTAVES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let octave = 63 - value.leading_zeros() as usize; // >= 3
    let shift = octave - 3;
    let sub = ((value >> shift) as usize) & (SUB_BUCKETS - 1);
    ((octave - 2) * SUB_BUCKETS + sub).min(SUB_BUCKETS * OCTAVES - 1)
}

fn bucket_upper(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let octave = index / SUB_BUCKETS + 2;
    let sub = (index % SUB_BUCKETS) as u64;
    ((SUB_BUCKETS as u64 + sub + 1) << (octave - 3)) - 1
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The value at quantile `q` (0.0..=1.0), as the upper bound of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_upper(index);
            }
        }
        bucket_upper(counts.len() - 1)
    }
}

/// What the writer has done since the log was opened.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records appended durably.
    pub records: AtomicU64,
    /// Frame bytes written.
    pub bytes: AtomicU64,
    /// fdatasync calls that made appends durable (one per group of written batches).
    pub batches: AtomicU64,
    /// Of `batches`, those the encoder synced itself (nothing else queued or syncing).
    pub encoder_syncs: AtomicU64,
    /// Segments created.
    pub segments_created: AtomicU64,
    /// fdatasync latency, microseconds.
    pub fsync_us: Histogram,
    /// Records per fdatasync.
    pub batch_records: Histogram,
    /// Time from an append request's creation to its answer, microseconds.
    pub append_us: Histogram,
    /// Time from an append request's creation until the encoder picks it up, microseconds.
    pub queue_us: Histogram,
}

impl Stats {
    /// Average records per batch.
    pub fn batch_size_avg(&self) -> f64 {
        let batches = self.batches.load(Ordering::Relaxed);
        if batches == 0 {
            return 0.0;
        }
        self.records.load(Ordering::Relaxed) as f64 / batches as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Percentiles land within one bucket (12.5%) of the true value.
    #[test]
    fn quantiles_are_close() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((500..=563).contains(&p50), "p50 {p50}");
        assert!((990..=1114).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
    }
}
