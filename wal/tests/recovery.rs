//! Recovery and fault scenarios: torn tails, bit rot, failing fsync, power loss, locking,
//! removed or replaced segments, read-only opens beside a writer.

mod common;

use std::sync::Arc;

use common::{Rng, check_all, frames_of, mem_dir, open_mem, record, segment_path};
use symphainy_wal::{Config, CrashMode, Error, Log, MemFs, Wal, WalReader};

/// Appends records 1..=n one request at a time (each its own write and fsync).
fn fill(wal: &Wal, from: u64, to: u64) {
    for n in from..=to {
        let appended = wal.append_blocking(vec![record(n)]).unwrap();
        assert_eq!(appended.first, n);
    }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Truncate,
    ZeroFill,
    Garbage,
}

// A torn tail at every byte offset of the last two records (truncated file, zeros, garbage) is
// cut off: reopen recovers exactly the intact prefix, 10 more appends follow and read back.
#[test]
fn torn_tail_at_every_offset_of_the_last_two_records() {
    let records = 12;
    let base_fs = MemFs::new();
    let wal = open_mem(&base_fs).unwrap();
    fill(&wal, 1, records);
    assert_eq!(
        common::segment_bases(&wal),
        vec![1],
        "test expects one segment"
    );
    drop(wal);
    let path = segment_path(&mem_dir(), 1);
    let pristine = base_fs.read_file(&path).unwrap();
    let frames = frames_of(&pristine, 1);
    let (_, start, _) = frames[frames.len() - 2];
    let end = frames[frames.len() - 1].2;
    let mut cases = 0;
    for damage in [Damage::Truncate, Damage::ZeroFill, Damage::Garbage] {
        for cut in start..end {
            let fs = MemFs::new();
            drop(open_mem(&fs).unwrap());
            let mut bytes = pristine.clone();
            match damage {
                Damage::Truncate => bytes.truncate(cut),
                Damage::ZeroFill => bytes[cut..end].fill(0),
                Damage::Garbage => {
                    let mut rng = Rng(cut as u64 * 7919 + 1);
                    for b in &mut bytes[cut..end + 40] {
                        *b = rng.next() as u8;
                    }
                }
            }
            fs.write_file(&path, &bytes).unwrap();
            let intact = frames.iter().filter(|f| f.2 <= cut).count() as u64;
            let wal = open_mem(&fs).unwrap_or_else(|e| panic!("{damage:?} at {cut}: {e}"));
            assert_eq!(wal.durable_lsn(), intact, "{damage:?} at {cut}");
            assert_eq!(check_all(&wal), intact);
            fill(&wal, intact + 1, intact + 10);
            drop(wal);
            let wal = open_mem(&fs).unwrap();
            assert_eq!(
                check_all(&wal),
                intact + 10,
                "{damage:?} at {cut} after reopen"
            );
            assert!(wal.recovery_report().torn_tail.is_none());
            cases += 1;
        }
    }
    assert!(cases > 300);
}

/// Builds a multi-segment log in batches of 10; returns the file system and record count.
fn multi_segment_log() -> (MemFs, u64) {
    let fs = MemFs::new();
    let wal = open_mem(&fs).unwrap();
    let mut n = 1;
    while n <= 600 {
        wal.append_blocking((n..n + 10).map(record).collect())
            .unwrap();
        n += 10;
    }
    assert!(common::segment_bases(&wal).len() > 5);
    drop(wal);
    (fs, n - 1)
}

