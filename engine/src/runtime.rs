//! The runtime: command -> events -> append -> apply -> dispatch.
//!
//! Ownership: the runtime owns execution (sessions, tenant context, execution lifecycle, the
//! WAL, saga coordination, intent ingestion). It decides events from its state under one lock,
//! submits them to the log and applies them in the same critical section, so the state always
//! folds events in LSN order. Nothing is acknowledged before the log says it is durable: the
//! callers await `durable`, and reads go through [`Runtime::read`], which waits until the LSN
//! they observed is durable. A log failure stops the runtime (fail-stop); a restart recovers
//! from the log.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use symphainy_wal::{Log, Lsn, PendingAppend};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::codec;
use crate::error::{Error, Result};
use crate::event::{CapabilitySpec, Event, EventBody, SYSTEM_TENANT};
use crate::id::{Clock, Id, IdSource, TimestampMs};
use crate::metrics::EngineMetrics;
use crate::saga::{
    CapabilityHandler, Guarded, Next, Registry, STEP_ERROR_CODE_BYTES_MAX, StepError, StepInput,
    plan_next,
};
use crate::state::{Execution, Session, State};

/// Limits and tunables of the runtime. Every field documents its default.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Open sessions per tenant. Default 10,000.
    pub sessions_open_per_tenant_max: u64,
    /// Bytes of an intent payload (JSON). Default 1 MiB.
    pub payload_bytes_max: usize,
    /// Bytes of a session context (JSON). Default 64 KiB.
    pub context_bytes_max: usize,
    /// Bytes of one step output (JSON). Default 4 MiB.
    pub step_output_bytes_max: usize,
    /// Bytes of a failure's message recorded in the log (a step's error, a failed
    /// compensation); a longer one is cut at a character boundary and marked `…`. A step's
    /// error may carry text from outside (a parser's, a remote service's), so it is bounded
    /// like an output. Default 4 KiB.
    pub failure_message_bytes_max: usize,
    /// Bytes of an idempotency key. Default 256.
    pub idempotency_key_bytes_max: usize,
    /// Bytes of a user id. Default 256.
    pub user_id_bytes_max: usize,
    /// Longest token lifetime. Default 90 days.
    pub token_ttl_seconds_max: u64,
    /// Sagas driven concurrently; more wait for a slot. Default 65,536.
    pub sagas_in_flight_max: usize,
    /// How long a failed commit by a saga driver waits before retrying when the log is
    /// overloaded. Default 5 ms.
    pub overload_retry_ms: u64,
}

/// The most an event adds, encoded, to the JSON text or failure message it carries, besides
/// an idempotency key and a user id (bounded by their own limits): a tenant id (63 bytes),
/// three ids (48), intent type, realm, capability and step names, an error code
/// (`STEP_ERROR_CODE_BYTES_MAX`), numbers and length prefixes.
pub const EVENT_ENVELOPE_FIXED_BYTES: usize = 512;

/// The envelope at the default idempotency key and user id limits (256 bytes each).
pub const EVENT_ENVELOPE_BYTES_MAX: usize = EVENT_ENVELOPE_FIXED_BYTES + 256 + 256;

impl RuntimeConfig {
    /// The most an event adds to the text it carries under this configuration's limits.
    pub fn envelope_bytes(&self) -> usize {
        EVENT_ENVELOPE_FIXED_BYTES + self.idempotency_key_bytes_max + self.user_id_bytes_max
    }

    /// This configuration with its byte limits (payloads, contexts, step outputs, failure
    /// messages) lowered to what one record of a log taking `record_bytes_max` holds once the
    /// envelope is set aside.
    pub fn fitted_to(mut self, record_bytes_max: usize) -> Self {
        let room = record_bytes_max.saturating_sub(self.envelope_bytes());
        self.payload_bytes_max = self.payload_bytes_max.min(room);
        self.context_bytes_max = self.context_bytes_max.min(room);
        self.step_output_bytes_max = self.step_output_bytes_max.min(room);
        self.failure_message_bytes_max = self.failure_message_bytes_max.min(room);
        self
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            sessions_open_per_tenant_max: 10_000,
            payload_bytes_max: 1024 * 1024,
            context_bytes_max: 64 * 1024,
            step_output_bytes_max: 4 * 1024 * 1024,
            failure_message_bytes_max: 4 * 1024,
            idempotency_key_bytes_max: 256,
            user_id_bytes_max: 256,
            token_ttl_seconds_max: 90 * 24 * 3600,
            sagas_in_flight_max: 65_536,
            overload_retry_ms: 5,
        }
    }
}

/// Whether `intent` (its payload encoded as `payload_json`) asks for what execution `e` was
/// started for: same session, intent type and payload. Payloads are compared as JSON values
/// when their text differs (the same object with its keys in another order is the same).
fn same_intent(e: &Execution, intent: &SubmitIntent, payload_json: &str) -> bool {
    e.session_id == intent.session_id
        && *e.intent_type == *intent.intent_type
        && (*e.payload_json == *payload_json
            || serde_json::from_str::<serde_json::Value>(&e.payload_json)
                .is_ok_and(|recorded| recorded == intent.payload))
}

/// `text` cut to at most `max` bytes at a character boundary, ending with `…` when cut.
fn bounded(mut text: String, max: usize) -> String {
    const MARK: &str = "…";
    if text.len() > max {
        text.truncate(text.floor_char_boundary(max.saturating_sub(MARK.len())));
        if text.len() + MARK.len() <= max {
            text.push_str(MARK);
        }
    }
    text
}

