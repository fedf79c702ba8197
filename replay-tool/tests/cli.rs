//! replay-tool against data directories the tests create: verify catches every flipped byte
//! and removed or swapped segments; replay equals the live digest (of a runtime, and of the
//! real server through the SDK while it runs and writes); check-determinism catches a
//! non-deterministic step; `show` and `dump` output is pinned by snapshots.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use symphainy_engine::id::{SystemClock, UlidSource};
use symphainy_engine::testing::{Probe, registry_with_test_realm};
use symphainy_engine::{Runtime, RuntimeConfig, SubmitIntent};
use symphainy_wal::{Config, Wal};

fn tool(args: &[&str], data_dir: &Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_replay-tool"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a workload through a runtime into `dir/wal` (small segments); returns the digest.
async fn workload(dir: &Path, intents: &[(&str, Value)]) -> (u64, String) {
    let config = Config {
        segment_bytes: 8 * 1024,
        record_bytes_max: 4 * 1024,
        ..Config::small_for_tests()
    };
    let wal = Arc::new(Wal::open(dir.join("wal"), config).unwrap());
    let mut registry = registry_with_test_realm(Arc::new(Probe::default())).unwrap();
    symphainy_engine::realms::content::offline_realm(dir.join("blobs"))
        .register(&mut registry)
        .unwrap();
    let registry = Arc::new(registry);
    let rt = Runtime::start(
        wal,
        registry,
        Arc::new(SystemClock),
        Arc::new(UlidSource::default()),
        RuntimeConfig::default(),
    )
    .await
    .unwrap();
    rt.create_tenant("acme").await.unwrap();
    let session = rt
        .create_session("acme", "alice", "{}".into())
        .await
        .unwrap()
        .session_id;
    for (intent_type, payload) in intents {
        let intent = SubmitIntent {
            tenant_id: "acme".into(),
            session_id: session,
            intent_type: intent_type.to_string(),
            realm: None,
            payload: payload.clone(),
            idempotency_key: None,
        };
        let id = rt.submit_intent(intent).await.unwrap().execution_id;
        let done = rt
            .wait_finished("acme", id, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(done, "{:?}", rt.execution("acme", id).await);
    }
    rt.digest().await.unwrap()
}

fn echo_load(n: usize) -> Vec<(&'static str, Value)> {
    (0..n)
        .map(|i| {
            (
                "runtime.echo",
                json!({"value": format!("v{i}"), "steps": 3}),
            )
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

// A byte flipped in any sealed segment's frames makes verify exit 1 naming that segment; a
// removed or swapped middle segment is caught too; the intact log exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_damage() {
    let dir = tempfile::tempdir().unwrap();
    workload(dir.path(), &echo_load(60)).await;
    let (code, out, _) = tool(&["verify"], dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("intact:"), "{out}");
    let (code, out, _) = tool(&["verify", "--json"], dir.path());
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, &report["intact"]), (0, &json!(true)));
    assert!(report["records"].as_u64().unwrap() > 0);
    let files = segments(dir.path());
    assert!(
        files.len() >= 4,
        "want several segments, got {}",
        files.len()
    );
    for (i, file) in files[..files.len() - 1].iter().enumerate() {
        let pristine = std::fs::read(file).unwrap();
        let used = pristine.iter().rposition(|&b| b != 0).unwrap();
        for k in 0..5 {
            let at = 64 + (i * 7919 + k * 104_729) % (used - 64);
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x10;
            std::fs::write(file, &bytes).unwrap();
            let (code, out, _) = tool(&["verify"], dir.path());
            let (json_code, json_out, _) = tool(&["verify", "--json"], dir.path());
            std::fs::write(file, &pristine).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            assert_eq!(code, 1, "flip at {name}:{at} not detected: {out}");
            assert!(out.contains(&name) && out.contains("byte offset"), "{out}");
            let fault: Value = serde_json::from_str(&json_out).unwrap();
            assert_eq!((json_code, &fault["intact"]), (1, &json!(false)));
            assert_eq!(fault["fault"]["segment"], name.as_str());
            let offset = fault["fault"]["offset"].as_u64().unwrap() as usize;
            assert!(
                offset <= at,
                "the fault's frame starts at or before the flip"
            );
        }
    }
    let middle = &files[files.len() / 2];
    let saved = std::fs::read(middle).unwrap();
    std::fs::remove_file(middle).unwrap();
    let (code, out, _) = tool(&["verify"], dir.path());
    assert_eq!(code, 1, "removed segment: {out}");
    std::fs::write(middle, &saved).unwrap();
    let (a, b) = (&files[1], &files[2]);
    let (bytes_a, bytes_b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    std::fs::write(a, &bytes_b).unwrap();
    std::fs::write(b, &bytes_a).unwrap();
    let (code, out, _) = tool(&["verify"], dir.path());
    assert_eq!(code, 1, "swapped segments: {out}");
    let (code, _, err) = tool(&["verify"], &dir.path().join("missing"));
    assert_eq!(code, 2, "a missing directory is a usage/IO error: {err}");
}

// replay's digest equals the live runtime's digest at the same LSN, and --to-lsn replays a prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_equals_live_digest() {
    let dir = tempfile::tempdir().unwrap();
    let mut load = echo_load(10);
    load.push((
        "test.scripted",
        json!({"steps": [{}, {"fail_attempts": 9}]}),
    ));
    let (lsn, live) = workload(dir.path(), &load).await;
    let (code, out, _) = tool(&["replay", "--json"], dir.path());
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["lsn"].as_u64(), v["digest"].as_str()),
        (Some(lsn), Some(live.as_str()))
    );
    let (_, out, _) = tool(&["replay", "--json", "--to-lsn", "5"], dir.path());
    let prefix: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(prefix["lsn"], 5);
    assert_ne!(prefix["digest"], v["digest"]);
}

