//! Tunables of the log. Every field documents its default and its bounds; [`Config::sanitize`]
//! rejects values outside them.

use crate::error::{Error, Result};
use crate::format::{FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};

/// Smallest allowed segment: 4 KiB (tests use tiny segments to exercise rollover).
pub const SEGMENT_BYTES_MIN: u64 = 4 * 1024;
/// Largest allowed segment: 4 GiB.
pub const SEGMENT_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Default segment size: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default record size limit: 16 MiB.
pub const RECORD_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;
/// Default bound of the append queue, in requests.
pub const QUEUE_DEPTH_MAX_DEFAULT: usize = 16 * 1024;
/// Default bound of one write batch (one write + one fdatasync), in bytes.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Default bound of one append request, in bytes.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// How new segment files are preallocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocation {
    /// Write zeros over the whole file ahead of time (in a background thread), so appends
    /// never allocate blocks and fdatasync flushes data only. Default; fastest here.
    ZeroFill,
    /// Only set the length (sparse file). Cheaper to create, slower to sync.
    Sparse,
}

/// Configuration of a log.
#[derive(Clone, Debug)]
pub struct Config {
    /// Size of each segment file. Default 64 MiB; between 4 KiB and 4 GiB; must hold at least
    /// one record of `record_bytes_max`.
    pub segment_bytes: u64,
    /// Largest payload of one record. Default 16 MiB; at least 1.
    pub record_bytes_max: u32,
    /// Append requests that may wait for the writer; appenders wait (or `try_append` fails)
    /// beyond it. Default 16,384; at least 1.
    pub queue_depth_max: usize,
    /// Bytes gathered into one write + fdatasync. Default 8 MiB; at least 4 KiB.
    pub batch_bytes_max: usize,
    /// Largest single append request (a batch of records). Default 64 MiB; at least
    /// `record_bytes_max`.
    pub request_bytes_max: usize,
    /// How segments are preallocated. Default [`Preallocation::ZeroFill`].
    pub preallocation: Preallocation,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            record_bytes_max: RECORD_BYTES_MAX_DEFAULT,
            queue_depth_max: QUEUE_DEPTH_MAX_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            preallocation: Preallocation::ZeroFill,
        }
    }
}

impl Config {
    /// Small segments and records, for tests that want many rollovers.
    pub fn small_for_tests() -> Self {
        Self {
            segment_bytes: 8 * 1024,
            record_bytes_max: 1024,
            queue_depth_max: 1024,
            batch_bytes_max: 16 * 1024,
            request_bytes_max: 1024 * 1024,
            preallocation: Preallocation::ZeroFill,
        }
    }

    /// Checks every bound; returns the config unchanged when it is valid.
    pub fn sanitize(self) -> Result<Self> {
        let bad = |msg: String| Err(Error::Config(msg));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            ));
        }
        if self.record_bytes_max == 0 {
            return bad("record_bytes_max must be at least 1".into());
        }
        let capacity = self.segment_bytes - (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES) as u64;
        if u64::from(self.record_bytes_max) > capacity {
            return bad(format!(
                "record_bytes_max {} does not fit a segment of {} bytes",
                self.record_bytes_max, self.segment_bytes
            ));
        }
        if self.queue_depth_max == 0 {
            return bad("queue_depth_max must be at least 1".into());
        }
        if self.batch_bytes_max < 4096 {
            return bad(format!(
                "batch_bytes_max {} is below 4096",
                self.batch_bytes_max
            ));
        }
        if self.request_bytes_max < self.record_bytes_max as usize {
            return bad("request_bytes_max must be at least record_bytes_max".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Defaults are valid and each bound is enforced.
    #[test]
    fn sanitize_enforces_bounds() {
        assert!(Config::default().sanitize().is_ok());
        assert!(Config::small_for_tests().sanitize().is_ok());
        let cases = [
            Config {
                segment_bytes: 1024,
                ..Config::default()
            },
            Config {
                record_bytes_max: 0,
                ..Config::default()
            },
            Config {
                record_bytes_max: 70 << 20,
                ..Config::default()
            },
            Config {
                queue_depth_max: 0,
                ..Config::default()
            },
            Config {
                batch_bytes_max: 10,
                ..Config::default()
            },
            Config {
                request_bytes_max: 10,
                ..Config::default()
            },
        ];
        for case in cases {
            assert!(case.clone().sanitize().is_err(), "{case:?} accepted");
        }
    }
}
