//! Sequential readers: a cursor that walks records from any LSN across sealed and active
//! segments, up to the durable LSN, checking every frame's checksum and LSN on the way.

use std::sync::Arc;

use crate::Lsn;
use crate::catalog::Catalog;
use crate::error::{Error, FaultLocation, Result};
use crate::format::{FRAME_HEADER_BYTES, FrameCheck, FrameHeader, RecordMeta, check_frame};
use crate::fs::{FileHandle, join};

/// Bytes read from a segment file at a time.
pub const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its log sequence number.
    pub lsn: Lsn,
    /// Codec, type and schema version given at append.
    pub meta: RecordMeta,
    /// The payload.
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct OpenSegment {
    name: String,
    file: Box<dyn FileHandle>,
    segment_bytes: u64,
    /// Offset of the next frame to read.
    offset: u64,
    /// LSN the frame at `offset` must carry.
    expected_lsn: Lsn,
    buf: Vec<u8>,
    buf_start: u64,
    /// The buffer was filled by an earlier call of `visit` (the writer may have written
    /// past what it holds since).
    buf_from_earlier_visit: bool,
}

impl OpenSegment {
    /// True when the buffer may hold bytes read before the writer wrote them.
    fn stale(&self) -> bool {
        self.buf_from_earlier_visit
    }

    /// Forgets the buffer so the next window reads the file again.
    fn drop_buffer(&mut self) {
        self.buf.clear();
        self.buf_start = 0;
        self.buf_from_earlier_visit = false;
    }

    /// Makes `buf` cover `[offset, offset + len)` (clamped to the segment) and returns it.
    fn window(&mut self, offset: u64, len: usize) -> Result<&[u8]> {
        let end = (offset + len as u64).min(self.segment_bytes);
        let have_end = self.buf_start + self.buf.len() as u64;
        if offset < self.buf_start || end > have_end {
            let want = (end - offset).max(READ_CHUNK_BYTES as u64);
            let want = want.min(self.segment_bytes - offset) as usize;
            self.buf.resize(want, 0);
            let mut filled = 0;
            while filled < want {
                let n = self
                    .file
                    .read_at(&mut self.buf[filled..], offset + filled as u64)
                    .map_err(|e| Error::io(format!("reading segment {}", self.name), e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            self.buf.truncate(filled);
            self.buf_start = offset;
            self.buf_from_earlier_visit = false;
        }
        let from = (offset - self.buf_start) as usize;
        let to = ((end - self.buf_start) as usize).min(self.buf.len());
        Ok(&self.buf[from.min(to)..to])
    }
}

/// Walks records in LSN order.
#[derive(Debug)]
pub struct Cursor {
    catalog: Arc<Catalog>,
    next_lsn: Lsn,
    segment: Option<OpenSegment>,
}

impl Cursor {
    pub(crate) fn new(catalog: Arc<Catalog>, from_lsn: Lsn) -> Self {
        Self {
            catalog,
            next_lsn: from_lsn.max(1),
            segment: None,
        }
    }

    /// The LSN the next record returned will have.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Reads up to `max_records` records, stopping at the durable LSN. An empty result means
    /// the cursor has caught up; wait on the log's subscription and call again.
    pub fn next_batch(&mut self, max_records: usize) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        self.visit(max_records, |lsn, meta, payload| {
            out.push(StoredRecord {
                lsn,
                meta,
                payload: payload.to_vec(),
            });
        })?;
        Ok(out)
    }

    /// Like [`Cursor::next_batch`] without copying: calls `f` with each record in order and
    /// returns how many it saw.
    pub fn visit(
        &mut self,
        max_records: usize,
        mut f: impl FnMut(Lsn, RecordMeta, &[u8]),
    ) -> Result<usize> {
        let limit = self.catalog.durable_lsn();
        let record_bytes_max = self.catalog.record_bytes_max;
        if let Some(segment) = self.segment.as_mut() {
            segment.buf_from_earlier_visit = true;
        }
        let mut seen = 0;
        while seen < max_records && self.next_lsn <= limit {
            if self.segment.is_none() {
                self.segment = Some(open_segment(&self.catalog, self.next_lsn)?);
            }
            let Some(segment) = self.segment.as_mut() else {
                break;
            };
            let offset = segment.offset;
            let expected = segment.expected_lsn;
            let window = segment.window(offset, FRAME_HEADER_BYTES)?;
            let payload_len = match window.first_chunk::<FRAME_HEADER_BYTES>() {
                Some(header) => FrameHeader::parse(header).payload_len.min(record_bytes_max),
                None => 0,
            };
            let frame = segment.window(offset, FRAME_HEADER_BYTES + payload_len as usize)?;
            match check_frame(frame, record_bytes_max, Some(expected)) {
                FrameCheck::Valid(header) => {
                    if header.lsn == self.next_lsn {
                        let meta = RecordMeta {
                            codec: header.codec,
                            record_type: header.record_type,
                            schema_version: header.schema_version,
                        };
                        f(header.lsn, meta, &frame[FRAME_HEADER_BYTES..]);
                        seen += 1;
                        self.next_lsn += 1;
                    }
                    segment.offset += header.frame_bytes();
                    segment.expected_lsn += 1;
                }
                FrameCheck::Zero | FrameCheck::Invalid(_) if segment.stale() => {
                    // These bytes were read before the writer got here: read them again.
                    segment.drop_buffer();
                }
                FrameCheck::Zero if expected == self.next_lsn => {
                    // The segment's data ends here; the next LSN must start a new segment.
                    if self.catalog.locate(self.next_lsn).map(|s| s.0.base_lsn)
                        != Some(self.next_lsn)
                    {
                        return Err(self.fault(
                            offset,
                            expected,
                            "data ends before the durable LSN",
                        ));
                    }
                    self.segment = None;
                }
                FrameCheck::Zero => {
                    return Err(self.fault(offset, expected, "data ends before the durable LSN"));
                }
                FrameCheck::Invalid(fault) => {
                    return Err(self.fault(offset, expected, &fault.to_string()));
                }
            }
        }
        Ok(seen)
    }

    fn fault(&self, offset: u64, lsn: Lsn, reason: &str) -> Error {
        let segment = self
            .segment
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        Error::Corruption {
            location: FaultLocation {
                segment,
                offset,
                lsn,
            },
            reason: reason.to_string(),
        }
    }
}

/// Opens the segment holding `lsn`, positioned at the index entry at or before it.
fn open_segment(catalog: &Catalog, lsn: Lsn) -> Result<OpenSegment> {
    let (info, first, offset) = catalog.locate(lsn).ok_or(Error::LsnOutOfRange {
        requested: lsn,
        durable: catalog.durable_lsn(),
    })?;
    let file = catalog
        .fs
        .open_read(&join(&catalog.dir, &info.name))
        .map_err(|e| Error::io(format!("opening segment {}", info.name), e))?;
    Ok(OpenSegment {
        name: info.name,
        file,
        segment_bytes: info.segment_bytes,
        offset,
        expected_lsn: first,
        buf: Vec::new(),
        buf_start: 0,
        buf_from_earlier_visit: false,
    })
}
