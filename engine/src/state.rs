//! The engine's state and `apply`, the pure fold of the log.
//!
//! `apply` is total: an event that does not fit the state (unknown session, wrong tenant, a
//! step out of range...) changes nothing but `rejected_events`, so a damaged or hand-written
//! log can be replayed without a panic. It reads no clock, no randomness and does no I/O;
//! hash maps are only looked up here, never iterated (the digest sorts).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use symphainy_wal::Lsn;

use crate::event::{CapabilitySpec, Event, EventBody, SYSTEM_TENANT};
use crate::id::{Id, IdMap, OptDurationMs, OptMs, TimestampMs};

/// A tenant and what belongs to it directly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub created_at_ms: TimestampMs,
    pub tokens: BTreeMap<Id, Token>,
    /// Idempotency key -> execution id (scoped by tenant).
    pub idempotency: HashMap<String, Id>,
    pub sessions_open: u64,
    /// The tenant's executions by status (indexed by [`ExecutionStatus::index`]): kept as
    /// executions change, so metrics read them without scanning; derived, not in the digest.
    pub executions_by_status: [u64; ExecutionStatus::ALL.len()],
    /// The tenant's sessions (ids are time-ordered): an index for listing them newest first
    /// without scanning every session of the node; derived, not part of the digest.
    pub sessions: BTreeSet<Id>,
}

/// A token's recorded facts (its secret is never recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub user_id: String,
    pub issued_at_ms: TimestampMs,
    pub expires_at_ms: TimestampMs,
    pub revoked: bool,
}

/// A session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: Id,
    pub tenant_id: String,
    pub user_id: String,
    pub created_at_ms: TimestampMs,
    pub context_json: String,
    pub closed_at_ms: Option<TimestampMs>,
    /// Executions of this session that have not finished.
    pub active_sagas: BTreeSet<Id>,
    /// LSN of the `session_created` event: no event of the session comes before it, so a
    /// reader of the session's events starts there rather than at the log's start. Derived
    /// from the log, not part of the digest.
    pub created_lsn: Lsn,
}

/// Lifecycle of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    Accepted,
    Running,
    Completed,
    Failed,
    Compensated,
}

impl ExecutionStatus {
    /// Every status, in [`ExecutionStatus::index`] order.
    pub const ALL: [Self; 5] = [
        Self::Accepted,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Compensated,
    ];

    /// Position in [`ExecutionStatus::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Compensated => "compensated",
        }
    }

    /// Completed, failed or compensated.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Compensated)
    }
}

/// Lifecycle of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Compensated,
}

impl StepStatus {
    /// The contract's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Compensated => "compensated",
        }
    }
}

/// A step of an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at_ms: OptMs,
    pub finished_at_ms: OptMs,
    pub duration_ms: OptDurationMs,
    pub output_json: Option<Box<str>>,
    /// Code and message of the last failure (boxed: rare, and a step is kept for every
    /// execution ever run).
    pub error: Option<Box<(String, String)>>,
    /// Whether the last failure may be retried.
    pub retryable: bool,
    /// When a scheduled retry is due.
    pub retry_at_ms: OptMs,
}

impl StepState {
    fn pending() -> Self {
        Self {
            status: StepStatus::Pending,
            attempts: 0,
            started_at_ms: OptMs::NONE,
            finished_at_ms: OptMs::NONE,
            duration_ms: OptDurationMs::NONE,
            output_json: None,
            error: None,
            retryable: false,
            retry_at_ms: OptMs::NONE,
        }
    }
}

/// Why an execution ended badly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionError {
    pub code: String,
    pub message: String,
    pub step: Option<String>,
}

/// An execution (an intent and the saga that runs it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub execution_id: Id,
    pub intent_id: Id,
    pub session_id: Id,
    /// Tenant, intent type, realm and capability are shared by every execution that names
    /// them ([`Names`]).
    pub tenant_id: Arc<str>,
    pub intent_type: Arc<str>,
    pub realm: Arc<str>,
    pub payload_json: Box<str>,
    pub idempotency_key: Option<Box<str>>,
    /// LSN of the `intent_received` event.
    pub intent_lsn: Lsn,
    pub capability: Arc<str>,
    pub capability_version: u32,
    pub status: ExecutionStatus,
    /// Fixed when the saga starts (boxed slice: no spare capacity, 8 bytes less than a Vec).
    pub steps: Box<[StepState]>,
    /// Set once compensation began: the step that failed for good.
    pub compensating_from: Option<u32>,
    pub result_json: Option<Box<str>>,
    /// Boxed: rare, and an execution is kept for every intent ever run.
    pub error: Option<Box<ExecutionError>>,
    pub submitted_at_ms: TimestampMs,
    pub finished_at_ms: OptMs,
}

