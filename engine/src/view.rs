//! The contract's JSON shapes of engine objects (CONTRACT sections 4 and 5): sessions,
//! execution status, capabilities and WAL events. The server and `replay-tool dump` both use
//! these, so the API and the offline tool show the same thing.

use serde_json::{Value, json};
use symphainy_wal::Lsn;

use crate::event::{CapabilitySpec, Event, EventBody};
use crate::id::{Id, rfc3339};
use crate::state::{Execution, Session, State};

/// User JSON stored as a string, parsed back (a string that is not JSON is shown as a string).
fn raw(json_text: &str) -> Value {
    serde_json::from_str(json_text).unwrap_or_else(|_| Value::String(json_text.to_string()))
}

/// A typed view as a `Value`. The views are defined once, by their typed forms below; this
/// gives the tree for callers that add fields or compare documents. Serializing plain
/// structs and strings cannot fail.
fn tree(view: impl serde::Serialize) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// A session as the API shows it.
pub fn session(s: &Session) -> Value {
    tree(session_text(s))
}

/// An execution's status as the API shows it.
pub fn execution_status(state: &State, e: &Execution) -> Value {
    tree(execution_text(state, e, false))
}

/// [`execution_status`] in its typed form, for writing it in another format without building
/// the tree (the graph view's vertices).
pub fn execution_status_view<'a>(state: &'a State, e: &'a Execution) -> impl serde::Serialize + 'a {
    execution_text(state, e, false)
}

/// [`session`] in its typed form.
pub fn session_view(s: &Session) -> impl serde::Serialize + '_ {
    session_text(s)
}

/// The execution's full record: its status plus the payload, the steps' recorded outputs and
/// errors, idempotency key and compensation point.
pub fn execution_record(state: &State, e: &Execution) -> Value {
    tree(execution_text(state, e, true))
}

/// Fields [`execution_record`] adds to [`execution_status`], at the top and in each step.
const RECORD_ONLY_FIELDS: [&str; 4] = [
    "realm",
    "payload",
    "idempotency_key",
    "compensating_from_step",
];
const RECORD_ONLY_STEP_FIELDS: [&str; 3] = ["output", "error", "retryable"];

/// The execution status contained in an execution record (what a store holding only records
/// answers the status endpoint with); equals [`execution_status`] of the same execution.
pub fn status_of_record(mut record: Value) -> Value {
    if let Some(top) = record.as_object_mut() {
        for field in RECORD_ONLY_FIELDS {
            top.remove(field);
        }
    }
    if let Some(steps) = record.get_mut("steps").and_then(Value::as_array_mut) {
        for step in steps.iter_mut().filter_map(Value::as_object_mut) {
            for field in RECORD_ONLY_STEP_FIELDS {
                step.remove(field);
            }
        }
    }
    record
}

/// User JSON stored as a string, written back as JSON without building a tree: valid JSON
/// verbatim, anything else as a JSON string (what [`raw`] gives, once parsed).
struct RawText<'a>(&'a str);

impl serde::Serialize for RawText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&serde_json::value::RawValue>(self.0) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_str(self.0),
        }
    }
}

#[derive(serde::Serialize)]
struct StepErrorText<'a> {
    code: &'a str,
    message: &'a str,
}

/// Present only in a record (`Some`), absent from a status (`None`); the inner value may be
/// null.
type RecordOnly<T> = Option<T>;

#[derive(serde::Serialize)]
struct StepText<'a> {
    name: std::borrow::Cow<'a, str>,
    status: &'static str,
    attempts: u32,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: RecordOnly<Option<RawText<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: RecordOnly<Option<StepErrorText<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retryable: RecordOnly<bool>,
}

#[derive(serde::Serialize)]
struct ExecutionErrorText<'a> {
    code: &'a str,
    message: &'a str,
    step: &'a Option<String>,
}

#[derive(serde::Serialize)]
struct ExecutionText<'a> {
    execution_id: String,
    intent_id: String,
    session_id: String,
    tenant_id: &'a str,
    intent_type: &'a str,
    capability: &'a str,
    capability_version: u32,
    status: &'static str,
    steps: Vec<StepText<'a>>,
    submitted_at: String,
    finished_at: Option<String>,
    lsn: Lsn,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<RawText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ExecutionErrorText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    realm: RecordOnly<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: RecordOnly<RawText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: RecordOnly<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compensating_from_step: RecordOnly<Option<u32>>,
}

