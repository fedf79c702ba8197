//! `symphainy-wal`: the segmented, checksummed, hash-chained write-ahead log that is the single
//! source of truth of the runtime. It stores opaque records and knows nothing about events.
//!
//! - [`Wal`] is the writer: one per directory (an exclusive lock enforces it), group commit
//!   through a dedicated thread, `append*` answers only after fdatasync.
//! - [`WalReader`] opens a directory read-only (the replay tool), also while a writer runs.
//! - [`Cursor`] walks records from any LSN; [`Wal::subscribe`] wakes tailing consumers.
//! - [`Log`] is the small trait the engine talks to, so a replicated backend can replace it.
//! - Files are reached only through [`FileSystem`]; [`MemFs`] injects faults for tests.
//!
//! The byte layout is documented in `docs/wal-format.md` and implemented in [`format`].
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod catalog;
pub mod config;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod error;
pub mod format;
pub mod fs;
pub mod memfs;
mod reader;
mod recovery;
pub mod segment;
pub mod stats;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

pub use catalog::Catalog;
pub use config::{Config, Preallocation};
pub use error::{Error, FaultLocation, Result};
pub use format::RecordMeta;
pub use fs::{FileSystem, RealFs};
pub use memfs::{CrashMode, MemFs};
pub use reader::{Cursor, StoredRecord};
pub use recovery::{RecoveryReport, TornTail};
pub use stats::Stats;
pub use writer::{Appended, LAZY_SYNC_DELAY, PAGE_BYTES, Record};

use recovery::Mode;
use writer::{Request, Resume, Writer};

/// A log sequence number. LSNs start at 1 and are dense; 0 means "nothing".
pub type Lsn = u64;

/// Name of the lock file that makes a writer exclusive.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The interface the engine uses to reach a log, so another backend (a replicated one) can
/// take this one's place. Every implementation runs [`conformance`].
pub trait Log: Send + Sync + 'static {
    /// Queues records without waiting for queue space; the order of `submit` calls is the
    /// order of their LSNs. Fails with [`Error::QueueFull`] when the queue is full.
    fn submit(&self, records: Vec<Record>) -> Result<PendingAppend>;
    /// Like [`Log::submit`], for records nobody is waiting on yet: they do not start an
    /// fdatasync of their own, but become durable with the next one another append starts, or
    /// within [`LAZY_SYNC_DELAY`] at the latest (what the log promises a lazy append).
    fn submit_lazy(&self, records: Vec<Record>) -> Result<PendingAppend> {
        self.submit(records)
    }
    /// Queues records, waiting for queue space, and resolves once they are durable.
    fn append(&self, records: Vec<Record>) -> impl Future<Output = Result<Appended>> + Send;
    /// The last durable LSN.
    fn durable_lsn(&self) -> Lsn;
    /// A receiver notified whenever the durable LSN advances.
    fn subscribe(&self) -> watch::Receiver<Lsn>;
    /// A cursor positioned at `from_lsn`.
    fn cursor(&self, from_lsn: Lsn) -> Cursor;
    /// The largest record payload the log accepts; larger ones are refused before queueing.
    fn record_bytes_max(&self) -> usize;
}

/// An append that was queued; resolves to its LSNs once durable.
#[derive(Debug)]
pub struct PendingAppend {
    reply: oneshot::Receiver<Result<Appended>>,
}

impl Future for PendingAppend {
    type Output = Result<Appended>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.reply)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

impl PendingAppend {
    /// Waits for durability from synchronous code (never call inside an async runtime).
    pub fn wait(self) -> Result<Appended> {
        self.reply.blocking_recv().unwrap_or(Err(Error::Closed))
    }
}

/// The writer of a log directory.
#[derive(Debug)]
pub struct Wal {
    catalog: Arc<Catalog>,
    config: Config,
    stats: Arc<Stats>,
    report: RecoveryReport,
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    // Held for its lock; released on drop, after the writer thread has stopped.
    _lock: Box<dyn fs::DirLock>,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Self> {
        Self::open_with(Arc::new(RealFs), dir, config)
    }