// On the directory of a real server that is running and writing: `verify` and `replay` read
// the durable prefix while appends go on, and once the load stops, `replay` gives the digest
// the server serves at the same LSN. The workload is mixed, through the SDK: two tenants,
// sagas of 1 to 4 steps, an idempotent duplicate, a closed session, a revoked token, an upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_running_server_equals_its_digest() {
    use symphainy_sdk::Intent;
    let dir = tempfile::tempdir().unwrap();
    let server = symphainy_tests::ServerProcess::start(dir.path()).unwrap();
    let (admin, acme, session) = server.tenant_with_session("acme").await.unwrap();
    let (_, globex, other) = server.tenant_with_session("globex").await.unwrap();
    for steps in 1..=4 {
        let intent = Intent::new(
            "runtime.echo",
            &session,
            json!({"value": steps, "steps": steps}),
        );
        assert!(acme.submit_and_wait(&intent, 10_000).await.unwrap().is_ok());
    }
    let mut keyed = Intent::new("runtime.echo", &other, json!({"value": "once", "steps": 2}));
    keyed.idempotency_key = Some("order-7".into());
    let (_, first) = globex.submit(&keyed).await.unwrap();
    let (_, again) = globex.submit(&keyed).await.unwrap();
    assert_eq!(first.execution_id, again.execution_id);
    let closed = acme
        .create_session(json!({"purpose": "closed"}))
        .await
        .unwrap();
    acme.close_session(&closed.session_id).await.unwrap();
    let revoked = admin.issue_token("acme", "bob", 60).await.unwrap();
    admin.revoke_token(&revoked.token_id).await.unwrap();
    let uploaded = acme
        .upload(
            &session,
            &[(
                "notes.txt",
                "text/plain",
                b"The pump runs at 40 rpm.".to_vec(),
            )],
        )
        .await
        .unwrap();
    let upload_id = uploaded["executions"][0]["execution_id"].as_str().unwrap();
    acme.wait_finished(upload_id, Duration::from_secs(30))
        .await
        .unwrap();

    // Appends go on while the tool reads.
    let load = tokio::spawn({
        let (client, session) = (acme.clone(), session.clone());
        async move {
            let mut ids = Vec::new();
            for n in 0..200 {
                let intent = Intent::new("runtime.echo", &session, json!({"value": n, "steps": 3}));
                ids.push(client.submit(&intent).await.unwrap().1.execution_id);
            }
            ids
        }
    });
    let running = dir.path().to_path_buf();
    let (verified, replayed) = tokio::task::spawn_blocking(move || {
        (
            tool(&["verify", "--json"], &running),
            tool(&["replay", "--json"], &running),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        verified.0, 0,
        "verify while the server writes: {}",
        verified.2
    );
    assert_eq!(
        replayed.0, 0,
        "replay while the server writes: {}",
        replayed.2
    );
    let during: Value = serde_json::from_str(&replayed.1).unwrap();
    let during_lsn = during["lsn"].as_u64().unwrap();

    for id in load.await.unwrap() {
        acme.wait_finished(&id, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let (lsn, digest) = admin.digest().await.unwrap();
    assert!(during_lsn > 0 && during_lsn <= lsn);
    let (code, out, err) = tool(&["replay", "--json"], dir.path());
    assert_eq!(code, 0, "{err}");
    let after: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (after["lsn"].as_u64(), after["digest"].as_str()),
        (Some(lsn), Some(digest.as_str())),
        "replay of the running server's log equals its digest"
    );
    // `--tenant` replays partition the log: every event is one tenant's or the node's
    // (`_system`, in every tenant's replay).
    let count = |args: &[&str]| -> u64 {
        let (code, out, err) = tool(args, dir.path());
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["events"]
            .as_u64()
            .unwrap()
    };
    let acme_events = count(&["replay", "--json", "--tenant", "acme"]);
    let globex_events = count(&["replay", "--json", "--tenant", "globex"]);
    let system_events = count(&["replay", "--json", "--tenant", "_system"]);
    assert!(system_events > 0 && globex_events > system_events);
    assert_eq!(acme_events + globex_events - system_events, lsn);
    assert_eq!(server.terminate().unwrap(), Some(0));
}

// A step that claims determinism but is not is caught, naming execution, step, expected and
// actual; deterministic capabilities pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_determinism_catches_unstable_steps() {
    let good = tempfile::tempdir().unwrap();
    let mut load = echo_load(5);
    load.push((
        "test.scripted",
        json!({"steps": [{"fail_attempts": 1}, {}]}),
    ));
    workload(good.path(), &load).await;
    let (code, out, _) = tool(
        &["check-determinism", "--with-test-realm", "--json"],
        good.path(),
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deterministic"], true);
    assert!(v["checked"].as_u64().unwrap() >= 17);

    let bad = tempfile::tempdir().unwrap();
    workload(
        bad.path(),
        &[
            ("runtime.echo", json!({"value": 1})),
            ("test.unstable", json!({})),
        ],
    )
    .await;
    let (code, out, _) = tool(
        &["check-determinism", "--with-test-realm", "--json"],
        bad.path(),
    );
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["first_difference"]["capability"], "test.unstable");
    assert_eq!(v["first_difference"]["step"], "unstable_1");
    assert_ne!(
        v["first_difference"]["expected"],
        v["first_difference"]["actual"]
    );
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/golden/v1")
}

// Golden output of `show` for the compensated execution of the golden log.
#[test]
fn show_output_is_stable() {
    let (code, out, _) = tool(&["dump", "--type", "saga_compensated"], &golden());
    assert_eq!(code, 0);
    let id = serde_json::from_str::<Value>(out.lines().next().unwrap()).unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, _) = tool(&["show", &id], &golden());
    assert_eq!(code, 0);
    insta::assert_snapshot!("show_compensated", out);
}