/// Checks a tenant id against `^[a-z0-9][a-z0-9_-]{0,62}$`.
pub fn valid_tenant_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// An intent to submit.
#[derive(Clone, Debug)]
pub struct SubmitIntent {
    pub tenant_id: String,
    pub session_id: Id,
    pub intent_type: String,
    /// When given, must match the capability's realm.
    pub realm: Option<String>,
    pub payload: serde_json::Value,
    pub idempotency_key: Option<String>,
}

/// The answer to a submitted intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub execution_id: Id,
    pub intent_id: Id,
    /// LSN of the `intent_received` event.
    pub lsn: Lsn,
    /// True when an earlier intent with the same idempotency key answered.
    pub duplicate: bool,
}

/// A token that was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub token_id: Id,
    pub tenant_id: String,
    pub user_id: String,
    pub expires_at_ms: TimestampMs,
}

/// Events submitted to the log and applied, not yet known durable.
#[derive(Debug)]
struct Committed {
    pending: PendingAppend,
    first: Lsn,
    last: Lsn,
}

#[derive(Debug)]
struct Core {
    state: State,
    next_lsn: Lsn,
}

/// The runtime over a log backend.
#[derive(Debug)]
pub struct Runtime<L: Log> {
    log: Arc<L>,
    core: Mutex<Core>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    config: RuntimeConfig,
    stopped: watch::Sender<Option<String>>,
    waiters: Mutex<HashMap<Id, Vec<oneshot::Sender<()>>>>,
    driving: Mutex<HashSet<Id>>,
    saga_slots: Arc<Semaphore>,
    metrics: EngineMetrics,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Code holding these locks does not panic; if it ever did, the data is still the last
    // consistent fold, so keep going rather than poisoning every later request.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Folds records into a state one at a time, e.g. as the WAL's verification scan hands them
/// over ([`symphainy_wal::Wal::open_visiting`]), so recovery reads the log once.
#[derive(Debug, Default)]
pub struct Replayer {
    state: State,
    applied: u64,
    failure: Option<Error>,
}

impl Replayer {
    /// Starts from `state` (empty, or a snapshot).
    pub fn from_state(state: State) -> Self {
        Self {
            state,
            applied: 0,
            failure: None,
        }
    }

    /// Applies one record; records at or below the state's LSN are skipped (a snapshot
    /// already holds them). The first undecodable record stops the fold.
    pub fn visit(&mut self, lsn: Lsn, meta: symphainy_wal::RecordMeta, payload: &[u8]) {
        if self.failure.is_some() || (lsn <= self.state.last_lsn && self.state.last_lsn > 0) {
            return;
        }
        match decode_record(lsn, meta, payload) {
            Ok(event) => self.apply(lsn, event),
            Err(e) => self.failure = Some(e),
        }
    }

    /// Applies one decoded event.
    fn apply(&mut self, lsn: Lsn, event: crate::event::Event) {
        self.state.apply(lsn, event);
        self.applied += 1;
    }

    /// The folded state and how many events were applied, or the first decode failure.
    pub fn finish(self) -> Result<(State, u64)> {
        match self.failure {
            Some(e) => Err(e),
            None => Ok((self.state, self.applied)),
        }
    }
}

/// Replays every record of `log` from LSN 1 into a fresh state.
pub fn replay<L: Log>(log: &L) -> Result<State> {
    let mut cursor = log.cursor(1);
    replay_cursor(&mut cursor, None).map(|(state, _)| state)
}

/// Replays a cursor up to `to_lsn` (inclusive; all when `None`); returns the state and how
/// many events were applied. An undecodable record is an error naming its LSN.
pub fn replay_cursor(
    cursor: &mut symphainy_wal::Cursor,
    to_lsn: Option<Lsn>,
) -> Result<(State, u64)> {
    replay_cursor_with(cursor, to_lsn, &|_| true, &|_| {})
}

/// Like [`replay_cursor`], folding only the events `keep` accepts (decided on the reading
/// thread), and telling `progress` the last LSN read after every chunk.
pub fn replay_cursor_with(
    cursor: &mut symphainy_wal::Cursor,
    to_lsn: Option<Lsn>,
    keep: &(dyn Fn(&crate::event::Event) -> bool + Sync),
    progress: &(dyn Fn(Lsn) + Sync),
) -> Result<(State, u64)> {
    // Two stages on two threads, in LSN order: this thread folds while a reader thread reads,
    // checks and decodes the next chunk of records. The fold sees exactly the sequence a
    // single-threaded replay would; only decoding moves.
    let (chunks, folded) = std::sync::mpsc::sync_channel::<DecodedChunk>(REPLAY_CHUNKS_IN_FLIGHT);
    // Emptied chunks go back to the reader, so the chunk buffers are allocated once.
    let (recycle, recycled) = std::sync::mpsc::channel::<Vec<(Lsn, crate::event::Event)>>();
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("replay-decoder".into())
            .spawn_scoped(scope, move || {
                decode_chunks(cursor, to_lsn, keep, progress, &chunks, &recycled)
            })
            .map_err(|e| Error::Replay(format!("starting the decoder thread: {e}")))?;
        let mut replayer = Replayer::default();
        for chunk in folded {
            let mut chunk = chunk?;
            for (lsn, event) in chunk.drain(..) {
                replayer.apply(lsn, event);
            }
            let _ = recycle.send(chunk);
        }
        reader
            .join()
            .map_err(|_| Error::Replay("the decoder thread panicked".into()))??;
        replayer.finish()
    })
}