// 1,000 random single-bit flips and 512-byte zeroings in the middle of the log are all detected:
// open fails closed naming the damaged segment and the frame where the damage starts.
#[test]
fn bit_flips_and_zeroed_sectors_in_the_middle_fail_closed() {
    let (fs, last) = multi_segment_log();
    let names = {
        let reader = WalReader::open_with(Arc::new(fs.clone()), mem_dir()).unwrap();
        reader.catalog().segment_list()
    };
    // Damage may land anywhere before the final write batch (the last 10 records).
    let protected_from = last - 9;
    let mut targets = Vec::new();
    for (base, name) in &names {
        let bytes = fs.read_file(&mem_dir().join(name)).unwrap();
        targets.push((name.clone(), bytes.clone(), frames_of(&bytes, *base)));
    }
    let mut rng = Rng(0x5eed);
    for case in 0..1000 {
        let (name, pristine, frames) = &targets[rng.below(targets.len() as u64) as usize];
        let eligible: Vec<_> = frames.iter().filter(|f| f.0 < protected_from).collect();
        if eligible.is_empty() {
            continue;
        }
        let frame = eligible[rng.below(eligible.len() as u64) as usize];
        let mut bytes = pristine.clone();
        let (first_damaged, expected_offset) = if case % 2 == 0 {
            let at = frame.1 + rng.below((frame.2 - frame.1) as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
            (at, frame.1)
        } else {
            let sector = (frame.1 + rng.below((frame.2 - frame.1) as u64) as usize) / 512 * 512;
            bytes[sector..sector + 512].fill(0);
            let hit = frames.iter().find(|f| f.2 > sector).map_or(0, |f| f.1);
            (sector, if sector < 64 { 0 } else { hit })
        };
        if bytes == *pristine {
            continue;
        }
        let fs_case = fs.clone();
        let path = mem_dir().join(name);
        fs_case.write_file(&path, &bytes).unwrap();
        let result = open_mem(&fs_case);
        fs_case.write_file(&path, pristine).unwrap();
        match result {
            Err(Error::Corruption { location, .. }) => {
                assert_eq!(&location.segment, name, "case {case} at {first_damaged}");
                assert_eq!(
                    location.offset as usize, expected_offset,
                    "case {case} at {first_damaged}"
                );
            }
            Err(other) => panic!("case {case}: unexpected error {other}"),
            Ok(wal) => panic!(
                "case {case}: damage at {name}:{first_damaged} not detected (recovered {} records)",
                wal.durable_lsn()
            ),
        }
    }
    // The pristine log still opens with every record.
    let wal = open_mem(&fs).unwrap();
    assert_eq!(check_all(&wal), last);
}

// An injected fsync failure fails its batch and every later append; nothing after it is
// acknowledged, and what was acknowledged before survives a crash.
#[test]
fn fsync_failure_poisons_the_writer() {
    let fs = MemFs::new();
    let wal = open_mem(&fs).unwrap();
    fill(&wal, 1, 5);
    fs.fail_syncs_after(0);
    assert!(matches!(
        wal.append_blocking(vec![record(6)]),
        Err(Error::Poisoned(_))
    ));
    fs.clear_faults();
    for n in 6..10 {
        assert!(
            wal.append_blocking(vec![record(n)]).is_err(),
            "append {n} after poison"
        );
    }
    assert_eq!(wal.durable_lsn(), 5);
    drop(wal);
    // Unsynced bytes of the failed batch are dropped by the crash: exactly the acked prefix.
    fs.crash(CrashMode::DropUnsynced);
    let wal = open_mem(&fs).unwrap();
    assert_eq!(wal.durable_lsn(), 5);
    assert_eq!(check_all(&wal), 5);
}

// A failing write (a full disk) fails the append with a clear error and poisons the writer.
#[test]
fn failed_write_is_reported_and_poisons() {
    let fs = MemFs::new();
    let wal = open_mem(&fs).unwrap();
    fill(&wal, 1, 3);
    fs.fail_writes_after(0);
    let err = wal.append_blocking(vec![record(4)]).unwrap_err();
    assert!(err.to_string().contains("injected write failure"), "{err}");
    fs.clear_faults();
    assert!(wal.append_blocking(vec![record(4)]).is_err());
}

// Power loss in the middle of concurrent appends: every acknowledged record survives, whether
// unsynced bytes are dropped or torn sector by sector.
#[test]
fn power_loss_keeps_every_acknowledged_record() {
    for seed in 1..=40u64 {
        let fs = MemFs::new();
        let wal = Arc::new(open_mem(&fs).unwrap());
        fill(&wal, 1, 20);
        let mut rng = Rng(seed * 7 + 1);
        let pending: Vec<_> = (21..21 + 200)
            .map(|n| wal.submit(vec![record(n)]).unwrap())
            .collect();
        for _ in 0..rng.below(300) {
            std::thread::yield_now();
        }
        let mode = if seed % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TornSectors { seed }
        };
        fs.crash(mode);
        let acked: Vec<u64> = pending
            .into_iter()
            .filter_map(|p| p.wait().ok())
            .map(|a| a.last)
            .collect();
        drop(wal);
        let wal = open_mem(&fs).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let acked_max = acked.iter().copied().max().unwrap_or(20);
        assert!(
            wal.durable_lsn() >= acked_max,
            "seed {seed}: lost acknowledged records"
        );
        assert_eq!(check_all(&wal), wal.durable_lsn());
    }
}

