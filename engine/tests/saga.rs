//! Saga behaviour: retries, compensation, timeouts, resume after a crash, idempotency,
//! sessions and tenants.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use symphainy_engine::Error;
use symphainy_engine::state::{ExecutionStatus, StepStatus};
use symphainy_engine::testing::Probe;
use symphainy_wal::{CrashMode, MemFs};

/// A runtime on an in-memory log with tenant `acme` and a session of it, with the file system
/// (to crash) and the scripted steps' probe.
async fn on_acme() -> (MemFs, Arc<Probe>, Arc<Rt>, symphainy_engine::Id) {
    let (fs, probe) = (MemFs::new(), Arc::new(Probe::default()));
    let rt = start(&fs, &probe).await;
    let session = tenant_with_session(&rt, "acme").await;
    (fs, probe, rt, session)
}

// A step that fails twice then succeeds is retried and the saga completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_then_success() {
    let (_, _, rt, session) = on_acme().await;
    let submitted = rt
        .submit_intent(scripted("acme", session, json!([{}, {"fail_attempts": 2}])))
        .await
        .unwrap();
    assert_eq!(
        finish(&rt, "acme", submitted.execution_id).await,
        ExecutionStatus::Completed
    );
    let execution = rt.execution("acme", submitted.execution_id).await.unwrap();
    assert_eq!(execution.steps[1].attempts, 3);
    assert_eq!(
        event_names(&rt, submitted.execution_id),
        [
            "intent_received",
            "saga_started",
            "step_started",
            "step_completed",
            "step_started",
            "step_failed",
            "step_retry_scheduled",
            "step_started",
            "step_failed",
            "step_retry_scheduled",
            "step_started",
            "step_completed",
            "saga_completed",
        ]
    );
}

// Exhausted retries on step 3 compensate steps 2 then 1, in reverse order, with the exact
// expected event sequence, and the saga ends compensated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_compensate_in_reverse_order() {
    let (_, probe, rt, session) = on_acme().await;
    let id = rt
        .submit_intent(scripted(
            "acme",
            session,
            json!([{}, {}, {"fail_attempts": 9}]),
        ))
        .await
        .unwrap()
        .execution_id;
    assert_eq!(finish(&rt, "acme", id).await, ExecutionStatus::Compensated);
    assert_eq!(
        event_names(&rt, id),
        [
            "intent_received",
            "saga_started",
            "step_started",
            "step_completed",
            "step_started",
            "step_completed",
            "step_started",
            "step_failed",
            "step_retry_scheduled",
            "step_started",
            "step_failed",
            "step_retry_scheduled",
            "step_started",
            "step_failed",
            "compensation_started",
            "step_compensated",
            "step_compensated",
            "saga_compensated",
        ]
    );
    let compensations: Vec<u32> = probe
        .calls_of(id)
        .into_iter()
        .filter(|c| c.2 == "compensate")
        .map(|c| c.0)
        .collect();
    assert_eq!(compensations, [1, 0]);
    let execution = rt.execution("acme", id).await.unwrap();
    assert_eq!(execution.error.as_ref().unwrap().code, "scripted_failure");
    assert_eq!(
        execution.error.as_ref().unwrap().step.as_deref(),
        Some("scripted_3")
    );
    let statuses: Vec<_> = execution.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Failed
        ]
    );
}

// A permanent failure of the first step fails the saga at once: nothing to compensate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_without_completed_steps_fails() {
    let (_, _, rt, session) = on_acme().await;
    let id = rt
        .submit_intent(scripted(
            "acme",
            session,
            json!([{"fail_attempts": 1, "permanent": true}]),
        ))
        .await
        .unwrap()
        .execution_id;
    assert_eq!(finish(&rt, "acme", id).await, ExecutionStatus::Failed);
    assert_eq!(
        event_names(&rt, id),
        [
            "intent_received",
            "saga_started",
            "step_started",
            "step_failed",
            "saga_failed"
        ]
    );
}

