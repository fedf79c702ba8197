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
/// States with at least this many sessions and executions are hashed on a second thread
/// while the encoding goes on ([`digest`]); smaller ones are not worth a thread.
pub const PIPELINED_DIGEST_MIN_ENTITIES: usize = 50_000;
/// Buffers circulating between the encoder and the hashing thread (bounds its memory to
/// this many [`CANON_BUFFER_BYTES`]).
const PIPELINE_BUFFERS: usize = 4;

/// Where full buffers go: hashed here, or handed to the hashing thread.
enum Sink {
    Inline(Sha256),
    Piped {
        full: std::sync::mpsc::SyncSender<Vec<u8>>,
        empty: std::sync::mpsc::Receiver<Vec<u8>>,
    },
}

struct Canon {
    sink: Sink,
    buf: Vec<u8>,
}

fn canon_buffer() -> Vec<u8> {
    Vec::with_capacity(CANON_BUFFER_BYTES + 64)
}

impl Canon {
    fn new(sink: Sink) -> Self {
        Self {
            sink,
            buf: canon_buffer(),
        }
    }
    /// Hands the buffer on and starts an empty one.
    fn flush(&mut self) {
        match &mut self.sink {
            Sink::Inline(hasher) => {
                hasher.update(&self.buf);
                self.buf.clear();
            }
            Sink::Piped { full, empty } => {
                // The hashing thread sends every buffer back; if it is gone, so is the
                // digest (finish reports it), and a fresh buffer keeps the encoding going.
                let next = empty.recv().unwrap_or_else(|_| canon_buffer());
                let _ = full.send(std::mem::replace(&mut self.buf, next));
            }
        }
    }
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > CANON_BUFFER_BYTES {
            self.flush();
            if bytes.len() > CANON_BUFFER_BYTES {
                // A long string: hashed where it is, or handed over in buffer-sized pieces
                // (the buffers keep their size, whatever the state holds).
                if let Sink::Inline(hasher) = &mut self.sink {
                    hasher.update(bytes);
                    return;
                }
                for piece in bytes.chunks(CANON_BUFFER_BYTES) {
                    self.buf.extend_from_slice(piece);
                    self.flush();
                }
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
    }
    /// The inline hasher's digest, or (piped) hands the last buffer on and closes the pipe.
    fn finish(mut self) -> Option<String> {
        self.flush();
        match self.sink {
            Sink::Inline(hasher) => Some(hex::encode(hasher.finalize())),
            Sink::Piped { .. } => None,
        }
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

/// The hex SHA-256 digest of `state`. A large state is encoded on this thread and hashed on
/// a second one at the same time (same bytes, same digest); if that thread cannot be had,
/// everything happens here.
pub fn digest(state: &State) -> String {
    if state.sessions.len() + state.executions.len() >= PIPELINED_DIGEST_MIN_ENTITIES
        && let Some(digest) = digest_pipelined(state)
    {
        return digest;
    }
    digest_inline(state)
}

fn digest_inline(state: &State) -> String {
    let mut c = Canon::new(Sink::Inline(Sha256::new()));
    encode(state, &mut c);
    c.finish().unwrap_or_default()
}

fn digest_pipelined(state: &State) -> Option<String> {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(PIPELINE_BUFFERS);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(PIPELINE_BUFFERS);
        for _ in 1..PIPELINE_BUFFERS {
            empty_tx.send(canon_buffer()).ok()?;
        }
        let hashing = std::thread::Builder::new()
            .name("digest-hash".into())
            .spawn_scoped(scope, move || {
                let mut hasher = Sha256::new();
                for mut buf in full_rx {
                    hasher.update(&buf);
                    buf.clear();
                    let _ = empty_tx.send(buf);
                }
                hex::encode(hasher.finalize())
            })
            .ok()?;
        let mut c = Canon::new(Sink::Piped {
            full: full_tx,
            empty: empty_rx,
        });
        encode(state, &mut c);
        c.finish();
        hashing.join().ok()
    })
}

/// The canonical encoding of `state`.
fn encode(state: &State, c: &mut Canon) {
    c.tag("symphainy-state");
    c.u64(u64::from(DIGEST_ENCODING_VERSION));
    c.u64(state.last_lsn);
    c.u64(state.rejected_events);
    c.tag("tenants");
    c.u64(state.tenants.len() as u64);
    for (id, tenant) in &state.tenants {
        c.str(id);
        tenant_into(c, tenant);
    }
    c.tag("capabilities");
    c.u64(state.capabilities.values().map(|v| v.len() as u64).sum());
    for versions in state.capabilities.values() {
        for spec in versions.values() {
            capability_into(c, spec);
        }
    }
    c.tag("sessions");
    // Sorted by the map's own keys (the ids), held beside the pointers: sorting never
    // dereferences an entity, which on a large state would be a cache miss per comparison.
    let mut sessions: Vec<(Id, &Session)> = state.sessions.iter().map(|(k, s)| (*k, s)).collect();
    sessions.sort_unstable_by_key(|(id, _)| *id);
    c.u64(sessions.len() as u64);
    for (_, session) in sessions {
        session_into(c, session);
    }
    c.tag("executions");
    let mut executions: Vec<(Id, &Execution)> = state
        .executions
        .iter()
        .map(|(k, e)| (*k, e.as_ref()))
        .collect();
    executions.sort_unstable_by_key(|(id, _)| *id);
    c.u64(executions.len() as u64);
    for (_, execution) in executions {
        execution_into(c, execution);
    }
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
    c.opt(s.duration_ms.get(), Canon::u64);
    c.opt(s.output_json.as_deref(), Canon::str);
    c.opt(s.error.as_deref(), |c, (code, message)| {
        c.str(code);
        c.str(message);
    });
    c.bool(s.retryable);
    c.opt(s.retry_at_ms.get(), Canon::i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::testing::Synthetic;

    // The digest hashed on a second thread is the digest hashed inline, for a state large
    // enough to take the pipelined path (and with strings longer than a buffer).
    #[test]
    fn pipelined_digest_equals_inline_digest() {
        let mut workload = Synthetic::default();
        let mut records = workload.header();
        let mut state = State::default();
        while state.executions.len() < PIPELINED_DIGEST_MIN_ENTITIES {
            workload.next_execution(&mut records);
            for r in records.drain(..) {
                let event = codec::decode(r.meta, &r.payload).expect("decode");
                state.apply(state.last_lsn + 1, event);
            }
        }
        assert_eq!(state.rejected_events, 0);
        let big = state.executions.values_mut().next().expect("an execution");
        big.payload_json = "x".repeat(3 * CANON_BUFFER_BYTES).into_boxed_str();
        let piped = digest_pipelined(&state).expect("a hashing thread");
        assert_eq!(piped, digest_inline(&state));
        assert_eq!(digest(&state), piped);
        let big = state.executions.values_mut().next().expect("an execution");
        big.payload_json = "y".repeat(3 * CANON_BUFFER_BYTES).into_boxed_str();
        assert_ne!(digest(&state), piped);
    }
}