/// Decodes the record at `lsn`, naming it in the error.
fn decode_record(
    lsn: Lsn,
    meta: symphainy_wal::RecordMeta,
    payload: &[u8],
) -> Result<crate::event::Event> {
    codec::decode(meta, payload).map_err(|e| Error::Codec(format!("LSN {lsn}: {e}")))
}

/// Records the replay decoder hands over at once.
pub const REPLAY_CHUNK_RECORDS: usize = 8192;
/// Decoded chunks waiting for the fold (bounds the replay's extra memory).
pub const REPLAY_CHUNKS_IN_FLIGHT: usize = 4;

type DecodedChunk = Result<Vec<(Lsn, crate::event::Event)>>;

/// The replay's reading stage: reads, checks and decodes records up to `to_lsn` and sends
/// them in chunks; the first decode failure is sent and ends it.
fn decode_chunks(
    cursor: &mut symphainy_wal::Cursor,
    to_lsn: Option<Lsn>,
    keep: &(dyn Fn(&crate::event::Event) -> bool + Sync),
    progress: &(dyn Fn(Lsn) + Sync),
    out: &std::sync::mpsc::SyncSender<DecodedChunk>,
    recycled: &std::sync::mpsc::Receiver<Vec<(Lsn, crate::event::Event)>>,
) -> Result<()> {
    loop {
        let limit = to_lsn.map_or(usize::MAX, |to| {
            to.saturating_sub(cursor.next_lsn() - 1) as usize
        });
        if limit == 0 {
            return Ok(());
        }
        let mut chunk = recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(REPLAY_CHUNK_RECORDS));
        let mut failure = None;
        let seen = cursor.visit(limit.min(REPLAY_CHUNK_RECORDS), |lsn, meta, payload| {
            if failure.is_none() {
                match decode_record(lsn, meta, payload) {
                    Ok(event) if keep(&event) => chunk.push((lsn, event)),
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
            }
        })?;
        progress(cursor.next_lsn().saturating_sub(1));
        let done = seen == 0 || failure.is_some();
        let message = match failure {
            // What decoded before the failure is folded first, as a sequential replay would.
            Some(e) => {
                let _ = out.send(Ok(chunk));
                Err(e)
            }
            None => Ok(chunk),
        };
        if out.send(message).is_err() || done {
            return Ok(());
        }
    }
}

impl<L: Log> Runtime<L> {
    /// Recovers the state from the log, registers the registry's capabilities (logging each
    /// new one), and resumes every saga that was in flight. Call inside a tokio runtime.
    pub async fn start(
        log: Arc<L>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        config: RuntimeConfig,
    ) -> Result<Arc<Self>> {
        let state = replay(log.as_ref())?;
        Self::start_with_state(log, state, registry, clock, ids, config).await
    }

    /// Like [`Runtime::start`] with the state already folded from the whole log (by a
    /// [`Replayer`] fed during the WAL's open). The state must end where the log ends.
    pub async fn start_with_state(
        log: Arc<L>,
        state: State,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        config: RuntimeConfig,
    ) -> Result<Arc<Self>> {
        if state.last_lsn != log.durable_lsn() {
            return Err(Error::Codec(format!(
                "the recovered state ends at LSN {} but the log at {}",
                state.last_lsn,
                log.durable_lsn()
            )));
        }
        let config = config.fitted_to(log.record_bytes_max());
        let next_lsn = state.last_lsn + 1;
        let (stopped, _) = watch::channel(None);
        let runtime = Arc::new(Self {
            log,
            core: Mutex::new(Core { state, next_lsn }),
            registry,
            clock,
            ids,
            saga_slots: Arc::new(Semaphore::new(config.sagas_in_flight_max)),
            config,
            stopped,
            waiters: Mutex::new(HashMap::new()),
            driving: Mutex::new(HashSet::new()),
            metrics: EngineMetrics::default(),
        });
        runtime.register_capabilities().await?;
        let in_flight: Vec<Id> = {
            let core = lock(&runtime.core);
            let mut ids: Vec<Id> = core
                .state
                .executions
                .values()
                .filter(|e| !e.status.is_terminal())
                .map(|e| e.execution_id)
                .collect();
            ids.sort_unstable();
            ids
        };
        if !in_flight.is_empty() {
            tracing::info!(
                count = in_flight.len(),
                "resuming sagas that were in flight"
            );
        }
        for id in in_flight {
            runtime.spawn_saga(id);
        }
        Ok(runtime)
    }

    async fn register_capabilities(&self) -> Result<()> {
        let specs: Vec<CapabilitySpec> = self.registry.capabilities().cloned().collect();
        for spec in specs {
            let (committed, ()) =
                self.commit(
                    |state, now| match state.capability(&spec.name, spec.version) {
                        Some(known) if known == &spec => Ok((Vec::new(), ())),
                        Some(_) => Err(Error::InvalidRequest(format!(
                            "capability {} version {} changed; register it under a new version",
                            spec.name, spec.version
                        ))),
                        None => Ok((
                            vec![event(
                                SYSTEM_TENANT,
                                now,
                                EventBody::CapabilityRegistered { spec: spec.clone() },
                            )],
                            (),
                        )),
                    },
                )?;
            if let Some(c) = committed {
                self.durable(c).await?;
            }
        }
        Ok(())
    }

    /// The registry (curator and handlers).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The log.
    pub fn log(&self) -> &Arc<L> {
        &self.log
    }

