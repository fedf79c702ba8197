//! Projections against a real Redis (each test spawns its own `redis-server`) and through the
//! server: the state-store conformance suite, rebuild equals incremental maintenance with the
//! runner killed mid-pipeline, Redis killed mid-load, reads served by the surface, the graph
//! endpoints, and a corrupt graph directory rebuilt on start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use symphainy_projections::graph::{GraphStore, GraphView, SledGraph};
use symphainy_projections::runner::rebuild;
use symphainy_projections::store::StateStore;
use symphainy_projections::surface::SurfaceReader;
use symphainy_projections::testing::{
    Op, assert_surface_matches, incremental_vs_rebuild, op_from, tenant_event_counts,
};
use symphainy_sdk::{Client, Intent};
use symphainy_server::ServerConfig;
use symphainy_tests::{RedisServer, ServerProcess, TestServer, finished_echo};
use symphainy_wal::{Log, WalReader};

async fn flush_all(redis: &RedisServer) {
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let redis = RedisServer::start().unwrap();
    let store = StateStore::redis(&redis.url(0)).unwrap();
    symphainy_projections::conformance::state_store(&store).await;
}

// Keys the surface does not own are never dumped or cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_of_others_are_left_alone() {
    let redis = RedisServer::start().unwrap();
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("other:key")
        .arg("keep")
        .query_async(&mut conn)
        .await
        .unwrap();
    let store = StateStore::redis(&redis.url(0)).unwrap();
    let tx = symphainy_projections::store::Tx {
        writes: vec![symphainy_projections::store::Write::Set(
            "t:{acme}:x".into(),
            "1".into(),
        )],
    };
    store.commit(&[tx]).await.unwrap();
    assert_eq!(store.dump().await.unwrap().len(), 1);
    assert_eq!(store.clear().await.unwrap(), 1);
    let kept: Option<String> = redis::cmd("GET")
        .arg("other:key")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("keep"));
}

fn op() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 1..4),
    )
        .prop_map(|(kind, t, s, steps)| op_from(kind, t, s, &steps))
}

// Invariant 8 on Redis: the runners are killed at random points (an abort can land between
// a pipeline's transactions), restarted, and the result equals a clean rebuild; each
// tenant's events are applied exactly once.
#[test]
fn redis_incremental_with_kills_equals_rebuild() {
    let redis = RedisServer::start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = ProptestConfig {
        cases: 6,
        ..ProptestConfig::default()
    };
    let strategy = (
        prop::collection::vec(op(), 1..40),
        1usize..48,
        prop::collection::vec(any::<usize>(), 1..5),
    );
    proptest::test_runner::TestRunner::new(config)
        .run(&strategy, |(ops, batch, kills)| {
            rt.block_on(async {
                flush_all(&redis).await;
                let dir = tempfile::tempdir().unwrap();
                incremental_vs_rebuild(
                    dir.path(),
                    Arc::new(StateStore::redis(&redis.url(0)).unwrap()),
                    Arc::new(StateStore::redis(&redis.url(1)).unwrap()),
                    ops,
                    batch,
                    kills,
                )
                .await;
            });
            Ok(())
        })
        .unwrap();
}

async fn tenant_client(server: &TestServer, tenant: &str) -> Client {
    server.tenant(tenant).await.unwrap()
}

/// A server whose state surface is on `redis` (database 0), with `adjust` applied to its
/// configuration.
async fn on_redis(redis: &RedisServer, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let url = redis.url(0);
    TestServer::start_with(move |c: &mut ServerConfig| {
        c.redis_url = Some(url);
        adjust(c);
    })
    .await
    .unwrap()
}

/// Waits until both projections applied everything the runtime's state holds. The state
/// applies an event before it is durable (deterministic steps' events are made durable with
/// the next fsync), so the LSN to wait for is the state's, once durable, not the log's
/// durable LSN of the moment.
/// Reads the server answered from the runtime because the surface could not.
async fn fallback_reads(server: &TestServer) -> u64 {
    server.admin().metrics().await.unwrap()["state"]["fallback_reads"]
        .as_u64()
        .unwrap()
}