// A long value is cut in the human timeline, saying how much was left out; `--full` and
// `--json` print it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_cuts_long_values_unless_asked_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(1_000);
    workload(
        dir.path(),
        &[("runtime.echo", json!({"value": long, "steps": 2}))],
    )
    .await;
    let (_, out, _) = tool(
        &["dump", "--type", "saga_completed", "--format", "jsonl"],
        dir.path(),
    );
    let event: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let id = event["execution_id"].as_str().unwrap();
    let (code, cut, _) = tool(&["show", id], dir.path());
    assert_eq!(code, 0);
    assert!(!cut.contains(&long), "{cut}");
    // payload, two step outputs and the result: each {"value":"xxx...
    let notes = cut.matches("more bytes; --full prints it whole").count();
    assert_eq!(notes, 4, "{cut}");
    assert!(cut.lines().all(|l| l.len() < 400), "{cut}");
    let (code, whole, _) = tool(&["show", id, "--full"], dir.path());
    assert_eq!(code, 0);
    assert_eq!(whole.matches(&long).count(), 4, "{whole}");
    assert!(!whole.contains("--full prints it whole"));
    let (_, json, _) = tool(&["show", id, "--json"], dir.path());
    assert!(json.contains(&long));
}

// Golden output of `dump --format jsonl` for the golden log.
#[test]
fn dump_jsonl_is_stable() {
    let (code, out, _) = tool(&["dump", "--format", "jsonl"], &golden());
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 57);
    insta::assert_snapshot!("dump_jsonl", out);
    let (_, filtered, _) = tool(
        &["dump", "--tenant", "globex", "--type", "step_failed"],
        &golden(),
    );
    assert!(
        filtered
            .lines()
            .all(|l| l.contains("\"tenant_id\":\"globex\"") && l.contains("step_failed"))
    );
    assert_eq!(filtered.lines().count(), 1);
}