// A failing compensation ends the saga failed with code compensation_failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_compensation_fails_the_saga() {
    let (_, _, rt, session) = on_acme().await;
    let steps = json!([{"compensation_fails": true}, {"fail_attempts": 1, "permanent": true}]);
    let id = rt
        .submit_intent(scripted("acme", session, steps))
        .await
        .unwrap()
        .execution_id;
    assert_eq!(finish(&rt, "acme", id).await, ExecutionStatus::Failed);
    let execution = rt.execution("acme", id).await.unwrap();
    assert_eq!(execution.error.unwrap().code, "compensation_failed");
}

// A step that hangs past its timeout fails with step_timeout and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_a_retryable_failure() {
    let (_, _, rt, session) = on_acme().await;
    let id = rt
        .submit_intent(scripted("acme", session, json!([{"hang_attempts": 1}])))
        .await
        .unwrap()
        .execution_id;
    assert_eq!(finish(&rt, "acme", id).await, ExecutionStatus::Completed);
    let execution = rt.execution("acme", id).await.unwrap();
    assert_eq!(execution.steps[0].attempts, 2);
    assert_eq!(
        event_names(&rt, id),
        [
            "intent_received",
            "saga_started",
            "step_started",
            "step_failed",
            "step_retry_scheduled",
            "step_started",
            "step_completed",
            "saga_completed"
        ]
    );
}

// A crash in the middle of a saga (power loss, unsynced data dropped) is followed by a restart
// that resumes the saga from its last recorded step: it completes, and no step whose completion
// was recorded runs again.
#[test]
fn crash_mid_saga_then_resume_to_completion() {
    let (fs, probe) = (MemFs::new(), Arc::new(Probe::default()));
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (id, session) = first.block_on(async {
        let rt = start(&fs, &probe).await;
        let session = tenant_with_session(&rt, "acme").await;
        // Step 2 hangs on its first attempt: crash while it runs.
        let steps = json!([{}, {"hang_attempts": 1}, {}]);
        let id = rt
            .submit_intent(scripted("acme", session, steps))
            .await
            .unwrap()
            .execution_id;
        for _ in 0..200 {
            if probe.calls_of(id).iter().any(|c| c.0 == 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Deterministic steps run without waiting for the previous step's completion to be
        // durable; wait for it here, so the crash below drops nothing step 0 recorded.
        let recorded = rt
            .read(|s| s.execution_of("acme", id).map(|e| e.steps[0].status))
            .await
            .unwrap();
        assert_eq!(recorded, Some(StepStatus::Completed));
        (id, session)
    });
    fs.crash(CrashMode::DropUnsynced);
    first.shutdown_timeout(Duration::from_secs(1));
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let rt = start(&fs, &probe).await;
        assert_eq!(finish(&rt, "acme", id).await, ExecutionStatus::Completed);
        let step0_runs = probe
            .calls_of(id)
            .iter()
            .filter(|c| c.0 == 0 && c.2 == "execute")
            .count();
        assert_eq!(
            step0_runs, 1,
            "a step whose completion was recorded ran again"
        );
        let execution = rt.execution("acme", id).await.unwrap();
        assert!(
            execution
                .steps
                .iter()
                .all(|s| s.status == StepStatus::Completed)
        );
        assert_eq!(execution.session_id, session);
    });
}

