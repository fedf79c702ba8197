//! The group-commit writer: one thread owns the active segment file. Appenders queue requests
//! on a bounded channel; the writer drains what is waiting (up to `batch_bytes_max`), encodes
//! every record into one buffer, issues one write and one fdatasync, and only then publishes
//! the durable LSN and answers the appenders. A failed write or fsync poisons the writer: the
//! whole batch fails and nothing is acknowledged afterwards.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::Lsn;
use crate::catalog::{Catalog, SegmentInfo};
use crate::config::{Config, Preallocation};
use crate::error::{Error, Result};
use crate::format::{FRAME_HEADER_BYTES, RecordMeta, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::format::{chain_next, encode_frame};
use crate::fs::{FileHandle, FileSystem, join};
use crate::segment::{INDEX_STRIDE_BYTES, TEMP_SUFFIX, segment_name};
use crate::stats::Stats;

/// Name of the zero-filled file waiting to become the next segment.
pub const PREPARED_SEGMENT_NAME: &str = "next-segment.tmp";
/// Size of the zero buffer used to fill a prepared segment.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

/// A record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Codec, type and schema version, stored in the frame header.
    pub meta: RecordMeta,
    /// The payload (opaque to the log).
    pub payload: Vec<u8>,
}

/// The LSNs given to an appended batch: `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// LSN of the first record.
    pub first: Lsn,
    /// LSN of the last record.
    pub last: Lsn,
}

/// One append request waiting for the writer.
#[derive(Debug)]
pub(crate) struct Request {
    pub records: Vec<Record>,
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// Where the writer resumes after recovery.
#[derive(Debug)]
pub(crate) struct Resume {
    /// The active segment (None: the log is empty and the first segment must be created).
    pub active: Option<ActiveSegment>,
    pub next_lsn: Lsn,
    pub chain: u64,
}

/// The segment the writer appends to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub file: Box<dyn FileHandle>,
    pub segment_bytes: u64,
    pub end_offset: u64,
}

/// Zero-fills the next segment file in the background so rollover never waits for it.
#[derive(Debug)]
struct Preparer {
    requests: Option<std_mpsc::Sender<()>>,
    ready: std_mpsc::Receiver<io::Result<PathBuf>>,
    pending: bool,
    thread: Option<JoinHandle<()>>,
}

impl Preparer {
    fn start(fs: Arc<dyn FileSystem>, dir: PathBuf, bytes: u64, mode: Preallocation) -> Self {
        let (requests, jobs) = std_mpsc::channel::<()>();
        let (done, ready) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wal-preparer".into())
            .spawn(move || {
                while jobs.recv().is_ok() {
                    let path = join(&dir, PREPARED_SEGMENT_NAME);
                    let result = prepare_file(fs.as_ref(), &path, bytes, mode).map(|()| path);
                    if done.send(result).is_err() {
                        break;
                    }
                }
            })
            .ok();
        Self {
            requests: Some(requests),
            ready,
            pending: false,
            thread,
        }
    }

    fn request(&mut self) {
        if !self.pending
            && let Some(requests) = &self.requests
        {
            self.pending = requests.send(()).is_ok();
        }
    }

