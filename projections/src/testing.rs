//! Helpers for projection tests (here and in `tests/`): a mixed multi-tenant workload run
//! through a real runtime, and the checks that a projection matches the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use symphainy_engine::{Id, Runtime, State, SubmitIntent, codec, view};
use symphainy_wal::{Log, Lsn};

use symphainy_engine::RuntimeConfig;
use symphainy_engine::id::{SystemClock, UlidSource};
use symphainy_engine::testing::{Probe, registry_with_test_realm};
use symphainy_wal::{Config, Wal};

use crate::graph::{GraphStore, GraphView, SledGraph};
use crate::runner::{Runner, RunnerConfig, rebuild};
use crate::store::StateStore;
use crate::surface::{StateSurface, SurfaceReader};

/// Tenants a workload uses.
pub const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// One step of a generated workload.
#[derive(Clone, Debug)]
pub enum Op {
    /// Open a session for tenant `t % TENANTS.len()`.
    OpenSession(u8),
    /// Close the tenant's `s`-th session (modulo how many it has).
    CloseSession(u8, u8),
    /// Submit `test.scripted` with these step scripts to the tenant's `s`-th session.
    Scripted(u8, u8, Vec<Value>),
    /// Submit `runtime.echo` with this many steps.
    Echo(u8, u8, u32),
    /// Submit the same idempotency key twice.
    Duplicate(u8, u8),
}

/// An op chosen by generated numbers: `kind` picks the op (weights 1 open, 1 close,
/// 4 scripted, 3 echo, 1 duplicate), `t` and `s` tenant and session, `steps` the step scripts.
pub fn op_from(kind: u8, t: u8, s: u8, steps: &[u8]) -> Op {
    match kind % 10 {
        0 => Op::OpenSession(t),
        1 => Op::CloseSession(t, s),
        2..=5 => Op::Scripted(
            t,
            s,
            steps.iter().take(3).map(|k| step_script(*k)).collect(),
        ),
        6..=8 => Op::Echo(t, s, 1 + u32::from(steps.first().copied().unwrap_or(0) % 4)),
        _ => Op::Duplicate(t, s),
    }
}

/// A step script for `test.scripted`: succeed, fail then succeed, fail for good, or fail for
/// good after a step whose compensation fails.
pub fn step_script(kind: u8) -> Value {
    match kind % 5 {
        0 | 1 => json!({}),
        2 => json!({"fail_attempts": 1}),
        3 => json!({"fail_attempts": 1, "permanent": true}),
        _ => json!({"compensation_fails": true}),
    }
}