/// The typed form of [`execution_status`] (`record` false) or [`execution_record`] (true).
fn execution_text<'a>(state: &'a State, e: &'a Execution, record: bool) -> ExecutionText<'a> {
    let spec = state.capability(&e.capability, e.capability_version);
    let steps = e
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepText {
            name: spec.and_then(|c| c.steps.get(i)).map_or_else(
                || format!("step_{}", i + 1).into(),
                |st| st.name.as_str().into(),
            ),
            status: s.status.name(),
            attempts: s.attempts,
            started_at: s.started_at_ms.get().map(rfc3339),
            finished_at: s.finished_at_ms.get().map(rfc3339),
            duration_ms: s.duration_ms.get(),
            output: record.then(|| s.output_json.as_deref().map(RawText)),
            error: record.then(|| {
                s.error
                    .as_deref()
                    .map(|(code, message)| StepErrorText { code, message })
            }),
            retryable: record.then_some(s.retryable),
        })
        .collect();
    ExecutionText {
        execution_id: e.execution_id.to_string(),
        intent_id: e.intent_id.to_string(),
        session_id: e.session_id.to_string(),
        tenant_id: &e.tenant_id,
        intent_type: &e.intent_type,
        capability: &e.capability,
        capability_version: e.capability_version,
        status: e.status.name(),
        steps,
        submitted_at: rfc3339(e.submitted_at_ms),
        finished_at: e.finished_at_ms.get().map(rfc3339),
        lsn: e.intent_lsn,
        result: e.result_json.as_deref().map(RawText),
        error: e.error.as_ref().map(|x| ExecutionErrorText {
            code: &x.code,
            message: &x.message,
            step: &x.step,
        }),
        realm: record.then_some(&*e.realm),
        payload: record.then_some(RawText(&e.payload_json)),
        idempotency_key: record.then_some(e.idempotency_key.as_deref()),
        compensating_from_step: record.then_some(e.compensating_from),
    }
}

/// [`execution_record`] rendered straight to JSON text (what the state surface stores),
/// without building a `Value` first.
pub fn execution_record_json(state: &State, e: &Execution) -> String {
    // Serializing plain structs and strings into a String cannot fail.
    serde_json::to_string(&execution_text(state, e, true)).unwrap_or_default()
}

/// [`execution_status`] rendered straight to JSON text (the API's answers).
pub fn execution_status_json(state: &State, e: &Execution) -> String {
    serde_json::to_string(&execution_text(state, e, false)).unwrap_or_default()
}

#[derive(serde::Serialize)]
struct SessionText<'a> {
    session_id: String,
    tenant_id: &'a str,
    user_id: &'a str,
    created_at: String,
    status: &'static str,
    closed_at: Option<String>,
    context: RawText<'a>,
    active_sagas: Vec<String>,
}

/// [`session`] rendered straight to JSON text.
pub fn session_json(s: &Session) -> String {
    serde_json::to_string(&session_text(s)).unwrap_or_default()
}

fn session_text(s: &Session) -> SessionText<'_> {
    SessionText {
        session_id: s.session_id.to_string(),
        tenant_id: &s.tenant_id,
        user_id: &s.user_id,
        created_at: rfc3339(s.created_at_ms),
        status: if s.closed_at_ms.is_some() {
            "closed"
        } else {
            "open"
        },
        closed_at: s.closed_at_ms.map(rfc3339),
        context: RawText(&s.context_json),
        active_sagas: s.active_sagas.iter().map(|id| id.to_string()).collect(),
    }
}

/// A capability as the API shows it.
pub fn capability(spec: &CapabilitySpec) -> Value {
    json!({
        "name": spec.name,
        "realm": spec.realm,
        "version": spec.version,
        "intent_types": spec.intent_types,
        "inputs": spec.inputs,
        "outputs": spec.outputs,
        "deterministic": spec.deterministic,
        "steps": spec.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    })
}

