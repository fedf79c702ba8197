//! The two-stage replay (`runtime::replay_cursor`) folds exactly what a one-thread replay
//! folds, stops at `to_lsn`, and reports an undecodable record by its LSN, across many
//! chunks.

use symphainy_engine::runtime::{Replayer, replay_cursor};
use symphainy_engine::{digest, testing::Synthetic};
use symphainy_wal::{Config, Log, Wal};

#[test]
fn two_stage_replay_equals_one_thread_and_names_a_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path().join("wal"), Config::default()).unwrap();
    let mut workload = Synthetic::default();
    let mut records = workload.header();
    while records.len() < 30_000 {
        workload.next_execution(&mut records);
    }
    let good = records.len() as u64;
    wal.append_blocking(records).unwrap();

    let mut one = Replayer::default();
    wal.cursor(1)
        .visit(usize::MAX, |lsn, meta, payload| {
            one.visit(lsn, meta, payload)
        })
        .unwrap();
    let (one, applied) = one.finish().unwrap();
    assert_eq!(applied, good);
    let (two, applied) = replay_cursor(&mut wal.cursor(1), None).unwrap();
    assert_eq!(applied, good);
    assert_eq!(digest::digest(&two), digest::digest(&one));
    // A prefix that ends inside a chunk.
    let (prefix, applied) = replay_cursor(&mut wal.cursor(1), Some(20_001)).unwrap();
    assert_eq!((applied, prefix.last_lsn), (20_001, 20_001));

    // A record the log accepts but that is no event: the replay fails naming its LSN.
    let mut bad = records_like(&wal);
    bad.payload = vec![0xff; 7];
    wal.append_blocking(vec![bad]).unwrap();
    let err = replay_cursor(&mut wal.cursor(1), None).unwrap_err();
    assert!(
        err.to_string().contains(&format!("LSN {}", good + 1)),
        "{err}"
    );
}

/// A record with an event's metadata (taken from the log's first record).
fn records_like(wal: &Wal) -> symphainy_wal::Record {
    let first = wal.read(1, 1).unwrap().remove(0);
    symphainy_wal::Record {
        meta: first.meta,
        payload: first.payload,
    }
}
