//! The subcommands. Each returns its exit code (0 ok, 1 fault or difference) or an error
//! (usage or I/O, exit 2).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::{Table, presets};
use serde_json::{Value, json};
use symphainy_engine::event::{Event, EventBody, EventType, SYSTEM_TENANT};
use symphainy_engine::id::rfc3339;
use symphainy_engine::saga::{Guarded, Registry, StepInput};
use symphainy_engine::state::State;
use symphainy_engine::view::{self, SessionIndex};
use symphainy_engine::{Id, codec, digest};
use symphainy_wal::{Error as WalError, Lsn, RealFs, WalReader};

use crate::{Cli, Command, Format};

/// A table for people: ASCII (it survives any terminal, pager or log), a rule under the
/// header and none between rows.
fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_FULL_CONDENSED);
    table
}

/// Rows of one `dump --format table` table: a long dump prints a table per this many events
/// as it reads them, instead of holding the whole log's rows to size one table.
const TABLE_PAGE_ROWS: usize = 1_000;

/// Characters of an event's data a `dump --format table` row shows (`--format jsonl` has
/// it all).
const TABLE_DATA_CHARS_MAX: usize = 60;

/// The byte offset where `text`'s character number `chars` (from 0) starts: none when `text`
/// has no more than `chars` characters. Where `dump` and `show` cut long values.
fn char_offset(text: &str, chars: usize) -> Option<usize> {
    text.char_indices().nth(chars).map(|(at, _)| at)
}

/// `text` cut to `max` characters, the last three of them `...` when it was longer.
fn cut(mut text: String, max: usize) -> String {
    if char_offset(&text, max).is_some() {
        if let Some(at) = char_offset(&text, max.saturating_sub(3)) {
            text.truncate(at);
        }
        text.push_str("...");
    }
    text
}

/// The WAL folder of a data directory (or the directory itself when it holds segments).
fn wal_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let nested = data_dir.join("wal");
    if nested.is_dir() {
        return Ok(nested);
    }
    let has_segments = std::fs::read_dir(data_dir)
        .with_context(|| format!("reading {}", data_dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".wal"));
    if has_segments {
        return Ok(data_dir.to_path_buf());
    }
    bail!(
        "{} holds no WAL (no wal/ folder, no segment files)",
        data_dir.display()
    )
}

fn open(cli: &Cli) -> anyhow::Result<WalReader> {
    let dir = wal_dir(&cli.data_dir)?;
    WalReader::open_with(Arc::new(RealFs), &dir)
        .with_context(|| format!("opening {}", dir.display()))
}

/// Records read between two updates of the progress bar.
const PROGRESS_STEP_RECORDS: u64 = 8192;

