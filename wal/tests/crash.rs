//! Crash test with real processes: a child appends from several threads and reports every
//! acknowledged LSN on stdout; the parent kills it with SIGKILL at a random moment, reopens the
//! log and checks every acknowledged record is there, intact. 100 cycles on one directory.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Rng;
use symphainy_wal::{Config, Record, RecordMeta, Wal};

const CHILD_ENV: &str = "SYMPHAINY_WAL_CRASH_CHILD_DIR";
const CYCLES: usize = 100;

fn config() -> Config {
    Config {
        segment_bytes: 64 * 1024,
        ..Config::small_for_tests()
    }
}

/// The payload a (writer thread, sequence) pair appends: recomputable by the parent.
fn payload(thread: u64, seq: u64) -> Vec<u8> {
    let len = 16 + ((thread * 7 + seq * 13) % 200) as usize;
    let mut bytes = format!("{thread}:{seq}:").into_bytes();
    bytes.extend((0..len).map(|i| ((thread * 31 + seq * 17 + i as u64) % 251) as u8));
    bytes
}

fn run_child(dir: &Path) {
    let wal = Arc::new(Wal::open(dir, config()).expect("child open"));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let wal = wal.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                for seq in 0.. {
                    let records = (0..1 + seq % 3)
                        .map(|k| Record {
                            meta: RecordMeta {
                                codec: 1,
                                record_type: 1,
                                schema_version: 1,
                            },
                            payload: payload(thread, seq * 4 + k),
                        })
                        .collect::<Vec<_>>();
                    let appended = wal.append_blocking(records).expect("append");
                    let mut out = out.lock().unwrap();
                    for (k, lsn) in (appended.first..=appended.last).enumerate() {
                        writeln!(out, "ACK {lsn} {thread} {}", seq * 4 + k as u64).unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

// The child half: does nothing unless the parent started this binary as a crash child.
#[test]
fn crash_child() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(Path::new(&dir));
    }
}

// SIGKILL at random moments never loses an acknowledged record.
#[test]
fn sigkill_never_loses_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0xc0ffee);
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let run_for = Duration::from_millis(5 + rng.below(60));
        let started = Instant::now();
        while started.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        for line in lines.join().unwrap() {
            let mut parts = line.strip_prefix("ACK ").unwrap_or_default().split(' ');
            let mut next = || parts.next().and_then(|p| p.parse::<u64>().ok());
            if let (Some(lsn), Some(thread), Some(seq)) = (next(), next(), next()) {
                acked.push((lsn, thread, seq));
            }
        }
        let wal = Wal::open(dir.path(), config()).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        let durable = wal.recovery_report().last_lsn;
        for &(lsn, _, _) in &acked {
            assert!(
                lsn <= durable,
                "cycle {cycle}: acknowledged LSN {lsn} lost (log ends at {durable})"
            );
        }
        // Check the records acknowledged in this cycle (earlier ones were checked already).
        let fresh: Vec<_> = acked
            .iter()
            .filter(|a| a.0 > durable.saturating_sub(5000))
            .collect();
        if let Some(first) = fresh.iter().map(|a| a.0).min() {
            let records = wal.read(first, usize::MAX).unwrap();
            for &&(lsn, thread, seq) in &fresh {
                let stored = &records[(lsn - first) as usize];
                assert_eq!(
                    stored.payload,
                    payload(thread, seq),
                    "cycle {cycle}: LSN {lsn} damaged"
                );
            }
        }
        drop(wal);
    }
    assert!(
        acked.len() > 1000,
        "the child should have acknowledged many appends"
    );
    let wal = Wal::open(dir.path(), config()).unwrap();
    let all = wal.read(1, usize::MAX).unwrap();
    for &(lsn, thread, seq) in &acked {
        assert_eq!(
            all[(lsn - 1) as usize].payload,
            payload(thread, seq),
            "LSN {lsn}"
        );
    }
}
