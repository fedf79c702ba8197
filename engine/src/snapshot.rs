//! Snapshots of the state, so recovery folds only the log's tail.
//!
//! File `snapshot-{lsn:020}.bin`: magic `SYMSNAP1` (8), format version u32, LSN u64, payload
//! length u64, SHA-256 of the payload (32), payload = the state in the engine codec (bincode 2).
//! Written as temp file, fsync, rename, fsync of the directory; the newest
//! [`SNAPSHOTS_KEPT`] are kept. A snapshot that fails any check is ignored with a log line and
//! the next older one is tried: a snapshot is an optimisation, never a source of truth.
//!
//! [`Snapshotter`] takes them off the hot path: a thread that watches the durable LSN and,
//! when a snapshot is due, folds the log's tail onto the newest snapshot, writes the result
//! and drops it (it holds no copy of the state in between).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use symphainy_wal::{Log, Lsn};

use crate::error::{Error, Result};
use crate::runtime::Replayer;
use crate::state::State;

/// Magic bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SYMSNAP1";
/// Version of the snapshot layout.
/// 4: sessions carry the LSN of their creation.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 4;
/// How many snapshots are kept.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Bytes before the payload.
const HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 32;
/// How often the snapshotter looks for new durable events.
pub const SNAPSHOT_POLL_MS: u64 = 200;
/// A snapshot is also put off until the log has grown past the last one by this fraction
/// (1/4) of the events that one covered. A snapshot writes the whole state, which grows with
/// the log: at a fixed interval its cost per event would grow without bound (at 100 million
/// events, a 6 GB state every million events). This keeps it constant, and the tail that
/// recovery folds after the snapshot at most a quarter of the log.
pub const SNAPSHOT_TAIL_FRACTION: u64 = 4;

/// Whether a snapshot is due at `lsn` when the last one was taken at `written_at`: at least
/// `every_events` events and [`SNAPSHOT_TAIL_FRACTION`] of the log since.
pub fn snapshot_due(lsn: Lsn, written_at: Lsn, every_events: u64) -> bool {
    let since = lsn.saturating_sub(written_at);
    since >= every_events.max(1) && since >= written_at / SNAPSHOT_TAIL_FRACTION
}

/// Largest snapshot payload written or read (64 GiB). A state that would encode larger is not
/// snapshotted (recovery replays the log instead), and a file claiming more is not read.
pub const SNAPSHOT_BYTES_MAX: u64 = 1 << 36;

fn name(lsn: Lsn) -> String {
    format!("snapshot-{lsn:020}.bin")
}

/// Suffix of a snapshot being written.
const TEMP_SUFFIX: &str = ".tmp";

fn parse_name(name: &str) -> Option<Lsn> {
    name.strip_prefix("snapshot-")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

fn io(context: &str, e: std::io::Error) -> Error {
    Error::Snapshot(format!("{context}: {e}"))
}

/// Writes a snapshot of `state` into `dir` durably; returns its path.
pub fn write(dir: &Path, state: &State) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating the snapshot directory", e))?;
    let payload = bincode::serde::encode_to_vec(state, bincode::config::standard())
        .map_err(|e| Error::Snapshot(format!("encoding the state: {e}")))?;
    if payload.len() as u64 > SNAPSHOT_BYTES_MAX {
        return Err(Error::Snapshot(format!(
            "the state encodes to {} bytes, more than a snapshot may hold ({SNAPSHOT_BYTES_MAX})",
            payload.len()
        )));
    }
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&state.last_lsn.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(&payload));
    let path = dir.join(name(state.last_lsn));
    let temp = dir.join(format!("{}{TEMP_SUFFIX}", name(state.last_lsn)));
    // Header and payload in two writes: the payload is not copied behind the header.
    crate::file::write_atomically(&temp, &path, &[&header, &payload], 0o644)
        .map_err(|e| io("writing a snapshot", e))?;
    prune(dir);
    Ok(path)
}

fn list(dir: &Path) -> Vec<(Lsn, PathBuf)> {
    let mut found: Vec<(Lsn, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((parse_name(&e.file_name().to_string_lossy())?, e.path())))
        .collect();
    found.sort();
    found
}

