//! The projection runner: tails the log's durable events, folds them in batches and hands each
//! batch to its projection, which stores the batch's last LSN atomically with its writes.
//!
//! A failing projection (Redis down, disk full) never touches ingestion: the runner only
//! reads the log. It keeps the failed batch, backs off (doubling from
//! [`RunnerConfig::backoff_min`] to [`RunnerConfig::backoff_max`]) and retries; while it
//! waits it reads no further than [`RunnerConfig::batch_events_max`] events, so its memory
//! stays bounded however long the outage lasts.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use symphainy_engine::State;
use symphainy_wal::{Log, Lsn};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fold::{Batch, Fold};
use crate::{Error, Result};

/// A view of the log kept up to date by a [`Runner`].
pub trait Projection: Send + 'static {
    /// A stable name, used in metrics.
    fn name(&self) -> &'static str;
    /// The LSN up to which the projection's stored writes go (0 when empty).
    fn applied_lsn(&mut self) -> impl Future<Output = Result<Lsn>> + Send;
    /// Stores what `batch` changed, rendered from `state` (folded up to `batch.last_lsn`),
    /// together with `batch.last_lsn`, atomically.
    fn write(&mut self, state: &State, batch: &Batch) -> impl Future<Output = Result<()>> + Send;
    /// Deletes everything the projection stored.
    fn clear(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// Limits and pacing of a runner.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Most events folded into one batch (and most held while the projection is failing).
    pub batch_events_max: usize,
    /// First delay after a failed write; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A projection behind the log that made no progress for this long is reported stalled.
    pub stall_after: Duration,
    /// Least time between two writes when the runner is keeping up: events arriving
    /// meanwhile join one batch, so an entity touched by several of them (an execution's
    /// steps) is rendered once instead of once per event. Zero writes as soon as possible.
    pub coalesce: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_events_max: 8_192,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            stall_after: Duration::from_secs(5),
            coalesce: Duration::ZERO,
        }
    }
}

/// What a runner reports (CONTRACT section 7, `projections`).
#[derive(Debug)]
pub struct ProjectionStatus {
    pub name: &'static str,
    applied_lsn: AtomicU64,
    events_applied: AtomicU64,
    batches: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_progress: Mutex<Instant>,
    stall_after: Duration,
}

/// A point-in-time copy of a [`ProjectionStatus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub name: &'static str,
    pub applied_lsn: Lsn,
    /// Durable events not yet applied (LSNs are dense, so this is also the LSN distance).
    pub lag_events: u64,
    pub events_applied: u64,
    pub batches: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Behind the log with no progress for longer than the stall threshold.
    pub stalled: bool,
}

impl ProjectionStatus {
    fn new(name: &'static str, stall_after: Duration) -> Self {
        Self {
            name,
            applied_lsn: AtomicU64::new(0),
            events_applied: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_progress: Mutex::new(Instant::now()),
            stall_after,
        }
    }

