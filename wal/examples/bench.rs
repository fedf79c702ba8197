//! WAL append benchmark. Measures durable appends with K appends in flight (closed loop) or at
//! a fixed offered rate (open loop, `--rate`), and the disk's raw fdatasync latency in the same
//! run. p50/p99 are the ack latency measured inside the log (request created -> answered);
//! the client-observed figures, which add the bench's own task scheduling, precede it. Last line: `appends_per_sec=... p50_us=... p99_us=... fsync_p50_us=... fsync_p99_us=...`
//!
//! cargo run --release -p symphainy-wal --example bench -- --records 2000000 --record-bytes 150 --in-flight 256
//!
//! `--workers N` sets the client runtime's worker threads (default 2). With 256 appends in flight,
//! two workers give 0.5 or 0.8 M/s depending on how the threads fall on the two cores; one
//! worker gives 0.8 M/s steadily but cannot feed 1024 in flight.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use symphainy_wal::stats::Histogram;
use symphainy_wal::{Config, Log, Preallocation, Record, RecordMeta, Wal};

struct Args {
    records: u64,
    record_bytes: usize,
    in_flight: u64,
    rate: Option<u64>,
    batch: usize,
    sparse: bool,
    segment_mib: u64,
    workers: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        records: 1_000_000,
        record_bytes: 150,
        in_flight: 256,
        rate: None,
        batch: 1,
        sparse: false,
        segment_mib: 64,
        workers: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--records" => args.records = number(),
            "--record-bytes" => args.record_bytes = number() as usize,
            "--in-flight" => args.in_flight = number().max(1),
            "--rate" => args.rate = Some(number()),
            "--batch" => args.batch = number().max(1) as usize,
            "--prealloc" => args.sparse = value == "sparse",
            "--segment-mib" => args.segment_mib = number(),
            "--workers" => args.workers = number().max(1) as usize,
            other => panic!(
                "unknown flag {other}; flags: --records --record-bytes --in-flight --rate --batch --prealloc --segment-mib --workers"
            ),
        }
    }
    args
}

/// Raw fdatasync latency of this disk: 4 KiB writes into a zero-filled file, each synced.
/// Returns p50, p99 and p99.9 in microseconds.
fn raw_fsync(dir: &std::path::Path, syncs: u64) -> (u64, u64, u64) {
    let path = dir.join("raw-fsync.probe");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for i in 0..16 {
        file.write_all_at(&zeros, i << 20).unwrap();
    }
    file.sync_all().unwrap();
    let hist = Histogram::default();
    let block = vec![7u8; 4096];
    for i in 0..syncs {
        file.write_all_at(&block, i * 4096 % (16 << 20)).unwrap();
        let started = Instant::now();
        file.sync_data().unwrap();
        hist.record(started.elapsed().as_micros() as u64);
    }
    let _ = std::fs::remove_file(path);
    (
        hist.quantile(0.5),
        hist.quantile(0.99),
        hist.quantile(0.999),
    )
}

fn record(bytes: usize, n: u64) -> Record {
    let mut payload = vec![0u8; bytes];
    payload[..8].copy_from_slice(&n.to_le_bytes());
    Record {
        meta: RecordMeta {
            codec: 1,
            record_type: 1,
            schema_version: 1,
        },
        payload,
    }
}

async fn closed_loop(wal: Arc<Wal>, args: &Args, latency: Arc<Histogram>) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..args.in_flight)
        .map(|_| {
            let (wal, next, latency) = (wal.clone(), next.clone(), latency.clone());
            let (total, bytes, batch) = (args.records, args.record_bytes, args.batch as u64);
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(batch, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let records = (n..n + batch).map(|k| record(bytes, k)).collect();
                    let started = Instant::now();
                    wal.append(records).await.expect("append");
                    latency.record(started.elapsed().as_micros() as u64);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Offers `rate` appends per second from one plain thread (no task per append: the bench must
/// not compete with the log for the two cores); latency comes from the log's own ack histogram.
fn open_loop(wal: &Wal, args: &Args, rate: u64) {
    let started = Instant::now();
    let mut pending = Vec::with_capacity(args.records as usize);
    let mut sent = 0u64;
    while sent < args.records {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(args.records);
        while sent < due {
            pending.push(
                wal.submit(vec![record(args.record_bytes, sent)])
                    .expect("submit"),
            );
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    for append in pending {
        append.wait().expect("append");
    }
}

fn main() {
    let args = parse_args();
    let dir = tempfile::tempdir_in(".").expect("temp dir in the current directory");
    let (fsync_p50, fsync_p99, fsync_p999) = raw_fsync(dir.path(), 20_000);
    println!("raw_fsync syncs=20000 p50_us={fsync_p50} p99_us={fsync_p99} p999_us={fsync_p999}");
    let preallocation = if args.sparse {
        Preallocation::Sparse
    } else {
        Preallocation::ZeroFill
    };
    let config = Config {
        queue_depth_max: 64 * 1024,
        preallocation,
        segment_bytes: args.segment_mib << 20,
        ..Config::default()
    };
    let wal = Arc::new(Wal::open(dir.path().join("wal"), config).expect("open"));
    // Let the first segment's preparation (zero-fill) finish before measuring.
    std::thread::sleep(Duration::from_millis(1500 + 10 * args.segment_mib));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .unwrap();
    let latency = Arc::new(Histogram::default());
    let started = Instant::now();
    match args.rate {
        Some(rate) => open_loop(&wal, &args, rate),
        None => runtime.block_on(closed_loop(wal.clone(), &args, latency.clone())),
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = wal.stats();
    println!(
        "records={} record_bytes={} in_flight={} rate={} batch={} seconds={:.2} fsyncs={} records_per_fsync={:.1} wal_fsync_p50_us={} wal_fsync_p99_us={} client_p50_us={} client_p99_us={}",
        args.records,
        args.record_bytes,
        args.in_flight,
        args.rate
            .map_or("closed-loop".to_string(), |r| r.to_string()),
        args.batch,
        elapsed,
        stats.batches.load(Ordering::Relaxed),
        stats.batch_size_avg(),
        stats.fsync_us.quantile(0.5),
        stats.fsync_us.quantile(0.99),
        latency.quantile(0.5),
        latency.quantile(0.99),
    );
    println!(
        "stages: wal_fsync_p999_us={} queue_p50_us={} queue_p99_us={} queue_p999_us={} ack_p999_us={}",
        stats.fsync_us.quantile(0.999),
        stats.queue_us.quantile(0.5),
        stats.queue_us.quantile(0.99),
        stats.queue_us.quantile(0.999),
        stats.append_us.quantile(0.999),
    );
    println!(
        "appends_per_sec={:.0} p50_us={} p99_us={} fsync_p50_us={} fsync_p99_us={}",
        args.records as f64 / elapsed,
        stats.append_us.quantile(0.5),
        stats.append_us.quantile(0.99),
        fsync_p50,
        fsync_p99
    );
}