// A hand-written log whose events carry times no calendar can write (before the epoch, past
// year 9999): every reading subcommand answers (times clamped), none panics.
#[test]
fn out_of_range_times_are_rendered_not_fatal() {
    use symphainy_engine::event::{Event, EventBody};
    use symphainy_engine::id::Id;
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path().join("wal"), Config::small_for_tests()).unwrap();
    let session = Id(7);
    let events = [
        (i64::MIN, EventBody::TenantCreated),
        (
            i64::MAX,
            EventBody::SessionCreated {
                session_id: session,
                user_id: "alice".into(),
                context_json: "{}".into(),
            },
        ),
        (
            i64::MAX - 1,
            EventBody::TokenIssued {
                token_id: Id(8),
                user_id: "alice".into(),
                expires_at_ms: i64::MAX,
            },
        ),
    ];
    let records = events
        .into_iter()
        .map(|(timestamp_ms, body)| {
            let event = Event {
                tenant_id: "acme".into(),
                timestamp_ms,
                body,
            };
            symphainy_engine::codec::encode(&event).unwrap()
        })
        .collect();
    wal.append_blocking(records).unwrap();
    drop(wal);
    let session = session.to_string();
    for args in [
        vec!["verify"],
        vec!["dump", "--format", "jsonl"],
        vec!["dump", "--format", "table"],
        vec!["replay", "--json"],
        vec!["stats", "--json"],
        vec!["check-determinism"],
    ] {
        let (code, out, err) = tool(&args, dir.path());
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args[0] == "dump" {
            assert!(out.contains("9999-12-31T23:59:59.999Z"), "{out}");
            assert!(out.contains("1970-01-01T00:00:00.000Z"), "{out}");
        }
    }
    let (code, _, err) = tool(&["show", &session], dir.path());
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(code, 101, "{err}");
}

