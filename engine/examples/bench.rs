//! Engine benchmark: builds a log of `--events` real events (3-step executions spread over
//! 1,000 sessions), then measures on one core decode + apply (replay), recovery to a served
//! state (WAL open with full verification + replay), and resident memory of the live state.
//! Last line: `replay_events_per_sec=... recovery_10m_ms=... rss_mb_per_million_events=...`
//! (recovery, the faster of full replay and the snapshotter's worst case, a snapshot four
//! fifths through the log and the last fifth folded after it, is scaled to 10 million events
//! when `--events` differs). It also prints the replay's user and system CPU seconds (system
//! time is mostly the first touch of the memory the state grows into) and how fast this
//! machine touches fresh memory, since that cost varies from machine to machine and, on a
//! virtual machine, from run to run.
//!
//! cargo run --release -p symphainy-engine --example bench -- --events 10000000

use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

use symphainy_engine::digest;
use symphainy_engine::runtime::{Replayer, replay_cursor};
use symphainy_engine::state::State;
use symphainy_wal::{Config, Log, RealFs, Wal, WalReader};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// This process's user and system CPU seconds so far (from `/proc/self/stat`, 10 ms ticks).
/// System time is mostly first touches of fresh memory, whose cost depends on the machine
/// (a virtual machine's host may back each page on first touch); user time is the code's.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (tick(11), tick(12))
}