/// The event-specific fields of a WAL event.
pub fn event_data(body: &EventBody) -> Value {
    let id = |i: &Id| i.to_string();
    match body {
        EventBody::TenantCreated => json!({}),
        EventBody::TokenIssued {
            token_id,
            user_id,
            expires_at_ms,
        } => {
            json!({"token_id": id(token_id), "user_id": user_id, "expires_at": rfc3339(*expires_at_ms)})
        }
        EventBody::TokenRevoked { token_id } => json!({"token_id": id(token_id)}),
        EventBody::SessionCreated {
            user_id,
            context_json,
            ..
        } => json!({"user_id": user_id, "context": raw(context_json)}),
        EventBody::SessionClosed { .. } => json!({}),
        EventBody::CapabilityRegistered { spec } => capability(spec),
        EventBody::IntentReceived {
            intent_id,
            intent_type,
            realm,
            payload_json,
            idempotency_key,
            ..
        } => json!({
            "intent_id": id(intent_id), "intent_type": intent_type, "realm": realm,
            "payload": raw(payload_json), "idempotency_key": idempotency_key,
        }),
        EventBody::SagaStarted {
            capability,
            capability_version,
            step_count,
            ..
        } => {
            json!({"capability": capability, "capability_version": capability_version, "step_count": step_count})
        }
        EventBody::StepStarted {
            step_index,
            attempt,
            ..
        } => json!({"step_index": step_index, "attempt": attempt}),
        EventBody::StepCompleted {
            step_index,
            attempt,
            output_json,
            duration_ms,
            ..
        } => json!({
            "step_index": step_index, "attempt": attempt, "output": raw(output_json), "duration_ms": duration_ms,
        }),
        EventBody::StepFailed {
            step_index,
            attempt,
            code,
            message,
            retryable,
            duration_ms,
            ..
        } => json!({
            "step_index": step_index, "attempt": attempt, "code": code, "message": message,
            "retryable": retryable, "duration_ms": duration_ms,
        }),
        EventBody::StepRetryScheduled {
            step_index,
            next_attempt,
            delay_ms,
            ..
        } => {
            json!({"step_index": step_index, "next_attempt": next_attempt, "delay_ms": delay_ms})
        }
        EventBody::CompensationStarted {
            failed_step_index, ..
        } => json!({"failed_step_index": failed_step_index}),
        EventBody::StepCompensated {
            step_index,
            duration_ms,
            ..
        } => json!({"step_index": step_index, "duration_ms": duration_ms}),
        EventBody::SagaCompleted { result_json, .. } => json!({"result": raw(result_json)}),
        EventBody::SagaFailed {
            code,
            message,
            step,
            ..
        }
        | EventBody::SagaCompensated {
            code,
            message,
            step,
            ..
        } => {
            json!({"code": code, "message": message, "step": step})
        }
    }
}

/// A WAL event as the API and `replay-tool dump` show it. `session_id` is the event's own
/// session or, for saga events, the session of its execution.
pub fn wal_event(lsn: Lsn, event: &Event, session_id: Option<Id>) -> Value {
    let mut out = json!({
        "lsn": lsn,
        "event_type": event.body.event_type().name(),
        "tenant_id": event.tenant_id,
        "timestamp": rfc3339(event.timestamp_ms),
        "data": event_data(&event.body),
    });
    if let Some(session) = event.body.session_id().or(session_id) {
        out["session_id"] = json!(session.to_string());
    }
    if let Some(execution) = event.body.execution_id() {
        out["execution_id"] = json!(execution.to_string());
    }
    out
}

/// Tracks which session each execution belongs to while scanning the log, so saga events can
/// be attributed to their session without the live state.
#[derive(Debug, Default)]
pub struct SessionIndex {
    executions: crate::id::IdMap<Id>,
    /// Whether an execution is forgotten at the end of its saga.
    forget_finished: bool,
}

impl SessionIndex {
    /// An index for a reader that follows the log for as long as its client stays (a
    /// WebSocket subscription): it forgets each execution at the event that ends its saga,
    /// so it holds the executions in flight, not every one the reader ever saw. Events the
    /// runtime appends for an execution all precede its end; a reader that may meet a stray
    /// one after it looks the execution up elsewhere (the live state).
    pub fn following() -> Self {
        Self {
            executions: crate::id::IdMap::default(),
            forget_finished: true,
        }
    }

    /// Learns from an event; returns the session it belongs to, if any.
    pub fn observe(&mut self, event: &Event) -> Option<Id> {
        if let EventBody::IntentReceived {
            execution_id,
            session_id,
            ..
        } = &event.body
        {
            self.executions.insert(*execution_id, *session_id);
        }
        if let Some(session) = event.body.session_id() {
            return Some(session);
        }
        let execution = event.body.execution_id()?;
        let ends = matches!(
            event.body,
            EventBody::SagaCompleted { .. }
                | EventBody::SagaFailed { .. }
                | EventBody::SagaCompensated { .. }
        );
        if ends && self.forget_finished {
            self.executions.remove(&execution)
        } else {
            self.executions.get(&execution).copied()
        }
    }

    /// Executions the index holds.
    pub fn len(&self) -> usize {
        self.executions.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.executions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventBody};

    fn at(state: &mut State, lsn: Lsn, tenant: &str, body: EventBody) {
        let event = Event {
            tenant_id: tenant.into(),
            timestamp_ms: 1_700_000_000_000 + lsn as i64,
            body,
        };
        state.apply(lsn, event);
    }