/// Interned names (tenants, intent types, realms, capabilities): every execution naming one
/// holds the same allocation. At most [`NAMES_MAX`] are kept; past that, names are allocated
/// per execution as before (correct, only larger).
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// The names handed out last, looked up before hashing: an execution names a tenant, an
    /// intent type, a realm and a capability, and a log repeats the same few.
    recent: [Option<Arc<str>>; NAMES_RECENT],
    next: usize,
    known: std::collections::HashSet<Arc<str>>,
}

/// Most names [`Names`] keeps.
pub const NAMES_MAX: usize = 65_536;

/// Names [`Names`] compares before hashing.
pub const NAMES_RECENT: usize = 4;

impl Names {
    /// The shared allocation of `name`.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(hit) = self.recent.iter().flatten().find(|n| ***n == *name) {
            return hit.clone();
        }
        let found = match self.known.get(name) {
            Some(known) => known.clone(),
            None => {
                let fresh: Arc<str> = Arc::from(name);
                if self.known.len() < NAMES_MAX {
                    self.known.insert(fresh.clone());
                }
                fresh
            }
        };
        self.recent[self.next] = Some(found.clone());
        self.next = (self.next + 1) % NAMES_RECENT;
        found
    }
}

/// A cache: two states are equal whatever names they happen to have interned.
impl PartialEq for Names {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Names {}

/// Everything the log says, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// LSN of the last applied event.
    pub last_lsn: Lsn,
    pub tenants: BTreeMap<String, Tenant>,
    pub sessions: IdMap<Session>,
    /// Boxed: an execution is large, and the table over-allocates while it grows.
    pub executions: IdMap<Box<Execution>>,
    /// Capability name -> version -> spec.
    pub capabilities: BTreeMap<String, BTreeMap<u32, CapabilitySpec>>,
    /// Events that did not fit the state and changed nothing else.
    pub rejected_events: u64,
    /// The names executions share (a cache: not serialized, not compared, not digested).
    #[serde(skip)]
    pub names: Names,
    /// Token id -> tenant: an index derived from the tenants' tokens (not part of the digest),
    /// so a token resolves without scanning every tenant.
    pub token_tenants: IdMap<String>,
}

impl State {
    /// The spec of a capability version.
    pub fn capability(&self, name: &str, version: u32) -> Option<&CapabilitySpec> {
        self.capabilities.get(name)?.get(&version)
    }

    /// The tenant and recorded facts of a token.
    pub fn token(&self, token_id: Id) -> Option<(&str, &Token)> {
        let tenant = self.token_tenants.get(&token_id)?;
        let token = self.tenants.get(tenant)?.tokens.get(&token_id)?;
        Some((tenant.as_str(), token))
    }

    /// A session, only if it belongs to `tenant_id`.
    pub fn session_of(&self, tenant_id: &str, session_id: Id) -> Option<&Session> {
        self.sessions
            .get(&session_id)
            .filter(|s| s.tenant_id == tenant_id)
    }

    /// An execution, only if it belongs to `tenant_id`.
    pub fn execution_of(&self, tenant_id: &str, execution_id: Id) -> Option<&Execution> {
        self.executions
            .get(&execution_id)
            .map(|e| e.as_ref())
            .filter(|e| *e.tenant_id == *tenant_id)
    }

    /// Makes executions share their names again (a decoded snapshot holds one copy each).
    pub fn intern_names(&mut self) {
        let names = &mut self.names;
        for e in self.executions.values_mut() {
            e.tenant_id = names.get(&e.tenant_id);
            e.intent_type = names.get(&e.intent_type);
            e.realm = names.get(&e.realm);
            e.capability = names.get(&e.capability);
        }
    }

    /// Applies one event at `lsn`, taking its strings. Never fails; see the module docs.
    pub fn apply(&mut self, lsn: Lsn, event: Event) {
        self.last_lsn = lsn;
        if !self.apply_body(event) {
            self.rejected_events += 1;
        }
    }