    /// Step counters and latencies.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Callers held as waiting in `wait_finished` for an execution to end (one that gave up is
    /// let go when the next one starts waiting on the same execution, or when it ends).
    pub fn result_waiters(&self) -> usize {
        lock(&self.waiters).values().map(Vec::len).sum()
    }

    /// Why the runtime stopped, if it did.
    pub fn stopped_reason(&self) -> Option<String> {
        self.stopped.borrow().clone()
    }

    fn stop(&self, reason: String) {
        tracing::error!(%reason, "runtime stopped: restart to recover from the log");
        self.stopped.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    fn check_running(&self) -> Result<()> {
        match self.stopped_reason() {
            Some(reason) => Err(Error::Stopped(reason)),
            None => Ok(()),
        }
    }

    /// Decides events from the state, submits them to the log and applies them, atomically
    /// with respect to every other commit.
    fn commit<T>(
        &self,
        decide: impl FnOnce(&State, TimestampMs) -> Result<(Vec<Event>, T)>,
    ) -> Result<(Option<Committed>, T)> {
        self.commit_as(Durability::Now, decide)
    }

    /// [`Runtime::commit`], saying whether somebody will wait for the events' durability.
    fn commit_as<T>(
        &self,
        durability: Durability,
        decide: impl FnOnce(&State, TimestampMs) -> Result<(Vec<Event>, T)>,
    ) -> Result<(Option<Committed>, T)> {
        self.check_running()?;
        let mut core = lock(&self.core);
        let now = self.clock.now_ms();
        let (events, value) = decide(&core.state, now)?;
        if events.is_empty() {
            return Ok((None, value));
        }
        let records = events
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>>>()?;
        let submitted = match durability {
            Durability::Now => self.log.submit(records),
            Durability::WithNext => self.log.submit_lazy(records),
        };
        let pending = match submitted {
            Ok(pending) => pending,
            Err(symphainy_wal::Error::QueueFull(_)) => return Err(Error::Overloaded),
            // Refused before anything was queued: this command's failure, not the log's
            // (the byte limits fitted to the log keep it from happening).
            Err(
                e @ (symphainy_wal::Error::RecordTooLarge { .. }
                | symphainy_wal::Error::BatchTooLarge { .. }),
            ) => {
                return Err(Error::TooLarge(format!("event too large for the log: {e}")));
            }
            Err(e) => {
                drop(core);
                self.stop(e.to_string());
                return Err(e.into());
            }
        };
        let first = core.next_lsn;
        self.metrics.record_events(
            events
                .iter()
                .map(|e| (e.tenant_id.as_str(), e.body.event_type())),
        );
        let count = events.len() as u64;
        for (offset, event) in events.into_iter().enumerate() {
            core.state.apply(first + offset as u64, event);
        }
        core.next_lsn += count;
        let last = core.next_lsn - 1;
        Ok((
            Some(Committed {
                pending,
                first,
                last,
            }),
            value,
        ))
    }

    /// Waits until committed events are durable; a failure stops the runtime.
    async fn durable(&self, committed: Committed) -> Result<Lsn> {
        match committed.pending.await {
            Ok(a) if a.first == committed.first && a.last == committed.last => Ok(a.last),
            Ok(a) => {
                let reason = format!(
                    "the log assigned LSNs {}..={} to events applied as {}..={}",
                    a.first, a.last, committed.first, committed.last
                );
                self.stop(reason.clone());
                Err(Error::Stopped(reason))
            }
            Err(e) => {
                self.stop(e.to_string());
                Err(Error::Stopped(e.to_string()))
            }
        }
    }

    /// Waits until `lsn` is durable (or the runtime stops).
    pub async fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let mut durable = self.log.subscribe();
        let mut stopped = self.stopped.subscribe();
        loop {
            if *durable.borrow_and_update() >= lsn {
                return Ok(());
            }
            if let Some(reason) = stopped.borrow_and_update().clone() {
                return Err(Error::Stopped(reason));
            }
            tokio::select! {
                changed = durable.changed() => changed.map_err(|_| Error::Stopped("log closed".into()))?,
                _ = stopped.changed() => {}
            }
        }
    }

