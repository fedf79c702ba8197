//! The canonical state digest (CONTRACT section 8): SHA-256 over a canonical encoding of the
//! state. Every map is walked in sorted key order, every string is length-prefixed, every
//! optional value is tagged, so two states are equal exactly when their digests are.
//! The server's `/runtime/digest` and `replay-tool replay` both call [`digest`].

use sha2::{Digest as _, Sha256};

use crate::event::CapabilitySpec;
use crate::id::Id;
use crate::state::{Execution, Session, State, StepState, Tenant};

/// Version of the canonical encoding; part of the digest input.
pub const DIGEST_ENCODING_VERSION: u32 = 1;

/// Bytes of canonical encoding gathered before they are hashed: SHA-256 is fed large slices
/// instead of the encoding's many 1- and 8-byte pieces (the digest is the same either way).
const CANON_BUFFER_BYTES: usize = 64 * 1024;

struct Canon {
    hasher: Sha256,
    buf: Vec<u8>,
}

impl Canon {
    fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            buf: Vec::with_capacity(CANON_BUFFER_BYTES + 64),
        }
    }
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > CANON_BUFFER_BYTES {
            self.hasher.update(&self.buf);
            self.buf.clear();
            if bytes.len() > CANON_BUFFER_BYTES {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
    }
    fn finish(mut self) -> String {
        self.hasher.update(&self.buf);
        hex::encode(self.hasher.finalize())
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.put(&v.to_le_bytes());
    }
    fn id(&mut self, v: Id) {
        self.put(&v.0.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.put(&[u8::from(v)]);
    }
    fn str(&mut self, v: &str) {
        self.u64(v.len() as u64);
        self.put(v.as_bytes());
    }
    fn tag(&mut self, tag: &str) {
        self.str(tag);
    }
    fn opt<T>(&mut self, v: Option<T>, mut f: impl FnMut(&mut Self, T)) {
        match v {
            None => self.put(&[0]),
            Some(v) => {
                self.put(&[1]);
                f(self, v);
            }
        }
    }
}

/// The hex SHA-256 digest of `state`.
pub fn digest(state: &State) -> String {
    let mut c = Canon::new();
    c.tag("symphainy-state");
    c.u64(u64::from(DIGEST_ENCODING_VERSION));
    c.u64(state.last_lsn);
    c.u64(state.rejected_events);
    c.tag("tenants");
    c.u64(state.tenants.len() as u64);
    for (id, tenant) in &state.tenants {
        c.str(id);
        tenant_into(&mut c, tenant);
    }
    c.tag("capabilities");
    c.u64(state.capabilities.values().map(|v| v.len() as u64).sum());
    for versions in state.capabilities.values() {
        for spec in versions.values() {
            capability_into(&mut c, spec);
        }
    }
    c.tag("sessions");
    let mut sessions: Vec<&Session> = state.sessions.values().collect();
    sessions.sort_unstable_by_key(|s| s.session_id);
    c.u64(sessions.len() as u64);
    for session in sessions {
        session_into(&mut c, session);
    }
    c.tag("executions");
    let mut executions: Vec<&Execution> = state.executions.values().map(|e| e.as_ref()).collect();
    executions.sort_unstable_by_key(|e| e.execution_id);
    c.u64(executions.len() as u64);
    for execution in executions {
        execution_into(&mut c, execution);
    }
    c.finish()
}

fn tenant_into(c: &mut Canon, t: &Tenant) {
    c.i64(t.created_at_ms);
    c.u64(t.sessions_open);
    c.u64(t.tokens.len() as u64);
    for (id, token) in &t.tokens {
        c.id(*id);
        c.str(&token.user_id);
        c.i64(token.issued_at_ms);
        c.i64(token.expires_at_ms);
        c.bool(token.revoked);
    }
    let mut keys: Vec<(&String, &Id)> = t.idempotency.iter().collect();
    keys.sort_unstable();
    c.u64(keys.len() as u64);
    for (key, execution) in keys {
        c.str(key);
        c.id(*execution);
    }
}

fn capability_into(c: &mut Canon, spec: &CapabilitySpec) {
    c.str(&spec.name);
    c.str(&spec.realm);
    c.u64(u64::from(spec.version));
    for list in [&spec.intent_types, &spec.inputs, &spec.outputs] {
        c.u64(list.len() as u64);
        list.iter().for_each(|s| c.str(s));
    }
    c.bool(spec.deterministic);
    c.u64(spec.steps.len() as u64);
    for step in &spec.steps {
        c.str(&step.name);
        c.bool(step.deterministic);
        c.u64(u64::from(step.max_attempts));
        c.u64(step.timeout_ms);
        c.u64(step.backoff_base_ms);
    }
}

fn session_into(c: &mut Canon, s: &Session) {
    c.id(s.session_id);
    c.str(&s.tenant_id);
    c.str(&s.user_id);
    c.i64(s.created_at_ms);
    c.str(&s.context_json);
    c.opt(s.closed_at_ms, Canon::i64);
    c.u64(s.active_sagas.len() as u64);
    s.active_sagas.iter().for_each(|id| c.id(*id));
}

fn execution_into(c: &mut Canon, e: &Execution) {
    c.id(e.execution_id);
    c.id(e.intent_id);
    c.id(e.session_id);
    c.str(&e.tenant_id);
    c.str(&e.intent_type);
    c.str(&e.realm);
    c.str(&e.payload_json);
    c.opt(e.idempotency_key.as_deref(), Canon::str);
    c.u64(e.intent_lsn);
    c.str(&e.capability);
    c.u64(u64::from(e.capability_version));
    c.str(e.status.name());
    c.opt(e.compensating_from, |c, v| c.u64(u64::from(v)));
    c.opt(e.result_json.as_deref(), Canon::str);
    c.opt(e.error.as_ref(), |c, err| {
        c.str(&err.code);
        c.str(&err.message);
        c.opt(err.step.as_deref(), Canon::str);
    });
    c.i64(e.submitted_at_ms);
    c.opt(e.finished_at_ms.get(), Canon::i64);
    c.u64(e.steps.len() as u64);
    e.steps.iter().for_each(|s| step_into(c, s));
}

fn step_into(c: &mut Canon, s: &StepState) {
    c.str(s.status.name());
    c.u64(u64::from(s.attempts));
    c.opt(s.started_at_ms.get(), Canon::i64);
    c.opt(s.finished_at_ms.get(), Canon::i64);
    c.opt(s.duration_ms, Canon::u64);
    c.opt(s.output_json.as_deref(), Canon::str);
    c.opt(s.error.as_deref(), |c, (code, message)| {
        c.str(code);
        c.str(message);
    });
    c.bool(s.retryable);
    c.opt(s.retry_at_ms.get(), Canon::i64);
}
