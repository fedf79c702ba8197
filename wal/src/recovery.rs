//! Opening a log directory: list segments, check every header, LSN continuity and the hash
//! chain, scan every frame, classify where the data stops (clean end, torn tail, corruption)
//! and, for a writer, cut a torn tail off durably. Outcomes are data ([`RecoveryReport`]).

use std::path::Path;

use crate::Lsn;
use crate::catalog::SegmentInfo;
use crate::error::{Error, FaultLocation, Result};
use crate::format::{CHAIN_SEED, RecordMeta, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::fs::{FileHandle, FileSystem, join};
use crate::segment::{Stop, TEMP_SUFFIX, find_evidence, parse_segment_name, scan_frames};
use crate::writer::ActiveSegment;

/// Zero buffer size used when cutting a torn tail.
const ZERO_CHUNK_BYTES: usize = 256 * 1024;

/// A torn tail that recovery found (and, for a writer, cut off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where the intact data ends.
    pub location: FaultLocation,
    /// Bytes after that point that were not zero (discarded by a writer).
    pub discarded_bytes: u64,
    /// What was found at that point.
    pub reason: String,
}

/// What opening the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Number of segment files.
    pub segments: usize,
    /// Records in the log.
    pub records: u64,
    /// The last LSN (0 when empty).
    pub last_lsn: Lsn,
    /// Bytes of frames in the log.
    pub bytes: u64,
    /// Leftover temporary files removed (writer only).
    pub removed_temp_files: Vec<String>,
    /// A torn tail at the end of the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
}

/// Everything the opener learns from the directory.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: Vec<SegmentInfo>,
    pub next_lsn: Lsn,
    pub chain: u64,
    pub active: Option<ActiveSegment>,
    pub report: RecoveryReport,
}

/// Whether recovery may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Writer: remove temp files, cut a torn tail, keep the last segment open for appends.
    Repair,
    /// Reader: change nothing; a torn tail just ends the readable log.
    ReadOnly,
}

fn corruption(segment: &str, offset: u64, lsn: Lsn, reason: impl Into<String>) -> Error {
    Error::Corruption {
        location: FaultLocation {
            segment: segment.to_string(),
            offset,
            lsn,
        },
        reason: reason.into(),
    }
}