/// How fast this process can touch memory it has never used (page faults plus zeroing;
/// on a virtual machine, also the host backing each page), in MB/s, over 256 MiB.
fn first_touch_mb_per_sec() -> f64 {
    const BYTES: usize = 256 << 20;
    let started = Instant::now();
    let mut fresh = vec![0u8; BYTES];
    for page in fresh.chunks_mut(4096) {
        page[0] = 1;
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(&fresh);
    BYTES as f64 / 1e6 / secs
}

fn main() {
    let mut events = 10_000_000u64;
    let mut only_replay = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--events N")
            }
            // Stops after the one-core replay (for profiling it alone).
            "--only-replay" => only_replay = true,
            other => panic!("unknown flag {other}; flags: --events N --only-replay"),
        }
    }
    println!(
        "first_touch_mb_per_sec={:.0} (this machine's speed at touching fresh memory, which the replay pays for the state it builds)",
        first_touch_mb_per_sec()
    );
    let dir = tempfile::tempdir_in(".").expect("temp dir");
    let path = dir.path().join("wal");
    let config = Config::default();
    let started = Instant::now();
    let written = {
        let wal = Wal::open(&path, config.clone()).expect("open");
        symphainy_engine::testing::synthetic_log(&wal, events)
    };
    let bytes: u64 = std::fs::read_dir(&path)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "built events={written} wal_bytes={bytes} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );

    // Replay: read + decode + apply on this one thread, segments already verified by the open.
    let wal = Wal::open(&path, config.clone()).expect("open");
    let rss_before = rss_bytes();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut replayer = Replayer::default();
    let mut cursor = wal.cursor(1);
    while cursor
        .visit(8192, |lsn, meta, payload| {
            replayer.visit(lsn, meta, payload)
        })
        .expect("read")
        > 0
    {}
    let (state, applied) = replayer.finish().expect("replay");
    let replay_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    let rss_after = rss_bytes();
    let state_digest = digest::digest(&state);
    println!(
        "replayed events={applied} seconds={replay_secs:.2} executions={} rejected={} digest={}",
        state.executions.len(),
        state.rejected_events,
        &state_digest[..16]
    );
    let user_secs = cpu_after.0 - cpu_before.0;
    println!(
        "replay_cpu user_seconds={user_secs:.2} system_seconds={:.2} events_per_user_second={:.0}",
        cpu_after.1 - cpu_before.1,
        applied as f64 / user_secs.max(0.01)
    );
    if only_replay {
        println!("replay_events_per_sec={:.0}", applied as f64 / replay_secs);
        std::process::exit(0);
    }
    drop(state);

    // The replay the replay tool runs: reading and decoding on a second thread.
    let started = Instant::now();
    let (state, _) = replay_cursor(&mut wal.cursor(1), None).expect("replay");
    let pipelined_secs = started.elapsed().as_secs_f64();
    assert_eq!(digest::digest(&state), state_digest);
    println!(
        "replay_two_threads events_per_sec={:.0}",
        applied as f64 / pipelined_secs
    );
    drop(state);

    // Decode + apply alone, from records already in memory (no file reads, no checksums):
    // the payloads back to back in one buffer, as a log's bytes are.
    let mut bytes = Vec::new();
    let mut records = Vec::with_capacity(applied as usize);
    wal.cursor(1)
        .visit(usize::MAX, |lsn, meta, payload| {
            records.push((lsn, meta, bytes.len()..bytes.len() + payload.len()));
            bytes.extend_from_slice(payload);
        })
        .expect("read");
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut replayer = Replayer::default();
    for (lsn, meta, range) in &records {
        replayer.visit(*lsn, *meta, &bytes[range.clone()]);
    }
    let (state, _) = replayer.finish().expect("replay");
    let cpu_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu_seconds();
    assert_eq!(digest::digest(&state), state_digest);
    println!(
        "decode_apply_in_memory events_per_sec={:.0} user_seconds={:.2} system_seconds={:.2}",
        applied as f64 / cpu_secs,
        cpu_after.0 - cpu_before.0,
        cpu_after.1 - cpu_before.1
    );
    drop((state, records, bytes));
    drop(wal);

    // Recovery to serving in one pass: the WAL's open (lock, verify every frame, repair the
    // tail) feeds each record to the replayer.
    let started = Instant::now();
    let mut replayer = Replayer::default();
    let wal = Wal::open_visiting(Arc::new(RealFs), &path, config, |lsn, meta, payload| {
        replayer.visit(lsn, meta, payload)
    })
    .expect("open");
    let (state, _) = replayer.finish().expect("replay");
    let recovery_secs = started.elapsed().as_secs_f64();
    assert_eq!(digest::digest(&state), state_digest);
    assert_eq!(state.last_lsn, wal.durable_lsn());
    println!("recovery total_ms={:.0}", recovery_secs * 1000.0);
    // Recovery from a snapshot: verify the log in one pass while the snapshot is decoded,
    // then fold the log past it. Writes `state` as the only snapshot, recovers, and prints
    // the time under `name`.
    let snapshots = dir.path().join("snapshots");
    let recover_from = |state: State, name: &str| {
        let _ = std::fs::remove_dir_all(&snapshots);
        let written = symphainy_engine::snapshot::write(&snapshots, &state).expect("snapshot");
        drop(state);
        // The recovery timed below must start from this snapshot: one it could not read
        // would be skipped with a warning and the figure would be a full replay's.
        drop(symphainy_engine::snapshot::read(&written).expect("the snapshot reads back"));
        let started = Instant::now();
        let (wal, state) = symphainy_engine::snapshot::recover(Some(&snapshots), |visit| {
            Ok(Wal::open_visiting(
                Arc::new(RealFs),
                &path,
                Config::default(),
                |l, m, p| visit(l, m, p),
            )?)
        })
        .expect("recover");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(digest::digest(&state), state_digest);
        println!("{name} total_ms={:.0}", secs * 1000.0);
        drop((wal, state));
        secs
    };
    drop(wal);
    // A snapshot at the end of the log: nothing else to fold.
    recover_from(state, "recovery_from_snapshot");
    // The server's snapshots are spaced by a quarter of the log (`snapshot_due`): at worst the
    // newest covers four fifths of it and recovery folds the last fifth after decoding it.
    let (partial, _) = replay_cursor(
        &mut WalReader::open(&path).expect("reader").cursor(1),
        Some(applied * 4 / 5),
    )
    .expect("replay a prefix");
    let worst_snapshot_recovery_secs =
        recover_from(partial, "recovery_from_snapshot_at_four_fifths");
    let scale = 10_000_000.0 / applied as f64;
    let rss_per_million =
        (rss_after.saturating_sub(rss_before)) as f64 / 1048576.0 / (applied as f64 / 1e6);
    println!(
        "replay_events_per_sec={:.0} recovery_10m_ms={:.0} rss_mb_per_million_events={:.1}",
        applied as f64 / replay_secs,
        recovery_secs.min(worst_snapshot_recovery_secs) * 1000.0 * scale,
        rss_per_million
    );
}