// 100 concurrent submissions with one idempotency key make one execution and 100 identical
// answers; the log holds one intent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_race() {
    let (_, _, rt, session) = on_acme().await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let rt = rt.clone();
            let mut intent = echo("acme", session, json!("x"), 3);
            intent.idempotency_key = Some("key-1".into());
            tokio::spawn(async move { rt.submit_intent(intent).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let first = &answers[0];
    assert!(answers.iter().all(|a| (a.execution_id, a.intent_id, a.lsn)
        == (first.execution_id, first.intent_id, first.lsn)));
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    let intents = rt.read(|s| s.executions.len()).await.unwrap();
    assert_eq!(intents, 1);
    // The same key in another tenant is a different execution.
    let other = tenant_with_session(&rt, "globex").await;
    let mut intent = echo("globex", other, json!("x"), 1);
    intent.idempotency_key = Some("key-1".into());
    assert_ne!(
        rt.submit_intent(intent).await.unwrap().execution_id,
        first.execution_id
    );
}

// A key already used is answered with its execution only for the same intent (the same object
// with its keys in another order included); another session, intent type or payload is refused
// naming the execution the key belongs to, and logs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_intent_is_refused() {
    let (_, _, rt, session) = on_acme().await;
    let other_session = rt
        .create_session("acme", "bob", "{}".into())
        .await
        .unwrap()
        .session_id;
    let keyed = |intent: symphainy_engine::SubmitIntent| symphainy_engine::SubmitIntent {
        idempotency_key: Some("order-7".into()),
        ..intent
    };
    let first = rt
        .submit_intent(keyed(echo("acme", session, json!({"a": 1, "b": 2}), 2)))
        .await
        .unwrap();
    let again = rt
        .submit_intent(keyed(echo("acme", session, json!({"b": 2, "a": 1}), 2)))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.execution_id, first.execution_id);
    // The first execution's saga ends before the log's end is noted: its own events come next.
    finish(&rt, "acme", first.execution_id).await;
    let last_lsn = rt.read(|s| s.last_lsn).await.unwrap();
    let different = [
        keyed(echo("acme", session, json!({"a": 1, "b": 3}), 2)),
        keyed(echo("acme", session, json!({"a": 1, "b": 2}), 3)),
        keyed(echo("acme", other_session, json!({"a": 1, "b": 2}), 2)),
        keyed(scripted("acme", session, json!([{}]))),
    ];
    for intent in different {
        let refused = rt.submit_intent(intent.clone()).await;
        assert!(
            matches!(refused, Err(Error::IdempotencyKeyReused(id)) if id == first.execution_id),
            "{intent:?}: {refused:?}"
        );
    }
    assert_eq!(rt.read(|s| s.last_lsn).await.unwrap(), last_lsn);
}

// Intents on another tenant's session, an unknown session or a closed session are refused,
// and tenant ids are validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_tenants_are_enforced() {
    let (fs, probe) = (MemFs::new(), Arc::new(Probe::default()));
    let rt = start(&fs, &probe).await;
    let acme = tenant_with_session(&rt, "acme").await;
    let _globex = tenant_with_session(&rt, "globex").await;
    let err = rt
        .submit_intent(echo("globex", acme, json!(1), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { kind: "session" }), "{err}");
    assert!(matches!(
        rt.session("globex", acme).await,
        Err(Error::NotFound { .. })
    ));
    rt.close_session("acme", acme).await.unwrap();
    let err = rt
        .submit_intent(echo("acme", acme, json!(1), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SessionClosed(_)), "{err}");
    let err = rt
        .submit_intent(echo("acme", symphainy_engine::Id(7), json!(1), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    for bad in ["", "Acme", "-x", "a b", "_system", &"a".repeat(64)] {
        assert!(
            matches!(rt.create_tenant(bad).await, Err(Error::InvalidTenantId)),
            "{bad:?}"
        );
    }
    assert!(matches!(
        rt.create_tenant("acme").await,
        Err(Error::TenantExists(_))
    ));
    let mut unknown = echo("acme", acme, json!(1), 1);
    unknown.intent_type = "nope.nothing".into();
    assert!(matches!(
        rt.submit_intent(unknown).await,
        Err(Error::UnknownIntent(_))
    ));
    let bad_steps = echo("acme", acme, json!(1), 17);
    assert!(matches!(
        rt.submit_intent(bad_steps).await,
        Err(Error::InvalidRequest(_))
    ));
}

// The echo capability passes its value through every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_passes_value_through_steps() {
    let (_, _, rt, session) = on_acme().await;
    let id = rt
        .submit_intent(echo("acme", session, json!({"nested": [1, 2]}), 3))
        .await
        .unwrap()
        .execution_id;
    assert_eq!(finish(&rt, "acme", id).await, ExecutionStatus::Completed);
    let execution = rt.execution("acme", id).await.unwrap();
    assert_eq!(
        execution.result_json.as_deref(),
        Some(r#"{"value":{"nested":[1,2]}}"#)
    );
    assert_eq!(execution.steps.len(), 3);
}

// A submission whose caller waits for the saga is made durable by the saga's end: one
// fdatasync for a saga that ends at once, where answering at submission takes up to two (the
// intent's, then the end's, unless the end was written before the intent's began). Each answer still comes only once everything it reports is
// durable: a power loss right after the last answer keeps every execution, completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_submission_is_made_durable_with_its_sagas_end() {
    use std::sync::atomic::Ordering::Relaxed;
    use symphainy_engine::runtime::replay_cursor;
    use symphainy_wal::{Log, WalReader};

    let (fs, _, rt, session) = on_acme().await;
    let fsyncs = || rt.log().stats().batches.load(Relaxed);
    let runs = 40u64;
    let wait = Duration::from_secs(10);
    let before = fsyncs();
    let mut ids = Vec::new();
    for n in 0..runs {
        let (submitted, finished) = rt
            .submit_and_wait(echo("acme", session, json!(n), 3), wait)
            .await
            .unwrap();
        assert!(finished);
        ids.push(submitted.execution_id);
    }
    let waited = fsyncs() - before;
    let before = fsyncs();
    for n in 0..runs {
        let submitted = rt
            .submit_intent(echo("acme", session, json!(n), 3))
            .await
            .unwrap();
        assert!(
            rt.wait_finished("acme", submitted.execution_id, wait)
                .await
                .unwrap()
        );
        ids.push(submitted.execution_id);
    }
    let answered = fsyncs() - before;
    assert!(
        waited * 4 <= runs * 5,
        "{runs} sagas: {waited} fdatasyncs waited on, {answered} answered at submission"
    );
    let durable = rt.log().durable_lsn();
    fs.crash(CrashMode::DropUnsynced);
    let reader = WalReader::open_with(Arc::new(fs.clone()), dir()).unwrap();
    let (state, _) = replay_cursor(&mut reader.cursor(1), None).unwrap();
    assert!(state.last_lsn >= durable);
    for id in ids {
        let e = state
            .execution_of("acme", id)
            .expect("an answered execution");
        assert_eq!(e.status, ExecutionStatus::Completed);
    }
}

