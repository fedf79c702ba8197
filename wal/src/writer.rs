//! The group-commit writer: one thread owns the active segment file. Appenders queue requests
//! on a bounded channel; the writer drains what is waiting (up to `batch_bytes_max`), encodes
//! every record into one buffer, issues one write and one fdatasync, and only then publishes
//! the durable LSN and answers the appenders. The fdatasync is the syncer thread's, so the
//! encoder writes the next batch meanwhile; when nothing else is queued or syncing, the
//! encoder issues it itself (a lone append then crosses one thread fewer). A failed write or
//! fsync poisons the writer: the whole batch fails and nothing is acknowledged afterwards.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::Lsn;
use crate::catalog::{Catalog, SegmentInfo};
use crate::config::{Config, Preallocation};
use crate::error::{Error, Result};
use crate::format::{FRAME_HEADER_BYTES, RecordMeta, SegmentHeader};
use crate::format::{chain_next, encode_frame};
use crate::fs::{FileHandle, FileSystem, join};
use crate::segment::{INDEX_STRIDE_BYTES, TEMP_SUFFIX, segment_name};
use crate::stats::Stats;

/// Name of the zero-filled file waiting to become the next segment.
pub const PREPARED_SEGMENT_NAME: &str = "next-segment.tmp";
/// The writer writes whole pages of this size: it rewrites the start of a page it filled
/// partly before and pads the end with the zeros already there. A prepared segment is not in
/// the page cache (it is zero-filled with direct I/O), and a partial write into a page that is
/// not cached makes the kernel read it from the disk first, inside the append's latency.
pub const PAGE_BYTES: u64 = 4096;
/// Longest a lazy append (see `Log::submit_lazy`) waits for an fdatasync another append starts
/// before the syncer starts one for it.
pub const LAZY_SYNC_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// Written batches that may wait for the syncer; the encoder blocks beyond this, which keeps
/// memory bounded and lets requests gather into larger batches meanwhile.
const SYNC_QUEUE_JOBS_MAX: usize = 4;

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
    pub enqueued: Instant,
    /// Nobody waits on it yet: it does not start an fdatasync by itself.
    pub lazy: bool,
    pub reply: oneshot::Sender<Result<Appended>>,
}

/// A request once encoded: its records are in the file's buffer, so they are dropped by the
/// encoder (not on the syncer's path between two fdatasyncs); what is left waits for the reply.
#[derive(Debug)]
pub(crate) struct Waiter {
    enqueued: Instant,
    lazy: bool,
    reply: oneshot::Sender<Result<Appended>>,
}

impl Request {
    fn into_waiter(self) -> Waiter {
        Waiter {
            enqueued: self.enqueued,
            lazy: self.lazy,
            reply: self.reply,
        }
    }
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
    match mode {
        Preallocation::ZeroFill => fs.write_zeros(path, bytes),
        Preallocation::Sparse => {
            let file = fs.open_write(path, true)?;
            file.write_all_at(&[0], bytes - 1)?;
            file.sync_data()
        }
    }
}

/// A written batch on its way to the syncer.
#[derive(Debug)]
struct SyncJob {
    file: Arc<dyn FileHandle>,
    last_lsn: Lsn,
    bytes: u64,
    requests: Vec<(Waiter, Appended)>,
    index: Vec<(Lsn, u64)>,
    /// Set at rollover: told whether everything up to `last_lsn` became durable.
    barrier: Option<std_mpsc::Sender<bool>>,
    /// Somebody waits for it (a request that is not lazy, or the barrier): decided once, by
    /// the encoder.
    urgent: bool,
}

/// State shared by the encoder and the syncer.
#[derive(Debug)]
struct Pipeline {
    catalog: Arc<Catalog>,
    stats: Arc<Stats>,
    /// Why the writer stopped accepting appends, once it has.
    poison: Mutex<Option<String>>,
    /// The durable LSN as the encoder sees it (for `unsynced_depth`, and to know whether the
    /// syncer still has a batch). Only grows: the encoder and the syncer both advance it.
    durable: AtomicU64,
}

