//! Helpers shared by the WAL integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use symphainy_wal::format::{FRAME_HEADER_BYTES, FrameCheck, SEGMENT_HEADER_BYTES, check_frame};
use symphainy_wal::segment::segment_name;
use symphainy_wal::{Config, Lsn, MemFs, Record, RecordMeta, Wal};

/// Directory used for logs on the in-memory file system.
pub fn mem_dir() -> PathBuf {
    PathBuf::from("/wal")
}

/// A deterministic record for `n`: never contains a zero byte, length 20..=120.
pub fn record(n: u64) -> Record {
    let len = 20 + (n * 37 % 101) as usize;
    Record {
        meta: RecordMeta {
            codec: 1,
            record_type: (n % 5) as u8,
            schema_version: 1,
        },
        payload: (0..len)
            .map(|i| ((n as usize * 131 + i * 7) % 255) as u8 + 1)
            .collect(),
    }
}

/// Opens a small-segment log on `fs`.
pub fn open_mem(fs: &MemFs) -> symphainy_wal::Result<Wal> {
    Wal::open_with(Arc::new(fs.clone()), mem_dir(), Config::small_for_tests())
}

/// Reads every record and checks each one equals `record(lsn)`; returns how many there are.
pub fn check_all(wal: &Wal) -> u64 {
    let records = wal.read(1, usize::MAX).expect("read back");
    for stored in &records {
        let want = record(stored.lsn);
        assert_eq!(
            (stored.meta, &stored.payload),
            (want.meta, &want.payload),
            "lsn {}",
            stored.lsn
        );
    }
    records.len() as u64
}

/// Offsets of every frame in a segment's bytes: (lsn, start, end).
pub fn frames_of(bytes: &[u8], base: Lsn) -> Vec<(Lsn, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut lsn = base;
    while let FrameCheck::Valid(h) = check_frame(&bytes[offset..], u32::MAX, Some(lsn)) {
        let end = offset + FRAME_HEADER_BYTES + h.payload_len as usize;
        out.push((lsn, offset, end));
        offset = end;
        lsn += 1;
    }
    out
}

/// Path of the segment whose base LSN is `base` in `dir`.
pub fn segment_path(dir: &Path, base: Lsn) -> PathBuf {
    dir.join(segment_name(base))
}

/// Segment base LSNs in `dir` on `fs`, ascending.
pub fn segment_bases(wal: &Wal) -> Vec<Lsn> {
    wal.catalog()
        .segment_list()
        .into_iter()
        .map(|(base, _)| base)
        .collect()
}

/// A small xorshift generator for reproducible randomness in tests.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