/// A runtime on a log whose records hold 1 KiB besides the envelope, with tenant `acme` and a
/// session of it.
async fn on_kib_records() -> (Arc<Rt>, symphainy_engine::Id) {
    let (fs, probe) = (MemFs::new(), Arc::new(Probe::default()));
    let config = symphainy_wal::Config {
        record_bytes_max: 1024 + symphainy_engine::runtime::EVENT_ENVELOPE_BYTES_MAX as u32,
        ..wal_config()
    };
    let rt = start_with(&fs, &probe, config).await;
    let session = tenant_with_session(&rt, "acme").await;
    (rt, session)
}

// The runtime's byte limits are fitted to the log's record limit, so what the log cannot
// hold fails its own command and nothing else: an intent too large is refused, a step output
// too large fails its step for good (the saga compensates), and the runtime goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_the_log_fails_only_its_command() {
    // Payloads and outputs of at most 1 KiB once the envelope is set aside.
    let (rt, session) = on_kib_records().await;
    let big = rt
        .submit_intent(echo("acme", session, json!("x".repeat(2000)), 1))
        .await;
    assert!(
        matches!(&big, Err(Error::TooLarge(m)) if m.contains("1024")),
        "{big:?}"
    );
    // Each scripted step's output holds the one before it, escaped: it outgrows a record.
    let growing = json!(vec![json!({}); 8]);
    let execution = run_to_end(&rt, scripted("acme", session, growing)).await;
    assert_eq!(execution.status, ExecutionStatus::Compensated);
    let id = execution.execution_id;
    let error = execution.error.as_ref().unwrap();
    assert_eq!(error.code, "output_too_large", "{error:?}");
    assert!(error.message.contains("1024"), "{error:?}");
    let failed = execution
        .steps
        .iter()
        .position(|s| s.status == StepStatus::Failed)
        .unwrap();
    assert!(failed > 0, "some steps completed first: {failed}");
    assert!(
        execution.steps[..failed]
            .iter()
            .all(|s| s.status == StepStatus::Compensated)
    );
    let names = event_names(&rt, id);
    assert_eq!(names.iter().filter(|n| **n == "step_failed").count(), 1);
    assert_still_serving(&rt, session).await;
}

