//! A realm for tests (never registered by the server): `test.scripted`, whose steps fail,
//! time out, succeed or refuse compensation exactly as the intent's payload says, and record
//! what they did in a [`Probe`] so tests can assert what ran, in which order, how often.
//! Its outputs depend only on the payload and the attempt number, so it is deterministic.
//!
//! Payload: `{"steps": [{"fail_attempts": n, "hang_attempts": n, "permanent": bool,
//! "compensation_fails": bool, "message_bytes": n, "panics": bool}, ...]}` (1 to 8 steps). A
//! step that `panics` panics on every attempt. Attempt `a` of a
//! step hangs past its timeout while `a <= hang_attempts`, then fails while
//! `a <= hang_attempts + fail_attempts` (retryable unless `permanent`; the failure's message is
//! padded with `é` to at least `message_bytes` bytes, at most `SCRIPTED_MESSAGE_BYTES_MAX`),
//! then succeeds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::codec;
use crate::event::EventBody;
use crate::event::{CapabilitySpec, StepSpec};
use crate::id::Id;
use crate::saga::{CapabilityHandler, SagaStep, StepError, StepFuture, StepInput};

/// Steps of `test.scripted`.
pub const SCRIPTED_STEPS_MAX: usize = 8;
/// Attempts per step.
pub const SCRIPTED_MAX_ATTEMPTS: u32 = 3;
/// Per-attempt timeout.
pub const SCRIPTED_TIMEOUT_MS: u64 = 40;
/// Longest failure message a script may ask for.
pub const SCRIPTED_MESSAGE_BYTES_MAX: usize = 16 << 20;

/// What the scripted steps did: (execution, step, attempt, action).
#[derive(Debug, Default)]
pub struct Probe {
    calls: Mutex<Vec<(Id, u32, u32, &'static str)>>,
}

impl Probe {
    fn push(&self, call: (Id, u32, u32, &'static str)) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<(Id, u32, u32, &'static str)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls for one execution.
    pub fn calls_of(&self, id: Id) -> Vec<(u32, u32, &'static str)> {
        self.calls()
            .into_iter()
            .filter(|c| c.0 == id)
            .map(|c| (c.1, c.2, c.3))
            .collect()
    }
}

/// The `test.scripted` capability.
#[derive(Debug, Default)]
pub struct Scripted {
    pub probe: Arc<Probe>,
}

#[derive(Debug)]
struct ScriptedStep {
    probe: Arc<Probe>,
}

fn script(input: &StepInput) -> Value {
    let payload: Value = serde_json::from_str(&input.payload_json).unwrap_or(Value::Null);
    payload["steps"][input.step_index as usize].clone()
}

fn number(v: &Value, key: &str) -> u32 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0) as u32
}

impl SagaStep for ScriptedStep {
    fn execute(&self, input: StepInput) -> StepFuture<String> {
        let probe = self.probe.clone();
        Box::pin(async move {
            let script = script(&input);
            let (hang, fail) = (
                number(&script, "hang_attempts"),
                number(&script, "fail_attempts"),
            );
            let call = (
                input.execution_id,
                input.step_index,
                input.attempt,
                "execute",
            );
            probe.push(call);
            // A defect in a step, on purpose: the runtime must turn it into the step's failure.
            #[allow(clippy::panic)]
            if script.get("panics").and_then(Value::as_bool) == Some(true) {
                panic!("scripted panic of attempt {}", input.attempt);
            }
            if input.attempt <= hang {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if input.attempt <= hang + fail {
                let permanent = script
                    .get("permanent")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut message = format!("scripted failure of attempt {}", input.attempt);
                let wanted =
                    (number(&script, "message_bytes") as usize).min(SCRIPTED_MESSAGE_BYTES_MAX);
                while message.len() < wanted {
                    message.push('é');
                }
                return Err(if permanent {
                    StepError::permanent("scripted_failure", message)
                } else {
                    StepError::retryable("scripted_failure", message)
                });
            }
            Ok(json!({
                "step": input.step_index,
                "attempt": input.attempt,
                "input": input.previous_output_json.as_deref().unwrap_or("start"),
            })
            .to_string())
        })
    }

    fn compensate(&self, input: StepInput, _output_json: Arc<str>) -> StepFuture<()> {
        let probe = self.probe.clone();
        Box::pin(async move {
            probe.push((
                input.execution_id,
                input.step_index,
                input.attempt,
                "compensate",
            ));
            if script(&input)
                .get("compensation_fails")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                return Err(StepError::retryable(
                    "scripted_compensation_failure",
                    "cannot undo",
                ));
            }
            Ok(())
        })
    }
}

