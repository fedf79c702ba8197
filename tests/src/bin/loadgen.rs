//! Load generator: measures durable intent submission (202 only after fdatasync) and
//! submit-to-completion of `runtime.echo` with `"steps": 3` (the peer comparison job, one
//! request awaited with `wait_ms`). Starts a server in this process (on its own runtime and
//! threads) unless `--url` is given. Last line:
//! `submits_per_sec=... p50_ms=... p99_ms=... sagas_per_sec=...`
//!
//! cargo run --release -p symphainy-tests --bin loadgen -- --connections 64 --seconds 20

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use symphainy_wal::stats::Histogram;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    connections: usize,
    seconds: u64,
    steps: u32,
    url: Option<String>,
    admin_token: Option<String>,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = Args {
        connections: 64,
        seconds: 20,
        steps: 3,
        url: None,
        admin_token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--connections" => args.connections = value.parse()?,
            "--seconds" => args.seconds = value.parse()?,
            "--steps" => args.steps = value.parse()?,
            "--url" => args.url = Some(value),
            "--admin-token" => args.admin_token = Some(value),
            other => anyhow::bail!(
                "unknown flag {other}; flags: --connections --seconds --steps --url --admin-token"
            ),
        }
    }
    Ok(args)
}

struct Phase {
    done: AtomicU64,
    errors: AtomicU64,
    latency_us: Histogram,
}

async fn run_phase(
    base: &str,
    token: &str,
    session: &str,
    args: &Args,
    wait: bool,
) -> (f64, Arc<Phase>) {
    let phase = Arc::new(Phase {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latency_us: Histogram::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let path = if wait {
        "/intent/submit?wait_ms=30000"
    } else {
        "/intent/submit"
    };
    let url = format!("{base}{path}");
    let body = json!({"intent_type": "runtime.echo", "session_id": session, "payload": {"value": "load", "steps": args.steps}}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (phase, stop, url, body, token) = (
            phase.clone(),
            stop.clone(),
            url.clone(),
            body.clone(),
            token.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap_or_default();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        if wait { status == 200 } else { status == 202 }
                    }
                    Err(_) => false,
                };
                if ok {
                    phase
                        .latency_us
                        .record(started.elapsed().as_micros() as u64);
                    phase.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    phase.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    (started.elapsed().as_secs_f64(), phase)
}

/// Waits until no execution is accepted or running (the submit phase's backlog drained).
async fn drain(admin: &symphainy_sdk::Client) -> anyhow::Result<()> {
    for _ in 0..600 {
        let metrics = admin.metrics().await?;
        let by_status = &metrics["executions_by_status"];
        let busy = by_status["accepted"].as_u64().unwrap_or(0)
            + by_status["running"].as_u64().unwrap_or(0);
        if busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the backlog did not drain within 60 s")
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    // The server, when started here, gets its own runtime and threads.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir_in(".")?;
    let (base, admin_token, _running) = match (&args.url, &args.admin_token) {
        (Some(url), Some(token)) => (url.clone(), token.clone(), None),
        (Some(_), None) => anyhow::bail!("--url needs --admin-token"),
        _ => {
            let mut config = symphainy_server::ServerConfig::new(
                dir.path().to_path_buf(),
                "127.0.0.1:0".parse()?,
            );
            config.limits.tenant_requests_per_sec = 1_000_000;
            config.limits.requests_in_flight_max = 100_000;
            let running = server_runtime.block_on(symphainy_server::start(config))?;
            (
                format!("http://{}", running.addr),
                running.admin_token.clone(),
                Some(running),
            )
        }
    };
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    client_runtime.block_on(async {
        let admin = symphainy_sdk::Client::new(&base, &admin_token);
        let tenant = format!("load{}", std::process::id());
        admin.create_tenant(&tenant).await?;
        let token = admin.issue_token(&tenant, "loadgen", 3600).await?.token;
        let client = admin.with_token(&token);
        let session = client.create_session(json!({})).await?.session_id;

        let (secs, submits) = run_phase(&base, &token, &session, &args, false).await;
        let submit_rate = submits.done.load(Ordering::Relaxed) as f64 / secs;
        println!(
            "phase=submit connections={} seconds={secs:.1} submits={} errors={} submits_per_sec={submit_rate:.0} p50_ms={:.3} p99_ms={:.3}",
            args.connections,
            submits.done.load(Ordering::Relaxed),
            submits.errors.load(Ordering::Relaxed),
            submits.latency_us.quantile(0.5) as f64 / 1000.0,
            submits.latency_us.quantile(0.99) as f64 / 1000.0,
        );
        drain(&admin).await?;
        let (secs, sagas) = run_phase(&base, &token, &session, &args, true).await;
        let saga_rate = sagas.done.load(Ordering::Relaxed) as f64 / secs;
        println!(
            "phase=saga steps={} connections={} seconds={secs:.1} sagas={} errors={} sagas_per_sec={saga_rate:.0} p50_ms={:.3} p99_ms={:.3}",
            args.steps,
            args.connections,
            sagas.done.load(Ordering::Relaxed),
            sagas.errors.load(Ordering::Relaxed),
            sagas.latency_us.quantile(0.5) as f64 / 1000.0,
            sagas.latency_us.quantile(0.99) as f64 / 1000.0,
        );
        println!(
            "submits_per_sec={submit_rate:.0} p50_ms={:.3} p99_ms={:.3} sagas_per_sec={saga_rate:.0}",
            submits.latency_us.quantile(0.5) as f64 / 1000.0,
            submits.latency_us.quantile(0.99) as f64 / 1000.0,
        );
        anyhow::Ok(())
    })?;
    Ok(())
}