/// Runs `ops` on `rt` (tenants created first), waits until every execution finished, and
/// returns the executions.
pub async fn run_workload<L: Log>(rt: &Arc<Runtime<L>>, ops: &[Op]) -> Vec<(String, Id)> {
    for t in TENANTS {
        rt.create_tenant(t).await.unwrap();
        rt.create_session(t, "alice", r#"{"k":1}"#.into())
            .await
            .unwrap();
    }
    run_more(rt, ops).await
}

/// Runs more of a workload on tenants [`run_workload`] created.
pub async fn run_more<L: Log>(rt: &Arc<Runtime<L>>, ops: &[Op]) -> Vec<(String, Id)> {
    let mut sessions: BTreeMap<&str, Vec<Id>> = rt
        .read(|s| {
            let mut by_tenant: BTreeMap<&str, Vec<Id>> = BTreeMap::new();
            for session in s.sessions.values() {
                if let Some(t) = TENANTS.iter().find(|t| **t == session.tenant_id) {
                    by_tenant.entry(t).or_default().push(session.session_id);
                }
            }
            by_tenant.values_mut().for_each(|v| v.sort());
            by_tenant
        })
        .await
        .unwrap();
    let mut executions = Vec::new();
    let pick = |sessions: &BTreeMap<&str, Vec<Id>>, t: u8, s: u8| {
        let tenant = TENANTS[t as usize % TENANTS.len()];
        let list = &sessions[tenant];
        (tenant, list[s as usize % list.len()])
    };
    for (i, op) in ops.iter().enumerate() {
        let submit =
            |tenant: &str, session: Id, intent_type: &str, payload: Value, key| SubmitIntent {
                tenant_id: tenant.into(),
                session_id: session,
                intent_type: intent_type.into(),
                realm: None,
                payload,
                idempotency_key: key,
            };
        let intent = match op {
            Op::OpenSession(t) => {
                let tenant = TENANTS[*t as usize % TENANTS.len()];
                let s = rt.create_session(tenant, "bob", "{}".into()).await.unwrap();
                sessions.entry(tenant).or_default().push(s.session_id);
                None
            }
            Op::CloseSession(t, s) => {
                let (tenant, session) = pick(&sessions, *t, *s);
                // Closing twice, or a session with sagas, is allowed to fail.
                let _ = rt.close_session(tenant, session).await;
                None
            }
            Op::Scripted(t, s, steps) => {
                let (tenant, session) = pick(&sessions, *t, *s);
                Some(submit(
                    tenant,
                    session,
                    "test.scripted",
                    json!({ "steps": steps }),
                    None,
                ))
            }
            Op::Echo(t, s, steps) => {
                let (tenant, session) = pick(&sessions, *t, *s);
                Some(submit(
                    tenant,
                    session,
                    "runtime.echo",
                    json!({"value": i, "steps": steps}),
                    None,
                ))
            }
            Op::Duplicate(t, s) => {
                let (tenant, session) = pick(&sessions, *t, *s);
                let intent = submit(
                    tenant,
                    session,
                    "runtime.echo",
                    json!({"value": i}),
                    Some(format!("dup-{i}")),
                );
                if let Ok(first) = rt.submit_intent(intent.clone()).await {
                    executions.push((tenant.to_string(), first.execution_id));
                }
                Some(intent)
            }
        };
        if let Some(intent) = intent {
            // A closed session refuses intents; that is part of the workload.
            if let Ok(submitted) = rt.submit_intent(intent.clone()).await {
                executions.push((intent.tenant_id.clone(), submitted.execution_id));
            }
        }
    }
    for (tenant, id) in &executions {
        rt.wait_finished(tenant, *id, Duration::from_secs(30))
            .await
            .unwrap();
    }
    executions.sort();
    executions.dedup();
    executions
}

/// Events per tenant in the log up to `to`.
pub fn tenant_event_counts<L: Log>(log: &L, to: Lsn) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut cursor = log.cursor(1);
    while cursor.next_lsn() <= to {
        let want = (to + 1 - cursor.next_lsn()) as usize;
        let seen = cursor
            .visit(want.min(4096), |_, meta, payload| {
                let event = codec::decode(meta, payload).unwrap();
                *out.entry(event.tenant_id).or_default() += 1;
            })
            .unwrap();
        if seen == 0 {
            break;
        }
    }
    out
}

/// Checks every session and execution of `state` reads back from the surface exactly as the
/// engine renders it, and that no tenant reads another's.
pub async fn assert_surface_matches(state: &State, reader: &SurfaceReader) {
    for s in state.sessions.values() {
        let got = reader.session(&s.tenant_id, s.session_id).await.unwrap();
        assert_eq!(got, Some(view::session(s)), "session {}", s.session_id);
        for other in TENANTS.iter().filter(|t| **t != s.tenant_id) {
            assert_eq!(reader.session(other, s.session_id).await.unwrap(), None);
        }
    }
    for e in state.executions.values() {
        let record = reader
            .execution_record(&e.tenant_id, e.execution_id)
            .await
            .unwrap();
        assert_eq!(record, Some(view::execution_record(state, e)));
        let status = reader
            .execution_status(&e.tenant_id, e.execution_id)
            .await
            .unwrap();
        assert_eq!(status, Some(view::execution_status(state, e)));
        for other in TENANTS.iter().filter(|t| **t != &*e.tenant_id) {
            assert_eq!(
                reader
                    .execution_record(other, e.execution_id)
                    .await
                    .unwrap(),
                None
            );
        }
    }
}

