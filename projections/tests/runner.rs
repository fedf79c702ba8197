//! A runner pausing between writes to let events gather (`RunnerConfig::coalesce`) never makes
//! a reader wait for the pause: `wait_applied` cuts it short.

use std::sync::Arc;
use std::time::Duration;

use symphainy_engine::State;
use symphainy_engine::testing::synthetic_log;
use symphainy_projections::runner::{Runner, RunnerConfig};
use symphainy_projections::store::StateStore;
use symphainy_projections::surface::StateSurface;
use symphainy_wal::{Config, Log, Wal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_reader_cuts_the_coalescing_pause_short() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path().join("wal"), Config::default()).unwrap());
    let config = RunnerConfig {
        coalesce: Duration::from_secs(3600),
        ..RunnerConfig::default()
    };
    let runner = Runner::start(
        wal.clone(),
        StateSurface::new(Arc::new(StateStore::memory())),
        State::default(),
        config,
    );
    // A short batch, watched without asking for a flush: once it is written the runner
    // pauses for an hour.
    let mut applied = runner.applied();
    let w = wal.clone();
    tokio::task::spawn_blocking(move || synthetic_log(&w, 500))
        .await
        .unwrap();
    let target = wal.durable_lsn();
    tokio::time::timeout(Duration::from_secs(30), applied.wait_for(|a| *a >= target))
        .await
        .expect("the runner applies what is there when it starts")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // More events arrive during the pause; a reader waiting for them gets them now.
    let w = wal.clone();
    tokio::task::spawn_blocking(move || synthetic_log(&w, 500))
        .await
        .unwrap();
    let target = wal.durable_lsn();
    assert!(
        runner.wait_applied(target, Duration::from_secs(20)).await,
        "the reader waited for the coalescing pause"
    );
    runner.stop().await;
}