async fn caught_up(server: &TestServer) {
    let p = &server.running.state.projections;
    let durable = server
        .running
        .state
        .runtime
        .read(|s| s.last_lsn)
        .await
        .unwrap();
    assert!(
        p.surface
            .wait_applied(durable, Duration::from_secs(30))
            .await,
        "state surface did not catch up: {:?}",
        p.surface.status().snapshot(durable)
    );
    assert!(
        p.graph_runner
            .wait_applied(durable, Duration::from_secs(30))
            .await
    );
}

// With --redis-url, sessions and executions are read from Redis (the runtime answers none of
// them), under `t:{tenant}:` keys; the graph endpoints answer within the tenant only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_the_redis_surface_and_graph_endpoints_work() {
    let redis = RedisServer::start().unwrap();
    let server = on_redis(&redis, |c| {
        // A loaded CI machine may take a while to apply a batch: wait rather than fall back,
        // since this test asserts every read came from the surface.
        c.limits.state_read_wait_ms = 10_000;
    })
    .await;
    let acme = tenant_client(&server, "acme").await;
    let globex = tenant_client(&server, "globex").await;
    let session = acme.create_session(json!({"k": "v"})).await.unwrap();
    let (_, submitted) = acme
        .submit(&Intent::new(
            "runtime.echo",
            &session.session_id,
            json!({"value": 7, "steps": 3}),
        ))
        .await
        .unwrap();
    let status = acme
        .wait_finished(&submitted.execution_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(status.status, "completed");
    let record = acme.runtime_state(&submitted.execution_id).await.unwrap();
    assert_eq!(record["payload"]["value"], 7);
    assert_eq!(record["steps"].as_array().unwrap().len(), 3);
    let read = acme.session(&session.session_id).await.unwrap();
    assert_eq!(read.session_id, session.session_id);

    let metrics = server.admin().metrics().await.unwrap();
    assert!(
        metrics["state"]["backend"]
            .as_str()
            .unwrap()
            .starts_with("redis://")
    );
    assert!(
        metrics["state"]["ops"]["get"].as_u64().unwrap() >= 3,
        "{metrics}"
    );
    assert!(metrics["state"]["ops"]["set"].as_u64().unwrap() > 0);
    assert!(metrics["state"]["keys"].as_u64().unwrap() > 0);
    assert_eq!(metrics["state"]["fallback_reads"], 0, "{metrics}");
    assert_eq!(metrics["projections"]["state_surface"]["errors"], 0);

    // The keys carry the tenant's hash tag.
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("t:{{acme}}:execution:{}", submitted.execution_id))
        .query_async(&mut conn)
        .await
        .unwrap();
    let raw: serde_json::Value = serde_json::from_str(&raw.unwrap()).unwrap();
    assert_eq!(raw["status"], "completed");

    // Graph: the execution vertex and its neighbourhood.
    let vertex = acme
        .graph_vertex("executions", &submitted.execution_id)
        .await
        .unwrap();
    assert_eq!(
        vertex["_id"],
        format!("executions/{}", submitted.execution_id)
    );
    assert_eq!(vertex["status"], "completed");
    let start = format!("sessions/{}", session.session_id);
    let t = acme.graph_traverse(&start, "outbound", 3).await.unwrap();
    let ids: Vec<&str> = t["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["_id"].as_str().unwrap())
        .collect();
    // session -> intent -> execution -> 3 steps + capability
    assert_eq!(ids.len(), 1 + 1 + 1 + 3 + 1, "{t}");
    assert!(ids.contains(&format!("executions/{}", submitted.execution_id).as_str()));
    assert!(ids.contains(&"capabilities/runtime.echo@1"));
    assert_eq!(t["edges"].as_array().unwrap().len(), 6, "{t}");
    assert_eq!(t["truncated"], false);
    let inbound = acme
        .graph_traverse(&format!("steps/{}-0", submitted.execution_id), "inbound", 5)
        .await
        .unwrap();
    let ids: Vec<&str> = inbound["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"tenants/acme"), "{inbound}");

    // Another tenant sees none of it; bad queries are 400 with the contract's error body.
    let err = globex
        .graph_vertex("executions", &submitted.execution_id)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = globex.graph_traverse(&start, "any", 2).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = acme
        .graph_traverse(&start, "sideways", 1)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(400), Some("invalid_request"))
    );
    let err = acme.graph_traverse(&start, "any", 6).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    let err = acme.graph_traverse("no-slash", "any", 1).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
}

