//! The three scenarios of the runtime spine: a session and an intent end to end (WAL entry,
//! state); replay of the WAL equals the server's digest; tenants are isolated.

use std::time::Duration;

use serde_json::json;
use symphainy_engine::{digest, runtime};
use symphainy_sdk::Intent;
use symphainy_tests::{TestServer, acme_with_limits, finished_echo};
use symphainy_wal::WalReader;

// Create a session, submit an intent, find its events in the WAL and its result in the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_intent_wal_state() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme
        .create_session(json!({"channel": "test"}))
        .await
        .unwrap();
    assert_eq!(
        (
            session.status.as_str(),
            session.tenant_id.as_str(),
            session.user_id.as_str()
        ),
        ("open", "acme", "alice")
    );
    let (status, submitted) = acme
        .submit(&Intent::new(
            "runtime.echo",
            &session.session_id,
            json!({"value": "hi", "steps": 3}),
        ))
        .await
        .unwrap();
    assert_eq!((status, submitted.status.as_str()), (202, "accepted"));
    assert_eq!(submitted.execution_id.len(), 26);
    let done = acme
        .wait_finished(&submitted.execution_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(done.result, Some(json!({"value": "hi"})));
    assert_eq!(
        done.steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["echo_1", "echo_2", "echo_3"]
    );
    assert!(
        done.steps
            .iter()
            .all(|s| s.status == "completed" && s.attempts == 1 && s.started_at.is_some())
    );

    let page = acme.wal(&session.session_id, 1, 100).await.unwrap();
    let types: Vec<&str> = page
        .events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "session_created",
            "intent_received",
            "saga_started",
            "step_started",
            "step_completed",
            "step_started",
            "step_completed",
            "step_started",
            "step_completed",
            "saga_completed"
        ]
    );
    let intent = &page.events[1];
    assert_eq!(intent["lsn"].as_u64(), Some(submitted.lsn));
    assert_eq!(
        intent["execution_id"].as_str(),
        Some(submitted.execution_id.as_str())
    );
    assert_eq!(intent["tenant_id"], "acme");
    assert_eq!(
        intent["data"]["payload"],
        json!({"value": "hi", "steps": 3})
    );
    let lsns: Vec<u64> = page
        .events
        .iter()
        .map(|e| e["lsn"].as_u64().unwrap())
        .collect();
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "events in LSN order");

    let record = acme.runtime_state(&submitted.execution_id).await.unwrap();
    assert_eq!(record["payload"], json!({"value": "hi", "steps": 3}));
    assert_eq!(record["steps"][2]["output"], json!({"value": "hi"}));
    let session = acme.session(&session.session_id).await.unwrap();
    assert!(session.active_sagas.is_empty());

    // One round trip: wait_ms answers 200 with the finished status.
    let finished = acme
        .submit_and_wait(
            &Intent::new(
                "runtime.echo",
                &session.session_id,
                json!({"value": 7, "steps": 2}),
            ),
            5000,
        )
        .await
        .unwrap()
        .expect("finished within wait_ms");
    assert_eq!(
        (finished.status.as_str(), finished.result),
        ("completed", Some(json!({"value": 7})))
    );
}