/// Deletes all but the newest [`SNAPSHOTS_KEPT`] snapshots, and the temp files of writes a
/// crash cut short (only the process holding the log writes snapshots, so after its own
/// write any other temp file is such a leftover).
fn prune(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot-") && name.ends_with(TEMP_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let found = list(dir);
    for (_, path) in found
        .iter()
        .take(found.len().saturating_sub(SNAPSHOTS_KEPT))
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Decodes a snapshot payload, refusing (instead of allocating) any length that, with the
/// lengths before it, claims more than `LIMIT` bytes.
fn decode_within<const LIMIT: usize>(
    payload: &[u8],
) -> std::result::Result<(State, usize), bincode::error::DecodeError> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    bincode::serde::decode_from_slice(payload, config)
}

/// At most how many bytes bincode's limit counts per byte of a sound payload: it counts
/// every integer at its size in memory however short its variable-length encoding (an id,
/// a `u128`, is counted 16 bytes for as little as one), and strings byte for byte.
pub const DECODE_CLAIM_PER_PAYLOAD_BYTE: usize = 16;

/// Decodes a snapshot payload. Decoding a string allocates the length its prefix claims
/// before reading it, so a payload that passes its checksum but holds a wrong length (a
/// broken build's, or one written by hand) could make the process abort on a failed
/// allocation of terabytes. bincode's limit refuses such a length; it counts up to
/// [`DECODE_CLAIM_PER_PAYLOAD_BYTE`] bytes per payload byte, so the limit is the first of a
/// few fixed sizes (powers of four from 1 MiB: bincode's limit is a constant) at or above
/// that many times the payload's size. A sound payload always decodes; a bad length costs at
/// most four times that bound, claimed and never touched.
fn decode_state(payload: &[u8]) -> std::result::Result<State, bincode::error::DecodeError> {
    const MIB: usize = 1 << 20;
    const GIB: usize = 1 << 30;
    let claim = payload.len().saturating_mul(DECODE_CLAIM_PER_PAYLOAD_BYTE);
    let decoded = match claim {
        n if n <= MIB => decode_within::<MIB>(payload),
        n if n <= 4 * MIB => decode_within::<{ 4 * MIB }>(payload),
        n if n <= 16 * MIB => decode_within::<{ 16 * MIB }>(payload),
        n if n <= 64 * MIB => decode_within::<{ 64 * MIB }>(payload),
        n if n <= 256 * MIB => decode_within::<{ 256 * MIB }>(payload),
        n if n <= GIB => decode_within::<GIB>(payload),
        n if n <= 4 * GIB => decode_within::<{ 4 * GIB }>(payload),
        n if n <= 16 * GIB => decode_within::<{ 16 * GIB }>(payload),
        n if n <= 64 * GIB => decode_within::<{ 64 * GIB }>(payload),
        n if n <= 256 * GIB => decode_within::<{ 256 * GIB }>(payload),
        _ => decode_within::<{ SNAPSHOT_BYTES_MAX as usize * DECODE_CLAIM_PER_PAYLOAD_BYTE }>(
            payload,
        ),
    }?;
    Ok(decoded.0)
}