// Redis is killed in the middle of a load and comes back empty: no submission fails, reads
// keep answering (from the runtime while the surface is down), and once Redis is back the
// surface converges to exactly what the log says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_ingestion_never_stops_and_the_surface_converges() {
    let mut redis = RedisServer::start().unwrap();
    let server = on_redis(&redis, |_| {}).await;
    let acme = tenant_client(&server, "acme").await;
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (client, session) = (acme.clone(), session.clone());
        let (stop, submitted, failures) = (stop.clone(), submitted.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let intent = Intent::new(
                    "runtime.echo",
                    &session,
                    json!({"value": [worker, n], "steps": 3}),
                );
                match client.submit(&intent).await {
                    Ok((_, s)) => {
                        submitted.fetch_add(1, Ordering::Relaxed);
                        // Reads must answer too, whatever state Redis is in.
                        if let Err(e) = client.execution(&s.execution_id).await {
                            let at = submitted.load(Ordering::Relaxed);
                            failures.lock().unwrap().push(format!(
                                "read of {} after {at} submissions: {e}",
                                s.execution_id
                            ));
                        }
                    }
                    Err(e) => {
                        let at = submitted.load(Ordering::Relaxed);
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("submission after {at}: {e}"));
                    }
                }
            }
        }));
    }
    let wait_for = |n: usize| {
        let submitted = submitted.clone();
        async move {
            while submitted.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(200).await;
    redis.kill();
    let at_kill = submitted.load(Ordering::Relaxed);
    wait_for(at_kill + 300).await;
    let status = server
        .running
        .state
        .projections
        .surface
        .status()
        .snapshot(server.running.state.wal.durable_lsn());
    assert!(status.errors > 0, "the surface never noticed: {status:?}");
    redis.restart().unwrap();
    let at_restart = submitted.load(Ordering::Relaxed);
    eprintln!("killed after {at_kill} submissions, restarted after {at_restart}");
    wait_for(at_restart + 200).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "submissions or reads failed: {failures:#?}"
    );
    // Let every saga finish, then the surface catch up.
    let runtime = server.running.state.runtime.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runtime.peek(|s| s.executions.values().any(|e| !e.status.is_terminal())) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sagas did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    caught_up(&server).await;
    let state = runtime.read(|s| s.clone()).await.unwrap();
    let reader = SurfaceReader::new(Arc::new(StateStore::redis(&redis.url(0)).unwrap()));
    assert_surface_matches(&state, &reader).await;
    let durable = server.running.state.wal.durable_lsn();
    for (tenant, n) in tenant_event_counts(server.running.state.wal.as_ref(), durable) {
        assert_eq!(reader.tenant_events(&tenant).await.unwrap(), n, "{tenant}");
    }
    let metrics = server.admin().metrics().await.unwrap();
    assert_eq!(metrics["projections"]["state_surface"]["lag_events"], 0);
    assert_eq!(
        metrics["projections"]["state_surface"]["last_error"],
        serde_json::Value::Null
    );
}

