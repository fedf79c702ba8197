//! Segment files: naming, and scanning a segment's bytes for recovery and verification.
//!
//! A scan walks frames from the header to the first position that is not a valid frame with
//! the next LSN. What comes after that position decides what it is:
//! - nothing valid after it: the end of the log (or a torn tail, if it was not all zeros);
//! - valid frames after it that were written before the stopping LSN was durable (their
//!   `unsynced_depth` says so): the remains of one unsynced write, also a torn tail;
//! - any valid frame written after the stopping LSN was durable, or any valid frame at all
//!   after the stop in a sealed (non-last) segment: corruption of acknowledged data.

use crate::Lsn;
use crate::format::{
    FRAME_HEADER_BYTES, FrameCheck, FrameFault, FrameHeader, SEGMENT_HEADER_BYTES, chain_next,
    check_frame, frame_crc,
};

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of segment files being prepared (never hold acknowledged data).
pub const TEMP_SUFFIX: &str = ".tmp";
/// A sparse index entry is kept every this many bytes of frames.
pub const INDEX_STRIDE_BYTES: u64 = 64 * 1024;

/// The file name of the segment whose first record has `base_lsn`.
pub fn segment_name(base_lsn: Lsn) -> String {
    format!("{base_lsn:020}{SEGMENT_SUFFIX}")
}

/// The base LSN encoded in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An all-zero header or no room for another frame: the written data ends here.
    Clean,
    /// Bytes that are not the valid next frame.
    Fault(FrameFault),
}

/// The result of scanning one segment's frames.
#[derive(Clone, Debug)]
pub struct Scan {
    /// Offset just past the last valid frame.
    pub end_offset: u64,
    /// LSN the next frame would carry.
    pub next_lsn: Lsn,
    /// Hash chain after the last valid frame.
    pub chain: u64,
    /// Why the scan stopped at `end_offset`.
    pub stop: Stop,
    /// Sparse index of (LSN, frame offset).
    pub index: Vec<(Lsn, u64)>,
}

/// Scans frames of a segment whose bytes (header included) are `bytes`.
/// `visit` sees every valid frame with its offset and payload.
pub fn scan_frames(
    bytes: &[u8],
    base_lsn: Lsn,
    chain_start: u64,
    record_bytes_max: u32,
    mut visit: impl FnMut(&FrameHeader, u64, &[u8]),
) -> Scan {
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut next_lsn = base_lsn;
    let mut chain = chain_start;
    let mut index = Vec::new();
    let mut last_indexed: Option<usize> = None;
    let stop = loop {
        if bytes.len() - offset < FRAME_HEADER_BYTES {
            if bytes[offset..].iter().all(|&b| b == 0) {
                break Stop::Clean;
            }
            break Stop::Fault(FrameFault::Truncated);
        }
        match check_frame(&bytes[offset..], record_bytes_max, Some(next_lsn)) {
            FrameCheck::Valid(header) => {
                if last_indexed.is_none_or(|at| (offset - at) as u64 >= INDEX_STRIDE_BYTES) {
                    index.push((header.lsn, offset as u64));
                    last_indexed = Some(offset);
                }
                let payload_end = offset + header.frame_bytes() as usize;
                visit(
                    &header,
                    offset as u64,
                    &bytes[offset + FRAME_HEADER_BYTES..payload_end],
                );
                chain = chain_next(chain, header.crc, header.lsn);
                next_lsn += 1;
                offset = payload_end;
            }
            FrameCheck::Zero => break Stop::Clean,
            FrameCheck::Invalid(fault) => break Stop::Fault(fault),
        }
    };
    Scan {
        end_offset: offset as u64,
        next_lsn,
        chain,
        stop,
        index,
    }
}

/// A valid frame found after the point where a scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// Offset of the frame.
    pub offset: u64,
    /// Its LSN.
    pub lsn: Lsn,
}

/// Looks past a scan's stop for valid frames that prove acknowledged data was lost.
///
/// With `sealed` (a segment that has a successor, so every byte of it was synced) any valid
/// frame is evidence. Otherwise only a frame written after `expected_lsn` was already durable
/// is: frames of the same unsynced write may legitimately survive a torn write.
pub fn find_evidence(
    bytes: &[u8],
    stop_offset: u64,
    expected_lsn: Lsn,
    record_bytes_max: u32,
    sealed: bool,
) -> Option<Evidence> {
    let start = usize::try_from(stop_offset).ok()?;
    let last_nonzero = last_nonzero(bytes)?;
    if last_nonzero < start {
        return None;
    }
    let mut offset = start + 1;
    while offset + FRAME_HEADER_BYTES <= bytes.len() && offset <= last_nonzero {
        match plausible_frame(&bytes[offset..], expected_lsn, record_bytes_max) {
            Some(header) => {
                if sealed || header.durable_lsn_at_write() >= expected_lsn {
                    return Some(Evidence {
                        offset: offset as u64,
                        lsn: header.lsn,
                    });
                }
                offset += header.frame_bytes() as usize;
            }
            None => offset += 1,
        }
    }
    None
}

