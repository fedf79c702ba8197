//! The state surface: the runtime's hot state (sessions, executions with their saga and step
//! states, tenants, capabilities) as contract JSON in a [`StateStore`].
//!
//! Keys (every tenant key carries the `{tenant}` hash tag, so a tenant is one cluster slot):
//!
//! | key | value |
//! | --- | --- |
//! | `t:{T}:tenant` | `{"tenant_id", "created_at"}` |
//! | `t:{T}:session:{id}` | the session (CONTRACT section 4) |
//! | `t:{T}:execution:{id}` | the execution's full record (`/runtime/state/{id}`) |
//! | `t:{_system}:capability:{name}@{version}` | the capability |
//! | `t:{T}:_applied_lsn` | LSN of the last event of `T` applied |
//! | `t:{T}:_events` | how many events of `T` were applied (audits exactly-once) |
//! | `{_symphainy}:state:applied_lsn` | every event up to here is applied |
//!
//! A tenant's writes and its two checkpoint keys go in one `MULTI`/`EXEC`; the global
//! checkpoint follows in the same pipeline. After a crash the runner resumes from the global
//! checkpoint and skips, per tenant, the events its own checkpoint says are applied, so no
//! event is counted twice even when a pipeline was cut half way.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use symphainy_engine::event::SYSTEM_TENANT;
use symphainy_engine::id::rfc3339;
use symphainy_engine::{Id, State, view};
use symphainy_wal::Lsn;

use crate::fold::{Batch, Touched};
use crate::runner::Projection;
use crate::store::{StateStore, Tx, Write};
use crate::{Error, Result};

/// The global checkpoint key.
pub const GLOBAL_CHECKPOINT_KEY: &str = "{_symphainy}:state:applied_lsn";

pub fn tenant_key(tenant: &str) -> String {
    format!("t:{{{tenant}}}:tenant")
}

pub fn session_key(tenant: &str, id: Id) -> String {
    format!("t:{{{tenant}}}:session:{id}")
}

pub fn execution_key(tenant: &str, id: Id) -> String {
    format!("t:{{{tenant}}}:execution:{id}")
}

pub fn capability_key(name: &str, version: u32) -> String {
    format!("t:{{{SYSTEM_TENANT}}}:capability:{name}@{version}")
}

pub fn tenant_checkpoint_key(tenant: &str) -> String {
    format!("t:{{{tenant}}}:_applied_lsn")
}

pub fn tenant_events_key(tenant: &str) -> String {
    format!("t:{{{tenant}}}:_events")
}

fn parse_lsn(key: &str, value: Option<String>) -> Result<Lsn> {
    match value {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| Error::Corrupt {
            key: key.to_string(),
            reason: format!("{v:?} is not an LSN"),
        }),
    }
}

/// The state surface as a projection.
#[derive(Debug)]
pub struct StateSurface {
    store: Arc<StateStore>,
    /// Per-tenant checkpoints known to be stored (loaded on first use; forgotten on error).
    known: HashMap<String, Lsn>,
    /// The highest per-tenant checkpoint this surface has seen stored, shared with its
    /// [`reader`](Self::reader)s (never lowered: a store that lost writes must catch up again).
    written: Arc<Written>,
}

/// Per-tenant checkpoints a surface has seen stored.
#[derive(Debug, Default)]
pub struct Written(std::sync::Mutex<HashMap<String, Lsn>>);

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lsn>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raise(&self, tenant: &str, lsn: Lsn) {
        let mut map = self.lock();
        match map.get_mut(tenant) {
            Some(at) => *at = (*at).max(lsn),
            None => {
                map.insert(tenant.to_string(), lsn);
            }
        }
    }

    fn get(&self, tenant: &str) -> Option<Lsn> {
        self.lock().get(tenant).copied()
    }
}