// A graph or content read that finds nothing while its projection is still behind the log is
// answered 503 `overloaded` with Retry-After, not 404: the log may already hold what was
// asked for (here a finished execution and the document of an upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_behind_the_log_answers_retry_not_missing() {
    let server = TestServer::start().await.unwrap();
    let acme = tenant_client(&server, "acme").await;
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let projections = &server.running.state.projections;
    // Caught up, a vertex that does not exist is missing.
    let absent = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let err = acme.graph_vertex("executions", absent).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let err = acme.document(absent).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let search = |acme: &symphainy_sdk::Client| {
        let acme = acme.clone();
        async move {
            let (status, body) = acme
                .raw(reqwest::Method::GET, "/content/search?q=anything", None)
                .await
                .unwrap();
            assert_eq!(status, 200, "{body}");
            body["partial"].clone()
        }
    };
    assert_eq!(search(&acme).await, json!(false));
    // The graph view and the content index stop following the log.
    projections.graph_runner.stop().await;
    projections.content_runner.stop().await;
    let id = finished_echo(&acme, &session, 1).await;
    let err = acme.graph_vertex("executions", &id).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("overloaded")),
        "{err}"
    );
    let err = acme
        .graph_traverse(&format!("executions/{id}"), "any", 1)
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("overloaded")),
        "{err}"
    );
    let err = acme.document(absent).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("overloaded")),
        "{err}"
    );
    // A search answers with what the index holds, and says it may miss something.
    assert_eq!(search(&acme).await, json!(true));
    let raw = reqwest::Client::new()
        .get(format!("{}/graph/vertex/executions/{id}", server.base))
        .bearer_auth(acme.token())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 503);
    assert_eq!(raw.headers()["retry-after"], "1");
}

// A Redis that hangs (stopped: its connections stay open and nothing is answered) holds a
// read no longer than the read wait: the runtime answers, long before the store client's own
// response timeout would end the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_holds_a_read_no_longer_than_the_read_wait() {
    use symphainy_projections::store::REDIS_RESPONSE_TIMEOUT;

    let redis = RedisServer::start().unwrap();
    let server = on_redis(&redis, |c| c.limits.state_read_wait_ms = 200).await;
    let acme = tenant_client(&server, "acme").await;
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let id = finished_echo(&acme, &session, 1).await;
    caught_up(&server).await;
    redis.freeze().unwrap();
    let read = tokio::time::timeout(REDIS_RESPONSE_TIMEOUT / 2, acme.execution(&id)).await;
    redis.thaw().unwrap();
    let status = read.expect("the read waited for the hung Redis").unwrap();
    assert_eq!(status.status, "completed");
}

// A Redis that lost its data under the runner (here: FLUSHALL; a restart without persistence
// does the same) is not read as if it held the log: the runner only notices at its next
// write, and until it has rebuilt, reads are answered from the runtime instead of as
// "missing" (404) or with older values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_is_not_read_until_rebuilt() {
    let redis = RedisServer::start().unwrap();
    let server = on_redis(&redis, |_| {}).await;
    let acme = tenant_client(&server, "acme").await;
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let id = finished_echo(&acme, &session, 1).await;
    caught_up(&server).await;
    let before = fallback_reads(&server).await;

    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("t:{{acme}}:execution:{id}");
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // Nothing new is logged, so the runner has no write to notice the loss with.
    assert_eq!(acme.execution(&id).await.unwrap().status, "completed");
    assert_eq!(
        acme.runtime_state(&id).await.unwrap()["status"],
        "completed"
    );
    assert_eq!(acme.session(&session).await.unwrap().session_id, session);
    assert!(
        fallback_reads(&server).await >= before + 3,
        "the reads were not answered by the runtime"
    );

    // The next write finds the checkpoint gone and the runner rebuilds the surface.
    finished_echo(&acme, &session, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let raw: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if raw.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the surface was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    caught_up(&server).await;
    let settled = fallback_reads(&server).await;
    assert_eq!(acme.execution(&id).await.unwrap().status, "completed");
    assert_eq!(
        fallback_reads(&server).await,
        settled,
        "the rebuilt surface did not answer"
    );
}