    fn apply_body(&mut self, event: Event) -> bool {
        let Event {
            tenant_id,
            timestamp_ms: at,
            body,
        } = event;
        let tenant = tenant_id.as_str();
        match body {
            EventBody::TenantCreated => {
                if tenant == SYSTEM_TENANT || self.tenants.contains_key(tenant) {
                    return false;
                }
                let fresh = Tenant {
                    created_at_ms: at,
                    ..Tenant::default()
                };
                self.tenants.insert(tenant_id, fresh);
                true
            }
            EventBody::TokenIssued {
                token_id,
                user_id,
                expires_at_ms,
            } => {
                if self.token_tenants.contains_key(&token_id) {
                    return false;
                }
                let Some(t) = self.tenants.get_mut(tenant) else {
                    return false;
                };
                let token = Token {
                    user_id,
                    issued_at_ms: at,
                    expires_at_ms,
                    revoked: false,
                };
                t.tokens.insert(token_id, token);
                self.token_tenants.insert(token_id, tenant_id);
                true
            }
            EventBody::TokenRevoked { token_id } => {
                let token = self
                    .tenants
                    .get_mut(tenant)
                    .and_then(|t| t.tokens.get_mut(&token_id));
                token.map(|token| token.revoked = true).is_some()
            }
            EventBody::SessionCreated {
                session_id,
                user_id,
                context_json,
            } => {
                if self.sessions.contains_key(&session_id) {
                    return false;
                }
                let Some(t) = self.tenants.get_mut(tenant) else {
                    return false;
                };
                t.sessions_open += 1;
                t.sessions.insert(session_id);
                let session = Session {
                    session_id,
                    tenant_id,
                    user_id,
                    created_at_ms: at,
                    context_json,
                    closed_at_ms: None,
                    active_sagas: BTreeSet::new(),
                    created_lsn: self.last_lsn,
                };
                self.sessions.insert(session_id, session);
                true
            }
            EventBody::SessionClosed { session_id } => {
                let Some(s) = self.sessions.get_mut(&session_id) else {
                    return false;
                };
                if s.tenant_id != tenant || s.closed_at_ms.is_some() {
                    return false;
                }
                s.closed_at_ms = Some(at);
                if let Some(t) = self.tenants.get_mut(tenant) {
                    t.sessions_open = t.sessions_open.saturating_sub(1);
                }
                true
            }
            EventBody::CapabilityRegistered { spec } => {
                if tenant != SYSTEM_TENANT {
                    return false;
                }
                let versions = self.capabilities.entry(spec.name.clone()).or_default();
                match versions.get(&spec.version) {
                    Some(existing) => existing == &spec,
                    None => {
                        versions.insert(spec.version, spec);
                        true
                    }
                }
            }
            EventBody::IntentReceived {
                session_id,
                intent_id,
                execution_id,
                intent_type,
                realm,
                payload_json,
                idempotency_key,
            } => {
                if self.executions.contains_key(&execution_id) {
                    return false;
                }
                let Some(session) = self.sessions.get_mut(&session_id) else {
                    return false;
                };
                if session.tenant_id != tenant || session.closed_at_ms.is_some() {
                    return false;
                }
                let Some(t) = self.tenants.get_mut(tenant) else {
                    return false;
                };
                if let Some(key) = &idempotency_key {
                    if t.idempotency.contains_key(key) {
                        return false;
                    }
                    t.idempotency.insert(key.clone(), execution_id);
                }
                session.active_sagas.insert(execution_id);
                t.executions_by_status[ExecutionStatus::Accepted.index()] += 1;
                let execution = Execution {
                    execution_id,
                    intent_id,
                    session_id,
                    tenant_id: self.names.get(tenant),
                    intent_type: self.names.get(&intent_type),
                    realm: self.names.get(&realm),
                    payload_json: payload_json.into_boxed_str(),
                    idempotency_key: idempotency_key.map(String::into_boxed_str),
                    intent_lsn: self.last_lsn,
                    capability: self.names.get(""),
                    capability_version: 0,
                    status: ExecutionStatus::Accepted,
                    steps: Box::default(),
                    compensating_from: None,
                    result_json: None,
                    error: None,
                    submitted_at_ms: at,
                    finished_at_ms: OptMs::NONE,
                };
                self.executions.insert(execution_id, Box::new(execution));
                true
            }
            EventBody::SagaStarted {
                execution_id,
                capability,
                capability_version,
                step_count,
            } => {
                let Some(n) = self
                    .capability(&capability, capability_version)
                    .map(|c| c.steps.len())
                else {
                    return false;
                };
                if step_count == 0 || step_count as usize > n {
                    return false;
                }
                let Some(e) = self.executions.get_mut(&execution_id) else {
                    return false;
                };
                if *e.tenant_id != *tenant
                    || e.status != ExecutionStatus::Accepted
                    || !e.capability.is_empty()
                {
                    return false;
                }
                e.capability = self.names.get(&capability);
                e.capability_version = capability_version;
                e.steps = vec![StepState::pending(); step_count as usize].into_boxed_slice();
                true
            }
            body => self.apply_saga(tenant, at, body),
        }
    }

