//! `replay-tool`: offline audit, verification and deterministic replay of a data directory
//! (CONTRACT section 9). Every subcommand opens the directory read-only, so it works on a
//! stopped server's directory, on a copy, and beside a running server (up to what was durable
//! when it opened). Exit codes: 0 success (for `verify`: intact), 1 a fault or a difference
//! was found, 2 usage or I/O error.

mod commands;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Offline audit, verification and deterministic replay of a Symphainy data directory.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Example: replay-tool verify --data-dir ./symphainy-data"
)]
pub struct Cli {
    /// The data directory (or its `wal` folder).
    #[arg(
        long,
        global = true,
        env = "SYMPHAINY_DATA_DIR",
        default_value = "./symphainy-data"
    )]
    pub data_dir: PathBuf,
    /// Also register the engine's test capabilities (for logs written by tests).
    #[arg(long, global = true, hide = true)]
    pub with_test_realm: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of `dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Table,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check every segment: checksums, LSN continuity, hash chain.
    #[command(
        after_help = "Exit 0 when intact; 1 names the segment file, byte offset and LSN of the first fault.\n\nExample: replay-tool verify --data-dir ./symphainy-data --json"
    )]
    Verify {
        /// One JSON object: {"intact": true, "segments", "records", "last_lsn", "bytes",
        /// "torn_tail"} or {"intact": false, "fault": {"segment", "offset", "lsn", "reason"}}.
        #[arg(long)]
        json: bool,
    },
    /// Print events, filtered.
    #[command(
        after_help = "Example: replay-tool dump --tenant acme --type step_failed --format table"
    )]
    Dump {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        execution: Option<String>,
        /// Event type, e.g. step_completed.
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        from_lsn: Option<u64>,
        #[arg(long)]
        to_lsn: Option<u64>,
        /// jsonl: one WAL event per line, whole. table: for people, whole ids, data cut to 60
        /// characters, a table per 1,000 events printed as they are read.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
    /// Re-derive the state from the log; print event count, final LSN and state digest.
    #[command(
        after_help = "The digest equals the server's GET /runtime/digest at the same LSN.\n\nExample: replay-tool replay --to-lsn 1000 --json"
    )]
    Replay {
        #[arg(long)]
        to_lsn: Option<u64>,
        /// Replay only this tenant's events (and node-wide ones).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-execute recorded deterministic steps; report the first output that differs.
    #[command(
        after_help = "Non-deterministic steps keep their recorded outputs and are not re-run.\n\nExample: replay-tool check-determinism --execution 01J..."
    )]
    CheckDeterminism {
        #[arg(long)]
        execution: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The timeline of one execution. JSON values (payload, step outputs, result) longer than
    /// 200 characters are cut, saying how much was left out; `--full` prints them whole and
    /// `--json` prints everything for machines.
    #[command(after_help = "Example: replay-tool show 01JABCDEFGHJKMNPQRSTVWXYZ0 --full")]
    Show {
        execution_id: String,
        #[arg(long)]
        json: bool,
        /// Print every JSON value whole.
        #[arg(long)]
        full: bool,
    },
    /// Events by type and tenant, segments, bytes, time span.
    #[command(after_help = "Example: replay-tool stats --json")]
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the projections from the log: the graph view (into `--graph-dir`, default
    /// DATA_DIR/graph) and, with `--redis-url`, the Redis state surface. Each is deleted first
    /// and rebuilt from every event; the WAL itself is only read. Stop the server first (it
    /// holds the graph directory and writes the same Redis keys).
    #[command(
        after_help = "Example: replay-tool rebuild-projections --data-dir ./symphainy-data --redis-url redis://127.0.0.1:6379/0"
    )]
    RebuildProjections {
        /// Redis to rebuild the state surface into (its `t:{tenant}:*` keys are replaced).
        #[arg(long)]
        redis_url: Option<String>,
        /// Where the graph view lives (default: DATA_DIR/graph).
        #[arg(long)]
        graph_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("replay-tool: {}", format!("{error:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