/// Reads and checks one snapshot file.
pub fn read(path: &Path) -> Result<State> {
    let bad = |why: &str| Error::Snapshot(format!("{}: {why}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| io("reading a snapshot", e))?
        .len();
    if size > SNAPSHOT_BYTES_MAX + HEADER_BYTES as u64 {
        return Err(bad("larger than a snapshot may be"));
    }
    let bytes = std::fs::read(path).map_err(|e| io("reading a snapshot", e))?;
    if bytes.len() < HEADER_BYTES || bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(bad("not a snapshot file"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(bad("unknown snapshot format version"));
    }
    let (lsn, len) = (u64_at(12), u64_at(20) as usize);
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() != len || Sha256::digest(payload).as_slice() != &bytes[28..60] {
        return Err(bad("checksum mismatch"));
    }
    let mut state = decode_state(payload).map_err(|e| bad(&format!("undecodable: {e}")))?;
    if state.last_lsn != lsn {
        return Err(bad("LSN in the header differs from the state's"));
    }
    state.intern_names();
    Ok(state)
}

/// The LSN of the newest snapshot file in `dir` (named, not read: it may be damaged), if any.
pub fn newest_lsn(dir: &Path) -> Option<Lsn> {
    list(dir).last().map(|(lsn, _)| *lsn)
}

/// The newest valid snapshot whose LSN is at most `max_lsn`; damaged ones are skipped with a
/// warning.
pub fn load_latest(dir: &Path, max_lsn: Lsn) -> Option<State> {
    newest_valid(&list(dir), max_lsn)
}

/// The newest valid snapshot of `snapshots` (listed oldest first) at most at `max_lsn`.
fn newest_valid(snapshots: &[(Lsn, PathBuf)], max_lsn: Lsn) -> Option<State> {
    for (lsn, path) in snapshots.iter().rev() {
        let (lsn, path) = (*lsn, path.as_path());
        if lsn > max_lsn {
            tracing::warn!(path = %path.display(), lsn, max_lsn, "snapshot is ahead of the log; ignored");
            continue;
        }
        match read(path) {
            Ok(state) => return Some(state),
            Err(e) => tracing::warn!(error = %e, "ignoring a damaged snapshot"),
        }
    }
    None
}

/// Recovers the state: starts from the newest valid snapshot in `snapshot_dir` (if any) and
/// folds the rest of the log. `open` must hand every record of the log to the visitor it is
/// given (as [`symphainy_wal::Wal::open_visiting`] does). Without a snapshot, the open's one
/// pass over the log (which verifies every frame) folds it too. With one, reading and
/// decoding the snapshot runs on a second thread while the open verifies the log, and then
/// the log's tail past the snapshot is folded. When the newest valid snapshot turns out to be
/// ahead of the log, an older one within the log is used; with none, the log is replayed from
/// its start.
pub fn recover<L: Log>(
    snapshot_dir: Option<&Path>,
    open: impl FnOnce(&mut dyn FnMut(Lsn, symphainy_wal::RecordMeta, &[u8])) -> Result<L>,
) -> Result<(L, State)> {
    let snapshots = snapshot_dir.map(list).unwrap_or_default();
    if snapshots.is_empty() {
        let mut replayer = Replayer::default();
        let log = open(&mut |lsn, meta, payload| replayer.visit(lsn, meta, payload))?;
        let (state, applied) = replayer.finish()?;
        tracing::info!(
            applied,
            last_lsn = state.last_lsn,
            "state recovered from the log"
        );
        return Ok((log, state));
    }
    let (log, snapshot) = std::thread::scope(|scope| {
        let loading = std::thread::Builder::new()
            .name("snapshot-load".into())
            .spawn_scoped(scope, || newest_valid(&snapshots, Lsn::MAX))
            .map_err(|e| Error::Snapshot(format!("starting the snapshot loader: {e}")))?;
        let log = open(&mut |_, _, _| {});
        let snapshot = loading
            .join()
            .map_err(|_| Error::Snapshot("the snapshot loader panicked".into()))?;
        Ok::<_, Error>((log?, snapshot))
    })?;
    let durable = log.durable_lsn();
    let snapshot = match snapshot {
        Some(s) if s.last_lsn > durable => {
            tracing::warn!(
                snapshot_lsn = s.last_lsn,
                log_lsn = durable,
                "snapshot is ahead of the log; looking for an older one"
            );
            newest_valid(&snapshots, durable)
        }
        other => other,
    };
    let Some(snapshot) = snapshot else {
        let state = crate::runtime::replay(&log)?;
        return Ok((log, state));
    };
    let snapshot_lsn = snapshot.last_lsn;
    let mut replayer = Replayer::from_state(snapshot);
    let mut cursor = log.cursor(snapshot_lsn + 1);
    while cursor.visit(
        crate::runtime::REPLAY_CHUNK_RECORDS,
        |lsn, meta, payload| replayer.visit(lsn, meta, payload),
    )? > 0
    {}
    let (state, applied) = replayer.finish()?;
    tracing::info!(
        snapshot_lsn,
        applied,
        last_lsn = state.last_lsn,
        "state recovered"
    );
    Ok((log, state))
}

/// Writes snapshots in the background from its own fold of the durable log.
#[derive(Debug)]
pub struct Snapshotter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Snapshotter {
    /// Starts watching `log`'s durable LSN, writing a snapshot into `dir` when
    /// [`snapshot_due`] (every `every_events` events, or less often once the log is four times
    /// that long), counting from `written_at` (the LSN of the state recovered at start, which
    /// needs no snapshot of its own). It keeps no state between snapshots: each is the newest
    /// snapshot with the log folded onto it, built, written and dropped, so the runtime's state
    /// is the only one resident.
    pub fn start<L: Log>(log: Arc<L>, written_at: Lsn, dir: PathBuf, every_events: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("snapshotter".into())
            .spawn(move || {
                run(
                    log.as_ref(),
                    written_at,
                    &dir,
                    every_events.max(1),
                    &stopping,
                )
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run<L: Log>(log: &L, written_at: Lsn, dir: &Path, every_events: u64, stop: &AtomicBool) {
    let mut written_at = written_at;
    while !stop.load(Ordering::SeqCst) {
        let durable = log.durable_lsn();
        if !snapshot_due(durable, written_at, every_events) {
            std::thread::sleep(Duration::from_millis(SNAPSHOT_POLL_MS));
            continue;
        }
        let state = match fold_to(log, dir, durable, stop) {
            Ok(Some(state)) => state,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "snapshotter stopped: the log could not be folded");
                return;
            }
        };
        match write(dir, &state) {
            Ok(path) => {
                tracing::info!(path = %path.display(), lsn = state.last_lsn, "snapshot written")
            }
            Err(e) => tracing::warn!(error = %e, "snapshot not written"),
        }
        written_at = state.last_lsn;
        // The state is dropped here: between snapshots the snapshotter holds none.
    }
}

/// The state at `lsn` or a little past it: the newest valid snapshot at most at `lsn` (else
/// an empty state), with the log folded onto it. None when asked to stop.
fn fold_to<L: Log>(log: &L, dir: &Path, lsn: Lsn, stop: &AtomicBool) -> Result<Option<State>> {
    let base = load_latest(dir, lsn).unwrap_or_default();
    let mut cursor = log.cursor(base.last_lsn + 1);
    let mut replayer = Replayer::from_state(base);
    while cursor.next_lsn() <= lsn {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let read = cursor.visit(
            crate::runtime::REPLAY_CHUNK_RECORDS,
            |lsn, meta, payload| replayer.visit(lsn, meta, payload),
        )?;
        if read == 0 {
            break;
        }
    }
    Ok(Some(replayer.finish()?.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Snapshots come every `every_events` while the log is short, then when it has grown by a
    // quarter: at most a quarter of the log is left for recovery to fold, and each snapshot
    // (the whole state) is paid for by as many new events as a quarter of its own.
    #[test]
    fn snapshots_are_spaced_by_the_larger_of_the_interval_and_a_quarter_of_the_log() {
        let every = 1_000_000;
        assert!(!snapshot_due(999_999, 0, every));
        assert!(snapshot_due(1_000_000, 0, every));
        assert!(snapshot_due(4_000_000, 3_000_000, every));
        assert!(!snapshot_due(5_000_000, 4_000_000 + 1, every));
        assert!(snapshot_due(5_000_000, 4_000_000, every));
        assert!(!snapshot_due(124_999_999, 100_000_000, every));
        assert!(snapshot_due(125_000_000, 100_000_000, every));
        // An interval of 0 means every event, as before.
        assert!(snapshot_due(1, 0, 0));
        // Over a long run, the snapshots' total size stays proportional to the log: the
        // states written (in events) add up to at most five times the events logged.
        let (mut written_at, mut written_events) = (0u64, 0u64);
        for lsn in (1..=1_000_000_000u64).step_by(1_000) {
            if snapshot_due(lsn, written_at, every) {
                written_events += lsn;
                written_at = lsn;
            }
        }
        assert!(
            written_events <= 5 * written_at,
            "{written_events} {written_at}"
        );
        // With snapshots every million events it would have been about 500 times.
    }

    /// The records of `executions` real executions (the benchmark's workload), and the
    /// index of the first record after each execution.
    fn workload(executions: usize) -> (Vec<symphainy_wal::Record>, Vec<usize>) {
        let mut workload = crate::testing::Synthetic::default();
        let mut records = workload.header();
        let mut ends = Vec::new();
        for _ in 0..executions {
            workload.next_execution(&mut records);
            ends.push(records.len());
        }
        (records, ends)
    }

    /// The state folded from `records`.
    fn folded(records: &[symphainy_wal::Record]) -> State {
        let mut replayer = Replayer::default();
        for (i, r) in records.iter().enumerate() {
            replayer.visit(i as Lsn + 1, r.meta, &r.payload);
        }
        replayer.finish().expect("the workload folds").0
    }

    /// A state of a few real executions, as a snapshot payload, and its LSN.
    fn payload() -> (Vec<u8>, Lsn) {
        let state = folded(&workload(3).0);
        let bytes = bincode::serde::encode_to_vec(&state, bincode::config::standard());
        (bytes.expect("encodable"), state.last_lsn)
    }

    // Every sound snapshot reads back, whatever its size. bincode's limit counts an integer
    // at its size in memory (16 bytes for an id encoded in a few), so a limit of the payload's
    // own size refused states from a few hundred kilobytes up: a snapshot of 8 million events
    // of the benchmark was ignored as "undecodable: LimitExceeded", and recovery replayed the
    // whole log instead.
    #[test]
    fn sound_snapshots_of_every_size_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Payloads from 36 KB to 1.2 MB: across the 1 MiB step of the old limits, where a state
        // of 3,000 executions failed.
        let (records, ends) = workload(4_000);
        for executions in [1, 100, 1_000, 2_000, 3_000, 3_400, 4_000] {
            let state = folded(&records[..ends[executions - 1]]);
            let path = write(dir.path(), &state).expect("written");
            let bytes = std::fs::metadata(&path).expect("written").len();
            match read(&path) {
                Ok(read_back) => assert_eq!(
                    crate::digest::digest(&read_back),
                    crate::digest::digest(&state)
                ),
                Err(e) => panic!("{executions} executions, {bytes} bytes: {e}"),
            }
        }
    }

    /// `payload` framed as a snapshot file with a correct header: only the payload can be
    /// wrong, as in a snapshot written by a broken build or by hand.
    fn framed(dir: &Path, payload: &[u8], lsn: Lsn) -> PathBuf {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
        bytes.extend_from_slice(&SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&lsn.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(payload);
        let path = dir.join(name(lsn));
        std::fs::write(&path, bytes).expect("writable");
        path
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // A payload that passes the checksum but is damaged (bytes changed, cut or inserted,
        // lengths that claim terabytes) is refused or read; it never panics or aborts the
        // process with a huge allocation, and a state that was read digests.
        #[test]
        fn a_damaged_payload_with_a_correct_checksum_is_refused_not_a_crash(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let dir = tempfile::tempdir().expect("temp dir");
            let (mut bytes, lsn) = payload();
            for (at, value, kind) in edits {
                let at = at.index(bytes.len());
                match kind {
                    0 => bytes[at] = value,
                    1 => bytes[at] ^= 1 << (value % 8),
                    // A varint marker of a u64 followed by 0xff bytes: a length of about
                    // 2^64 wherever a length is read.
                    2 => {
                        let claim = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
                        bytes.splice(at..at, claim);
                    }
                    _ => bytes.truncate(cut.index(bytes.len()).max(1)),
                }
            }
            // The header's LSN is the intact state's, so a damage elsewhere can be read.
            if let Ok(state) = read(&framed(dir.path(), &bytes, lsn)) {
                prop_assert_eq!(state.last_lsn, lsn);
                let _ = crate::digest::digest(&state);
            }
        }
    }

    // The payload unchanged reads back; its LSN must be the header's.
    #[test]
    fn an_intact_payload_reads_and_its_lsn_is_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bytes, lsn) = payload();
        let state: State = bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .expect("decodable")
            .0;
        assert_eq!(state.last_lsn, lsn);
        let read_back = read(&framed(dir.path(), &bytes, lsn)).expect("intact");
        assert_eq!(
            crate::digest::digest(&read_back),
            crate::digest::digest(&state)
        );
        let wrong = read(&framed(dir.path(), &bytes, lsn + 1));
        assert!(matches!(wrong, Err(Error::Snapshot(m)) if m.contains("LSN in the header")));
    }
}