// rebuild-projections builds the graph view (equal to a library rebuild, and again equal when
// run twice) and the Redis state surface (matching the engine's views of the replayed log);
// a graph directory in use by another process is refused with exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_projections_builds_graph_and_redis() {
    use symphainy_projections::graph::{GraphStore, GraphView, SledGraph};
    use symphainy_projections::store::StateStore;
    use symphainy_projections::surface::SurfaceReader;

    let dir = tempfile::tempdir().unwrap();
    workload(dir.path(), &echo_load(20)).await;
    let redis = symphainy_tests::RedisServer::start().unwrap();
    let url = redis.url(0);
    let args = ["rebuild-projections", "--redis-url", url.as_str(), "--json"];
    let (code, out, err) = tool(&args, dir.path());
    assert_eq!(code, 0, "{err}");
    let reader = symphainy_wal::WalReader::open(dir.path().join("wal")).unwrap();
    let reports: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports[0]["projection"], "graph_view");
    assert_eq!(reports[0]["events"], reader.last_lsn());
    assert_eq!(reports[1]["projection"], "state_surface");
    assert_eq!(reports[1]["last_lsn"], reader.last_lsn());

    let dump = || {
        SledGraph::open(&dir.path().join("graph"))
            .unwrap()
            .dump()
            .unwrap()
    };
    let first = dump();
    let fresh = Arc::new(SledGraph::open(&dir.path().join("graph-check")).unwrap());
    symphainy_projections::runner::rebuild(
        &mut GraphView::new(fresh.clone()),
        &mut reader.cursor(1),
        100,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(first, fresh.dump().unwrap());
    let (code, _, err) = tool(&["rebuild-projections"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(dump(), first, "a second rebuild gives the same graph");

    let (state, _) = symphainy_engine::runtime::replay_cursor(&mut reader.cursor(1), None).unwrap();
    let surface = SurfaceReader::new(Arc::new(StateStore::redis(&url).unwrap()));
    symphainy_projections::testing::assert_surface_matches(&state, &surface).await;

    let held = SledGraph::open(&dir.path().join("graph")).unwrap();
    let (code, _, err) = tool(&["rebuild-projections"], dir.path());
    assert_eq!(code, 2, "a graph in use must be refused");
    assert!(err.contains("graph view"), "{err}");
    drop(held);
}

// The content realm's deterministic steps re-execute to their recorded outputs (parse, chunk,
// embed, facts over the blobs in the data directory); bytes changed under a recorded hash are
// caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_determinism_covers_content_steps() {
    let dir = tempfile::tempdir().unwrap();
    let docs = [
        ("a.md", "# Title\n\nOwner: Jane\nTotal: 42 on 2026-02-03\n"),
        ("b.csv", "x,y\n1,2\n3,4\n"),
        (
            "c.html",
            "<html><title>T</title><body><h1>H</h1><p>body 7</p></body></html>",
        ),
    ];
    let load: Vec<(&str, Value)> = docs
        .iter()
        .map(|(name, text)| ("content.upload", json!({"filename": name, "text": text})))
        .collect();
    workload(dir.path(), &load).await;
    let (code, out, err) = tool(&["check-determinism", "--json"], dir.path());
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deterministic"], true);
    assert!(v["checked"].as_u64().unwrap() >= 15, "{v}");

    // Overwrite the markdown's blob with other bytes.
    let sha = symphainy_engine::realms::content::blob::sha256_hex(docs[0].1.as_bytes());
    let path = dir.path().join("blobs").join(&sha[..2]).join(&sha);
    std::fs::write(&path, "# Other\n").unwrap();
    let (code, out, _) = tool(&["check-determinism", "--json"], dir.path());
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["first_difference"]["capability"],
        "content.parse_and_embed"
    );
}

// `dump --format table` shows whole ids (a ULID's first characters are its time, which events
// of the same millisecond share), cuts data between characters, not inside one, and prints a
// table per thousand events as it reads instead of one table of the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_table_shows_whole_ids_and_pages_long_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut load = vec![(
        "runtime.echo",
        json!({"value": "é".repeat(100), "steps": 1}),
    )];
    load.extend(echo_load(120));
    workload(dir.path(), &load).await;
    let (code, jsonl, _) = tool(&["dump", "--format", "jsonl"], dir.path());
    assert_eq!(code, 0);
    let events: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() > 1_000, "{}", events.len());
    let (code, table, err) = tool(&["dump", "--format", "table"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert_eq!(table.matches("| lsn ").count(), 2, "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| lsn "))
        .collect();
    assert_eq!(rows.len(), events.len());
    for (row, event) in rows.iter().zip(&events) {
        assert!(row.starts_with(&format!("| {} ", event["lsn"])), "{row}");
        if let Some(id) = event["execution_id"].as_str() {
            assert!(row.contains(id), "{row}");
        }
    }
    let accented = rows
        .iter()
        .find(|r| r.contains("step_completed") && r.contains('é'))
        .unwrap();
    assert!(accented.trim_end().ends_with("éé... |"), "{accented}");
}