    fn take(&mut self) -> io::Result<PathBuf> {
        self.request();
        self.pending = false;
        self.ready
            .recv()
            .map_err(|_| io::Error::other("segment preparer thread stopped"))?
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn prepare_file(
    fs: &dyn FileSystem,
    path: &std::path::Path,
    bytes: u64,
    mode: Preallocation,
) -> io::Result<()> {
    let file = fs.open_write(path, true)?;
    match mode {
        Preallocation::ZeroFill => {
            let zeros = vec![0u8; ZERO_CHUNK_BYTES];
            let mut offset = 0;
            while offset < bytes {
                let n = (bytes - offset).min(ZERO_CHUNK_BYTES as u64) as usize;
                file.write_all_at(&zeros[..n], offset)?;
                offset += n as u64;
            }
        }
        Preallocation::Sparse => file.write_all_at(&[0], bytes - 1)?,
    }
    file.sync_data()
}

/// The writer thread's state.
#[derive(Debug)]
pub(crate) struct Writer {
    catalog: Arc<Catalog>,
    config: Config,
    stats: Arc<Stats>,
    file: Option<Box<dyn FileHandle>>,
    segment_bytes: u64,
    /// File offset where `buf` will be written.
    offset: u64,
    next_lsn: Lsn,
    durable_lsn: Lsn,
    chain: u64,
    buf: Vec<u8>,
    last_indexed: Option<u64>,
    pending_index: Vec<(Lsn, u64)>,
    preparer: Preparer,
    poisoned: Option<String>,
}

impl Writer {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        config: Config,
        stats: Arc<Stats>,
        resume: Resume,
    ) -> Result<Self> {
        let preparer = Preparer::start(
            catalog.fs.clone(),
            catalog.dir.clone(),
            config.segment_bytes,
            config.preallocation,
        );
        let (file, segment_bytes, offset) = match resume.active {
            Some(active) => (Some(active.file), active.segment_bytes, active.end_offset),
            None => (None, config.segment_bytes, 0),
        };
        let mut writer = Self {
            catalog,
            config,
            stats,
            file,
            segment_bytes,
            offset,
            next_lsn: resume.next_lsn,
            durable_lsn: resume.next_lsn - 1,
            chain: resume.chain,
            buf: Vec::new(),
            last_indexed: None,
            pending_index: Vec::new(),
            preparer,
            poisoned: None,
        };
        if writer.file.is_none() {
            writer
                .roll_over()
                .map_err(|e| Error::io("creating the first segment", e))?;
        }
        writer.preparer.request();
        Ok(writer)
    }

    /// Serves requests until every sender is gone.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut batch = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut bytes = first.bytes;
            batch.push(first);
            while bytes < self.config.batch_bytes_max {
                match requests.try_recv() {
                    Ok(next) => {
                        bytes += next.bytes;
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.serve(&mut batch);
        }
    }

    fn serve(&mut self, batch: &mut Vec<Request>) {
        if let Some(reason) = &self.poisoned {
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(Error::Poisoned(reason.clone())));
            }
            return;
        }
        match self.commit(batch) {
            Ok(ranges) => {
                self.catalog.publish_durable(self.durable_lsn);
                for (request, range) in batch.drain(..).zip(ranges) {
                    let _ = request.reply.send(Ok(range));
                }
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(%reason, "WAL writer poisoned: no further appends are accepted");
                self.poisoned = Some(reason.clone());
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(Error::Poisoned(reason.clone())));
                }
            }
        }
    }

    /// Writes and syncs every record of the batch; returns the LSN range of each request.
    fn commit(&mut self, batch: &[Request]) -> Result<Vec<Appended>> {
        let mut ranges = Vec::with_capacity(batch.len());
        for request in batch {
            let first = self.next_lsn;
            for record in &request.records {
                let frame_bytes = (FRAME_HEADER_BYTES + record.payload.len()) as u64;
                if self.offset + self.buf.len() as u64 + frame_bytes > self.segment_bytes {
                    self.flush_and_sync()?;
                    self.roll_over()
                        .map_err(|e| Error::io("rolling over to a new segment", e))?;
                }
                self.encode(record);
            }
            ranges.push(Appended {
                first,
                last: self.next_lsn - 1,
            });
        }
        self.flush_and_sync()?;
        Ok(ranges)
    }

    fn encode(&mut self, record: &Record) {
        let lsn = self.next_lsn;
        let frame_offset = self.offset + self.buf.len() as u64;
        if self
            .last_indexed
            .is_none_or(|at| frame_offset - at >= INDEX_STRIDE_BYTES)
        {
            self.pending_index.push((lsn, frame_offset));
            self.last_indexed = Some(frame_offset);
        }
        let depth = u32::try_from(lsn - self.durable_lsn).unwrap_or(u32::MAX);
        let crc = encode_frame(&mut self.buf, lsn, depth, record.meta, &record.payload);
        self.chain = chain_next(self.chain, crc, lsn);
        self.next_lsn += 1;
    }

    /// One write of the buffered frames and one fdatasync.
    fn flush_and_sync(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file.as_ref().ok_or(Error::Closed)?;
        file.write_all_at(&self.buf, self.offset)
            .map_err(|e| Error::io("writing to the active segment", e))?;
        let started = Instant::now();
        file.sync_data()
            .map_err(|e| Error::io("fdatasync of the active segment", e))?;
        self.stats
            .fsync_us
            .record(started.elapsed().as_micros() as u64);
        let records = self.next_lsn - 1 - self.durable_lsn;
        self.stats.records.fetch_add(records, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.batch_records.record(records);
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        self.durable_lsn = self.next_lsn - 1;
        if !self.pending_index.is_empty()
            && let Some(segment) = self.catalog.segments_mut().last_mut()
        {
            segment.index.append(&mut self.pending_index);
        }
        Ok(())
    }

    /// Turns the prepared file into the next segment: header, fsync, rename, fsync directory.
    fn roll_over(&mut self) -> io::Result<()> {
        let temp = self.preparer.take()?;
        let header = SegmentHeader {
            segment_bytes: self.config.segment_bytes,
            base_lsn: self.next_lsn,
            chain_start: self.chain,
        };
        let fs = self.catalog.fs.clone();
        let file = fs.open_write(&temp, false)?;
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        let name = segment_name(self.next_lsn);
        debug_assert!(!name.ends_with(TEMP_SUFFIX));
        fs.rename(&temp, &join(&self.catalog.dir, &name))?;
        fs.sync_dir(&self.catalog.dir)?;
        self.catalog.segments_mut().push(SegmentInfo {
            base_lsn: self.next_lsn,
            name,
            segment_bytes: self.config.segment_bytes,
            index: Vec::new(),
        });
        self.stats.segments_created.fetch_add(1, Ordering::Relaxed);
        self.file = Some(file);
        self.segment_bytes = self.config.segment_bytes;
        self.offset = SEGMENT_HEADER_BYTES as u64;
        self.last_indexed = None;
        self.preparer.request();
        Ok(())
    }
}