/// A progress bar over `total` records on stderr; drawn only on a terminal (indicatif hides it
/// otherwise), so piped output and scripts see nothing.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Calls `f` with every decoded event (and its session) from `from` to `to`.
fn each_event(
    reader: &WalReader,
    from: Lsn,
    to: Option<Lsn>,
    mut f: impl FnMut(Lsn, &Event, Option<Id>),
) -> anyhow::Result<u64> {
    let mut cursor = reader.cursor(1);
    let mut sessions = SessionIndex::default();
    let mut failure = None;
    let mut count = 0;
    let end = to.unwrap_or(Lsn::MAX);
    let progress = progress_bar(end.min(reader.last_lsn()));
    loop {
        progress.set_position(cursor.next_lsn().saturating_sub(1));
        let seen = cursor.visit(PROGRESS_STEP_RECORDS as usize, |lsn, meta, payload| {
            if failure.is_some() || lsn > end {
                return;
            }
            match codec::decode(meta, payload) {
                Ok(event) => {
                    let session = sessions.observe(&event);
                    if lsn >= from {
                        f(lsn, &event, session);
                        count += 1;
                    }
                }
                Err(e) => failure = Some(anyhow::anyhow!("LSN {lsn}: {e}")),
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if seen == 0 || cursor.next_lsn() > end {
            progress.finish_and_clear();
            return Ok(count);
        }
    }
}

pub fn run(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Verify { json } => verify(cli, *json),
        Command::Dump {
            tenant,
            session,
            execution,
            event_type,
            from_lsn,
            to_lsn,
            format,
        } => {
            let filter = Filter::new(tenant, session, execution, event_type)?;
            dump(cli, &filter, from_lsn.unwrap_or(1), *to_lsn, *format)
        }
        Command::Replay {
            to_lsn,
            tenant,
            json,
        } => replay(cli, *to_lsn, tenant.as_deref(), *json),
        Command::CheckDeterminism { execution, json } => {
            check_determinism(cli, execution.as_deref(), *json)
        }
        Command::Show {
            execution_id,
            json,
            full,
        } => show(cli, execution_id, *json, *full),
        Command::Stats { json } => stats(cli, *json),
        Command::RebuildProjections {
            redis_url,
            graph_dir,
            json,
        } => rebuild_projections(cli, redis_url.as_deref(), graph_dir.as_deref(), *json),
    }
}

fn verify(cli: &Cli, json: bool) -> anyhow::Result<u8> {
    let dir = wal_dir(&cli.data_dir)?;
    // The total is only known once verified: a counter (on a terminal only).
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} records verified ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let opened = WalReader::open_visiting(Arc::new(RealFs), &dir, |lsn, _, _| {
        if lsn % PROGRESS_STEP_RECORDS == 0 {
            progress.set_position(lsn);
        }
    });
    progress.finish_and_clear();
    match opened {
        Ok(reader) => {
            let report = reader.report();
            if json {
                let torn = report.torn_tail.as_ref().map(|t| {
                    json!({
                        "segment": t.location.segment,
                        "offset": t.location.offset,
                        "lsn": t.location.lsn,
                        "discarded_bytes": t.discarded_bytes,
                        "reason": t.reason,
                    })
                });
                println!(
                    "{}",
                    json!({
                        "intact": true,
                        "segments": report.segments,
                        "records": report.records,
                        "last_lsn": report.last_lsn,
                        "bytes": report.bytes,
                        "torn_tail": torn,
                    })
                );
                return Ok(0);
            }
            println!(
                "intact: {} segment(s), {} record(s), last LSN {}, {} bytes of frames",
                report.segments, report.records, report.last_lsn, report.bytes
            );
            if let Some(torn) = &report.torn_tail {
                println!(
                    "note: torn tail after the last record ({}, {} byte(s) of an unfinished write); a writer cuts it on open",
                    torn.location, torn.discarded_bytes
                );
            }
            Ok(0)
        }
        Err(WalError::Corruption { location, reason }) => {
            if json {
                let fault = json!({
                    "segment": location.segment,
                    "offset": location.offset,
                    "lsn": location.lsn,
                    "reason": reason,
                });
                println!("{}", json!({"intact": false, "fault": fault}));
            } else {
                println!(
                    "fault: segment {} at byte offset {} (LSN {}): {reason}",
                    location.segment, location.offset, location.lsn
                );
            }
            Ok(1)
        }
        Err(other) => Err(anyhow::Error::new(other).context(format!("opening {}", dir.display()))),
    }
}

struct Filter {
    tenant: Option<String>,
    session: Option<Id>,
    execution: Option<Id>,
    event_type: Option<EventType>,
}

impl Filter {
    fn new(
        tenant: &Option<String>,
        session: &Option<String>,
        execution: &Option<String>,
        event_type: &Option<String>,
    ) -> anyhow::Result<Self> {
        let id = |s: &Option<String>, what: &str| -> anyhow::Result<Option<Id>> {
            s.as_deref()
                .map(|v| {
                    v.parse::<Id>()
                        .map_err(|_| anyhow::anyhow!("--{what} {v} is not a ULID"))
                })
                .transpose()
        };
        let event_type = match event_type {
            None => None,
            Some(name) => Some(EventType::from_name(name).with_context(|| {
                let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
                format!("unknown event type {name}; one of {}", names.join(", "))
            })?),
        };
        Ok(Self {
            tenant: tenant.clone(),
            session: id(session, "session")?,
            execution: id(execution, "execution")?,
            event_type,
        })
    }

    fn accepts(&self, event: &Event, session: Option<Id>) -> bool {
        self.tenant.as_ref().is_none_or(|t| t == &event.tenant_id)
            && self.session.is_none_or(|s| session == Some(s))
            && self
                .execution
                .is_none_or(|e| event.body.execution_id() == Some(e))
            && self.event_type.is_none_or(|t| event.body.event_type() == t)
    }
}

fn dump(
    cli: &Cli,
    filter: &Filter,
    from: Lsn,
    to: Option<Lsn>,
    format: Format,
) -> anyhow::Result<u8> {
    let reader = open(cli)?;
    let header = [
        "lsn",
        "time",
        "tenant",
        "type",
        "session",
        "execution",
        "data",
    ];
    let mut table = new_table();
    table.set_header(header);
    let mut rows = 0usize;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut write_error = None;
    each_event(&reader, from, to, |lsn, event, session| {
        use std::io::Write;
        if !filter.accepts(event, session) || write_error.is_some() {
            return;
        }
        let value = view::wal_event(lsn, event, session);
        let written = match format {
            Format::Jsonl => writeln!(out, "{value}"),
            Format::Table => {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                table.add_row([
                    lsn.to_string(),
                    text(&value["timestamp"]),
                    event.tenant_id.clone(),
                    event.body.event_type().name().to_string(),
                    text(&value["session_id"]),
                    text(&value["execution_id"]),
                    cut(value["data"].to_string(), TABLE_DATA_CHARS_MAX),
                ]);
                rows += 1;
                if rows.is_multiple_of(TABLE_PAGE_ROWS) {
                    let page = std::mem::replace(&mut table, new_table());
                    table.set_header(header);
                    writeln!(out, "{page}")
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = written {
            write_error = Some(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    if format == Format::Table && (rows == 0 || !rows.is_multiple_of(TABLE_PAGE_ROWS)) {
        use std::io::Write;
        writeln!(out, "{table}").context("writing to stdout")?;
    }
    Ok(0)
}

fn replay(cli: &Cli, to: Option<Lsn>, tenant: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let reader = open(cli)?;
    let progress = progress_bar(to.unwrap_or(Lsn::MAX).min(reader.last_lsn()));
    // The server's own replay (reading and decoding on a second thread).
    let keep = |event: &Event| {
        tenant.is_none_or(|t| t == event.tenant_id || event.tenant_id == SYSTEM_TENANT)
    };
    let (state, applied) =
        symphainy_engine::runtime::replay_cursor_with(&mut reader.cursor(1), to, &keep, &|lsn| {
            progress.set_position(lsn)
        })?;
    progress.finish_and_clear();
    let state_digest = digest::digest(&state);
    if as_json {
        println!(
            "{}",
            json!({ "events": applied, "lsn": state.last_lsn, "digest": state_digest, "rejected_events": state.rejected_events })
        );
    } else {
        println!(
            "events: {applied}\nlsn: {}\ndigest: {state_digest}",
            state.last_lsn
        );
        if state.rejected_events > 0 {
            println!(
                "rejected events: {} (events that did not fit the state)",
                state.rejected_events
            );
        }
    }
    // The process ends next: freeing a state of millions of executions one allocation at a
    // time takes about as long as its digest, and the system reclaims the memory at once.
    std::mem::forget(state);
    Ok(0)
}

/// The capabilities a server registers (the content realm over DATA_DIR/blobs included), plus
/// the test realm with `--with-test-realm`.
fn registry(cli: &Cli) -> anyhow::Result<Registry> {
    let mut registry = if cli.with_test_realm {
        symphainy_engine::testing::registry_with_test_realm(Arc::default())?
    } else {
        symphainy_engine::default_registry()?
    };
    symphainy_engine::realms::content::offline_realm(cli.data_dir.join("blobs"))
        .register(&mut registry)?;
    Ok(registry)
}

/// Time allowed to one re-executed step.
const REEXECUTION_TIMEOUT: Duration = Duration::from_secs(30);

fn check_determinism(cli: &Cli, only: Option<&str>, as_json: bool) -> anyhow::Result<u8> {
    let only: Option<Id> = only
        .map(|s| {
            s.parse()
                .map_err(|_| anyhow::anyhow!("--execution {s} is not a ULID"))
        })
        .transpose()?;
    let reader = open(cli)?;
    let registry = registry(cli)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("starting a runtime")?;
    let mut state = State::default();
    let mut checked = 0u64;
    let mut skipped = 0u64;
    let mut mismatch: Option<Value> = None;
    each_event(&reader, 1, None, |lsn, event, _| {
        if mismatch.is_some() {
            return;
        }
        if let EventBody::StepCompleted {
            execution_id,
            step_index,
            attempt,
            output_json,
            ..
        } = &event.body
            && only.is_none_or(|o| o == *execution_id)
            && let Some(e) = state.executions.get(execution_id)
        {
            let deterministic = state
                .capability(&e.capability, e.capability_version)
                .and_then(|c| c.steps.get(*step_index as usize))
                .map(|s| s.deterministic);
            match (
                deterministic,
                registry
                    .handler(&e.capability, e.capability_version)
                    .and_then(|h| h.step(*step_index as usize)),
            ) {
                (Some(true), Some(step)) => {
                    let previous = step_index
                        .checked_sub(1)
                        .and_then(|p| e.steps.get(p as usize))
                        .and_then(|s| s.output_json.as_deref())
                        .map(Arc::from);
                    let input = StepInput {
                        tenant_id: e.tenant_id.to_string(),
                        execution_id: *execution_id,
                        step_index: *step_index,
                        attempt: *attempt,
                        payload_json: Arc::from(&*e.payload_json),
                        previous_output_json: previous,
                    };
                    let actual = runtime.block_on(async {
                        tokio::time::timeout(REEXECUTION_TIMEOUT, Guarded(step.execute(input)))
                            .await
                    });
                    let actual = match actual {
                        Ok(Ok(output)) => output,
                        Ok(Err(err)) => format!("error {}: {}", err.code, err.message),
                        Err(_) => "timed out".to_string(),
                    };
                    checked += 1;
                    let same = serde_json::from_str::<Value>(&actual).ok()
                        == serde_json::from_str::<Value>(output_json).ok();
                    if !same {
                        let step = state
                            .capability(&e.capability, e.capability_version)
                            .and_then(|c| c.steps.get(*step_index as usize))
                            .map(|s| s.name.clone());
                        mismatch = Some(json!({
                            "execution_id": execution_id.to_string(), "lsn": lsn, "capability": e.capability,
                            "step": step, "step_index": step_index, "attempt": attempt,
                            "expected": output_json, "actual": actual,
                        }));
                    }
                }
                _ => skipped += 1,
            }
        }
        state.apply(lsn, event.clone());
    })?;
    let found = mismatch.is_some();
    match (mismatch, as_json) {
        (Some(m), true) => println!(
            "{}",
            json!({ "deterministic": false, "checked": checked, "first_difference": m })
        ),
        (Some(m), false) => println!(
            "difference: execution {} step {} (index {}, attempt {}) at LSN {}\n  expected: {}\n  actual:   {}",
            m["execution_id"].as_str().unwrap_or_default(),
            m["step"].as_str().unwrap_or("?"),
            m["step_index"],
            m["attempt"],
            m["lsn"],
            m["expected"].as_str().unwrap_or_default(),
            m["actual"].as_str().unwrap_or_default()
        ),
        (None, true) => println!(
            "{}",
            json!({ "deterministic": true, "checked": checked, "skipped_non_deterministic": skipped })
        ),
        (None, false) => println!(
            "deterministic: {checked} step output(s) re-executed and equal; {skipped} non-deterministic or unavailable step(s) kept as recorded"
        ),
    }
    Ok(u8::from(found))
}

/// Characters of a JSON value `show` prints before cutting it (without `--full`).
pub const SHOW_VALUE_CHARS: usize = 200;

/// A JSON value as `show` prints it: whole with `full`, else its first
/// [`SHOW_VALUE_CHARS`] characters and how many bytes were left out.
fn brief(value: &Value, full: bool) -> String {
    let text = value.to_string();
    match char_offset(&text, SHOW_VALUE_CHARS) {
        Some(cut) if !full => format!(
            "{}... ({} more bytes; --full prints it whole)",
            &text[..cut],
            text.len() - cut
        ),
        _ => text,
    }
}

fn show(cli: &Cli, execution: &str, as_json: bool, full: bool) -> anyhow::Result<u8> {
    let id: Id = execution
        .parse()
        .map_err(|_| anyhow::anyhow!("{execution} is not a ULID"))?;
    let reader = open(cli)?;
    let mut state = State::default();
    let mut timeline = Vec::new();
    each_event(&reader, 1, None, |lsn, event, session| {
        if event.body.execution_id() == Some(id) {
            timeline.push(view::wal_event(lsn, event, session));
        }
        state.apply(lsn, event.clone());
    })?;
    let Some(execution) = state.executions.get(&id) else {
        bail!("execution {id} is not in this log");
    };
    let record = view::execution_record(&state, execution);
    if as_json {
        println!("{}", json!({ "execution": record, "events": timeline }));
        return Ok(0);
    }
    let step_names: Vec<String> = record["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["name"].as_str().unwrap_or("?").to_string())
        .collect();
    println!("execution {id}");
    println!(
        "  tenant {}  session {}  intent {} ({})",
        execution.tenant_id, execution.session_id, execution.intent_id, execution.intent_type
    );
    println!(
        "  capability {} v{}  status {}",
        execution.capability,
        execution.capability_version,
        execution.status.name()
    );
    println!("  payload {}", brief(&record["payload"], full));
    println!("timeline:");
    // LSNs right-aligned to the widest of this timeline.
    let width = timeline
        .iter()
        .filter_map(|e| e["lsn"].as_u64())
        .max()
        .unwrap_or_default()
        .to_string()
        .len();
    for event in &timeline {
        let data = &event["data"];
        let step = data["step_index"]
            .as_u64()
            .and_then(|i| step_names.get(i as usize))
            .map(String::as_str)
            .unwrap_or("");
        let detail = match event["event_type"].as_str().unwrap_or_default() {
            "step_started" => format!("{step} attempt {}", data["attempt"]),
            "step_completed" => format!(
                "{step} attempt {} in {} ms -> {}",
                data["attempt"],
                data["duration_ms"],
                brief(&data["output"], full)
            ),
            "step_failed" => format!(
                "{step} attempt {} in {} ms: {} ({}){}",
                data["attempt"],
                data["duration_ms"],
                data["code"].as_str().unwrap_or_default(),
                data["message"].as_str().unwrap_or_default(),
                if data["retryable"] == true {
                    ", retryable"
                } else {
                    ""
                }
            ),
            "step_retry_scheduled" => format!(
                "{step} attempt {} after {} ms",
                data["next_attempt"], data["delay_ms"]
            ),
            "step_compensated" => format!("{step} in {} ms", data["duration_ms"]),
            "compensation_started" => format!(
                "after {} failed",
                data["failed_step_index"]
                    .as_u64()
                    .and_then(|i| step_names.get(i as usize))
                    .map(String::as_str)
                    .unwrap_or("?")
            ),
            "saga_completed" => format!("result {}", brief(&data["result"], full)),
            "saga_failed" | "saga_compensated" => format!(
                "{}: {}",
                data["code"].as_str().unwrap_or_default(),
                data["message"].as_str().unwrap_or_default()
            ),
            "saga_started" => format!(
                "{} v{}, {} step(s)",
                data["capability"].as_str().unwrap_or_default(),
                data["capability_version"],
                data["step_count"]
            ),
            _ => String::new(),
        };
        // The LSN as a number: a JSON value would ignore the width.
        let line = format!(
            "  {:>width$}  {}  {:<22} {detail}",
            event["lsn"].as_u64().unwrap_or_default(),
            event["timestamp"].as_str().unwrap_or_default(),
            event["event_type"].as_str().unwrap_or_default()
        );
        println!("{}", line.trim_end());
    }
    Ok(0)
}

fn stats(cli: &Cli, as_json: bool) -> anyhow::Result<u8> {
    let reader = open(cli)?;
    let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut by_tenant: BTreeMap<String, u64> = BTreeMap::new();
    let (mut first, mut last) = (None, None);
    let events = each_event(&reader, 1, None, |_, event, _| {
        *by_type.entry(event.body.event_type().name()).or_default() += 1;
        *by_tenant.entry(event.tenant_id.clone()).or_default() += 1;
        first.get_or_insert(event.timestamp_ms);
        last = Some(event.timestamp_ms);
    })?;
    let report = reader.report();
    let value = json!({
        "events": events, "segments": report.segments, "bytes": report.bytes, "last_lsn": report.last_lsn,
        "first_event_at": first.map(rfc3339), "last_event_at": last.map(rfc3339),
        "events_by_type": by_type, "events_by_tenant": by_tenant,
    });
    if as_json {
        println!("{value}");
        return Ok(0);
    }
    println!(
        "events {events}, segments {}, bytes {}, last LSN {}",
        report.segments, report.bytes, report.last_lsn
    );
    println!(
        "time span {} .. {}",
        value["first_event_at"].as_str().unwrap_or("-"),
        value["last_event_at"].as_str().unwrap_or("-")
    );
    let mut table = new_table();
    table.set_header(["event type", "count"]);
    for (kind, n) in &by_type {
        table.add_row([kind.to_string(), n.to_string()]);
    }
    println!("{table}");
    let mut table = new_table();
    table.set_header(["tenant", "events"]);
    for (tenant, n) in &by_tenant {
        table.add_row([tenant.clone(), n.to_string()]);
    }
    println!("{table}");
    Ok(0)
}

fn rebuild_projections(
    cli: &Cli,
    redis_url: Option<&str>,
    graph_dir: Option<&Path>,
    json: bool,
) -> anyhow::Result<u8> {
    use symphainy_projections::graph::{GraphView, Opened, SledGraph};
    use symphainy_projections::runner::{REBUILD_BATCH_EVENTS, RebuildReport, rebuild};
    use symphainy_projections::store::StateStore;
    use symphainy_projections::surface::StateSurface;

    let reader = open(cli)?;
    let graph_dir = graph_dir.map_or_else(|| cli.data_dir.join("graph"), Path::to_path_buf);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report_line = |what: &str, target: &str, r: &RebuildReport| {
        json!({
            "projection": what, "target": target, "events": r.events, "last_lsn": r.last_lsn,
            "seconds": r.seconds, "events_per_sec": (r.events as f64 / r.seconds.max(1e-9)).round(),
        })
    };
    let mut reports = Vec::new();
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string();
    let (graph, opened) = SledGraph::open_or_reset(&graph_dir, &suffix)
        .with_context(|| format!("opening the graph view in {}", graph_dir.display()))?;
    if let Opened::MovedAside(aside) = &opened {
        eprintln!(
            "replay-tool: the graph view could not be opened; moved it to {}",
            aside.display()
        );
    }
    let graph = Arc::new(graph);
    let progress = progress_bar(reader.last_lsn());
    let report = runtime
        .block_on(rebuild(
            &mut GraphView::new(graph.clone()),
            &mut reader.cursor(1),
            REBUILD_BATCH_EVENTS,
            |lsn| progress.set_position(lsn),
        ))
        .context("rebuilding the graph view")?;
    graph.flush().context("flushing the graph view")?;
    progress.finish_and_clear();
    reports.push(report_line(
        "graph_view",
        &graph_dir.display().to_string(),
        &report,
    ));
    if let Some(url) = redis_url {
        let _inside = runtime.enter();
        let store = Arc::new(StateStore::redis(url).context("parsing the Redis URL")?);
        let target = store.describe();
        let progress = progress_bar(reader.last_lsn());
        let report = runtime
            .block_on(rebuild(
                &mut StateSurface::new(store.clone()),
                &mut reader.cursor(1),
                REBUILD_BATCH_EVENTS,
                |lsn| progress.set_position(lsn),
            ))
            .with_context(|| format!("rebuilding the state surface in {target}"))?;
        progress.finish_and_clear();
        reports.push(report_line("state_surface", &target, &report));
    }
    if json {
        println!("{}", Value::Array(reports));
    } else {
        for r in &reports {
            println!(
                "{}: rebuilt {} events (to LSN {}) in {:.2} s, {} events/s -> {}",
                r["projection"].as_str().unwrap_or_default(),
                r["events"],
                r["last_lsn"],
                r["seconds"].as_f64().unwrap_or_default(),
                r["events_per_sec"],
                r["target"].as_str().unwrap_or_default(),
            );
        }
    }
    Ok(0)
}