    fn progressed(&self, applied: Lsn, events: u64) {
        self.applied_lsn.store(applied, Ordering::Release);
        self.events_applied.fetch_add(events, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = None;
        *lock(&self.last_progress) = Instant::now();
    }

    fn failed(&self, error: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(error.to_string());
    }

    /// Whether the last write (or the last attempt) succeeded.
    pub fn healthy(&self) -> bool {
        lock(&self.last_error).is_none()
    }

    pub fn applied_lsn(&self) -> Lsn {
        self.applied_lsn.load(Ordering::Acquire)
    }

    /// The status against the log's durable LSN `durable`.
    pub fn snapshot(&self, durable: Lsn) -> StatusSnapshot {
        let applied = self.applied_lsn();
        let lag = durable.saturating_sub(applied);
        StatusSnapshot {
            name: self.name,
            applied_lsn: applied,
            lag_events: lag,
            events_applied: self.events_applied.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            stalled: lag > 0 && lock(&self.last_progress).elapsed() > self.stall_after,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; the values stay meaningful.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running projection.
#[derive(Debug)]
pub struct Runner {
    status: Arc<ProjectionStatus>,
    applied: watch::Receiver<Lsn>,
    stop: watch::Sender<bool>,
    /// Becomes true when the task has ended (and dropped its projection).
    ended: watch::Receiver<bool>,
    /// Ends the runner's coalescing pause: a reader is waiting for it.
    flush: Arc<tokio::sync::Notify>,
    task: JoinHandle<()>,
}

impl Runner {
    /// Starts `projection` on `log` inside the current tokio runtime. `initial` is a state
    /// already folded from the log (the runtime's recovered state) that the runner may
    /// start from instead of refolding the log; pass `State::default()` otherwise.
    pub fn start<L: Log, P: Projection>(
        log: Arc<L>,
        projection: P,
        initial: State,
        config: RunnerConfig,
    ) -> Self {
        let status = Arc::new(ProjectionStatus::new(projection.name(), config.stall_after));
        let (applied_tx, applied) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(false);
        let (ended_tx, ended) = watch::channel(false);
        let flush = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn({
            let status = status.clone();
            let flush = flush.clone();
            async move {
                let signals = Signals {
                    applied_tx,
                    stop: stop_rx,
                    flush,
                };
                run(log, projection, initial, config, status, signals).await;
                let _ = ended_tx.send(true);
            }
        });
        Self {
            status,
            applied,
            stop,
            ended,
            flush,
            task,
        }
    }

    pub fn status(&self) -> &Arc<ProjectionStatus> {
        &self.status
    }

    /// A receiver of the applied LSN.
    pub fn applied(&self) -> watch::Receiver<Lsn> {
        self.applied.clone()
    }

    /// Waits until the projection applied `lsn`, or `timeout` passed; true if it did. A
    /// runner pausing to let events gather (`RunnerConfig::coalesce`) writes at once instead,
    /// so a waiting reader never waits for the pause.
    pub async fn wait_applied(&self, lsn: Lsn, timeout: Duration) -> bool {
        if *self.applied.borrow() >= lsn {
            return true;
        }
        self.flush.notify_one();
        wait_applied(self.applied.clone(), lsn, timeout).await
    }

    /// Stops after the batch in flight (its write completes or fails as a whole) and waits
    /// until the task has ended.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Kills the task at its next await point, as a crash would, and waits until it is gone
    /// (tests). A write in flight may or may not have reached the store.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Waits on an applied-LSN receiver until it reaches `lsn` or `timeout` passes.
pub async fn wait_applied(mut applied: watch::Receiver<Lsn>, lsn: Lsn, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, applied.wait_for(|a| *a >= lsn))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Sleeps for `delay` unless stopped first; true if stopped.
async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// The coalescing pause: `delay`, cut short by a waiting reader (`flush`); true if stopped.
async fn pause(
    delay: Duration,
    flush: &tokio::sync::Notify,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = flush.notified() => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// How a runner talks with its handle: the applied LSN out, stop and flush requests in.
struct Signals {
    applied_tx: watch::Sender<Lsn>,
    stop: watch::Receiver<bool>,
    flush: Arc<tokio::sync::Notify>,
}

/// Why a runner session ended.
enum Ended {
    Stopped,
    /// The store's checkpoint is not what the runner wrote: start over from the store.
    Resync {
        clear: bool,
    },
}

async fn run<L: Log, P: Projection>(
    log: Arc<L>,
    mut projection: P,
    initial: State,
    config: RunnerConfig,
    status: Arc<ProjectionStatus>,
    signals: Signals,
) {
    let Signals {
        applied_tx,
        mut stop,
        flush,
    } = signals;
    let mut initial = Some(initial);
    let mut clear = false;
    loop {
        let session = Session {
            log: &log,
            config: &config,
            status: &status,
            applied_tx: &applied_tx,
            name: projection.name(),
            backoff: config.backoff_min,
            flush: &flush,
        };
        match session
            .run(
                &mut projection,
                initial.take().unwrap_or_default(),
                clear,
                &mut stop,
            )
            .await
        {
            Ended::Stopped => return,
            Ended::Resync { clear: c } => clear = c,
        }
    }
}

/// One pass of a runner: find the checkpoint, fold up to it, then tail the log.
struct Session<'a, L: Log> {
    log: &'a Arc<L>,
    config: &'a RunnerConfig,
    status: &'a ProjectionStatus,
    applied_tx: &'a watch::Sender<Lsn>,
    name: &'static str,
    backoff: Duration,
    flush: &'a tokio::sync::Notify,
}

impl<L: Log> Session<'_, L> {
    /// Records a failure and sleeps the backoff; true if stopped meanwhile.
    async fn fail(&mut self, e: &Error, what: &str, stop: &mut watch::Receiver<bool>) -> bool {
        self.status.failed(e);
        tracing::warn!(projection = self.name, error = %e, retry_in_ms = self.backoff.as_millis() as u64, "{what}");
        let stopped = sleep_or_stop(self.backoff, stop).await;
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
        stopped
    }

    async fn run<P: Projection>(
        mut self,
        projection: &mut P,
        initial: State,
        mut clear: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let name = self.name;
        let log = self.log.clone();
        // Where the projection is.
        let applied = loop {
            if clear {
                match projection.clear().await {
                    Ok(()) => clear = false,
                    Err(e) => {
                        if self.fail(&e, "clearing the projection failed", stop).await {
                            return Ended::Stopped;
                        }
                        continue;
                    }
                }
            }
            match projection.applied_lsn().await.map_err(crate::damaged) {
                Ok(lsn) if lsn > log.durable_lsn() => {
                    tracing::warn!(
                        projection = name,
                        applied = lsn,
                        log_lsn = log.durable_lsn(),
                        "projection is ahead of the log (built from another data directory?); rebuilding it"
                    );
                    clear = true;
                }
                Ok(lsn) => break lsn,
                Err(Error::StoreCorrupt(reason)) => {
                    let e = Error::StoreCorrupt(reason);
                    if self
                        .fail(
                            &e,
                            "clearing the projection and rebuilding it from the log",
                            stop,
                        )
                        .await
                    {
                        return Ended::Stopped;
                    }
                    clear = true;
                }
                Err(e) => {
                    if self.fail(&e, "projection unreachable", stop).await {
                        return Ended::Stopped;
                    }
                }
            }
        };
        // Fold up to the checkpoint without writing.
        let mut fold = if initial.last_lsn <= applied {
            Fold::from_state(initial)
        } else {
            Fold::default()
        };
        let mut cursor = log.cursor(fold.lsn() + 1);
        while fold.lsn() < applied {
            let want = (applied - fold.lsn()).min(self.config.batch_events_max as u64) as usize;
            let mut failure = None;
            let seen = cursor.visit(want, |lsn, meta, payload| {
                if failure.is_none()
                    && let Err(e) = fold.apply_silently(lsn, meta, payload)
                {
                    failure = Some(e);
                }
            });
            if let Some(e) = failure.or_else(|| seen.err().map(Error::from)) {
                self.status.failed(&e);
                tracing::error!(projection = name, error = %e, "projection cannot read the log; it stops");
                return Ended::Stopped;
            }
        }
        fold.evict_all_finished();
        self.status.progressed(applied, 0);
        let _ = self.applied_tx.send(applied);
        tracing::info!(
            projection = name,
            applied_lsn = applied,
            "projection running"
        );
        let mut durable = log.subscribe();
        let mut pending: Option<Batch> = None;
        loop {
            if *stop.borrow() {
                return Ended::Stopped;
            }
            // Read more unless a failed batch is already full.
            let held = pending.as_ref().map_or(0, Batch::events) as usize;
            if held < self.config.batch_events_max {
                if let Some(batch) = pending.take() {
                    fold.restore_batch(batch);
                }
                let mut failure = None;
                let seen =
                    cursor.visit(self.config.batch_events_max - held, |lsn, meta, payload| {
                        if failure.is_none()
                            && let Err(e) = fold.apply_record(lsn, meta, payload)
                        {
                            failure = Some(e);
                        }
                    });
                if let Some(e) = failure.or_else(|| seen.err().map(Error::from)) {
                    self.status.failed(&e);
                    tracing::error!(projection = name, error = %e, "projection cannot read the log; it stops");
                    return Ended::Stopped;
                }
                let batch = fold.take_batch();
                if !batch.is_empty() {
                    pending = Some(batch);
                }
            }
            let Some(batch) = pending.take() else {
                // Caught up: wait for the log to grow.
                durable.mark_unchanged();
                if cursor.next_lsn() <= log.durable_lsn() {
                    continue;
                }
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { return Ended::Stopped },
                    _ = stop.wait_for(|s| *s) => return Ended::Stopped,
                }
                continue;
            };
            match projection
                .write(fold.state(), &batch)
                .await
                .map_err(crate::damaged)
            {
                Ok(()) => {
                    fold.evict_finished(&batch);
                    self.status.progressed(batch.last_lsn, batch.events());
                    let _ = self.applied_tx.send(batch.last_lsn);
                    if self.backoff > self.config.backoff_min {
                        tracing::info!(
                            projection = name,
                            applied_lsn = batch.last_lsn,
                            "projection recovered"
                        );
                    }
                    self.backoff = self.config.backoff_min;
                    // Keeping up (a short batch): let the next events gather.
                    if !self.config.coalesce.is_zero()
                        && (batch.events() as usize) < self.config.batch_events_max
                        && pause(self.config.coalesce, self.flush, stop).await
                    {
                        return Ended::Stopped;
                    }
                }
                Err(Error::Diverged { expected, found }) => {
                    let e = Error::Diverged { expected, found };
                    self.status.failed(&e);
                    tracing::warn!(projection = name, error = %e, "projection store diverged from the log");
                    // Behind what was written: the store lost writes, start it over. Ahead:
                    // an earlier attempt of this batch landed after all; resume from there.
                    return Ended::Resync {
                        clear: found.unwrap_or(0) < expected,
                    };
                }
                Err(Error::StoreCorrupt(reason)) => {
                    let e = Error::StoreCorrupt(reason);
                    self.status.failed(&e);
                    tracing::error!(projection = name, error = %e, "clearing the projection and rebuilding it from the log");
                    return Ended::Resync { clear: true };
                }
                Err(e) => {
                    pending = Some(batch);
                    if self
                        .fail(&e, "projection write failed; retrying", stop)
                        .await
                    {
                        return Ended::Stopped;
                    }
                }
            }
        }
    }
}

/// Events per batch of a rebuild: large, so an entity touched all over the log (a session)
/// is rendered once per batch rather than once per few events.
pub const REBUILD_BATCH_EVENTS: usize = 65_536;

/// What a rebuild did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RebuildReport {
    pub events: u64,
    pub batches: u64,
    pub last_lsn: Lsn,
    pub seconds: f64,
}

/// Deletes the projection and rebuilds it from every record `cursor` yields (to its end),
/// in batches of `batch_events`. `progress` is called after each batch with the last LSN.
pub async fn rebuild<P: Projection>(
    projection: &mut P,
    cursor: &mut symphainy_wal::Cursor,
    batch_events: usize,
    mut progress: impl FnMut(Lsn),
) -> Result<RebuildReport> {
    let started = Instant::now();
    projection.clear().await?;
    let mut fold = Fold::default();
    let (mut events, mut batches) = (0, 0);
    loop {
        let mut failure = None;
        let seen = cursor.visit(batch_events.max(1), |lsn, meta, payload| {
            if failure.is_none()
                && let Err(e) = fold.apply_record(lsn, meta, payload)
            {
                failure = Some(e);
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if seen == 0 {
            break;
        }
        let batch = fold.take_batch();
        projection.write(fold.state(), &batch).await?;
        fold.evict_finished(&batch);
        events += batch.events();
        batches += 1;
        progress(batch.last_lsn);
    }
    Ok(RebuildReport {
        events,
        batches,
        last_lsn: fold.lsn(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