    /// Step and saga transitions of an existing, unfinished execution.
    fn apply_saga(&mut self, tenant: &str, at: TimestampMs, body: EventBody) -> bool {
        let Some(id) = body.execution_id() else {
            return false;
        };
        let Some(e) = self.executions.get_mut(&id) else {
            return false;
        };
        if *e.tenant_id != *tenant || e.status.is_terminal() || e.capability.is_empty() {
            return false;
        }
        let before = e.status;
        let finished = match body {
            EventBody::StepStarted {
                step_index,
                attempt,
                ..
            } => {
                let Some(step) = e.steps.get_mut(step_index as usize) else {
                    return false;
                };
                if !matches!(step.status, StepStatus::Pending | StepStatus::Running)
                    || attempt != step.attempts + 1
                {
                    return false;
                }
                step.status = StepStatus::Running;
                step.attempts = attempt;
                step.retry_at_ms = OptMs::NONE;
                step.started_at_ms.set_if_none(at);
                e.status = ExecutionStatus::Running;
                false
            }
            EventBody::StepCompleted {
                step_index,
                attempt,
                output_json,
                duration_ms,
                ..
            } => {
                let Some(step) = e.steps.get_mut(step_index as usize) else {
                    return false;
                };
                if step.status != StepStatus::Running || step.attempts != attempt {
                    return false;
                }
                step.status = StepStatus::Completed;
                step.output_json = Some(output_json.into_boxed_str());
                step.error = None;
                step.finished_at_ms = OptMs::some(at);
                step.duration_ms = OptDurationMs::some(duration_ms);
                false
            }
            EventBody::StepFailed {
                step_index,
                attempt,
                code,
                message,
                retryable,
                duration_ms,
                ..
            } => {
                let Some(step) = e.steps.get_mut(step_index as usize) else {
                    return false;
                };
                if step.status != StepStatus::Running || step.attempts != attempt {
                    return false;
                }
                step.status = StepStatus::Failed;
                step.error = Some(Box::new((code, message)));
                step.retryable = retryable;
                step.finished_at_ms = OptMs::some(at);
                step.duration_ms = OptDurationMs::some(duration_ms);
                false
            }
            EventBody::StepRetryScheduled {
                step_index,
                next_attempt,
                delay_ms,
                ..
            } => {
                let Some(step) = e.steps.get_mut(step_index as usize) else {
                    return false;
                };
                if step.status != StepStatus::Failed || next_attempt != step.attempts + 1 {
                    return false;
                }
                step.status = StepStatus::Pending;
                step.retry_at_ms =
                    OptMs::some(at.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX)));
                false
            }
            EventBody::CompensationStarted {
                failed_step_index, ..
            } => {
                if e.compensating_from.is_some() || failed_step_index as usize >= e.steps.len() {
                    return false;
                }
                e.compensating_from = Some(failed_step_index);
                false
            }
            EventBody::StepCompensated { step_index, .. } => {
                let compensating = e.compensating_from.is_some();
                let Some(step) = e.steps.get_mut(step_index as usize) else {
                    return false;
                };
                if step.status != StepStatus::Completed || !compensating {
                    return false;
                }
                step.status = StepStatus::Compensated;
                false
            }
            EventBody::SagaCompleted { result_json, .. } => {
                e.status = ExecutionStatus::Completed;
                e.result_json = Some(result_json.into_boxed_str());
                true
            }
            EventBody::SagaFailed {
                code,
                message,
                step,
                ..
            } => {
                e.status = ExecutionStatus::Failed;
                e.error = Some(Box::new(ExecutionError {
                    code,
                    message,
                    step,
                }));
                true
            }
            EventBody::SagaCompensated {
                code,
                message,
                step,
                ..
            } => {
                e.status = ExecutionStatus::Compensated;
                e.error = Some(Box::new(ExecutionError {
                    code,
                    message,
                    step,
                }));
                true
            }
            _ => return false,
        };
        if e.status != before
            && let Some(t) = self.tenants.get_mut(tenant)
        {
            let counts = &mut t.executions_by_status;
            counts[before.index()] = counts[before.index()].saturating_sub(1);
            counts[e.status.index()] += 1;
        }
        if finished {
            e.finished_at_ms = OptMs::some(at);
            let session_id = e.session_id;
            if let Some(session) = self.sessions.get_mut(&session_id) {
                session.active_sagas.remove(&id);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The state keeps every execution ever run: these sizes are the memory budget per
    // execution (each fits the allocator's size class below the next one up: 224 and 64).
    #[test]
    fn entities_stay_compact() {
        assert!(std::mem::size_of::<Execution>() <= 224);
        assert!(std::mem::size_of::<StepState>() <= 64);
    }

    // A name handed out again is the same allocation, whether it is still among the recent
    // ones or only in the set.
    #[test]
    fn names_are_shared() {
        let mut names = Names::default();
        let first = names.get("acme");
        assert!(Arc::ptr_eq(&first, &names.get("acme")));
        for other in ["a", "b", "c", "d", "e", "f"] {
            names.get(other);
        }
        assert!(Arc::ptr_eq(&first, &names.get("acme")));
        assert_eq!(&*names.get("b"), "b");
    }

    use proptest::prelude::*;

    use crate::arbitrary::{Values, spec};

    /// Events over a handful of ids, tenants, names and steps, so that a random sequence
    /// reaches existing sessions and executions in every state (not only rejections).
    fn event() -> impl Strategy<Value = Event> {
        let small = prop_oneof![8 => 0u32..3, 1 => Just(3u32), 1 => Just(u32::MAX)];
        let values = Values {
            id: (0u128..4).prop_map(Id).boxed(),
            small: small.clone().boxed(),
            number: any::<u64>().boxed(),
            time: prop_oneof![Just(i64::MIN), Just(i64::MAX), 0i64..1_000].boxed(),
            text: prop_oneof![Just("t".to_string()), Just("cap".to_string()), "[a-z]{0,2}"].boxed(),
            spec: (small, 0usize..4)
                .prop_map(|(version, steps)| spec("cap", version, steps))
                .boxed(),
        };
        let tenant = prop_oneof![
            8 => Just("acme".to_string()),
            1 => Just("globex".to_string()),
            1 => Just(SYSTEM_TENANT.to_string()),
        ];
        (tenant, values.time.clone(), values.body()).prop_map(|(tenant_id, timestamp_ms, body)| {
            Event {
                tenant_id,
                timestamp_ms,
                body,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // `apply` is total: any sequence of events, fitting or not, folds without a panic, and
        // the views and digest of the result render (a hand-written or damaged log is audited
        // with the same code).
        #[test]
        fn apply_is_total_on_any_sequence(events in prop::collection::vec(event(), 0..200)) {
            // A setup that fits (tenants, a capability of three steps, sessions), then anything.
            let fitting = |tenant: &str, body| Event {
                tenant_id: tenant.into(),
                timestamp_ms: 1,
                body,
            };
            let setup = [
                fitting("acme", EventBody::TenantCreated),
                fitting("globex", EventBody::TenantCreated),
                fitting(SYSTEM_TENANT, EventBody::CapabilityRegistered { spec: spec("cap", 1, 3) }),
                fitting("acme", EventBody::SessionCreated {
                    session_id: Id(0),
                    user_id: "u".into(),
                    context_json: "{}".into(),
                }),
                fitting("acme", EventBody::SessionCreated {
                    session_id: Id(1),
                    user_id: "u".into(),
                    context_json: "{}".into(),
                }),
            ];
            let mut state = State::default();
            for (lsn, event) in setup.into_iter().chain(events).enumerate() {
                state.apply(lsn as Lsn + 1, event);
            }
            let _ = crate::digest::digest(&state);
            // The JSON texts parse back to the same documents as the views' trees.
            for e in state.executions.values() {
                let record = crate::view::execution_record(&state, e);
                let text = crate::view::execution_record_json(&state, e);
                prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), record);
                let status = crate::view::execution_status(&state, e);
                let text = crate::view::execution_status_json(&state, e);
                prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), status);
            }
        }
    }
}