impl CapabilityHandler for Scripted {
    fn spec(&self) -> CapabilitySpec {
        CapabilitySpec {
            name: "test.scripted".into(),
            realm: "test".into(),
            version: 1,
            intent_types: vec!["test.scripted".into()],
            inputs: vec!["steps".into()],
            outputs: vec!["step".into(), "attempt".into(), "input".into()],
            deterministic: true,
            steps: (1..=SCRIPTED_STEPS_MAX)
                .map(|i| StepSpec {
                    name: format!("scripted_{i}"),
                    deterministic: true,
                    max_attempts: SCRIPTED_MAX_ATTEMPTS,
                    timeout_ms: SCRIPTED_TIMEOUT_MS,
                    backoff_base_ms: 5,
                })
                .collect(),
        }
    }

    fn plan(&self, payload: &Value) -> Result<u32, String> {
        match payload.get("steps").and_then(Value::as_array) {
            Some(steps) if (1..=SCRIPTED_STEPS_MAX).contains(&steps.len()) => {
                Ok(steps.len() as u32)
            }
            _ => Err(format!(
                "payload.steps must list 1 to {SCRIPTED_STEPS_MAX} step scripts"
            )),
        }
    }

    fn step(&self, index: usize) -> Option<Arc<dyn SagaStep>> {
        (index < SCRIPTED_STEPS_MAX).then(|| {
            Arc::new(ScriptedStep {
                probe: self.probe.clone(),
            }) as Arc<dyn SagaStep>
        })
    }
}

/// `test.unstable`: a capability that *claims* to be deterministic but is not (its output
/// includes the clock's nanoseconds and a counter), so `replay-tool check-determinism` has
/// something to catch.
#[derive(Debug, Default)]
pub struct Unstable {
    counter: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
struct UnstableStep {
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl SagaStep for UnstableStep {
    fn execute(&self, _input: StepInput) -> StepFuture<String> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Box::pin(async move { Ok(json!({ "n": n, "nanos": nanos }).to_string()) })
    }
}

impl CapabilityHandler for Unstable {
    fn spec(&self) -> CapabilitySpec {
        CapabilitySpec {
            name: "test.unstable".into(),
            realm: "test".into(),
            version: 1,
            intent_types: vec!["test.unstable".into()],
            inputs: Vec::new(),
            outputs: vec!["n".into()],
            deterministic: true,
            steps: vec![StepSpec {
                name: "unstable_1".into(),
                deterministic: true,
                max_attempts: 1,
                timeout_ms: 1000,
                backoff_base_ms: 1,
            }],
        }
    }

    fn step(&self, index: usize) -> Option<Arc<dyn SagaStep>> {
        (index == 0).then(|| {
            Arc::new(UnstableStep {
                counter: self.counter.clone(),
            }) as Arc<dyn SagaStep>
        })
    }
}

/// The default registry plus this module's test capabilities.
pub fn registry_with_test_realm(probe: Arc<Probe>) -> crate::Result<crate::saga::Registry> {
    let mut registry = crate::default_registry()?;
    registry.register(Arc::new(Scripted { probe }))?;
    registry.register(Arc::new(Unstable::default()))?;
    Ok(registry)
}

fn event(tenant: &str, ts: i64, body: crate::event::EventBody) -> crate::event::Event {
    crate::event::Event {
        tenant_id: tenant.to_string(),
        timestamp_ms: ts,
        body,
    }
}

/// An empty record; encoding these synthetic events cannot fail, this only satisfies types.
fn unreachable_record() -> symphainy_wal::Record {
    symphainy_wal::Record {
        meta: symphainy_wal::RecordMeta::default(),
        payload: Vec::new(),
    }
}

/// A realistic workload (3-step executions over 1,000 sessions of one tenant) produced as
/// encoded records, for benchmarks: the header (capabilities, tenant, sessions), then one
/// execution (8 events) per call of [`Synthetic::next_execution`].
#[derive(Debug, Default)]
pub struct Synthetic {
    n: u128,
}

impl Synthetic {
    const TS: i64 = 1_700_000_000_000;