/// Checks the graph holds every execution with its steps and edges, tenant-isolated.
pub fn assert_graph_matches<G: GraphStore>(state: &State, graph: &G) {
    for e in state.executions.values() {
        let id = format!("executions/{}", e.execution_id);
        let doc = graph
            .vertex(&e.tenant_id, &id)
            .unwrap()
            .expect("execution vertex");
        // The vertex is the API's status of the execution plus what the graph derives from it.
        let mut expected = symphainy_engine::view::execution_status(state, e);
        expected["_id"] = json!(id);
        expected["_key"] = json!(e.execution_id.to_string());
        expected["step_count"] = json!(e.steps.len());
        expected["realm"] = json!(e.realm);
        expected["idempotency_key"] = json!(e.idempotency_key);
        assert_eq!(doc, expected);
        let session = state.sessions.get(&e.session_id).expect("session");
        let session_id = format!("sessions/{}", e.session_id);
        let mut expected = symphainy_engine::view::session(session);
        expected["_id"] = json!(session_id);
        expected["_key"] = json!(e.session_id.to_string());
        assert_eq!(
            graph.vertex(&e.tenant_id, &session_id).unwrap(),
            Some(expected)
        );
        for other in TENANTS.iter().filter(|t| **t != &*e.tenant_id) {
            assert_eq!(graph.vertex(other, &id).unwrap(), None);
        }
        let t = crate::graph::traverse(graph, &e.tenant_id, &id, crate::graph::Direction::Any, 1)
            .unwrap()
            .unwrap();
        // intent + capability + steps, and the execution itself.
        assert_eq!(t.vertices.len(), 3 + e.steps.len(), "neighbours of {id}");
        let intent = format!("intents/{}", e.intent_id);
        let doc = graph
            .vertex(&e.tenant_id, &intent)
            .unwrap()
            .expect("intent vertex");
        assert_eq!(doc["_id"], json!(intent));
        assert_eq!(doc["execution_id"], json!(e.execution_id.to_string()));
        assert_eq!(doc["session_id"], json!(e.session_id.to_string()));
        assert_eq!(doc["intent_type"], json!(e.intent_type));
        assert_eq!(doc["idempotency_key"], json!(e.idempotency_key));
        assert_eq!(doc["lsn"], json!(e.intent_lsn));
        let session = format!("sessions/{}", e.session_id);
        for v in [&session, &intent, &id] {
            assert_edges_symmetric(graph, &e.tenant_id, v);
        }
    }
}

/// Every edge found from one end is found from the other, and both ends exist (whether the
/// edge is stored from both ends or derived from a vertex on one side).
fn assert_edges_symmetric<G: GraphStore>(graph: &G, tenant: &str, id: &str) {
    use crate::graph::Direction;
    for (direction, back) in [
        (Direction::Outbound, Direction::Inbound),
        (Direction::Inbound, Direction::Outbound),
    ] {
        for edge in graph.edges(tenant, id, direction, usize::MAX).unwrap() {
            let far = if direction == Direction::Outbound {
                &edge.to
            } else {
                &edge.from
            };
            assert!(
                graph.vertex(tenant, far).unwrap().is_some(),
                "{far} of {edge:?}"
            );
            let seen = graph.edges(tenant, far, back, usize::MAX).unwrap();
            assert!(
                seen.contains(&edge),
                "{edge:?} not seen from {far}: {seen:?}"
            );
        }
    }
}