// Replaying the WAL offline gives the digest the live server reports at the same LSN.
// A session created late in a long log: its WAL page from LSN 1 holds its events, though the
// log before it is longer than one page's scan (the scan starts at the session's creation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_session_s_first_wal_page_holds_its_events() {
    const SCAN: usize = 50;
    let (_server, acme) = acme_with_limits(|l| l.wal_scan_max = SCAN).await;
    let early = acme.create_session(json!({})).await.unwrap().session_id;
    for value in 0..10 {
        finished_echo(&acme, &early, value).await;
    }
    let late = acme.create_session(json!({})).await.unwrap().session_id;
    let execution = finished_echo(&acme, &late, 7).await;
    let page = acme.wal(&late, 1, 1000).await.unwrap();
    let first = page.events.first().expect("the late session's events");
    assert!(
        first["lsn"].as_u64().unwrap() > SCAN as u64,
        "the log before the session is longer than one scan: {first}"
    );
    let types: Vec<&str> = page
        .events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"session_created"), "{types:?}");
    assert_eq!(types.last(), Some(&"saga_completed"), "{types:?}");
    assert!(
        page.events
            .iter()
            .skip(1)
            .all(|e| e["execution_id"] == json!(execution)),
        "only the late session's events: {types:?}"
    );
    // The early session's page is unchanged: from its start, one scan's worth.
    let page = acme.wal(&early, 1, 1000).await.unwrap();
    assert_eq!(page.events[0]["event_type"], "session_created");
    assert!(page.next_lsn <= SCAN as u64 + page.events[0]["lsn"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_digest_equals_server_digest() {
    let server = TestServer::start().await.unwrap();
    for tenant in ["acme", "globex"] {
        let client = server.tenant(tenant).await.unwrap();
        let session = client.create_session(json!({})).await.unwrap();
        // Seven keys for ten submissions: the last three repeat the first three's intents.
        for i in 0..10 {
            let k = i % 7;
            let mut intent = Intent::new(
                "runtime.echo",
                &session.session_id,
                json!({"value": k, "steps": 1 + k % 4}),
            );
            intent.idempotency_key = Some(format!("k{k}"));
            let (_, submitted) = client.submit(&intent).await.unwrap();
            client
                .wait_finished(&submitted.execution_id, Duration::from_secs(10))
                .await
                .unwrap();
        }
        client.close_session(&session.session_id).await.unwrap();
    }
    let (lsn, live) = server.admin().digest().await.unwrap();
    let reader = WalReader::open(server.data_dir().join("wal")).unwrap();
    let (state, _) = runtime::replay_cursor(&mut reader.cursor(1), Some(lsn)).unwrap();
    assert_eq!(state.last_lsn, lsn);
    assert_eq!(digest::digest(&state), live);
}

// A tenant sees only its own sessions, executions, WAL and counts; another tenant's ids
// answer exactly like unknown ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let globex = server.tenant("globex").await.unwrap();
    let session = acme
        .create_session(json!({"secret": "acme-only"}))
        .await
        .unwrap();
    let (_, submitted) = acme
        .submit(&Intent::new(
            "runtime.echo",
            &session.session_id,
            json!({"value": "acme-secret"}),
        ))
        .await
        .unwrap();
    acme.wait_finished(&submitted.execution_id, Duration::from_secs(10))
        .await
        .unwrap();
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let probes = [
        format!("/session/{}", session.session_id),
        format!("/execution/{}/status", submitted.execution_id),
        format!("/runtime/state/{}", submitted.execution_id),
        format!("/runtime/wal/{}", session.session_id),
    ];
    for path in &probes {
        let (status, body) = globex.raw(reqwest::Method::GET, path, None).await.unwrap();
        let unknown_path = path
            .replace(&session.session_id, unknown)
            .replace(&submitted.execution_id, unknown);
        let (unknown_status, unknown_body) = globex
            .raw(reqwest::Method::GET, &unknown_path, None)
            .await
            .unwrap();
        assert_eq!((status, unknown_status), (404, 404), "{path}");
        assert_eq!(body["error"]["code"], unknown_body["error"]["code"]);
        assert_eq!(body["error"]["message"], unknown_body["error"]["message"]);
        assert!(!body.to_string().contains("acme"), "{path} leaked: {body}");
    }
    let err = globex
        .submit(&Intent::new("runtime.echo", &session.session_id, json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let theirs = globex.metrics().await.unwrap();
    assert!(
        theirs["executions_by_status"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{theirs}"
    );
    let mine = acme.metrics().await.unwrap();
    assert_eq!(mine["executions_by_status"]["completed"], 1);
}

// Every metric CONTRACT section 7 names is in `/runtime/metrics` with a value that follows
// from the work done, and `/metrics` has the same as `symphainy_` series, with no token and no
// tenant label; the WAL's fsync counts add up (the encoder's own are a part of all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_the_contract_in_json_and_prometheus() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap();
    for value in [1, 2] {
        finished_echo(&acme, &session.session_id, value).await;
    }
    let m = server.admin().metrics().await.unwrap();
    let wal = &m["wal"];
    assert_eq!(wal["events_by_type"]["intent_received"], 2, "{m}");
    assert_eq!(wal["events_by_type"]["step_completed"], 6, "{m}");
    assert!(wal["bytes"].as_u64().unwrap() > 0, "{m}");
    assert!(wal["segments"].as_u64().unwrap() >= 1, "{m}");
    for key in ["growth_bytes_per_sec", "fsync_p50_us", "fsync_p99_us"] {
        assert!(wal[key].as_f64().is_some(), "wal.{key}: {m}");
    }
    assert!(wal["batch_size_avg"].as_f64().unwrap() >= 1.0, "{m}");
    let fsyncs = wal["fsyncs"].as_u64().unwrap();
    let by_encoder = wal["encoder_fsyncs"].as_u64().unwrap();
    assert!(fsyncs >= 1 && by_encoder <= fsyncs, "{m}");
    for step in ["runtime.echo/echo_1", "runtime.echo/echo_3"] {
        let s = &m["saga"]["steps"][step];
        assert_eq!(
            (&s["count"], &s["success"], &s["failure"]),
            (&json!(2), &json!(2), &json!(0)),
            "{m}"
        );
        assert!(s["p50_ms"].is_u64() && s["p99_ms"].is_u64(), "{m}");
    }
    // Both executions ended and their waiters were answered.
    assert_eq!(m["saga"]["result_waiters"], 0, "{m}");
    // This request's own connection at least; no WebSocket.
    assert!(m["http"]["connections_open"].as_u64() >= Some(1), "{m}");
    assert_eq!(m["http"]["websockets_open"], 0, "{m}");
    assert_eq!(m["executions_by_status"]["completed"], 2, "{m}");
    for op in ["get", "set", "delete"] {
        assert!(m["state"]["ops"][op].is_u64(), "state.ops.{op}: {m}");
    }
    assert!(m["state"]["keys"].is_u64(), "{m}");
    for p in ["state_surface", "graph_view", "content_index"] {
        let p = &m["projections"][p];
        assert!(p["applied_lsn"].is_u64() && p["lag_events"].is_u64(), "{m}");
    }

    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("symphainy_"), "{line}");
        assert!(
            !line.contains("tenant=") && !line.contains("acme"),
            "{line}"
        );
    }
    let series = [
        "symphainy_wal_events_total{type=\"intent_received\"} 2",
        "symphainy_wal_bytes ",
        "symphainy_wal_segments ",
        "symphainy_wal_growth_bytes_per_sec ",
        "symphainy_wal_fsync_p50_us ",
        "symphainy_wal_fsync_p99_us ",
        "symphainy_wal_batch_size_avg ",
        "symphainy_wal_fsyncs_total ",
        "symphainy_wal_encoder_fsyncs_total ",
        "symphainy_saga_steps_total{capability=\"runtime.echo\",step=\"echo_1\",outcome=\"success\"} 2",
        "symphainy_saga_step_p50_ms{capability=\"runtime.echo\",step=\"echo_3\"} ",
        "symphainy_saga_step_p99_ms{capability=\"runtime.echo\",step=\"echo_2\"} ",
        "symphainy_executions{status=\"completed\"} 2",
        "symphainy_saga_result_waiters 0",
        "symphainy_http_connections_open ",
        "symphainy_http_websockets_open 0",
        "symphainy_state_ops_total{op=\"get\"} ",
        "symphainy_state_ops_total{op=\"set\"} ",
        "symphainy_state_ops_total{op=\"delete\"} ",
        "symphainy_state_keys ",
        "symphainy_projection_applied_lsn{projection=\"graph_view\"} ",
        "symphainy_projection_lag_events{projection=\"state_surface\"} ",
    ];
    for s in series {
        assert!(
            text.lines().any(|l| l.starts_with(s)),
            "missing {s:?} in\n{text}"
        );
    }
}