impl StateSurface {
    pub fn new(store: Arc<StateStore>) -> Self {
        Self {
            store,
            known: HashMap::new(),
            written: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<StateStore> {
        &self.store
    }

    /// A reader of this surface's store that knows what this surface wrote, so
    /// [`SurfaceReader::checked`] reads can tell a store that lost writes.
    pub fn reader(&self) -> SurfaceReader {
        SurfaceReader {
            store: self.store.clone(),
            written: self.written.clone(),
            checked: false,
        }
    }

    async fn load_checkpoints(&mut self, batch: &Batch) -> Result<()> {
        let unknown: Vec<&String> = batch
            .tenant_lsns
            .keys()
            .filter(|t| !self.known.contains_key(*t))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = unknown.iter().map(|t| tenant_checkpoint_key(t)).collect();
        let values = self.store.get_many(&keys).await?;
        for ((tenant, key), value) in unknown.into_iter().zip(&keys).zip(values) {
            let lsn = parse_lsn(key, value)?;
            self.written.raise(tenant, lsn);
            self.known.insert(tenant.clone(), lsn);
        }
        Ok(())
    }
}

/// Renders one touched entity into writes.
fn render(state: &State, tenant: &str, touched: &Touched, out: &mut Vec<Write>) -> Result<()> {
    let to_text = |v: Value| serde_json::to_string(&v).map_err(|e| Error::Render(e.to_string()));
    let (key, text) = match touched {
        Touched::Tenant(t) => match state.tenants.get(t) {
            Some(record) => (
                tenant_key(t),
                to_text(json!({"tenant_id": t, "created_at": rfc3339(record.created_at_ms)}))?,
            ),
            None => return Ok(()),
        },
        Touched::Session(id) => match state.session_of(tenant, *id) {
            Some(s) => (session_key(tenant, *id), view::session_json(s)),
            None => return Ok(()),
        },
        Touched::Execution(id) => match state.execution_of(tenant, *id) {
            Some(e) => (
                execution_key(tenant, *id),
                view::execution_record_json(state, e),
            ),
            None => return Ok(()),
        },
        Touched::Capability(name, version) => match state.capability(name, *version) {
            Some(spec) => (
                capability_key(name, *version),
                to_text(view::capability(spec))?,
            ),
            None => return Ok(()),
        },
    };
    out.push(Write::Set(key, text));
    Ok(())
}

impl Projection for StateSurface {
    fn name(&self) -> &'static str {
        "state_surface"
    }

    async fn applied_lsn(&mut self) -> Result<Lsn> {
        let value = self.store.get(GLOBAL_CHECKPOINT_KEY).await?;
        parse_lsn(GLOBAL_CHECKPOINT_KEY, value)
    }

    async fn write(&mut self, state: &State, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.load_checkpoints(batch).await {
            self.known.clear();
            return Err(e);
        }
        let mut txs = Vec::with_capacity(batch.tenant_lsns.len() + 1);
        let mut advanced = Vec::with_capacity(batch.tenant_lsns.len());
        for (tenant, lsns) in &batch.tenant_lsns {
            let done = self.known.get(tenant).copied().unwrap_or(0);
            let fresh = lsns.len() - lsns.partition_point(|l| *l <= done);
            let Some(&last) = lsns.last() else { continue };
            if fresh == 0 {
                continue;
            }
            let mut writes = Vec::new();
            for touched in batch.touched.get(tenant).into_iter().flatten() {
                render(state, tenant, touched, &mut writes)?;
            }
            writes.push(Write::IncrBy(tenant_events_key(tenant), fresh as i64));
            writes.push(Write::Set(tenant_checkpoint_key(tenant), last.to_string()));
            txs.push(Tx { writes });
            advanced.push((tenant.clone(), last));
        }
        txs.push(Tx {
            writes: vec![Write::Swap(
                GLOBAL_CHECKPOINT_KEY.into(),
                batch.last_lsn.to_string(),
            )],
        });
        match self.store.commit(&txs).await {
            Ok(swapped) => {
                // The checkpoint replaced must be the one this batch continues from.
                let found = swapped.into_iter().next().flatten();
                let found = found
                    .map(|v| parse_lsn(GLOBAL_CHECKPOINT_KEY, Some(v)))
                    .transpose()
                    .inspect_err(|_| self.known.clear())?;
                let expected = batch.first_lsn - 1;
                if found.unwrap_or(0) != expected {
                    self.known.clear();
                    return Err(Error::Diverged { expected, found });
                }
                for (tenant, lsn) in &advanced {
                    self.written.raise(tenant, *lsn);
                }
                self.known.extend(advanced);
                Ok(())
            }
            Err(e) => {
                // Some tenants' transactions may have landed: ask the store again.
                self.known.clear();
                Err(e)
            }
        }
    }

    async fn clear(&mut self) -> Result<()> {
        self.known.clear();
        self.store.clear().await.map(|_| ())
    }
}

/// Reads of the state surface, tenant-scoped by construction: every key is built from the
/// caller's tenant.
///
/// A [`checked`](Self::checked) read answers only if the store itself shows it still holds
/// what its surface wrote for the tenant: the value and the tenant's checkpoint key are read
/// as of one instant (one `MULTI`/`EXEC`; both carry the tenant's hash tag, so one cluster
/// slot), and a checkpoint below the highest one the surface wrote for that tenant (or none at
/// all, for a tenant the surface has not written since it started) is [`Error::Behind`]. The
/// runner having applied an LSN is not enough, because the store can lose writes under it (a
/// Redis restarted without persistence, or from an older dump): until the runner notices at
/// its next write and rebuilds, such a store answers "missing" or an older value for what the
/// log holds.
#[derive(Debug, Clone)]
pub struct SurfaceReader {
    store: Arc<StateStore>,
    written: Arc<Written>,
    checked: bool,
}

impl SurfaceReader {
    /// A reader that knows nothing of what was written (tools and tests; see
    /// [`StateSurface::reader`]).
    pub fn new(store: Arc<StateStore>) -> Self {
        Self {
            store,
            written: Arc::default(),
            checked: false,
        }
    }