// A graph directory sled cannot open is moved aside on start and rebuilt from the WAL; the
// rebuilt graph equals a clean rebuild of the same log. Runs the real binary, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_graph_directory_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).unwrap();
    let (_, acme, session) = server.tenant_with_session("acme").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        let intent = Intent::new("runtime.echo", &session, json!({"value": n, "steps": 2}));
        ids.push(acme.submit(&intent).await.unwrap().1.execution_id);
    }
    for id in &ids {
        acme.wait_finished(id, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let code = tokio::task::spawn_blocking(move || server.terminate().unwrap())
        .await
        .unwrap();
    assert_eq!(code, Some(0));

    // Garbage over sled's configuration and data files.
    let graph_dir = dir.path().join("graph");
    for entry in std::fs::read_dir(&graph_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"this is not a sled file at all").unwrap();
        }
    }
    let server = ServerProcess::start(dir.path()).unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("graph.corrupt-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the corrupt graph is kept aside for inspection"
    );
    let acme = Client::new(&server.base, acme.token());
    for id in &ids {
        let v = acme.graph_vertex("executions", id).await.unwrap();
        assert_eq!(v["status"], "completed");
    }
    let code = tokio::task::spawn_blocking(move || server.terminate().unwrap())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    let live = SledGraph::open(&graph_dir).unwrap().dump().unwrap();

    // A clean rebuild of the same log, offline.
    let reader = WalReader::open(dir.path().join("wal")).unwrap();
    let fresh = Arc::new(SledGraph::open(&dir.path().join("graph-check")).unwrap());
    rebuild(
        &mut GraphView::new(fresh.clone()),
        &mut reader.cursor(1),
        500,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(live, fresh.dump().unwrap());
}

// A Redis that is down when the server starts does not keep it from starting or from
// ingesting: sagas run and are read from the runtime; once Redis comes up, the surface
// catches up with everything logged meanwhile and answers the reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_down_at_start_is_caught_up_when_it_comes() {
    let mut redis = RedisServer::start().unwrap();
    redis.kill();
    let server = on_redis(&redis, |_| {}).await;
    let acme = tenant_client(&server, "acme").await;
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let ids = [
        finished_echo(&acme, &session, 1).await,
        finished_echo(&acme, &session, 2).await,
    ];
    for id in &ids {
        assert_eq!(acme.execution(id).await.unwrap().status, "completed");
    }
    let metrics = server.admin().metrics().await.unwrap();
    assert!(
        metrics["state"]["fallback_reads"].as_u64().unwrap() >= 2,
        "{metrics}"
    );
    assert!(
        metrics["projections"]["state_surface"]["errors"]
            .as_u64()
            .unwrap()
            >= 1,
        "{metrics}"
    );

    redis.restart().unwrap();
    caught_up(&server).await;
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for id in &ids {
        let raw: Option<String> = redis::cmd("GET")
            .arg(format!("t:{{acme}}:execution:{id}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(raw.is_some_and(|r| r.contains("completed")), "{id}");
    }
    let settled = fallback_reads(&server).await;
    assert_eq!(acme.session(&session).await.unwrap().session_id, session);
    assert_eq!(
        fallback_reads(&server).await,
        settled,
        "Redis did not answer once up"
    );
}

// A value in Redis that is not what the surface wrote (not JSON: another client's write, a
// damaged restore) is never served: the read is answered from the runtime's own fold and
// counted as a fallback, and the other keys are still read from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_value_in_redis_is_answered_from_the_runtime() {
    let redis = RedisServer::start().unwrap();
    let server = on_redis(&redis, |_| {}).await;
    let acme = tenant_client(&server, "acme").await;
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let damaged = finished_echo(&acme, &session, 1).await;
    let intact = finished_echo(&acme, &session, 2).await;
    caught_up(&server).await;
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SET")
        .arg(format!("t:{{acme}}:execution:{damaged}"))
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = fallback_reads(&server).await;
    let status = acme.execution(&damaged).await.unwrap();
    assert_eq!(
        (status.execution_id.as_str(), status.status.as_str()),
        (damaged.as_str(), "completed")
    );
    let (code, record) = acme
        .raw(
            reqwest::Method::GET,
            &format!("/runtime/state/{damaged}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (code, record["status"].as_str()),
        (200, Some("completed")),
        "{record}"
    );
    assert_eq!(
        fallback_reads(&server).await,
        before + 2,
        "the damaged key was not refused"
    );
    assert_eq!(acme.execution(&intact).await.unwrap().status, "completed");
    assert_eq!(
        fallback_reads(&server).await,
        before + 2,
        "an intact key was not read from Redis"
    );
}