    /// Reads from the state, then waits until everything the read saw is durable, so no
    /// caller ever sees an event that a crash could still take back.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        self.check_running()?;
        self.metrics.record_read();
        let (value, lsn) = {
            let core = lock(&self.core);
            (f(&core.state), core.state.last_lsn)
        };
        self.wait_durable(lsn).await?;
        Ok(value)
    }

    /// Reads the current state without waiting for durability. For checks that may only
    /// become stricter with newer events (token validity), never for answers.
    pub fn peek<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let core = lock(&self.core);
        f(&core.state)
    }

    /// The state digest and the LSN it covers (CONTRACT section 8).
    pub async fn digest(&self) -> Result<(Lsn, String)> {
        self.read(|state| (state.last_lsn, crate::digest::digest(state)))
            .await
    }

    fn now(&self) -> TimestampMs {
        self.clock.now_ms()
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, tenant_id: &str) -> Result<TimestampMs> {
        if !valid_tenant_id(tenant_id) {
            return Err(Error::InvalidTenantId);
        }
        let (committed, at) = self.commit(|state, now| {
            if state.tenants.contains_key(tenant_id) {
                return Err(Error::TenantExists(tenant_id.to_string()));
            }
            Ok((vec![event(tenant_id, now, EventBody::TenantCreated)], now))
        })?;
        if let Some(c) = committed {
            self.durable(c).await?;
        }
        Ok(at)
    }

    /// Issues a token record for a tenant's user (the secret is the caller's business).
    pub async fn issue_token(
        &self,
        tenant_id: &str,
        user_id: &str,
        ttl_seconds: u64,
    ) -> Result<IssuedToken> {
        if user_id.is_empty() || user_id.len() > self.config.user_id_bytes_max {
            return Err(Error::InvalidRequest(format!(
                "user_id must have 1 to {} bytes",
                self.config.user_id_bytes_max
            )));
        }
        if ttl_seconds == 0 || ttl_seconds > self.config.token_ttl_seconds_max {
            return Err(Error::InvalidRequest(format!(
                "ttl_seconds must be from 1 to {}",
                self.config.token_ttl_seconds_max
            )));
        }
        let token_id = self.ids.next_id(self.now());
        let (committed, issued) = self.commit(|state, now| {
            if !state.tenants.contains_key(tenant_id) {
                return Err(Error::NotFound { kind: "tenant" });
            }
            let expires_at_ms = now + (ttl_seconds as i64) * 1000;
            let body = EventBody::TokenIssued {
                token_id,
                user_id: user_id.to_string(),
                expires_at_ms,
            };
            let issued = IssuedToken {
                token_id,
                tenant_id: tenant_id.to_string(),
                user_id: user_id.to_string(),
                expires_at_ms,
            };
            Ok((vec![event(tenant_id, now, body)], issued))
        })?;
        if let Some(c) = committed {
            self.durable(c).await?;
        }
        Ok(issued)
    }

    /// Revokes a token by id; returns the tenant it belonged to.
    pub async fn revoke_token(&self, token_id: Id) -> Result<String> {
        let (committed, tenant) = self.commit(|state, now| {
            let tenant = state
                .token(token_id)
                .map(|(tenant, _)| tenant.to_string())
                .ok_or(Error::NotFound { kind: "token" })?;
            Ok((
                vec![event(&tenant, now, EventBody::TokenRevoked { token_id })],
                tenant,
            ))
        })?;
        if let Some(c) = committed {
            self.durable(c).await?;
        }
        Ok(tenant)
    }

    /// Opens a session for a tenant's user.
    pub async fn create_session(
        &self,
        tenant_id: &str,
        user_id: &str,
        context_json: String,
    ) -> Result<Session> {
        if context_json.len() > self.config.context_bytes_max {
            return Err(Error::TooLarge(format!(
                "context exceeds {} bytes",
                self.config.context_bytes_max
            )));
        }
        if user_id.is_empty() || user_id.len() > self.config.user_id_bytes_max {
            return Err(Error::InvalidRequest(
                "user_id has an invalid length".into(),
            ));
        }
        let session_id = self.ids.next_id(self.now());
        let (committed, ()) = self.commit(|state, now| {
            let tenant = state
                .tenants
                .get(tenant_id)
                .ok_or(Error::NotFound { kind: "tenant" })?;
            if tenant.sessions_open >= self.config.sessions_open_per_tenant_max {
                return Err(Error::LimitExceeded(format!(
                    "the tenant has {} open sessions, the limit",
                    tenant.sessions_open
                )));
            }
            let body = EventBody::SessionCreated {
                session_id,
                user_id: user_id.to_string(),
                context_json,
            };
            Ok((vec![event(tenant_id, now, body)], ()))
        })?;
        if let Some(c) = committed {
            self.durable(c).await?;
        }
        self.session(tenant_id, session_id).await
    }

    /// A tenant's session.
    pub async fn session(&self, tenant_id: &str, session_id: Id) -> Result<Session> {
        self.read(|state| state.session_of(tenant_id, session_id).cloned())
            .await?
            .ok_or(Error::NotFound { kind: "session" })
    }

    /// Closes a tenant's session; later intents on it are refused.
    pub async fn close_session(&self, tenant_id: &str, session_id: Id) -> Result<Session> {
        let (committed, ()) = self.commit(|state, now| {
            let session = state
                .session_of(tenant_id, session_id)
                .ok_or(Error::NotFound { kind: "session" })?;
            if session.closed_at_ms.is_some() {
                return Ok((Vec::new(), ()));
            }
            Ok((
                vec![event(
                    tenant_id,
                    now,
                    EventBody::SessionClosed { session_id },
                )],
                (),
            ))
        })?;
        if let Some(c) = committed {
            self.durable(c).await?;
        }
        self.session(tenant_id, session_id).await
    }

    /// A tenant's execution.
    pub async fn execution(&self, tenant_id: &str, execution_id: Id) -> Result<Execution> {
        self.read(|state| state.execution_of(tenant_id, execution_id).cloned())
            .await?
            .ok_or(Error::NotFound { kind: "execution" })
    }

    /// Ingests an intent: validate, resolve through the curator, append `intent_received` and
    /// `saga_started` durably, then drive the saga. Duplicates of an idempotency key get the
    /// first answer and append nothing.
    pub async fn submit_intent(self: &Arc<Self>, intent: SubmitIntent) -> Result<Submitted> {
        self.ingest(intent, Durability::Now).await
    }

    /// [`Runtime::submit_intent`] for a caller that then waits up to `wait` for the execution
    /// to finish; true when it did. The intent's events start no fdatasync of their own: the
    /// saga's end (which does) makes them durable with it, one fdatasync for a saga that ends
    /// at once instead of two, or the log within `symphainy_wal::LAZY_SYNC_DELAY`. Nothing
    /// is answered before the intent is durable, either way.
    pub async fn submit_and_wait(
        self: &Arc<Self>,
        intent: SubmitIntent,
        wait: Duration,
    ) -> Result<(Submitted, bool)> {
        let tenant_id = intent.tenant_id.clone();
        let submitted = self.ingest(intent, Durability::WithNext).await?;
        let finished = self
            .wait_finished(&tenant_id, submitted.execution_id, wait)
            .await?;
        Ok((submitted, finished))
    }

    async fn ingest(
        self: &Arc<Self>,
        intent: SubmitIntent,
        durability: Durability,
    ) -> Result<Submitted> {
        let payload_json = intent.payload.to_string();
        if payload_json.len() > self.config.payload_bytes_max {
            return Err(Error::TooLarge(format!(
                "payload exceeds {} bytes",
                self.config.payload_bytes_max
            )));
        }
        if let Some(key) = &intent.idempotency_key
            && (key.is_empty() || key.len() > self.config.idempotency_key_bytes_max)
        {
            return Err(Error::InvalidRequest(format!(
                "idempotency_key must have 1 to {} bytes",
                self.config.idempotency_key_bytes_max
            )));
        }
        let spec = self.registry.resolve(&intent.intent_type)?.clone();
        let spec = spec.as_ref();
        if let Some(realm) = &intent.realm
            && realm != &spec.realm
        {
            return Err(Error::InvalidRequest(format!(
                "intent type {} belongs to realm {}, not {realm}",
                intent.intent_type, spec.realm
            )));
        }
        let handler = self
            .registry
            .handler(&spec.name, spec.version)
            .ok_or_else(|| Error::MissingSteps(spec.name.clone()))?;
        let step_count = handler
            .plan(&intent.payload)
            .map_err(Error::InvalidRequest)?;
        let now = self.now();
        let (intent_id, execution_id) = (self.ids.next_id(now), self.ids.next_id(now));
        let (committed, submitted) = self.commit_as(durability, |state, now| {
            let tenant = &intent.tenant_id;
            if let Some(key) = &intent.idempotency_key
                && let Some(existing) = state
                    .tenants
                    .get(tenant)
                    .and_then(|t| t.idempotency.get(key))
                && let Some(e) = state.executions.get(existing)
            {
                if !same_intent(e, &intent, &payload_json) {
                    return Err(Error::IdempotencyKeyReused(e.execution_id));
                }
                let answer = Submitted {
                    execution_id: e.execution_id,
                    intent_id: e.intent_id,
                    lsn: e.intent_lsn,
                    duplicate: true,
                };
                return Ok((Vec::new(), answer));
            }
            let session = state
                .session_of(tenant, intent.session_id)
                .ok_or(Error::NotFound { kind: "session" })?;
            if session.closed_at_ms.is_some() {
                return Err(Error::SessionClosed(intent.session_id));
            }
            let received = EventBody::IntentReceived {
                session_id: intent.session_id,
                intent_id,
                execution_id,
                intent_type: intent.intent_type.clone(),
                realm: spec.realm.clone(),
                payload_json,
                idempotency_key: intent.idempotency_key.clone(),
            };
            let started = EventBody::SagaStarted {
                execution_id,
                capability: spec.name.clone(),
                capability_version: spec.version,
                step_count,
            };
            let lsn = state.last_lsn + 1;
            let answer = Submitted {
                execution_id,
                intent_id,
                lsn,
                duplicate: false,
            };
            Ok((
                vec![event(tenant, now, received), event(tenant, now, started)],
                answer,
            ))
        })?;
        match committed {
            Some(c) => {
                // The saga starts at once, in the same fsync window as its intent: a
                // deterministic step has no effects, a step with effects first waits until
                // its inputs (this intent included) are durable, and nothing is answered
                // before the intent is durable. A crash before that loses the intent and
                // whatever its saga did in memory, never anything acknowledged.
                self.spawn_saga(execution_id);
                self.durable(c).await?;
            }
            None => self.wait_durable(submitted.lsn + 1).await?,
        }
        Ok(submitted)
    }

    /// Waits up to `timeout` for an execution to finish; true when it did.
    pub async fn wait_finished(
        &self,
        tenant_id: &str,
        execution_id: Id,
        timeout: Duration,
    ) -> Result<bool> {
        let receiver = {
            let core = lock(&self.core);
            let e = core
                .state
                .execution_of(tenant_id, execution_id)
                .ok_or(Error::NotFound { kind: "execution" })?;
            if e.status.is_terminal() {
                None
            } else {
                let (tell, wait) = oneshot::channel();
                let mut waiters = lock(&self.waiters);
                let waiting = waiters.entry(execution_id).or_default();
                // Waiters that gave up (timed out, disconnected) leave with the next one, so a
                // long saga polled again and again holds only the waiters still there.
                waiting.retain(|w| !w.is_closed());
                waiting.push(tell);
                Some(wait)
            }
        };
        let finished = match receiver {
            None => true,
            Some(wait) => tokio::time::timeout(timeout, wait).await.is_ok(),
        };
        if finished {
            // The terminal event was applied; `read` returns once everything it saw (that
            // event included) is durable.
            self.read(|_| ()).await?;
        }
        Ok(finished)
    }

    fn spawn_saga(self: &Arc<Self>, execution_id: Id) {
        if !lock(&self.driving).insert(execution_id) {
            return;
        }
        let runtime = self.clone();
        tokio::spawn(async move {
            let permit = runtime.saga_slots.clone().acquire_owned().await;
            match runtime.drive(execution_id).await {
                // Every way a saga ends passes here: wake whoever waits for it.
                Ok(()) => {
                    if let Some(waiters) = lock(&runtime.waiters).remove(&execution_id) {
                        for waiter in waiters {
                            let _ = waiter.send(());
                        }
                    }
                }
                Err(e) => tracing::warn!(%execution_id, error = %e, "saga driver stopped"),
            }
            drop(permit);
            lock(&runtime.driving).remove(&execution_id);
        });
    }

    /// Runs an execution's saga to its end, one recorded transition at a time.
    async fn drive(&self, id: Id) -> Result<()> {
        loop {
            let Some(step) = self.next_action(id) else {
                return Ok(());
            };
            let (next, handler, spec, input, output) = step;
            match next {
                Next::Done => return Ok(()),
                Next::Finish(body) => {
                    let tenant = input.tenant_id.clone();
                    let committed = self
                        .commit_retrying(Durability::Now, |_, now| {
                            Ok(vec![event(&tenant, now, body.clone())])
                        })
                        .await?;
                    if let Some(c) = committed {
                        self.durable(c).await?;
                    }
                    return Ok(());
                }
                Next::ScheduleRetry {
                    index,
                    next_attempt,
                    delay_ms,
                } => {
                    let body = EventBody::StepRetryScheduled {
                        execution_id: id,
                        step_index: index,
                        next_attempt,
                        delay_ms,
                    };
                    self.commit_retrying(Durability::Now, |_, now| {
                        Ok(vec![event(&input.tenant_id, now, body.clone())])
                    })
                    .await?;
                }
                Next::StartCompensation { failed_index } => {
                    let body = EventBody::CompensationStarted {
                        execution_id: id,
                        failed_step_index: failed_index,
                    };
                    self.commit_retrying(Durability::Now, |_, now| {
                        Ok(vec![event(&input.tenant_id, now, body.clone())])
                    })
                    .await?;
                }
                Next::Compensate { index } => {
                    self.compensate(&spec, handler.as_ref(), input, index, output)
                        .await?;
                }
                Next::RunStep {
                    index,
                    attempt,
                    not_before_ms,
                } => {
                    if let Some(due) = not_before_ms {
                        let wait = due - self.now();
                        if wait > 0 {
                            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                        }
                    }
                    self.run_step(&spec, handler.as_ref(), input, index, attempt)
                        .await?;
                }
            }
        }
    }

    /// What the execution does next, with what it needs to do it.
    #[allow(clippy::type_complexity)]
    fn next_action(
        &self,
        id: Id,
    ) -> Option<(
        Next,
        Arc<dyn CapabilityHandler>,
        Arc<CapabilitySpec>,
        StepInput,
        Option<Arc<str>>,
    )> {
        let core = lock(&self.core);
        let e = core.state.executions.get(&id)?;
        // The registry's spec of this version equals the logged one (checked at start).
        let Some((spec, handler)) = self
            .registry
            .entry(&e.capability, e.capability_version)
            .cloned()
        else {
            let body = EventBody::SagaFailed {
                execution_id: id,
                code: "capability_unavailable".into(),
                message: format!(
                    "capability {} version {} is not registered on this node",
                    e.capability, e.capability_version
                ),
                step: None,
            };
            let input = step_input(e, 0, 0);
            return Some((
                Next::Finish(body),
                Arc::new(crate::builtin::Echo),
                Arc::new(dummy_spec()),
                input,
                None,
            ));
        };
        let mut next = plan_next(e, &spec, handler.as_ref());
        if let Next::Finish(EventBody::SagaCompleted { result_json, .. }) = &next
            && result_json.len() > self.config.step_output_bytes_max
        {
            // A result the log could not record would leave the saga undriven; it ends failed
            // instead (its steps completed; none failed, so there is nothing to compensate
            // from).
            next = Next::Finish(EventBody::SagaFailed {
                execution_id: id,
                code: "result_too_large".into(),
                message: format!(
                    "the saga's result has {} bytes, more than the {} a result may have; its steps \
                     completed and were not compensated",
                    result_json.len(),
                    self.config.step_output_bytes_max
                ),
                step: None,
            });
        }
        let (index, attempt) = match &next {
            Next::RunStep { index, attempt, .. } => (*index, *attempt),
            Next::Compensate { index } => (*index, e.steps[*index as usize].attempts),
            _ => (0, 0),
        };
        let input = step_input(e, index, attempt);
        let output = match &next {
            Next::Compensate { index } => e.steps[*index as usize]
                .output_json
                .as_deref()
                .map(Arc::from),
            _ => None,
        };
        Some((next, handler, spec, input, output))
    }

    async fn run_step(
        &self,
        spec: &CapabilitySpec,
        handler: &dyn CapabilityHandler,
        input: StepInput,
        index: u32,
        attempt: u32,
    ) -> Result<()> {
        let step_spec = &spec.steps[index as usize];
        let id = input.execution_id;
        let tenant = input.tenant_id.clone();
        if !step_spec.deterministic {
            // Inputs of a step with effects must be durable before it runs.
            let lsn = self.read(|s| s.last_lsn).await?;
            self.wait_durable(lsn).await?;
        }
        let started_body = EventBody::StepStarted {
            execution_id: id,
            step_index: index,
            attempt,
        };
        // A deterministic step's events need no fsync of their own: nothing outside sees the
        // step before the saga's end (which is waited on) or before a later fsync; lost in a
        // crash, the step just runs again, to the same output.
        let durability = if step_spec.deterministic {
            Durability::WithNext
        } else {
            Durability::Now
        };
        self.commit_retrying(durability, |_, now| {
            Ok(vec![event(&tenant, now, started_body.clone())])
        })
        .await?;
        let started = Instant::now();
        let outcome = match handler.step(index as usize) {
            None => Err(StepError::permanent(
                "step_unavailable",
                format!("step {} has no implementation", step_spec.name),
            )),
            Some(step) => match tokio::time::timeout(
                Duration::from_millis(step_spec.timeout_ms),
                Guarded(step.execute(input)),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(StepError::retryable(
                    "step_timeout",
                    format!(
                        "step {} took longer than {} ms",
                        step_spec.name, step_spec.timeout_ms
                    ),
                )),
            },
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let outcome = outcome.and_then(|output| self.check_output(output));
        self.metrics
            .record_step(&spec.name, &step_spec.name, outcome.is_ok(), duration_ms);
        let body = match outcome {
            Ok(output_json) => EventBody::StepCompleted {
                execution_id: id,
                step_index: index,
                attempt,
                output_json,
                duration_ms,
            },
            Err(e) => EventBody::StepFailed {
                execution_id: id,
                step_index: index,
                attempt,
                code: bounded(e.code, STEP_ERROR_CODE_BYTES_MAX),
                message: bounded(e.message, self.config.failure_message_bytes_max),
                retryable: e.retryable,
                duration_ms,
            },
        };
        let committed = self
            .commit_retrying(durability, |_, now| {
                Ok(vec![event(&tenant, now, body.clone())])
            })
            .await?;
        if !step_spec.deterministic
            && let Some(c) = committed
        {
            // A non-deterministic output is durable before anything can depend on it.
            self.durable(c).await?;
        }
        Ok(())
    }

    fn check_output(&self, output: String) -> std::result::Result<String, StepError> {
        if output.len() > self.config.step_output_bytes_max {
            return Err(StepError::permanent(
                "output_too_large",
                format!(
                    "step output exceeds {} bytes",
                    self.config.step_output_bytes_max
                ),
            ));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(&output).is_err() {
            return Err(StepError::permanent(
                "invalid_output",
                "step output is not JSON",
            ));
        }
        Ok(output)
    }

    async fn compensate(
        &self,
        spec: &CapabilitySpec,
        handler: &dyn CapabilityHandler,
        input: StepInput,
        index: u32,
        output: Option<Arc<str>>,
    ) -> Result<()> {
        let step_spec = &spec.steps[index as usize];
        let id = input.execution_id;
        let tenant = input.tenant_id.clone();
        let started = Instant::now();
        let mut last_error = None;
        for _ in 0..step_spec.max_attempts {
            let Some(step) = handler.step(index as usize) else {
                break;
            };
            let output = output.clone().unwrap_or_else(|| Arc::from("null"));
            let run = Guarded(step.compensate(input.clone(), output));
            match tokio::time::timeout(Duration::from_millis(step_spec.timeout_ms), run).await {
                Ok(Ok(())) => {
                    last_error = None;
                    break;
                }
                Ok(Err(e)) => last_error = Some(e),
                Err(_) => {
                    last_error = Some(StepError::retryable(
                        "step_timeout",
                        "compensation timed out",
                    ))
                }
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let body = match last_error {
            None => EventBody::StepCompensated {
                execution_id: id,
                step_index: index,
                duration_ms,
            },
            Some(e) => EventBody::SagaFailed {
                execution_id: id,
                code: "compensation_failed".into(),
                message: bounded(
                    format!("compensating step {} failed: {}", step_spec.name, e.message),
                    self.config.failure_message_bytes_max,
                ),
                step: Some(step_spec.name.clone()),
            },
        };
        self.commit_retrying(Durability::Now, |_, now| {
            Ok(vec![event(&tenant, now, body.clone())])
        })
        .await?;
        Ok(())
    }

    /// Commits from a saga driver, waiting out an overloaded log instead of failing the saga.
    async fn commit_retrying(
        &self,
        durability: Durability,
        decide: impl Fn(&State, TimestampMs) -> Result<Vec<Event>>,
    ) -> Result<Option<Committed>> {
        loop {
            match self.commit_as(durability, |state, now| {
                decide(state, now).map(|events| (events, ()))
            }) {
                Ok((committed, ())) => return Ok(committed),
                Err(Error::Overloaded) => {
                    tokio::time::sleep(Duration::from_millis(self.config.overload_retry_ms)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a commit's events start an fdatasync of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Somebody waits (an answer, a step with effects): sync now.
    Now,
    /// Nobody waits yet: durable with the next fsync, within `symphainy_wal::LAZY_SYNC_DELAY`.
    WithNext,
}

fn event(tenant_id: &str, timestamp_ms: TimestampMs, body: EventBody) -> Event {
    Event {
        tenant_id: tenant_id.to_string(),
        timestamp_ms,
        body,
    }
}

fn step_input(e: &Execution, index: u32, attempt: u32) -> StepInput {
    let previous = index
        .checked_sub(1)
        .and_then(|p| e.steps.get(p as usize))
        .and_then(|s| s.output_json.as_deref())
        .map(Arc::from);
    StepInput {
        tenant_id: e.tenant_id.to_string(),
        execution_id: e.execution_id,
        step_index: index,
        attempt,
        payload_json: Arc::from(&*e.payload_json),
        previous_output_json: previous,
    }
}

fn dummy_spec() -> CapabilitySpec {
    CapabilitySpec {
        name: String::new(),
        realm: String::new(),
        version: 0,
        intent_types: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        deterministic: true,
        steps: Vec::new(),
    }
}