/// Recovers the log in `dir`. `visit` sees every valid record in order (for verification).
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    mode: Mode,
    mut visit: impl FnMut(Lsn, RecordMeta, &[u8]),
) -> Result<Recovered> {
    let names = fs
        .list(dir)
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut report = RecoveryReport::default();
    let mut segments: Vec<(Lsn, String)> = Vec::new();
    for name in names {
        if let Some(base) = parse_segment_name(&name) {
            segments.push((base, name));
        } else if name.ends_with(TEMP_SUFFIX) && mode == Mode::Repair {
            fs.remove_file(&join(dir, &name))
                .map_err(|e| Error::io(format!("removing leftover {name}"), e))?;
            report.removed_temp_files.push(name);
        }
    }
    segments.sort();
    let mut infos = Vec::with_capacity(segments.len());
    let mut next_lsn: Lsn = segments.first().map_or(1, |s| s.0);
    let mut chain = CHAIN_SEED;
    let mut active = None;
    let count = segments.len();
    // One buffer for every segment: its pages are faulted in once, not once per segment.
    let mut bytes = Vec::new();
    for (position, (base, name)) in segments.into_iter().enumerate() {
        let last = position + 1 == count;
        let path = join(dir, &name);
        let file = match mode {
            Mode::Repair if last => fs.open_write(&path, false),
            _ => fs.open_read(&path),
        }
        .map_err(|e| Error::io(format!("opening segment {name}"), e))?;
        read_all(file.as_ref(), &name, &mut bytes)?;
        let bytes = bytes.as_slice();
        let header = SegmentHeader::decode(bytes).map_err(|fault| {
            corruption(&name, 0, next_lsn, format!("bad segment header: {fault:?}"))
        })?;
        if header.base_lsn != base {
            return Err(corruption(
                &name,
                0,
                next_lsn,
                format!(
                    "header says base LSN {} but the file name says {base}",
                    header.base_lsn
                ),
            ));
        }
        if position > 0 && base != next_lsn {
            return Err(corruption(
                &name,
                0,
                next_lsn,
                format!(
                    "segment starts at LSN {base} but the previous one ends before LSN {next_lsn}: \
                 a segment is missing or out of order"
                ),
            ));
        }
        if (position > 0 || base == 1) && header.chain_start != chain {
            return Err(corruption(
                &name,
                0,
                base,
                "hash chain mismatch at segment start: an earlier segment was removed, \
                 replaced or edited",
            ));
        }
        let limit = (header.segment_bytes as usize).min(bytes.len());
        if limit < SEGMENT_HEADER_BYTES {
            return Err(corruption(
                &name,
                0,
                base,
                "segment shorter than its header",
            ));
        }
        let bytes = &bytes[..limit];
        // Readers bound a frame by the segment that holds it, not by the writer's current
        // record limit (which may have been configured differently when it was written).
        let record_bytes_max = u32::try_from(limit).unwrap_or(u32::MAX);
        let scan = scan_frames(
            bytes,
            base,
            header.chain_start,
            record_bytes_max,
            |h, _, payload| {
                let meta = RecordMeta {
                    codec: h.codec,
                    record_type: h.record_type,
                    schema_version: h.schema_version,
                };
                visit(h.lsn, meta, payload)
            },
        );
        report.records += scan.next_lsn - base;
        report.bytes += scan.end_offset - SEGMENT_HEADER_BYTES as u64;
        let evidence = find_evidence(
            bytes,
            scan.end_offset,
            scan.next_lsn,
            record_bytes_max,
            !last,
        );
        let stop_reason = match scan.stop {
            Stop::Clean => "data after the end of the written region".to_string(),
            Stop::Fault(fault) => fault.to_string(),
        };
        if let Some(evidence) = evidence {
            return Err(corruption(
                &name,
                scan.end_offset,
                scan.next_lsn,
                format!(
                    "{stop_reason}, followed by a valid frame with LSN {} at offset {}",
                    evidence.lsn, evidence.offset
                ),
            ));
        }
        let garbage_end = crate::segment::last_nonzero(bytes).map_or(0, |i| i as u64 + 1);
        if !last && (matches!(scan.stop, Stop::Fault(_)) || garbage_end > scan.end_offset) {
            return Err(corruption(
                &name,
                scan.end_offset,
                scan.next_lsn,
                stop_reason,
            ));
        }
        if last {
            if garbage_end > scan.end_offset {
                let location = FaultLocation {
                    segment: name.clone(),
                    offset: scan.end_offset,
                    lsn: scan.next_lsn,
                };
                let discarded_bytes = garbage_end - scan.end_offset;
                if mode == Mode::Repair {
                    tracing::warn!(%location, discarded_bytes, reason = %stop_reason,
                        "WAL recovery: cutting off a torn tail (unacknowledged data)");
                    zero_range(file.as_ref(), scan.end_offset, garbage_end)
                        .map_err(|e| Error::io(format!("cutting the torn tail of {name}"), e))?;
                }
                report.torn_tail = Some(TornTail {
                    location,
                    discarded_bytes,
                    reason: stop_reason,
                });
            }
            if mode == Mode::Repair {
                active = Some(ActiveSegment {
                    file,
                    segment_bytes: header.segment_bytes,
                    end_offset: scan.end_offset,
                });
            }
        }
        next_lsn = scan.next_lsn;
        chain = scan.chain;
        infos.push(SegmentInfo {
            base_lsn: base,
            name,
            segment_bytes: limit as u64,
            index: scan.index,
        });
    }
    report.segments = infos.len();
    report.last_lsn = next_lsn - 1;
    Ok(Recovered {
        segments: infos,
        next_lsn,
        chain,
        active,
        report,
    })
}

/// Reads a whole file into `bytes` (reusing its allocation).
fn read_all(file: &dyn FileHandle, name: &str, bytes: &mut Vec<u8>) -> Result<()> {
    let len = file
        .size()
        .map_err(|e| Error::io(format!("reading the size of {name}"), e))?;
    bytes.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
    file.read_exact_at(bytes, 0)
        .map_err(|e| Error::io(format!("reading {name}"), e))
}

fn zero_range(file: &dyn FileHandle, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut offset = from;
    while offset < to {
        let n = (to - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], offset)?;
        offset += n as u64;
    }
    file.sync_data()
}
