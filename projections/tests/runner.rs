//! A runner pausing between writes to let events gather (`RunnerConfig::coalesce`) never makes
//! a reader wait for the pause: `wait_applied` cuts it short.

use std::sync::Arc;
use std::time::Duration;

use symphainy_engine::State;
use symphainy_engine::testing::synthetic_log;
use symphainy_projections::runner::{Runner, RunnerConfig};
use symphainy_projections::store::StateStore;
use symphainy_projections::surface::{StateSurface, SurfaceReader};
use symphainy_wal::{Config, Log, Wal};

/// A log in a fresh directory and a state surface on `store` following it with `config`.
fn surface_runner(
    store: &Arc<StateStore>,
    config: RunnerConfig,
) -> (tempfile::TempDir, Arc<Wal>, Runner, SurfaceReader) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path().join("wal"), Config::default()).unwrap());
    let surface = StateSurface::new(store.clone());
    let reader = surface.reader();
    let runner = Runner::start(wal.clone(), surface, State::default(), config);
    (dir, wal, runner, reader)
}

/// Appends `intents` generated intents to `wal`; the durable LSN after them.
async fn append(wal: &Arc<Wal>, intents: u64) -> u64 {
    let w = wal.clone();
    tokio::task::spawn_blocking(move || synthetic_log(&w, intents))
        .await
        .unwrap();
    wal.durable_lsn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_reader_cuts_the_coalescing_pause_short() {
    let config = RunnerConfig {
        coalesce: Duration::from_secs(3600),
        ..RunnerConfig::default()
    };
    let (_dir, wal, runner, _) = surface_runner(&Arc::new(StateStore::memory()), config);
    // A short batch, watched without asking for a flush: once it is written the runner
    // pauses for an hour.
    let mut applied = runner.applied();
    let target = append(&wal, 500).await;
    tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|a| *a >= target))
        .await
        .expect("the runner applies what is there when it starts")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // More events arrive during the pause; a reader waiting for them gets them now.
    let target = append(&wal, 500).await;
    assert!(
        runner.wait_applied(target, Duration::from_secs(20)).await,
        "the reader waited for the coalescing pause"
    );
    runner.stop().await;
}

// A surface whose own checkpoint or counter keys hold something that does not parse (edited
// by hand, or another program sharing the database) is cleared and rebuilt from the log,
// instead of retrying the same failing write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_surface_is_rebuilt_from_the_log() {
    use symphainy_projections::store::{Tx, Write};
    use symphainy_projections::surface::{
        GLOBAL_CHECKPOINT_KEY, tenant_checkpoint_key, tenant_events_key,
    };
    use symphainy_projections::testing::tenant_event_counts;

    let store = Arc::new(StateStore::memory());
    let config = RunnerConfig {
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        ..RunnerConfig::default()
    };
    let (_dir, wal, runner, reader) = surface_runner(&store, config);
    let damages = [
        tenant_events_key("acme"),
        tenant_checkpoint_key("acme"),
        GLOBAL_CHECKPOINT_KEY.to_string(),
    ];
    for key in damages {
        let target = append(&wal, 300).await;
        assert!(runner.wait_applied(target, Duration::from_secs(20)).await);
        store
            .commit(&[Tx {
                writes: vec![Write::Set(key.clone(), "garbage".into())],
            }])
            .await
            .unwrap();
        let target = append(&wal, 300).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let counted = tenant_event_counts(wal.as_ref(), target);
            if reader.tenant_events("acme").await.ok() == counted.get("acme").copied()
                && runner.status().applied_lsn() >= target
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "damage to {key} was not repaired: {:?}",
                runner.status().snapshot(target)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            store.get(GLOBAL_CHECKPOINT_KEY).await.unwrap(),
            Some(target.to_string())
        );
    }
    runner.stop().await;
}

// A checked reader answers only from a store that still holds what its surface wrote for
// the tenant: a store that lost writes (cleared, or its checkpoint older) under a runner that
// has not noticed yet is `Behind`, not "missing".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_reader_refuses_a_store_that_lost_writes() {
    use symphainy_projections::Error;
    use symphainy_projections::store::{Tx, Write};
    use symphainy_projections::surface::tenant_checkpoint_key;

    let store = Arc::new(StateStore::memory());
    let config = RunnerConfig {
        coalesce: Duration::from_secs(3600),
        ..RunnerConfig::default()
    };
    let (_dir, wal, runner, reader) = surface_runner(&store, config);
    let target = append(&wal, 200).await;
    assert!(runner.wait_applied(target, Duration::from_secs(20)).await);
    let events = reader.tenant_events("acme").await.unwrap();
    assert!(events > 0);
    let checked = || reader.clone().checked();
    assert_eq!(checked().tenant_events("acme").await.unwrap(), events);
    let written: u64 = store
        .get(&tenant_checkpoint_key("acme"))
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    // The store goes back to an older checkpoint (a Redis restored from an older dump).
    let set_checkpoint = |lsn: u64| Tx {
        writes: vec![Write::Set(tenant_checkpoint_key("acme"), lsn.to_string())],
    };
    store.commit(&[set_checkpoint(written - 1)]).await.unwrap();
    match checked().tenant_events("acme").await {
        Err(Error::Behind {
            tenant,
            wanted,
            found,
        }) => assert_eq!(
            (tenant.as_str(), wanted, found),
            ("acme", written, Some(written - 1))
        ),
        other => panic!("an older store answered {other:?}"),
    }
    store.commit(&[set_checkpoint(written)]).await.unwrap();
    assert_eq!(checked().tenant_events("acme").await.unwrap(), events);
    // The store loses everything; the runner, pausing, has not noticed.
    store.clear().await.unwrap();
    assert_eq!(runner.status().applied_lsn(), target);
    assert_eq!(reader.tenant_events("acme").await.unwrap(), 0);
    match checked().tenant_events("acme").await {
        Err(Error::Behind { found: None, .. }) => {}
        other => panic!("a store that lost its writes answered {other:?}"),
    }
    // A reader that knows nothing written still refuses a tenant with no checkpoint at all.
    let blind = SurfaceReader::new(store.clone()).checked();
    assert!(matches!(
        blind.tenant_events("acme").await,
        Err(Error::Behind { found: None, .. })
    ));
    runner.stop().await;
}
