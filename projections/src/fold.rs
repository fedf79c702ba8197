//! The fold every projection shares: the engine's own pure `State::apply` (so a projection can
//! never disagree with the runtime about what an event means), plus a record of which
//! entities a batch of events touched. Projections render those entities from the folded
//! state; a rendered entity depends only on itself and on immutable capability specs, so the
//! last write of a key is the same whatever the batch boundaries were.

use std::collections::{BTreeMap, BTreeSet};

use symphainy_engine::event::{Event, EventBody};
use symphainy_engine::{Id, State, codec};
use symphainy_wal::{Lsn, RecordMeta};

use crate::{Error, Result};

fn decode(lsn: Lsn, meta: RecordMeta, payload: &[u8]) -> Result<Event> {
    codec::decode(meta, payload).map_err(|e| Error::Decode {
        lsn,
        reason: e.to_string(),
    })
}

/// An entity a batch changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Touched {
    Tenant(String),
    Session(Id),
    Execution(Id),
    /// A capability (name, version); capabilities belong to the system tenant.
    Capability(String, u32),
}

/// What one batch of events changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// LSN of the batch's first and last events (0 when empty).
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// Entities to re-render, by tenant.
    pub touched: BTreeMap<String, BTreeSet<Touched>>,
    /// LSNs of each tenant's events in the batch, ascending.
    pub tenant_lsns: BTreeMap<String, Vec<Lsn>>,
    /// Sessions whose `session_created` and executions whose `intent_received` or
    /// `saga_started` (which names the capability) is in the batch: what never changes about
    /// them (the intent, the capability, the structural edges) needs writing only then.
    pub created: BTreeSet<Id>,
}

impl Batch {
    /// How many events the batch holds.
    pub fn events(&self) -> u64 {
        if self.last_lsn == 0 {
            0
        } else {
            self.last_lsn - self.first_lsn + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.last_lsn == 0
    }
}

/// The engine's state folded up to some LSN, with the batch being collected.
#[derive(Debug, Default)]
pub struct Fold {
    state: State,
    batch: Batch,
}

impl Fold {
    /// Starts from a state already folded (empty, or the runtime's own recovered state).
    pub fn from_state(state: State) -> Self {
        Self {
            state,
            batch: Batch::default(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The LSN of the last event folded.
    pub fn lsn(&self) -> Lsn {
        self.state.last_lsn
    }

    /// Folds an encoded record (as the WAL cursor hands it over), recording what it touched.
    /// Records at or below the folded LSN are skipped.
    pub fn apply_record(&mut self, lsn: Lsn, meta: RecordMeta, payload: &[u8]) -> Result<()> {
        if lsn <= self.state.last_lsn {
            return Ok(());
        }
        let event = decode(lsn, meta, payload)?;
        self.apply(lsn, event);
        Ok(())
    }

    /// Folds an event without recording anything (catching up to a projection's checkpoint).
    pub fn apply_silently(&mut self, lsn: Lsn, meta: RecordMeta, payload: &[u8]) -> Result<()> {
        if lsn <= self.state.last_lsn {
            return Ok(());
        }
        let event = decode(lsn, meta, payload)?;
        self.state.apply(lsn, event);
        Ok(())
    }

    /// Folds one event at `lsn`, recording what it touched.
    pub fn apply(&mut self, lsn: Lsn, event: Event) {
        let tenant = event.tenant_id.clone();
        let mut touched = Vec::with_capacity(2);
        match &event.body {
            EventBody::TenantCreated => touched.push(Touched::Tenant(tenant.clone())),
            EventBody::TokenIssued { .. } | EventBody::TokenRevoked { .. } => {}
            EventBody::SessionCreated { session_id, .. } => {
                touched.push(Touched::Session(*session_id));
                self.batch.created.insert(*session_id);
            }
            EventBody::SessionClosed { session_id } => {
                touched.push(Touched::Session(*session_id));
            }
            EventBody::CapabilityRegistered { spec } => {
                touched.push(Touched::Capability(spec.name.clone(), spec.version));
            }
            EventBody::IntentReceived {
                session_id,
                execution_id,
                ..
            } => {
                touched.push(Touched::Session(*session_id));
                touched.push(Touched::Execution(*execution_id));
                self.batch.created.insert(*execution_id);
            }
            EventBody::SagaStarted { execution_id, .. } => {
                touched.push(Touched::Execution(*execution_id));
                self.batch.created.insert(*execution_id);
            }
            EventBody::SagaCompleted { execution_id, .. }
            | EventBody::SagaFailed { execution_id, .. }
            | EventBody::SagaCompensated { execution_id, .. } => {
                touched.push(Touched::Execution(*execution_id));
                if let Some(e) = self.state.executions.get(execution_id) {
                    touched.push(Touched::Session(e.session_id));
                }
            }
            body => {
                if let Some(id) = body.execution_id() {
                    touched.push(Touched::Execution(id));
                }
            }
        }
        self.state.apply(lsn, event);
        let batch = &mut self.batch;
        if batch.first_lsn == 0 {
            batch.first_lsn = lsn;
        }
        batch.last_lsn = lsn;
        if !touched.is_empty() {
            batch
                .touched
                .entry(tenant.clone())
                .or_default()
                .extend(touched);
        }
        batch.tenant_lsns.entry(tenant).or_default().push(lsn);
    }

    /// The batch collected since the last call.
    pub fn take_batch(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }

    /// Puts a batch back (its write failed and will be retried); later events merge into it.
    pub fn restore_batch(&mut self, mut batch: Batch) {
        let newer = std::mem::take(&mut self.batch);
        if !newer.is_empty() {
            batch.last_lsn = newer.last_lsn;
            for (tenant, set) in newer.touched {
                batch.touched.entry(tenant).or_default().extend(set);
            }
            for (tenant, lsns) in newer.tenant_lsns {
                batch.tenant_lsns.entry(tenant).or_default().extend(lsns);
            }
            batch.created.extend(newer.created);
        }
        self.batch = batch;
    }

    /// Forgets the executions of a written batch that have finished: no event changes them
    /// any more and their rendering is stored, so the fold need not hold them (a projection's
    /// fold then holds only the executions in flight).
    pub fn evict_finished(&mut self, batch: &Batch) {
        for touched in batch.touched.values() {
            for t in touched {
                if let Touched::Execution(id) = t
                    && self
                        .state
                        .executions
                        .get(id)
                        .is_some_and(|e| e.status.is_terminal())
                {
                    self.state.executions.remove(id);
                }
            }
        }
    }

    /// Forgets every finished execution (after catching up to a stored checkpoint).
    pub fn evict_all_finished(&mut self) {
        self.state.executions.retain(|_, e| !e.status.is_terminal());
    }
}
