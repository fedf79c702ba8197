//! Helpers for engine tests: a runtime over a WAL on the in-memory file system.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use symphainy_engine::id::{SystemClock, UlidSource};
use symphainy_engine::saga::Registry;
use symphainy_engine::state::ExecutionStatus;
use symphainy_engine::testing::{Probe, Scripted};
use symphainy_engine::{Id, Runtime, RuntimeConfig, SubmitIntent, builtin};
use symphainy_wal::{Config, MemFs, Wal};

pub type Rt = Runtime<Wal>;

pub fn dir() -> PathBuf {
    PathBuf::from("/data/wal")
}

pub fn registry(probe: &Arc<Probe>) -> Arc<Registry> {
    let mut registry = Registry::default();
    registry.register(Arc::new(builtin::Echo)).unwrap();
    registry
        .register(Arc::new(Scripted {
            probe: probe.clone(),
        }))
        .unwrap();
    Arc::new(registry)
}

pub fn wal_config() -> Config {
    Config {
        segment_bytes: 256 * 1024,
        record_bytes_max: 64 * 1024,
        ..Config::small_for_tests()
    }
}

pub async fn start(fs: &MemFs, probe: &Arc<Probe>) -> Arc<Rt> {
    start_with(fs, probe, wal_config()).await
}

/// [`start`] on a WAL of the given configuration.
pub async fn start_with(fs: &MemFs, probe: &Arc<Probe>, config: Config) -> Arc<Rt> {
    let wal = Arc::new(Wal::open_with(Arc::new(fs.clone()), dir(), config).unwrap());
    Runtime::start(
        wal,
        registry(probe),
        Arc::new(SystemClock),
        Arc::new(UlidSource::default()),
        RuntimeConfig::default(),
    )
    .await
    .unwrap()
}

/// A tenant with an open session.
pub async fn tenant_with_session(rt: &Arc<Rt>, tenant: &str) -> Id {
    rt.create_tenant(tenant).await.unwrap();
    rt.create_session(tenant, "alice", "{}".into())
        .await
        .unwrap()
        .session_id
}

pub fn scripted(tenant: &str, session: Id, steps: serde_json::Value) -> SubmitIntent {
    SubmitIntent {
        tenant_id: tenant.into(),
        session_id: session,
        intent_type: "test.scripted".into(),
        realm: None,
        payload: json!({ "steps": steps }),
        idempotency_key: None,
    }
}

pub fn echo(tenant: &str, session: Id, value: serde_json::Value, steps: u32) -> SubmitIntent {
    SubmitIntent {
        tenant_id: tenant.into(),
        session_id: session,
        intent_type: "runtime.echo".into(),
        realm: None,
        payload: json!({ "value": value, "steps": steps }),
        idempotency_key: None,
    }
}

/// Submits `intent`, waits for its execution to finish and returns the execution as the
/// runtime holds it.
pub async fn run_to_end(rt: &Arc<Rt>, intent: SubmitIntent) -> symphainy_engine::state::Execution {
    let tenant = intent.tenant_id.clone();
    let id = rt.submit_intent(intent).await.unwrap().execution_id;
    finish(rt, &tenant, id).await;
    rt.execution(&tenant, id).await.unwrap()
}

/// The runtime did not stop, and a 3-step echo in `session` of `acme` still completes.
pub async fn assert_still_serving(rt: &Arc<Rt>, session: Id) {
    assert_eq!(rt.stopped_reason(), None);
    let echo = run_to_end(rt, echo("acme", session, json!("after"), 3)).await;
    assert_eq!(echo.status, ExecutionStatus::Completed);
}

/// Waits for an execution to finish and returns its status.
pub async fn finish(rt: &Arc<Rt>, tenant: &str, id: Id) -> ExecutionStatus {
    assert!(
        rt.wait_finished(tenant, id, Duration::from_secs(20))
            .await
            .unwrap(),
        "execution {id} did not finish"
    );
    rt.execution(tenant, id).await.unwrap().status
}

/// Event type names of an execution, in LSN order, read back from the WAL.
pub fn event_names(rt: &Arc<Rt>, id: Id) -> Vec<&'static str> {
    use symphainy_wal::Log;
    let mut names = Vec::new();
    let mut cursor = rt.log().cursor(1);
    cursor
        .visit(usize::MAX, |_, meta, payload| {
            let event = symphainy_engine::codec::decode(meta, payload).unwrap();
            if event.body.execution_id() == Some(id) {
                names.push(event.body.event_type().name());
            }
        })
        .unwrap();
    names
}