// The room left for a payload, context, step output or failure message is the record less
// the envelope, and the envelope holds the idempotency key and user id at their configured
// limits, not at the defaults.
#[test]
fn byte_limits_fit_the_record_with_the_configured_key_and_user_limits() {
    use symphainy_engine::runtime::{EVENT_ENVELOPE_BYTES_MAX, EVENT_ENVELOPE_FIXED_BYTES};
    let default = symphainy_engine::RuntimeConfig::default();
    assert_eq!(default.envelope_bytes(), EVENT_ENVELOPE_BYTES_MAX);
    let fitted = default.fitted_to(2048);
    assert_eq!(fitted.payload_bytes_max, 2048 - EVENT_ENVELOPE_BYTES_MAX);
    let long_keys = symphainy_engine::RuntimeConfig {
        idempotency_key_bytes_max: 4096,
        ..Default::default()
    };
    let room = 8192 - (EVENT_ENVELOPE_FIXED_BYTES + 4096 + 256);
    let fitted = long_keys.fitted_to(8192);
    assert_eq!(
        (
            fitted.payload_bytes_max,
            fitted.context_bytes_max,
            fitted.step_output_bytes_max,
            fitted.failure_message_bytes_max,
        ),
        (room, room, room, room)
    );
    // A record large enough leaves the configured limits as they are.
    let roomy = symphainy_engine::RuntimeConfig::default().fitted_to(64 << 20);
    assert_eq!(roomy.payload_bytes_max, 1024 * 1024);
    assert_eq!(roomy.failure_message_bytes_max, 4 * 1024);
}

// A step's failure message longer than a record can hold is cut (between characters, marked),
// so its saga ends instead of running forever with its failure unrecorded; the default limit
// is 4 KiB whatever the log takes.
#[tokio::test]
async fn a_long_failure_message_is_cut_to_fit_the_log() {
    // Records of 1 KiB once the envelope is set aside: a 3,000-byte message would not fit.
    let (rt, session) = on_kib_records().await;
    let long = json!({"fail_attempts": 3, "message_bytes": 3000});
    let execution = run_to_end(&rt, scripted("acme", session, json!([{}, long]))).await;
    assert_eq!(execution.status, ExecutionStatus::Compensated);
    let id = execution.execution_id;
    let error = execution.error.as_ref().unwrap();
    assert_eq!(error.code, "scripted_failure");
    assert!(
        error.message.len() <= 1024 && error.message.len() > 1000,
        "{}",
        error.message.len()
    );
    // Cut between characters (the padding is two-byte `é`), and marked.
    assert!(error.message.starts_with("scripted failure of attempt 3é"));
    assert!(error.message.ends_with("é…"), "{}", error.message);
    assert_eq!(
        event_names(&rt, id)
            .iter()
            .filter(|n| **n == "step_failed")
            .count(),
        3
    );
    assert_still_serving(&rt, session).await;

    // The default limit, 4 KiB, on a log that could take far more.
    let (_, _, rt, session) = on_acme().await;
    let huge = json!({"fail_attempts": 1, "permanent": true, "message_bytes": 1_000_000});
    let execution = run_to_end(&rt, scripted("acme", session, json!([huge]))).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    let message = execution.error.unwrap().message;
    assert!((4000..=4096).contains(&message.len()), "{}", message.len());
}