    // The status a record-only store derives equals the status rendered from the state, for
    // an execution with outputs, a failure and an idempotency key.
    #[test]
    fn status_of_record_equals_status() {
        let mut state = State::default();
        let registry = crate::builtin_registry().unwrap();
        let spec = registry.capabilities().next().unwrap().clone();
        let (session_id, execution_id) = (Id(1), Id(2));
        at(
            &mut state,
            1,
            "_system",
            EventBody::CapabilityRegistered { spec: spec.clone() },
        );
        at(&mut state, 2, "acme", EventBody::TenantCreated);
        let session = EventBody::SessionCreated {
            session_id,
            user_id: "u".into(),
            context_json: "{}".into(),
        };
        at(&mut state, 3, "acme", session);
        let intent = EventBody::IntentReceived {
            session_id,
            intent_id: Id(3),
            execution_id,
            intent_type: spec.intent_types[0].clone(),
            realm: spec.realm.clone(),
            payload_json: r#"{"value":1,"steps":2}"#.into(),
            idempotency_key: Some("k".into()),
        };
        at(&mut state, 4, "acme", intent);
        let started = EventBody::SagaStarted {
            execution_id,
            capability: spec.name.clone(),
            capability_version: spec.version,
            step_count: 2,
        };
        at(&mut state, 5, "acme", started);
        at(
            &mut state,
            6,
            "acme",
            EventBody::StepStarted {
                execution_id,
                step_index: 0,
                attempt: 1,
            },
        );
        let done = EventBody::StepCompleted {
            execution_id,
            step_index: 0,
            attempt: 1,
            output_json: r#"{"value":1}"#.into(),
            duration_ms: 3,
        };
        at(&mut state, 7, "acme", done);
        at(
            &mut state,
            8,
            "acme",
            EventBody::StepStarted {
                execution_id,
                step_index: 1,
                attempt: 1,
            },
        );
        let failed = EventBody::StepFailed {
            execution_id,
            step_index: 1,
            attempt: 1,
            code: "boom".into(),
            message: "it broke".into(),
            retryable: true,
            duration_ms: 1,
        };
        at(&mut state, 9, "acme", failed);
        let e = state.execution_of("acme", execution_id).unwrap();
        let record = execution_record(&state, e);
        assert_ne!(record, execution_status(&state, e));
        assert_eq!(
            status_of_record(record.clone()),
            execution_status(&state, e)
        );
        // The text renderings parse back to the same documents.
        let text: Value = serde_json::from_str(&execution_record_json(&state, e)).unwrap();
        assert_eq!(text, record);
        let text: Value = serde_json::from_str(&execution_status_json(&state, e)).unwrap();
        assert_eq!(text, execution_status(&state, e));
        let session = state.session_of("acme", session_id).unwrap();
        let text: Value = serde_json::from_str(&session_json(session)).unwrap();
        assert_eq!(text, super::session(session));
        // The session knows where the log starts holding it.
        assert_eq!(session.created_lsn, 3);
    }

    // Both indexes attribute every event to its session; the following one holds only the
    // executions still in flight, whichever way their sagas ended.
    #[test]
    fn a_following_index_forgets_finished_executions() {
        let event = |body| Event {
            tenant_id: "acme".into(),
            timestamp_ms: 1,
            body,
        };
        let (a, b) = (Id(1), Id(2));
        let mut log = Vec::new();
        for (n, (session, end)) in [(a, 0), (b, 1), (a, 2), (b, 3)].into_iter().enumerate() {
            let execution_id = Id(10 + n as u128);
            log.push((
                session,
                event(EventBody::IntentReceived {
                    session_id: session,
                    intent_id: Id(100 + n as u128),
                    execution_id,
                    intent_type: "runtime.echo".into(),
                    realm: "runtime".into(),
                    payload_json: "{}".into(),
                    idempotency_key: None,
                }),
            ));
            let (code, message, step) = ("boom".to_string(), "it broke".to_string(), None);
            let ending = match end {
                0 => EventBody::SagaCompleted {
                    execution_id,
                    result_json: "{}".into(),
                },
                1 => EventBody::SagaFailed {
                    execution_id,
                    code,
                    message,
                    step,
                },
                2 => EventBody::SagaCompensated {
                    execution_id,
                    code,
                    message,
                    step,
                },
                // The last one is still running.
                _ => EventBody::StepStarted {
                    execution_id,
                    step_index: 0,
                    attempt: 1,
                },
            };
            log.push((session, event(ending)));
        }
        let mut following = SessionIndex::following();
        let mut keeping = SessionIndex::default();
        for (session, event) in &log {
            assert_eq!(following.observe(event), Some(*session), "{event:?}");
            assert_eq!(keeping.observe(event), Some(*session), "{event:?}");
        }
        assert_eq!(following.len(), 1, "only the execution in flight is held");
        assert_eq!(keeping.len(), 4);
        // An event naming an execution it forgot is not attributed by the index.
        assert_eq!(following.observe(&log[1].1), None);
    }
}