// A second writer on the same directory gets a clear "locked" error; the first keeps working.
#[test]
fn second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Config::small_for_tests()).unwrap();
    let err = Wal::open(dir.path(), Config::small_for_tests()).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err}");
    assert!(err.to_string().contains("locked by another writer"));
    fill(&wal, 1, 3);
    drop(wal);
    let wal = Wal::open(dir.path(), Config::small_for_tests()).unwrap();
    assert_eq!(check_all(&wal), 3);
}

// A read-only open works beside a running writer and sees everything durable at that time.
#[test]
fn read_only_open_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Config::small_for_tests()).unwrap();
    fill(&wal, 1, 150);
    let reader = WalReader::open(dir.path()).unwrap();
    assert_eq!(reader.last_lsn(), 150);
    let records = reader.cursor(100).next_batch(1000).unwrap();
    assert_eq!(records.len(), 51);
    assert_eq!(records[0].payload, record(100).payload);
    fill(&wal, 151, 160);
}

// Removing a middle segment, or replacing it with another log's segment of the same LSN
// range, is caught (LSN continuity, then the hash chain).
#[test]
fn removed_or_replaced_segment_is_caught() {
    let (fs, _) = multi_segment_log();
    let (other, _) = {
        let fs = MemFs::new();
        let wal = open_mem(&fs).unwrap();
        let mut n = 1;
        while n <= 600 {
            // Same sizes, different bytes: flip the codec.
            let batch = (n..n + 10)
                .map(|k| {
                    let mut r = record(k);
                    r.meta.codec = 2;
                    r
                })
                .collect();
            wal.append_blocking(batch).unwrap();
            n += 10;
        }
        drop(wal);
        (fs, ())
    };
    let names = WalReader::open_with(Arc::new(fs.clone()), mem_dir())
        .unwrap()
        .catalog()
        .segment_list();
    let (_, middle) = &names[names.len() / 2];
    let (_, next) = &names[names.len() / 2 + 1];
    let path = mem_dir().join(middle);
    let original = fs.read_file(&path).unwrap();

    fs.write_file(&path, &other.read_file(&path).unwrap())
        .unwrap();
    match WalReader::open_with(Arc::new(fs.clone()), mem_dir()) {
        Err(Error::Corruption { location, reason }) => {
            // The foreign segment's own header does not continue this log's chain.
            assert_eq!(&location.segment, middle);
            assert!(reason.contains("hash chain"), "{reason}");
        }
        other => panic!("replaced segment not caught: {other:?}"),
    }
    fs.write_file(&path, &original).unwrap();
    fs.remove_file_for_test(&path);
    match WalReader::open_with(Arc::new(fs.clone()), mem_dir()) {
        Err(Error::Corruption { location, reason }) => {
            assert_eq!(&location.segment, next);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("removed segment not caught: {other:?}"),
    }
}

// Records over the size limit are refused with a clear error and nothing is written.
#[test]
fn oversized_records_are_refused() {
    let fs = MemFs::new();
    let wal = open_mem(&fs).unwrap();
    let big = symphainy_wal::Record {
        meta: record(1).meta,
        payload: vec![7; 1025],
    };
    let err = wal.append_blocking(vec![big]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::RecordTooLarge {
                size: 1025,
                max: 1024
            }
        ),
        "{err}"
    );
    assert!(matches!(
        wal.append_blocking(vec![]),
        Err(Error::EmptyBatch)
    ));
    assert_eq!(wal.durable_lsn(), 0);
}