// Callers that stopped waiting for a long saga's end are let go when the next one waits, so
// polling with a short `wait_ms` holds one waiter, not one per poll.
#[tokio::test]
async fn waiters_that_gave_up_do_not_pile_up() {
    let (_, _, rt, session) = on_acme().await;
    // Eight steps whose first two attempts each hang to the 40 ms timeout: about a second.
    let slow = json!({"hang_attempts": 2});
    let id = rt
        .submit_intent(scripted("acme", session, json!(vec![slow; 8])))
        .await
        .unwrap()
        .execution_id;
    // Forty callers that give up at once (a wait of zero polls once and leaves).
    for _ in 0..40 {
        let done = rt.wait_finished("acme", id, Duration::ZERO).await.unwrap();
        assert!(!done, "the saga ended too soon for this test");
    }
    assert!(rt.result_waiters() <= 1, "{}", rt.result_waiters());
    let waiting = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.wait_finished("acme", id, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(rt.result_waiters(), 1);
    assert!(waiting.await.unwrap().unwrap());
    assert_eq!(rt.result_waiters(), 0);
}

// A step that panics fails for good with `step_panicked`; its saga compensates and ends, and
// the runtime goes on.
#[tokio::test]
async fn a_panicking_step_fails_its_saga_and_nothing_else() {
    let (_, probe, rt, session) = on_acme().await;
    let panics = json!([{}, {"panics": true}, {}]);
    let execution = run_to_end(&rt, scripted("acme", session, panics)).await;
    assert_eq!(execution.status, ExecutionStatus::Compensated);
    let id = execution.execution_id;
    let error = execution.error.as_ref().unwrap();
    assert_eq!(error.code, "step_panicked");
    assert!(
        error.message.contains("scripted panic of attempt 1"),
        "{error:?}"
    );
    // Permanent: one attempt, then the first step is compensated.
    assert_eq!(
        probe.calls_of(id),
        vec![(0, 1, "execute"), (1, 1, "execute"), (0, 1, "compensate")]
    );
    assert_still_serving(&rt, session).await;
}

/// `test.gathering`: `runtime.echo`'s steps, with a result that gathers every step's output.
#[derive(Debug)]
struct Gathering;

impl symphainy_engine::saga::CapabilityHandler for Gathering {
    fn spec(&self) -> symphainy_engine::event::CapabilitySpec {
        let mut spec = symphainy_engine::builtin::Echo.spec();
        spec.name = "test.gathering".into();
        spec.realm = "test".into();
        spec.intent_types = vec!["test.gathering".into()];
        spec
    }
    fn plan(&self, payload: &serde_json::Value) -> Result<u32, String> {
        symphainy_engine::builtin::Echo.plan(payload)
    }
    fn step(&self, index: usize) -> Option<Arc<dyn symphainy_engine::saga::SagaStep>> {
        symphainy_engine::builtin::Echo.step(index)
    }
    fn result(&self, outputs: &[&str]) -> String {
        format!("[{}]", outputs.join(","))
    }
}

// A saga whose result is too large for the log ends failed (`result_too_large`) instead of
// being left undriven; a result that fits completes.
#[tokio::test]
async fn a_result_too_large_for_the_log_fails_its_saga() {
    let fs = MemFs::new();
    let config = symphainy_wal::Config {
        record_bytes_max: 1024 + symphainy_engine::runtime::EVENT_ENVELOPE_BYTES_MAX as u32,
        ..wal_config()
    };
    let wal = Arc::new(symphainy_wal::Wal::open_with(Arc::new(fs.clone()), dir(), config).unwrap());
    let mut registry = symphainy_engine::saga::Registry::default();
    registry
        .register(Arc::new(symphainy_engine::builtin::Echo))
        .unwrap();
    registry.register(Arc::new(Gathering)).unwrap();
    let rt = symphainy_engine::Runtime::start(
        wal,
        Arc::new(registry),
        Arc::new(symphainy_engine::id::SystemClock),
        Arc::new(symphainy_engine::id::UlidSource::default()),
        symphainy_engine::RuntimeConfig::default(),
    )
    .await
    .unwrap();
    let session = tenant_with_session(&rt, "acme").await;
    let gathering = |value: &str, steps: u32| symphainy_engine::SubmitIntent {
        intent_type: "test.gathering".into(),
        ..echo("acme", session, json!(value), steps)
    };
    // Three outputs of about 900 bytes each: 2.7 KB gathered, more than a record holds.
    let big = run_to_end(&rt, gathering(&"x".repeat(900), 3)).await;
    assert_eq!(big.status, ExecutionStatus::Failed);
    let error = big.error.unwrap();
    assert_eq!(error.code, "result_too_large", "{error:?}");
    assert!(error.message.contains("1024"), "{error:?}");
    assert!(big.steps.iter().all(|s| s.status == StepStatus::Completed));
    let small = run_to_end(&rt, gathering("y", 3)).await;
    assert_eq!(small.status, ExecutionStatus::Completed);
    assert_still_serving(&rt, session).await;
}