/// Index of the last non-zero byte, scanning eight bytes at a time from the end (preallocated
/// segments end in megabytes of zeros).
pub fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let tail = bytes.len() % 8;
    if let Some(i) = bytes[bytes.len() - tail..].iter().rposition(|&b| b != 0) {
        return Some(bytes.len() - tail + i);
    }
    let words = &bytes[..bytes.len() - tail];
    let word = words
        .chunks_exact(8)
        .rposition(|w| w.iter().fold(0u8, |acc, b| acc | b) != 0)?;
    let start = word * 8;
    words[start..start + 8]
        .iter()
        .rposition(|&b| b != 0)
        .map(|i| start + i)
}

/// A cheap pre-filter, then a full check, of a frame that may start at `bytes[0]`.
fn plausible_frame(bytes: &[u8], expected_lsn: Lsn, record_bytes_max: u32) -> Option<FrameHeader> {
    let header = FrameHeader::parse(bytes.first_chunk::<FRAME_HEADER_BYTES>()?);
    let frames_left = (bytes.len() / FRAME_HEADER_BYTES) as u64;
    if header.lsn < expected_lsn.max(1) || header.lsn > expected_lsn + frames_left {
        return None;
    }
    if header.unsynced_depth == 0 || u64::from(header.unsynced_depth) > header.lsn {
        return None;
    }
    if header.payload_len > record_bytes_max {
        return None;
    }
    let end = FRAME_HEADER_BYTES + header.payload_len as usize;
    if end > bytes.len() {
        return None;
    }
    (frame_crc(&bytes[..end]) == header.crc).then_some(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{RecordMeta, SegmentHeader, encode_frame};

    fn segment(frames: &[(Lsn, u32)]) -> Vec<u8> {
        let header = SegmentHeader {
            segment_bytes: 4096,
            base_lsn: 1,
            chain_start: 0,
        };
        let mut bytes = header.encode().to_vec();
        for &(lsn, depth) in frames {
            encode_frame(
                &mut bytes,
                lsn,
                depth,
                RecordMeta::default(),
                &[lsn as u8; 40],
            );
        }
        bytes.resize(4096, 0);
        bytes
    }

    // The word-wise search agrees with a byte-wise one.
    #[test]
    fn last_nonzero_matches_bytewise() {
        for len in [0usize, 1, 7, 8, 9, 63, 64, 100] {
            for at in 0..len {
                let mut bytes = vec![0u8; len];
                bytes[at] = 3;
                assert_eq!(last_nonzero(&bytes), Some(at), "len {len} at {at}");
            }
            assert_eq!(last_nonzero(&vec![0u8; len]), None);
        }
    }

    // Names sort by LSN and round-trip; other files are not segments.
    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(17)), Some(17));
        assert_eq!(parse_segment_name("00000000000000000017.wal.tmp"), None);
        assert_eq!(parse_segment_name("17.wal"), None);
        assert!(segment_name(9) < segment_name(10));
    }

    // A clean segment scans to its last frame and stops cleanly.
    #[test]
    fn clean_scan() {
        let bytes = segment(&[(1, 1), (2, 2), (3, 1)]);
        let scan = scan_frames(&bytes, 1, 0, 1024, |_, _, _| {});
        assert_eq!((scan.next_lsn, scan.stop), (4, Stop::Clean));
        assert_eq!(find_evidence(&bytes, scan.end_offset, 4, 1024, false), None);
    }

    // Damage to frame 2 of a write whose frames 2..3 were unsynced is a torn tail, but a later
    // frame written after LSN 2 was durable (depth 1 at LSN 4) is evidence of corruption.
    #[test]
    fn torn_versus_corrupt() {
        let frame = (FRAME_HEADER_BYTES + 40) as u64;
        let mut torn = segment(&[(1, 1), (2, 1), (3, 2)]);
        torn[SEGMENT_HEADER_BYTES + frame as usize + 30] ^= 0xff;
        let scan = scan_frames(&torn, 1, 0, 1024, |_, _, _| {});
        assert!(matches!(scan.stop, Stop::Fault(FrameFault::BadChecksum)));
        assert_eq!(find_evidence(&torn, scan.end_offset, 2, 1024, false), None);
        assert!(find_evidence(&torn, scan.end_offset, 2, 1024, true).is_some());

        let mut corrupt = segment(&[(1, 1), (2, 1), (3, 1)]);
        corrupt[SEGMENT_HEADER_BYTES + frame as usize + 30] ^= 0xff;
        let scan = scan_frames(&corrupt, 1, 0, 1024, |_, _, _| {});
        let evidence = find_evidence(&corrupt, scan.end_offset, 2, 1024, false);
        assert_eq!(
            evidence,
            Some(Evidence {
                offset: SEGMENT_HEADER_BYTES as u64 + 2 * frame,
                lsn: 3
            })
        );
    }
}