    /// This reader, answering only from a store that holds what its surface wrote.
    pub fn checked(mut self) -> Self {
        self.checked = true;
        self
    }

    pub fn store(&self) -> &Arc<StateStore> {
        &self.store
    }

    /// A key of `tenant`, checked when the reader is.
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<String>> {
        if !self.checked {
            return self.store.get(key).await;
        }
        let checkpoint_key = tenant_checkpoint_key(tenant);
        let keys = [key.to_string(), checkpoint_key.clone()];
        let mut values = self.store.get_atomic(&keys).await?.into_iter();
        let (value, checkpoint) = (values.next().flatten(), values.next().flatten());
        let found = checkpoint
            .map(|c| parse_lsn(&checkpoint_key, Some(c)))
            .transpose()?;
        // Every tenant has at least its `tenant_created` event: a tenant with no checkpoint
        // stored has lost it, whatever this surface wrote or loaded (a checkpoint loaded from
        // a store that had just lost it is 0).
        let wanted = self.written.get(tenant).unwrap_or(0).max(1);
        if found.unwrap_or(0) < wanted {
            return Err(Error::Behind {
                tenant: tenant.to_string(),
                wanted,
                found,
            });
        }
        Ok(value)
    }

    async fn json(&self, tenant: &str, key: String) -> Result<Option<Value>> {
        match self.get(tenant, &key).await? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    key,
                    reason: e.to_string(),
                }),
        }
    }

    /// A session of `tenant`.
    pub async fn session(&self, tenant: &str, id: Id) -> Result<Option<Value>> {
        self.json(tenant, session_key(tenant, id)).await
    }

    /// An execution's full record.
    pub async fn execution_record(&self, tenant: &str, id: Id) -> Result<Option<Value>> {
        self.json(tenant, execution_key(tenant, id)).await
    }

    /// An execution's status.
    pub async fn execution_status(&self, tenant: &str, id: Id) -> Result<Option<Value>> {
        Ok(self
            .execution_record(tenant, id)
            .await?
            .map(view::status_of_record))
    }

    /// How many events of `tenant` the surface applied.
    pub async fn tenant_events(&self, tenant: &str) -> Result<u64> {
        let key = tenant_events_key(tenant);
        let value = self.get(tenant, &key).await?;
        parse_lsn(&key, value)
    }
}