    /// Capabilities, the tenant `acme` and its 1,000 sessions.
    pub fn header(&self) -> Vec<symphainy_wal::Record> {
        let mut out = Vec::new();
        let encode =
            |e: crate::event::Event| codec::encode(&e).unwrap_or_else(|_| unreachable_record());
        if let Ok(registry) = crate::builtin_registry() {
            for spec in registry.capabilities() {
                let body = EventBody::CapabilityRegistered { spec: spec.clone() };
                out.push(encode(event("_system", Self::TS, body)));
            }
        }
        out.push(encode(event("acme", Self::TS, EventBody::TenantCreated)));
        for s in 0..1000u128 {
            let body = EventBody::SessionCreated {
                session_id: Id(s + 1),
                user_id: "alice".into(),
                context_json: "{}".into(),
            };
            out.push(encode(event("acme", Self::TS, body)));
        }
        out
    }

    /// The 8 events of the next execution, appended to `out`.
    pub fn next_execution(&mut self, out: &mut Vec<symphainy_wal::Record>) {
        self.n += 1;
        let n = self.n;
        let execution_id = Id((1u128 << 64) + n);
        let t = Self::TS + n as i64;
        let mut push = |body: EventBody| {
            out.push(
                codec::encode(&event("acme", t, body)).unwrap_or_else(|_| unreachable_record()),
            )
        };
        push(EventBody::IntentReceived {
            session_id: Id(n % 1000 + 1),
            intent_id: Id((2u128 << 64) + n),
            execution_id,
            intent_type: "runtime.echo".into(),
            realm: "runtime".into(),
            payload_json: format!("{{\"value\":{n},\"steps\":3}}"),
            idempotency_key: None,
        });
        push(EventBody::SagaStarted {
            execution_id,
            capability: "runtime.echo".into(),
            capability_version: 1,
            step_count: 3,
        });
        for step in 0..3 {
            push(EventBody::StepStarted {
                execution_id,
                step_index: step,
                attempt: 1,
            });
            push(EventBody::StepCompleted {
                execution_id,
                step_index: step,
                attempt: 1,
                output_json: format!("{{\"value\":{n}}}"),
                duration_ms: 0,
            });
        }
        push(EventBody::SagaCompleted {
            execution_id,
            result_json: format!("{{\"value\":{n}}}"),
        });
    }
}

/// Appends a realistic workload of about `target` events ([`Synthetic`]) straight to the
/// log, for benchmarks. Returns how many it wrote.
pub fn synthetic_log(wal: &symphainy_wal::Wal, target: u64) -> u64 {
    let mut workload = Synthetic::default();
    let mut batch = workload.header();
    let mut written = 0u64;
    let flush = |batch: &mut Vec<symphainy_wal::Record>, written: &mut u64| {
        if !batch.is_empty() {
            *written += batch.len() as u64;
            if let Err(e) = wal.append_blocking(std::mem::take(batch)) {
                tracing::error!(error = %e, "synthetic log append failed");
            }
        }
    };
    while written + (batch.len() as u64) < target {
        workload.next_execution(&mut batch);
        if batch.len() >= 18_000 {
            flush(&mut batch, &mut written);
        }
    }
    flush(&mut batch, &mut written);
    written
}

/// A one-page PDF showing `lines` in Helvetica, with a correct cross-reference table.
pub fn minimal_pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
    for l in lines {
        content.push_str(&format!("({l}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}
