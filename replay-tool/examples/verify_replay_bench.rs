//! replay-tool benchmark: generates a data directory of `--events` events (default 10
//! million; 3-step executions), then times what `verify` does (read every segment, check
//! every frame's CRC, LSN continuity and the hash chain, on one core) and what `replay` does
//! (read, check and decode every event on one thread while the fold applies them on another,
//! then digest). Last line:
//! `verify_events_per_sec=... replay_events_per_sec=...`
//!
//! cargo run --release -p replay-tool --example verify_replay_bench -- --events 10000000
//!
//! `--dir DIR` keeps the generated directory in DIR, and reuses it when it already holds a log
//! (to measure or profile the same log again without generating it).

use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Instant;

use symphainy_engine::{digest, runtime, testing};
use symphainy_wal::{Config, RealFs, Wal, WalReader};

fn main() {
    let mut events = 10_000_000u64;
    let mut keep: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--events N")
            }
            "--dir" => keep = Some(args.next().expect("--dir DIR").into()),
            other => panic!("unknown flag {other}; flags: --events N --dir DIR"),
        }
    }
    let temp = tempfile::tempdir_in(".").expect("temp dir");
    let wal_dir = keep.as_deref().unwrap_or(temp.path()).join("wal");
    let written = if wal_dir.exists() {
        WalReader::open(&wal_dir)
            .expect("open the kept log")
            .last_lsn()
    } else {
        let wal = Wal::open(&wal_dir, Config::default()).expect("open");
        testing::synthetic_log(&wal, events)
    };
    let started = Instant::now();
    let reader = WalReader::open_with(Arc::new(RealFs), &wal_dir).expect("verify");
    let verify_secs = started.elapsed().as_secs_f64();
    let report = reader.report().clone();
    let started = Instant::now();
    let (state, applied) = runtime::replay_cursor(&mut reader.cursor(1), None).expect("replay");
    let digest_started = Instant::now();
    let state_digest = digest::digest(&state);
    let digest_secs = digest_started.elapsed().as_secs_f64();
    let replay_secs = started.elapsed().as_secs_f64();
    println!(
        "events={written} segments={} bytes={} verify_seconds={verify_secs:.2} replay_seconds={replay_secs:.2} (digest {digest_secs:.2}) digest={}",
        report.segments,
        report.bytes,
        &state_digest[..16]
    );
    println!(
        "verify_events_per_sec={:.0} replay_events_per_sec={:.0}",
        report.records as f64 / verify_secs,
        applied as f64 / replay_secs
    );
}