    /// Opens the log in `dir` on the given file system: takes the lock, recovers (cutting a
    /// torn tail, refusing corruption) and starts the writer thread.
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        config: Config,
    ) -> Result<Self> {
        Self::open_visiting(fs, dir, config, |_, _, _| {})
    }

    /// Like [`Wal::open_with`], handing every record to `visit` during the verification scan,
    /// so a caller can rebuild its state in the same single pass over the log. Records of a
    /// torn tail are never visited.
    pub fn open_visiting(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        config: Config,
        visit: impl FnMut(Lsn, RecordMeta, &[u8]),
    ) -> Result<Self> {
        let config = config.sanitize()?;
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let lock = fs
            .try_lock(&dir.join(LOCK_FILE_NAME))
            .map_err(|failure| match failure {
                fs::LockFailure::Held => Error::Locked(dir.clone()),
                fs::LockFailure::Io(e) => Error::io(format!("locking {}", dir.display()), e),
            })?;
        let recovered = recovery::recover(fs.as_ref(), &dir, Mode::Repair, visit)?;
        let catalog = Arc::new(Catalog::new(
            fs,
            dir,
            config.record_bytes_max,
            recovered.segments,
            recovered.next_lsn - 1,
        ));
        let stats = Arc::new(Stats::default());
        let resume = Resume {
            active: recovered.active,
            next_lsn: recovered.next_lsn,
            chain: recovered.chain,
        };
        let writer = Writer::new(catalog.clone(), config.clone(), stats.clone(), resume)?;
        let (sender, receiver) = mpsc::channel(config.queue_depth_max);
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(Self {
            catalog,
            config,
            stats,
            report: recovered.report,
            sender: Some(sender),
            thread: Some(thread),
            _lock: lock,
        })
    }

    fn request(&self, records: Vec<Record>) -> Result<(Request, PendingAppend)> {
        if records.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let mut bytes = 0;
        for record in &records {
            if record.payload.len() > self.config.record_bytes_max as usize {
                return Err(Error::RecordTooLarge {
                    size: record.payload.len(),
                    max: self.config.record_bytes_max,
                });
            }
            bytes += record.payload.len() + format::FRAME_HEADER_BYTES;
        }
        if bytes > self.config.request_bytes_max {
            return Err(Error::BatchTooLarge {
                size: bytes,
                max: self.config.request_bytes_max,
            });
        }
        let (reply, receiver) = oneshot::channel();
        Ok((
            Request {
                records,
                bytes,
                enqueued: std::time::Instant::now(),
                lazy: false,
                reply,
            },
            PendingAppend { reply: receiver },
        ))
    }

    fn sender(&self) -> Result<&mpsc::Sender<Request>> {
        self.sender.as_ref().ok_or(Error::Closed)
    }

    /// Appends one record; resolves to its LSN once durable.
    pub async fn append_one(&self, record: Record) -> Result<Lsn> {
        Ok(Log::append(self, vec![record]).await?.first)
    }

    /// Queues a request without waiting for queue space.
    fn enqueue(&self, records: Vec<Record>, lazy: bool) -> Result<PendingAppend> {
        let (mut request, pending) = self.request(records)?;
        request.lazy = lazy;
        self.sender()?.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::QueueFull(self.config.queue_depth_max),
            mpsc::error::TrySendError::Closed(_) => Error::Closed,
        })?;
        Ok(pending)
    }

    /// Appends records from synchronous code (never call inside an async runtime).
    pub fn append_blocking(&self, records: Vec<Record>) -> Result<Appended> {
        let (request, pending) = self.request(records)?;
        self.sender()?
            .blocking_send(request)
            .map_err(|_| Error::Closed)?;
        pending.wait()
    }

    /// Reads up to `max_records` records starting at `from_lsn`.
    pub fn read(&self, from_lsn: Lsn, max_records: usize) -> Result<Vec<StoredRecord>> {
        Cursor::new(self.catalog.clone(), from_lsn).next_batch(max_records)
    }

    /// What the writer has done since open.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What recovery found when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The shared catalog (segment list, durable LSN).
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The log directory.
    pub fn dir(&self) -> &PathBuf {
        &self.catalog.dir
    }

    /// Stops accepting appends, finishes every queued one, and stops the writer.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Log for Wal {
    fn record_bytes_max(&self) -> usize {
        self.config.record_bytes_max as usize
    }

    fn submit(&self, records: Vec<Record>) -> Result<PendingAppend> {
        self.enqueue(records, false)
    }

    fn submit_lazy(&self, records: Vec<Record>) -> Result<PendingAppend> {
        self.enqueue(records, true)
    }

    fn append(&self, records: Vec<Record>) -> impl Future<Output = Result<Appended>> + Send {
        let prepared = self
            .request(records)
            .and_then(|r| Ok((r, self.sender()?.clone())));
        async move {
            let ((request, pending), sender) = prepared?;
            sender.send(request).await.map_err(|_| Error::Closed)?;
            pending.await
        }
    }

    fn durable_lsn(&self) -> Lsn {
        self.catalog.durable_lsn()
    }

    fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.catalog.subscribe()
    }

    fn cursor(&self, from_lsn: Lsn) -> Cursor {
        Cursor::new(self.catalog.clone(), from_lsn)
    }
}

/// A read-only view of a log directory as it was when opened. Takes no lock and changes
/// nothing, so it works on a copy, on a stopped server's directory, and beside a running
/// writer (up to what that writer had written when this was opened).
#[derive(Debug)]
pub struct WalReader {
    catalog: Arc<Catalog>,
    report: RecoveryReport,
}

impl WalReader {
    /// Opens `dir` read-only on the real file system.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(Arc::new(RealFs), dir)
    }

    /// Opens `dir` read-only on the given file system, verifying every frame on the way.
    pub fn open_with(fs: Arc<dyn FileSystem>, dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_visiting(fs, dir, |_, _, _| {})
    }

    /// Like [`WalReader::open_with`], calling `visit` with every record during verification.
    pub fn open_visiting(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        visit: impl FnMut(Lsn, RecordMeta, &[u8]),
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let recovered = recovery::recover(fs.as_ref(), &dir, Mode::ReadOnly, visit)?;
        let catalog = Arc::new(Catalog::new(
            fs,
            dir,
            u32::MAX,
            recovered.segments,
            recovered.next_lsn - 1,
        ));
        Ok(Self {
            catalog,
            report: recovered.report,
        })
    }

    /// What verification found (segments, records, a torn tail).
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The last LSN readable.
    pub fn last_lsn(&self) -> Lsn {
        self.catalog.durable_lsn()
    }

    /// A cursor positioned at `from_lsn`.
    pub fn cursor(&self, from_lsn: Lsn) -> Cursor {
        Cursor::new(self.catalog.clone(), from_lsn)
    }

    /// The shared catalog (segment list).
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}