// Lazy appends (nobody waits on them yet) start no fsync of their own but are never behind the
// appends that follow: once a later, waited-on append is acknowledged, a power loss keeps every
// lazy record before it; and a lazy append nobody follows still becomes durable on its own.
#[test]
fn lazy_appends_are_durable_with_the_next_fsync_or_on_their_own() {
    use symphainy_wal::Log;
    for seed in 1..=20u64 {
        let fs = MemFs::new();
        let wal = open_mem(&fs).unwrap();
        fill(&wal, 1, 5);
        let lazy: Vec<_> = (6..=40)
            .map(|n| wal.submit_lazy(vec![record(n)]).unwrap())
            .collect();
        let urgent = wal.submit(vec![record(41)]).unwrap().wait().unwrap();
        assert_eq!(urgent.last, 41);
        let mode = if seed % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TornSectors { seed }
        };
        fs.crash(mode);
        for (n, pending) in (6..).zip(lazy) {
            assert_eq!(pending.wait().unwrap().first, n, "seed {seed}");
        }
        drop(wal);
        let wal = open_mem(&fs).unwrap();
        assert!(
            wal.durable_lsn() >= 41,
            "seed {seed}: lost {}",
            wal.durable_lsn()
        );
        assert_eq!(check_all(&wal), wal.durable_lsn());
    }
    let fs = MemFs::new();
    let wal = open_mem(&fs).unwrap();
    let alone = wal.submit_lazy(vec![record(1)]).unwrap().wait().unwrap();
    assert_eq!(alone.last, 1);
    fs.crash(CrashMode::DropUnsynced);
    drop(wal);
    assert_eq!(check_all(&open_mem(&fs).unwrap()), 1);
}

// A lone append (nothing queued, nothing syncing) is synced by the encoder itself, one thread
// handoff fewer; appends that queue up behind a batch go to the syncer, so the encoder writes
// on meanwhile. Either way nothing is acknowledged before its fdatasync: a power loss keeps
// every acknowledged record.
#[test]
fn lone_appends_are_synced_by_the_encoder_and_queued_ones_by_the_syncer() {
    use std::sync::atomic::Ordering::Relaxed;
    let fs = MemFs::new();
    let config = Config {
        batch_bytes_max: 4096,
        ..Config::small_for_tests()
    };
    let wal = Wal::open_with(Arc::new(fs.clone()), mem_dir(), config).unwrap();
    fill(&wal, 1, 10);
    let stats = wal.stats();
    assert_eq!(stats.encoder_syncs.load(Relaxed), 10);
    assert_eq!(stats.batches.load(Relaxed), 10);
    // A lazy append is the syncer's; the lone append right after its answer is the encoder's
    // again (the syncer has nothing left once what it was handed is durable).
    wal.submit_lazy(vec![record(11)]).unwrap().wait().unwrap();
    assert_eq!(stats.batches.load(Relaxed), 11);
    fill(&wal, 12, 12);
    assert_eq!(stats.encoder_syncs.load(Relaxed), 11);
    let pending: Vec<_> = (13..=1010)
        .map(|n| wal.submit(vec![record(n)]).unwrap())
        .collect();
    for (n, pending) in (13..).zip(pending) {
        assert_eq!(pending.wait().unwrap().first, n);
    }
    let by_syncer = stats.batches.load(Relaxed) - stats.encoder_syncs.load(Relaxed);
    assert!(by_syncer > 0, "no queued append reached the syncer");
    fs.fail_syncs_after(0);
    assert!(matches!(
        wal.append_blocking(vec![record(1011)]),
        Err(Error::Poisoned(_))
    ));
    fs.crash(CrashMode::DropUnsynced);
    drop(wal);
    assert_eq!(check_all(&open_mem(&fs).unwrap()), 1010);
}