impl Pipeline {
    fn poisoned(&self) -> Option<String> {
        self.poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn poison(&self, reason: String) {
        tracing::error!(%reason, "WAL writer poisoned: no further appends are accepted");
        self.poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }
}

/// The syncer: fdatasyncs written batches (many at once when they queue up), publishes the
/// durable LSN and answers appenders. Runs beside the encoder so a batch's fsync overlaps the
/// next batch's encoding and write.
fn run_syncer(pipeline: Arc<Pipeline>, jobs: std_mpsc::Receiver<SyncJob>) {
    let mut group: Vec<SyncJob> = Vec::new();
    while let Ok(first) = jobs.recv() {
        group.push(first);
        while let Ok(next) = jobs.try_recv() {
            group.push(next);
        }
        // Only lazy appends: wait (bounded) for an append somebody waits on to come along.
        let mut urgent = group.iter().any(|j| j.urgent);
        let deadline = Instant::now() + LAZY_SYNC_DELAY;
        while !urgent {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                Ok(next) => {
                    urgent = next.urgent;
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        sync_group(&pipeline, &mut group);
    }
}

/// Makes a group of written batches durable (one fdatasync per distinct file) and answers
/// their appenders.
fn sync_group(pipeline: &Pipeline, group: &mut Vec<SyncJob>) {
    let mut result = match pipeline.poisoned() {
        Some(reason) => Err(reason),
        None => Ok(()),
    };
    if result.is_ok() {
        // Jobs arrive in file order; one fdatasync per distinct file covers them all.
        let mut synced: Vec<&Arc<dyn FileHandle>> = Vec::new();
        for job in group.iter() {
            if synced.iter().any(|f| Arc::ptr_eq(f, &job.file)) {
                continue;
            }
            let started = Instant::now();
            if let Err(e) = job.file.sync_data() {
                let reason = format!("fdatasync of the active segment: {e}");
                pipeline.poison(reason.clone());
                result = Err(reason);
                break;
            }
            pipeline
                .stats
                .fsync_us
                .record(started.elapsed().as_micros() as u64);
            synced.push(&job.file);
        }
    }
    finish_group(pipeline, group, result);
}

fn finish_group(
    pipeline: &Pipeline,
    group: &mut Vec<SyncJob>,
    result: std::result::Result<(), String>,
) {
    let stats = &pipeline.stats;
    if result.is_ok()
        && let Some(last_lsn) = group.last().map(|j| j.last_lsn)
    {
        let records: u64 = group
            .iter()
            .flat_map(|j| &j.requests)
            .map(|(_, range)| range.last - range.first + 1)
            .sum();
        stats.records.fetch_add(records, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(group.iter().map(|j| j.bytes).sum(), Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.batch_records.record(records);
        {
            let mut segments = pipeline.catalog.segments_mut();
            for job in group.iter_mut() {
                if let Some(segment) = segments.last_mut() {
                    segment.index.append(&mut job.index);
                }
            }
        }
        pipeline.durable.fetch_max(last_lsn, Ordering::AcqRel);
        pipeline.catalog.publish_durable(last_lsn);
    }
    let now = Instant::now();
    for job in group.drain(..) {
        for (request, range) in job.requests {
            stats
                .append_us
                .record(now.duration_since(request.enqueued).as_micros() as u64);
            let reply = match &result {
                Ok(()) => Ok(range),
                Err(reason) => Err(Error::Poisoned(reason.clone())),
            };
            let _ = request.reply.send(reply);
        }
        if let Some(barrier) = job.barrier {
            let _ = barrier.send(result.is_ok());
        }
    }
}

/// The encoder thread's state: turns requests into frames and writes them.
#[derive(Debug)]
pub(crate) struct Writer {
    pipeline: Arc<Pipeline>,
    config: Config,
    file: Option<Arc<dyn FileHandle>>,
    segment_bytes: u64,
    /// Page-aligned file offset where `buf` starts: `buf` begins with the bytes already
    /// written to the current page (`written_len` of them), then the frames not yet written.
    base: u64,
    written_len: usize,
    next_lsn: Lsn,
    /// The last LSN handed to the syncer: once it is durable, the syncer has nothing.
    handed_over: Lsn,
    chain: u64,
    buf: Vec<u8>,
    last_indexed: Option<u64>,
    pending_index: Vec<(Lsn, u64)>,
    /// Requests encoded into `buf`, with their LSN ranges.
    encoded: Vec<(Waiter, Appended)>,
    preparer: Preparer,
    syncer: Option<(std_mpsc::SyncSender<SyncJob>, JoinHandle<()>)>,
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
            Some(active) => (
                Some(Arc::<dyn FileHandle>::from(active.file)),
                active.segment_bytes,
                active.end_offset,
            ),
            None => (None, config.segment_bytes, 0),
        };
        // Resume inside the last page: it is rewritten whole with the next batch.
        let base = offset - offset % PAGE_BYTES;
        let mut buf = vec![0u8; (offset - base) as usize];
        if let Some(file) = &file {
            file.read_exact_at(&mut buf, base)
                .map_err(|e| Error::io("reading the active segment's last page", e))?;
        }
        let pipeline = Arc::new(Pipeline {
            catalog,
            stats,
            poison: Mutex::new(None),
            durable: AtomicU64::new(resume.next_lsn - 1),
        });
        let (jobs, receiver) = std_mpsc::sync_channel(SYNC_QUEUE_JOBS_MAX);
        let syncer_pipeline = pipeline.clone();
        let syncer = std::thread::Builder::new()
            .name("wal-syncer".into())
            .spawn(move || run_syncer(syncer_pipeline, receiver))
            .map_err(|e| Error::io("starting the syncer thread", e))?;
        let mut writer = Self {
            pipeline,
            config,
            file,
            segment_bytes,
            base,
            written_len: buf.len(),
            next_lsn: resume.next_lsn,
            handed_over: resume.next_lsn - 1,
            chain: resume.chain,
            buf,
            last_indexed: None,
            pending_index: Vec::new(),
            encoded: Vec::new(),
            preparer,
            syncer: Some((jobs, syncer)),
        };
        if writer.file.is_none() {
            writer
                .roll_over()
                .map_err(|e| Error::io("creating the first segment", e))?;
        }
        writer.preparer.request();
        Ok(writer)
    }

    /// Serves requests until every sender is gone, then lets the syncer finish.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        while let Some(first) = requests.blocking_recv() {
            let mut bytes = first.bytes;
            let mut batch = vec![first];
            while bytes < self.config.batch_bytes_max {
                match requests.try_recv() {
                    Ok(next) => {
                        bytes += next.bytes;
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let picked_up = Instant::now();
            for request in &batch {
                let waited = picked_up.duration_since(request.enqueued).as_micros() as u64;
                self.pipeline.stats.queue_us.record(waited);
            }
            let idle = requests.is_empty();
            self.serve(batch, idle);
        }
        if let Some((jobs, thread)) = self.syncer.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }

    fn serve(&mut self, batch: Vec<Request>, idle: bool) {
        if let Some(reason) = self.pipeline.poisoned() {
            for request in batch {
                let _ = request.reply.send(Err(Error::Poisoned(reason.clone())));
            }
            return;
        }
        if let Err(error) = self.encode_and_write(batch, idle) {
            self.pipeline.poison(error.to_string());
            let reason = self.pipeline.poisoned().unwrap_or_default();
            for (request, _) in self.encoded.drain(..) {
                let _ = request.reply.send(Err(Error::Poisoned(reason.clone())));
            }
        }
    }

    /// Encodes every record of the batch and writes it; the syncer makes it durable (or the
    /// encoder itself, when `idle`: no request was waiting behind the batch).
    fn encode_and_write(&mut self, batch: Vec<Request>, idle: bool) -> Result<()> {
        for request in batch {
            let first = self.next_lsn;
            for record in &request.records {
                let frame_bytes = (FRAME_HEADER_BYTES + record.payload.len()) as u64;
                if self.base + self.buf.len() as u64 + frame_bytes > self.segment_bytes {
                    self.write_and_hand_off(true, false)?;
                    self.roll_over()
                        .map_err(|e| Error::io("rolling over to a new segment", e))?;
                }
                self.encode(record);
            }
            let range = Appended {
                first,
                last: self.next_lsn - 1,
            };
            self.encoded.push((request.into_waiter(), range));
        }
        self.write_and_hand_off(false, idle)
    }

    fn encode(&mut self, record: &Record) {
        let lsn = self.next_lsn;
        let frame_offset = self.base + self.buf.len() as u64;
        if self
            .last_indexed
            .is_none_or(|at| frame_offset - at >= INDEX_STRIDE_BYTES)
        {
            self.pending_index.push((lsn, frame_offset));
            self.last_indexed = Some(frame_offset);
        }
        let durable = self.pipeline.durable.load(Ordering::Acquire);
        let depth = u32::try_from(lsn - durable).unwrap_or(u32::MAX);
        let crc = encode_frame(&mut self.buf, lsn, depth, record.meta, &record.payload);
        self.chain = chain_next(self.chain, crc, lsn);
        self.next_lsn += 1;
    }

    /// Writes the buffered frames and hands them to the syncer (with `idle`, an urgent batch
    /// and an idle syncer: syncs them here). With `seal`, waits until the syncer has made
    /// everything so far durable (a new segment may only follow a durable one).
    fn write_and_hand_off(&mut self, seal: bool, idle: bool) -> Result<()> {
        let file = self.file.clone().ok_or(Error::Closed)?;
        let fresh = self.buf.len() - self.written_len;
        let end = self.base + self.buf.len() as u64;
        if fresh > 0 {
            // Whole pages: up to the next page boundary (or the segment's end) with zeros.
            let padded = end
                .next_multiple_of(PAGE_BYTES)
                .min(self.segment_bytes)
                .max(end);
            self.buf.resize((padded - self.base) as usize, 0);
            let written = file.write_all_at(&self.buf, self.base);
            self.buf.truncate((end - self.base) as usize);
            written.map_err(|e| Error::io("writing to the active segment", e))?;
        }
        let (barrier, sealed) = if seal {
            let (tell, wait) = std_mpsc::channel();
            (Some(tell), Some(wait))
        } else {
            (None, None)
        };
        let requests = std::mem::take(&mut self.encoded);
        let urgent = barrier.is_some() || requests.iter().any(|(r, _)| !r.lazy);
        let job = SyncJob {
            file,
            last_lsn: self.next_lsn - 1,
            bytes: fresh as u64,
            requests,
            index: std::mem::take(&mut self.pending_index),
            barrier,
            urgent,
        };
        // Keep the last, partly filled page: the next write starts with it.
        let keep_from = end - end % PAGE_BYTES;
        self.buf.drain(..(keep_from - self.base) as usize);
        self.base = keep_from;
        self.written_len = self.buf.len();
        if job.requests.is_empty() && job.barrier.is_none() {
            return Ok(());
        }
        // Somebody waits, nothing else is queued and the syncer has nothing: fdatasync here,
        // one thread handoff fewer on the path of a lone append. (Every batch handed over
        // before is durable, so the durable LSN still advances in order, whichever thread
        // publishes last.) Under load the syncer takes the batch and the encoder goes on
        // writing the next one.
        if job.urgent
            && idle
            && job.barrier.is_none()
            && self.pipeline.durable.load(Ordering::Acquire) >= self.handed_over
        {
            self.pipeline
                .stats
                .encoder_syncs
                .fetch_add(1, Ordering::Relaxed);
            sync_group(&self.pipeline, &mut vec![job]);
            return Ok(());
        }
        let (jobs, _) = self.syncer.as_ref().ok_or(Error::Closed)?;
        self.handed_over = job.last_lsn;
        jobs.send(job)
            .map_err(|_| Error::Poisoned("the syncer thread stopped".into()))?;
        if let Some(sealed) = sealed
            && !sealed.recv().unwrap_or(false)
        {
            return Err(Error::Poisoned(
                "fdatasync failed before a segment rollover".into(),
            ));
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
        let catalog = &self.pipeline.catalog;
        let fs = catalog.fs.clone();
        let file = fs.open_write(&temp, false)?;
        let header = header.encode();
        file.write_all_at(&header, 0)?;
        file.sync_data()?;
        let name = segment_name(self.next_lsn);
        debug_assert!(!name.ends_with(TEMP_SUFFIX));
        fs.rename(&temp, &join(&catalog.dir, &name))?;
        fs.sync_dir(&catalog.dir)?;
        catalog.segments_mut().push(SegmentInfo {
            base_lsn: self.next_lsn,
            name,
            segment_bytes: self.config.segment_bytes,
            index: Vec::new(),
        });
        self.pipeline
            .stats
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        self.file = Some(Arc::from(file));
        self.segment_bytes = self.config.segment_bytes;
        // The header's page is rewritten, whole, with the first batch.
        self.base = 0;
        self.buf.clear();
        self.buf.extend_from_slice(&header);
        self.written_len = self.buf.len();
        self.last_indexed = None;
        self.preparer.request();
        Ok(())
    }
}
