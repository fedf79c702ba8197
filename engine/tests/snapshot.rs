//! Snapshots: recovery from a snapshot plus the log's tail equals a full replay; damaged or
//! impossible snapshots are ignored; the snapshotter writes them in the background.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use symphainy_engine::id::{SystemClock, UlidSource};
use symphainy_engine::testing::Probe;
use symphainy_engine::{Runtime, RuntimeConfig, digest, snapshot};
use symphainy_wal::{Log, RealFs, Wal};

async fn workload(rt: &Arc<Rt>, tenant: &str, n: u32) {
    let session = match rt.create_tenant(tenant).await {
        Ok(_) => {
            rt.create_session(tenant, "u", "{}".into())
                .await
                .unwrap()
                .session_id
        }
        Err(_) => {
            rt.create_session(tenant, "u", "{}".into())
                .await
                .unwrap()
                .session_id
        }
    };
    for i in 0..n {
        let id = rt
            .submit_intent(echo(tenant, session, json!(i), 3))
            .await
            .unwrap()
            .execution_id;
        finish(rt, tenant, id).await;
    }
}

fn open_recovering(
    wal_dir: &std::path::Path,
    snapshots: &std::path::Path,
) -> (Wal, symphainy_engine::State) {
    snapshot::recover(Some(snapshots), |visit| {
        Ok(Wal::open_visiting(
            Arc::new(RealFs),
            wal_dir,
            wal_config(),
            |l, m, p| visit(l, m, p),
        )?)
    })
    .unwrap()
}

// A snapshot plus the tail recovers the same state as a full replay; a damaged newest
// snapshot falls back to the older one; a snapshot ahead of the log is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_from_snapshot_equals_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (wal_dir, snapshots) = (dir.path().join("wal"), dir.path().join("snapshots"));
    let probe = Arc::new(Probe::default());
    let start = |wal: Wal, state| {
        let registry = registry(&probe);
        Runtime::start_with_state(
            Arc::new(wal),
            state,
            registry,
            Arc::new(SystemClock),
            Arc::new(UlidSource::default()),
            RuntimeConfig::default(),
        )
    };
    let (wal, state) = open_recovering(&wal_dir, &snapshots);
    let rt = start(wal, state).await.unwrap();
    workload(&rt, "acme", 5).await;
    let first = snapshot::write(&snapshots, &rt.read(|s| s.clone()).await.unwrap()).unwrap();
    workload(&rt, "acme", 5).await;
    let second = snapshot::write(&snapshots, &rt.read(|s| s.clone()).await.unwrap()).unwrap();
    workload(&rt, "globex", 4).await;
    let (_, live) = rt.digest().await.unwrap();
    drop(rt);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let full = {
        let reader = symphainy_wal::WalReader::open(&wal_dir).unwrap();
        digest::digest(
            &symphainy_engine::runtime::replay_cursor(&mut reader.cursor(1), None)
                .unwrap()
                .0,
        )
    };
    assert_eq!(full, live);
    let (wal, state) = open_recovering(&wal_dir, &snapshots);
    assert_eq!(
        digest::digest(&state),
        live,
        "snapshot + tail differs from the live state"
    );
    drop(wal);
    // Executions share their names, also those read from the snapshot.
    let snapshotted = snapshot::read(&second).unwrap();
    for s in [&state, &snapshotted] {
        let acme: Vec<_> = s
            .executions
            .values()
            .filter(|e| &*e.tenant_id == "acme")
            .collect();
        assert!(acme.len() >= 10);
        for e in &acme {
            assert!(Arc::ptr_eq(&e.tenant_id, &acme[0].tenant_id));
            assert!(Arc::ptr_eq(&e.intent_type, &acme[0].intent_type));
            assert!(Arc::ptr_eq(&e.capability, &acme[0].capability));
        }
    }

    // Damage the newest snapshot: the older one is used, with the same result.
    let mut bytes = std::fs::read(&second).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    std::fs::write(&second, bytes).unwrap();
    assert!(snapshot::read(&second).is_err());
    let (wal, state) = open_recovering(&wal_dir, &snapshots);
    assert_eq!(digest::digest(&state), live);
    drop(wal);

    // A write a crash cut short left its temp file behind: recovery ignores it, and the next
    // snapshot written removes it.
    let leftover = snapshots.join("snapshot-00000000000000000003.bin.tmp");
    std::fs::write(&leftover, b"SYMSNAP1 cut short").unwrap();
    let (wal, state) = open_recovering(&wal_dir, &snapshots);
    assert_eq!(digest::digest(&state), live);
    drop(wal);
    assert!(leftover.exists(), "a reader deletes nothing");

    // A snapshot that claims more than the log holds is ignored.
    let mut ahead = snapshot::read(&first).unwrap();
    ahead.last_lsn = 1_000_000;
    snapshot::write(&snapshots, &ahead).unwrap();
    assert!(!leftover.exists(), "the leftover temp file was not removed");
    let names: Vec<String> = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".bin")), "{names:?}");
    let (wal, state) = open_recovering(&wal_dir, &snapshots);
    assert_eq!(digest::digest(&state), live);
    assert_eq!(state.last_lsn, wal.durable_lsn());
}

// The snapshotter writes snapshots from its own fold of the log, off the request path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshotter_writes_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (wal_dir, snapshots) = (dir.path().join("wal"), dir.path().join("snapshots"));
    let (wal, state) = open_recovering(&wal_dir, &snapshots);
    let probe = Arc::new(Probe::default());
    let wal = Arc::new(wal);
    let snapshotter =
        snapshot::Snapshotter::start(wal.clone(), state.last_lsn, snapshots.clone(), 20);
    let rt = Runtime::start_with_state(
        wal.clone(),
        state,
        registry(&probe),
        Arc::new(SystemClock),
        Arc::new(UlidSource::default()),
        RuntimeConfig::default(),
    )
    .await
    .unwrap();
    // Three rounds of work: the second round's snapshot is the first one with the log folded
    // onto it (the snapshotter keeps no state of its own between them); before the third, every
    // snapshot is damaged, so the third is folded from the log alone. Each equals the replay of
    // the log to its LSN.
    let mut previous = 0;
    for round in 0..3 {
        if round == 2 {
            for entry in std::fs::read_dir(&snapshots).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|x| x != "bin") {
                    continue;
                }
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
            }
        }
        workload(&rt, "acme", 6).await;
        let durable = wal.durable_lsn();
        let mut newest = None;
        for _ in 0..50 {
            newest = snapshot::load_latest(&snapshots, durable);
            if newest.as_ref().is_some_and(|s| s.last_lsn + 20 > durable) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let newest = newest.unwrap_or_else(|| panic!("round {round}: no snapshot written"));
        assert!(newest.last_lsn > previous, "round {round}");
        let replayed =
            symphainy_engine::runtime::replay_cursor(&mut wal.cursor(1), Some(newest.last_lsn))
                .unwrap()
                .0;
        assert_eq!(digest::digest(&newest), digest::digest(&replayed));
        previous = newest.last_lsn;
    }
    drop(snapshotter);
}
