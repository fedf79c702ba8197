//! Projection benchmark: builds a log of `--events` real events (3-step executions over
//! 1,000 sessions), then measures
//! - rebuild into Redis (a private `redis-server`, pipelined, one `MULTI`/`EXEC` per tenant
//!   per batch) and into the sled graph, from an empty store, events per second;
//! - live lag: a writer appends at `--rate` events/s while both runners tail the log; the
//!   lag (durable LSN - applied LSN) of the Redis surface is sampled every millisecond.
//!
//! Last line: `redis_rebuild_events_per_sec=... graph_rebuild_events_per_sec=... lag_p99_events=...`
//!
//! cargo run --release -p symphainy-tests --bin projections-bench -- --events 2000000
//! (`--rate N` paces the live writer, `--live-secs N` its duration, `--redis-only` stops
//! after the Redis rebuild)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use symphainy_engine::State;
use symphainy_engine::testing::{Synthetic, synthetic_log};
use symphainy_projections::graph::{GraphView, SledGraph};
use symphainy_projections::runner::{REBUILD_BATCH_EVENTS, Runner, RunnerConfig, rebuild};
use symphainy_projections::store::StateStore;
use symphainy_projections::surface::StateSurface;
use symphainy_tests::RedisServer;
use symphainy_tests::flag;
use symphainy_wal::{Config, Log, Wal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let events = flag("--events", 2_000_000)?;
    let rate = flag("--rate", 100_000)?;
    let live_secs = flag("--live-secs", 5)?;
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir_in(".")?;
    let wal = Arc::new(Wal::open(dir.path().join("wal"), Config::default())?);
    let built = tokio::task::spawn_blocking({
        let wal = wal.clone();
        move || synthetic_log(&wal, events)
    })
    .await?;
    println!("built events={built}");

    let store = Arc::new(if std::env::args().any(|a| a == "--memory") {
        StateStore::memory()
    } else {
        StateStore::redis(&redis.url(0))?
    });
    let mut surface = StateSurface::new(store.clone());
    let r = rebuild(
        &mut surface,
        &mut wal.cursor(1),
        REBUILD_BATCH_EVENTS,
        |_| {},
    )
    .await?;
    let redis_rate = r.events as f64 / r.seconds;
    println!(
        "redis rebuild: events={} batches={} seconds={:.2} events_per_sec={redis_rate:.0} keys={}",
        r.events,
        r.batches,
        r.seconds,
        store.key_count().await?
    );
    if std::env::args().any(|a| a == "--redis-only") {
        return Ok(());
    }
    let graph = Arc::new(SledGraph::open(&dir.path().join("graph"))?);
    let mut view = GraphView::new(graph.clone());
    let g = rebuild(&mut view, &mut wal.cursor(1), REBUILD_BATCH_EVENTS, |_| {}).await?;
    let graph_rate = g.events as f64 / g.seconds;
    println!(
        "graph rebuild: events={} batches={} seconds={:.2} events_per_sec={graph_rate:.0}",
        g.events, g.batches, g.seconds
    );

    // Live: both runners tail while a paced writer appends.
    let surface_runner = Runner::start(
        wal.clone(),
        StateSurface::new(store.clone()),
        State::default(),
        RunnerConfig::default(),
    );
    let graph_runner = Runner::start(
        wal.clone(),
        GraphView::new(graph.clone()),
        State::default(),
        RunnerConfig::default(),
    );
    let target = wal.durable_lsn();
    surface_runner
        .wait_applied(target, Duration::from_secs(600))
        .await;
    graph_runner
        .wait_applied(target, Duration::from_secs(600))
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (wal, stop) = (wal.clone(), stop.clone());
        move || -> anyhow::Result<u64> {
            let mut workload = Synthetic::default();
            // Skip the executions already in the log so ids stay unique.
            let mut skip = Vec::new();
            for _ in 0..(built / 8 + 1) {
                workload.next_execution(&mut skip);
                skip.clear();
            }
            let tick = Duration::from_millis(5);
            let per_tick = (rate as f64 * tick.as_secs_f64()).max(8.0) as usize;
            let started = Instant::now();
            let mut written = 0u64;
            let mut batch = Vec::with_capacity(per_tick + 8);
            while !stop.load(Ordering::Relaxed) {
                while batch.len() < per_tick {
                    workload.next_execution(&mut batch);
                }
                written += batch.len() as u64;
                wal.append_blocking(std::mem::take(&mut batch))?;
                let due = started + tick.mul_f64(written as f64 / per_tick as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(written)
        }
    });
    let mut lags = Vec::new();
    let live_started = Instant::now();
    while live_started.elapsed() < Duration::from_secs(live_secs) {
        let durable = wal.durable_lsn();
        lags.push(durable.saturating_sub(surface_runner.status().applied_lsn()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let seconds = live_started.elapsed().as_secs_f64();
    lags.sort_unstable();
    let q = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
    let end = wal.durable_lsn();
    let caught = surface_runner
        .wait_applied(end, Duration::from_secs(60))
        .await
        && graph_runner
            .wait_applied(end, Duration::from_secs(60))
            .await;
    println!(
        "live: appended={written} rate={:.0}/s samples={} lag_p50={} lag_p99={} lag_max={} caught_up={caught}",
        written as f64 / seconds,
        lags.len(),
        q(0.5),
        q(0.99),
        lags.last().copied().unwrap_or(0)
    );
    surface_runner.stop().await;
    graph_runner.stop().await;
    println!(
        "redis_rebuild_events_per_sec={redis_rate:.0} graph_rebuild_events_per_sec={graph_rate:.0} lag_p99_events={}",
        q(0.99)
    );
    Ok(())
}