/// Invariant 8, end to end: runs `ops` through a runtime over a WAL in `dir` while a state
/// surface (on `store`) and a graph view are maintained incrementally, killing and restarting
/// their runners after the ops at `kills`; then rebuilds both from scratch (the surface into
/// `fresh`) and checks the canonical dumps are equal, every tenant's events were applied
/// exactly once, and the views match the engine's.
pub async fn incremental_vs_rebuild(
    dir: &std::path::Path,
    store: Arc<StateStore>,
    fresh_store: Arc<StateStore>,
    ops: Vec<Op>,
    batch: usize,
    kills: Vec<usize>,
) {
    // Records roomy enough for the runtime's envelope (its byte limits are fitted to them).
    let config = Config {
        record_bytes_max: 4 * 1024,
        ..Config::small_for_tests()
    };
    let wal = Arc::new(Wal::open(dir.join("wal"), config).unwrap());
    let registry = Arc::new(registry_with_test_realm(Arc::new(Probe::default())).unwrap());
    let runtime = Runtime::start(
        wal.clone(),
        registry,
        Arc::new(SystemClock),
        Arc::new(UlidSource::default()),
        RuntimeConfig::default(),
    )
    .await
    .unwrap();
    let graph = Arc::new(SledGraph::open(&dir.join("graph")).unwrap());
    let start = |store: &Arc<StateStore>, graph: &Arc<SledGraph>| {
        (
            Runner::start(
                wal.clone(),
                StateSurface::new(store.clone()),
                State::default(),
                runner_config(batch),
            ),
            Runner::start(
                wal.clone(),
                GraphView::new(graph.clone()),
                State::default(),
                runner_config(batch),
            ),
        )
    };
    let mut runners = start(&store, &graph);
    // Run the workload in chunks; between chunks, kill the runners as a crash would and
    // start new ones, which resume from their stored checkpoints.
    let mut done = 0;
    let mut first = true;
    for kill in kills.iter().map(|k| k % (ops.len() + 1)) {
        let upto = kill.max(done);
        run_workload_part(&runtime, &ops[done..upto], first).await;
        (done, first) = (upto, false);
        tokio::time::sleep(Duration::from_micros(200)).await;
        runners.0.abort().await;
        runners.1.abort().await;
        runners = start(&store, &graph);
    }
    run_workload_part(&runtime, &ops[done..], first).await;
    let durable = wal.durable_lsn();
    assert!(
        runners
            .0
            .wait_applied(durable, Duration::from_secs(30))
            .await
    );
    assert!(
        runners
            .1
            .wait_applied(durable, Duration::from_secs(30))
            .await
    );
    runners.0.stop().await;
    runners.1.stop().await;

    // Rebuild both from scratch into fresh stores.
    let fresh_graph = Arc::new(SledGraph::open(&dir.join("graph-rebuilt")).unwrap());
    let report = rebuild(
        &mut StateSurface::new(fresh_store.clone()),
        &mut wal.cursor(1),
        1_000,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.last_lsn, durable);
    rebuild(
        &mut GraphView::new(fresh_graph.clone()),
        &mut wal.cursor(1),
        777,
        |_| {},
    )
    .await
    .unwrap();
    assert_same(
        "state surface",
        store.dump().await.unwrap(),
        fresh_store.dump().await.unwrap(),
    );
    assert_same(
        "graph view",
        graph.dump().unwrap().into_iter().collect(),
        fresh_graph.dump().unwrap().into_iter().collect(),
    );

    // No event applied twice or skipped, per tenant, in both projections.
    let reader = SurfaceReader::new(store.clone());
    for (tenant, n) in tenant_event_counts(wal.as_ref(), durable) {
        assert_eq!(reader.tenant_events(&tenant).await.unwrap(), n, "{tenant}");
        assert_eq!(graph.tenant_events(&tenant).unwrap(), n, "{tenant}");
    }
    // And both match the engine.
    let state = runtime.read(|s| s.clone()).await.unwrap();
    assert_surface_matches(&state, &reader).await;
    assert_graph_matches(&state, graph.as_ref());
}

fn runner_config(batch: usize) -> RunnerConfig {
    RunnerConfig {
        batch_events_max: batch,
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        ..RunnerConfig::default()
    }
}

/// Runs part of a workload; tenants and first sessions are made by the first part only.
async fn run_workload_part(rt: &Arc<Runtime<Wal>>, ops: &[Op], first: bool) {
    if first {
        run_workload(rt, ops).await;
    } else {
        run_more(rt, ops).await;
    }
}

/// Compares two canonical dumps, naming the first key that differs (dumps are large).
pub fn assert_same(what: &str, live: BTreeMap<String, String>, rebuilt: BTreeMap<String, String>) {
    if live == rebuilt {
        return;
    }
    let only_live: Vec<_> = live
        .keys()
        .filter(|k| !rebuilt.contains_key(*k))
        .take(3)
        .collect();
    let only_rebuilt: Vec<_> = rebuilt
        .keys()
        .filter(|k| !live.contains_key(*k))
        .take(3)
        .collect();
    let differ: Vec<_> = live
        .iter()
        .filter(|(k, v)| rebuilt.get(*k).is_some_and(|r| r != *v))
        .take(2)
        .map(|(k, v)| format!("{k:?}: live {v} vs rebuilt {}", rebuilt[k]))
        .collect();
    panic!(
        "{what}: incremental ({} keys) differs from rebuild ({} keys); only live: {only_live:?}; \
         only rebuilt: {only_rebuilt:?}; values differ: {differ:?}",
        live.len(),
        rebuilt.len()
    );
}
