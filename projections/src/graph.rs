//! The graph view: an Arango-style document graph of what the log says, in sled behind the
//! [`GraphStore`] trait.
//!
//! Vertex collections: `tenants`, `sessions`, `intents`, `executions`, `steps`,
//! `capabilities` (the content realm adds `documents`, `chunks`, `facts`). A vertex is a JSON
//! document with `_id` (`collection/key`) and `_key`. Edges have `_id`, `_from`, `_to` and
//! `label`:
//!
//! | from | label | to |
//! | --- | --- | --- |
//! | `tenants/T` | `owns` | `sessions/S` |
//! | `sessions/S` | `submitted` | `intents/I` |
//! | `intents/I` | `executed_as` | `executions/E` |
//! | `executions/E` | `uses` | `capabilities/NAME@VERSION` |
//! | `executions/E` | `has_step` | `steps/E-INDEX` |
//!
//! What is stored per execution is one vertex (its steps and its intent's fields inside) and
//! three edge keys: `sessions/S submitted` and `intents/I executed_as` from their source end,
//! `capabilities/C uses` from its target end. Intent and step vertices, and the other ends of
//! those edges, are derived from the execution's vertex when read (sled copies a leaf on every
//! insert, so fewer, smaller keys are what makes the view keep up).
//!
//! Everything is namespaced by tenant: a key starts with the tenant, every lookup and
//! traversal is given the caller's tenant, and an edge never leaves its tenant (a capability
//! a tenant used is a vertex in that tenant's namespace).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use symphainy_engine::id::rfc3339;
use symphainy_engine::state::Execution;
use symphainy_engine::{State, view};
use symphainy_wal::Lsn;

use crate::fold::{Batch, Touched};
use crate::runner::Projection;
use crate::{Error, Result};

/// Deepest traversal a query may ask for.
pub const TRAVERSE_DEPTH_MAX: u32 = 5;
/// Most vertices a traversal returns (it stops and says `truncated` past this).
pub const TRAVERSE_VERTICES_MAX: usize = 1_000;
/// Most edges a traversal returns.
pub const TRAVERSE_EDGES_MAX: usize = 5_000;
/// sled's page cache.
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Unreadable graph directories kept after being moved aside (the newest; older ones are
/// deleted when another is moved aside).
pub const GRAPH_MOVED_ASIDE_KEPT: usize = 2;
/// How often sled flushes on its own (batches are atomic either way).
pub const SLED_FLUSH_EVERY_MS: u64 = 200;

const VERTEX: u8 = b'v';
const OUT: u8 = b'o';
const IN: u8 = b'i';
const META: u8 = b'm';
const APPLIED_KEY: &[u8] = b"mapplied_lsn";
/// Which encoding the stored keys and vertices use; a graph written with another one is
/// cleared on open and rebuilt from the log (it is a projection).
const FORMAT_KEY: &[u8] = b"mformat";
/// The graph's format: 1, vertices as [`crate::compact`] documents and ids in keys as text;
/// 2, the same vertices and ids in keys in [`crate::compact::put_id`]'s form, labels as one
/// byte (keys about half as long: the graph view rebuilt about 15% faster).
pub const GRAPH_FORMAT: u64 = 2;

/// An edge as stored and returned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub label: &'static str,
    pub to: String,
}

impl Edge {
    pub fn key(&self) -> String {
        format!("{}-{}-{}", self.from, self.label, self.to).replace('/', ":")
    }

    pub fn to_json(&self) -> Value {
        json!({"_id": format!("edges/{}", self.key()), "_key": self.key(), "_from": self.from, "_to": self.to, "label": self.label})
    }
}

/// Traversal direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
    Any,
}

impl std::str::FromStr for Direction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "outbound" => Ok(Self::Outbound),
            "inbound" => Ok(Self::Inbound),
            "any" => Ok(Self::Any),
            _ => Err(Error::Query(format!(
                "direction must be outbound, inbound or any, not {s:?}"
            ))),
        }
    }
}

/// Writes of one batch, applied atomically with the checkpoint.
#[derive(Debug, Default)]
pub struct GraphWrite {
    /// (tenant, `_id`) -> document, in [`crate::compact`]'s form.
    pub vertices: BTreeMap<(String, String), Vec<u8>>,
    /// (tenant, edge) -> which of its two index keys are stored (the other direction, when
    /// not stored, is derived from a vertex when read).
    pub edges: BTreeMap<(String, Edge), Stored>,
    /// Events of each tenant applied by this write.
    pub tenant_events: BTreeMap<String, u64>,
    pub applied_lsn: Lsn,
}

impl GraphWrite {
    /// Puts the vertex `collection/key` of `tenant`: the fields of `doc` (a JSON object, or a
    /// struct serialized as one) plus `_id` and `_key`, written straight into the compact form.
    fn vertex(&mut self, tenant: &str, collection: &str, key: &str, doc: &impl Serialize) {
        let id = format!("{collection}/{key}");
        let vertex = Vertex {
            _id: &id,
            _key: key,
            doc,
        };
        let bytes = crate::compact::to_vec(&vertex).unwrap_or_else(|e| {
            // Unreachable for the views rendered here (plain structs, strings and JSON
            // objects); kept visible rather than dropped or fatal.
            tracing::error!(tenant, vertex = %id, error = %e, "graph vertex could not be rendered");
            crate::compact::encode(&json!({"_id": id, "_key": key, "render_error": e.to_string()}))
        });
        self.vertices.insert((tenant.to_string(), id), bytes);
    }

    /// Adds an edge of `tenant`, storing the index keys `stored` says.
    fn edge(
        &mut self,
        tenant: &str,
        from: String,
        label: &'static str,
        to: String,
        stored: Stored,
    ) {
        self.edges
            .insert((tenant.to_string(), Edge { from, label, to }), stored);
    }
}

/// A vertex as stored: its document's fields and its id.
#[derive(Serialize)]
struct Vertex<'a, T> {
    _id: &'a str,
    _key: &'a str,
    #[serde(flatten)]
    doc: &'a T,
}

/// An execution's vertex: its status, what the intent's vertex is derived from, and how
/// many steps its `has_step` edges lead to.
#[derive(Serialize)]
struct ExecutionVertex<'a, S> {
    #[serde(flatten)]
    status: S,
    step_count: usize,
    realm: &'a str,
    idempotency_key: Option<&'a str>,
}

/// Which index keys of an edge a write stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Found from both ends.
    Both,
    /// Found from its `_from` end; the inbound side is derived from the target's vertex.
    Out,
    /// Found from its `_to` end; the outbound side is derived from the source's vertex.
    In,
}

/// A store of tenant-namespaced vertices and edges with an atomic checkpoint.
pub trait GraphStore: Send + Sync + 'static {
    fn applied_lsn(&self) -> Result<Lsn>;
    /// Applies the write, then its checkpoint. Whatever a crash leaves of a commit, the
    /// checkpoint is never ahead of the entries it covers, and the entries written past it
    /// are overwritten with the same values when the runner re-applies from it.
    fn commit(&self, write: &GraphWrite) -> Result<()>;
    fn vertex(&self, tenant: &str, id: &str) -> Result<Option<Value>>;
    /// Edges touching `id` in `direction`, at most `limit`.
    fn edges(
        &self,
        tenant: &str,
        id: &str,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Edge>>;
    /// How many events of `tenant` were applied (audits exactly-once).
    fn tenant_events(&self, tenant: &str) -> Result<u64>;
    /// Every entry, decoded, sorted: the canonical dump.
    fn dump(&self) -> Result<Vec<(String, String)>>;
    fn clear(&self) -> Result<()>;
}

fn tenant_prefix(kind: u8, tenant: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + 40);
    key.push(kind);
    // Tenant ids are at most 63 bytes; the length byte keeps "a" and "a-b" apart.
    key.push(tenant.len().min(255) as u8);
    key.extend_from_slice(tenant.as_bytes());
    key
}

/// A vertex's key: its tenant's prefix, then its id in [`crate::compact::put_id`]'s form.
fn vertex_key(tenant: &str, id: &str) -> Vec<u8> {
    let mut key = tenant_prefix(VERTEX, tenant);
    crate::compact::put_id(&mut key, id);
    key
}

/// An edge's key as found from its `near` end: the prefix of `kind` and tenant, the near
/// end's id, the label's byte ([`label_code`]), the far end's id. Ids are self-delimiting, so
/// the prefix up to the near end's id finds exactly that vertex's edges.
fn edge_key(kind: u8, tenant: &str, near: &str, label: &str, far: &str) -> Vec<u8> {
    let mut key = tenant_prefix(kind, tenant);
    crate::compact::put_id(&mut key, near);
    key.push(label_code(label));
    crate::compact::put_id(&mut key, far);
    key
}

/// A label's byte in a key: its position in [`LABELS`] + 1 (0, never read back as a label,
/// for a name that is not one of them).
fn label_code(label: &str) -> u8 {
    LABELS
        .iter()
        .position(|l| *l == label)
        .map_or(0, |i| i as u8 + 1)
}

/// What follows an edge's near end in its key: its label and far end.
fn edge_rest(key: &[u8], rest: &[u8]) -> Result<(&'static str, String)> {
    let corrupt = |reason: String| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    let (&code, far) = rest
        .split_first()
        .ok_or_else(|| corrupt("an edge key without a label".into()))?;
    let label = LABELS
        .get(usize::from(code).wrapping_sub(1))
        .ok_or_else(|| corrupt(format!("unknown edge label code {code}")))?;
    let (far, used) = crate::compact::take_id(far)?;
    if used != rest.len() - 1 {
        return Err(corrupt("trailing bytes after an edge's far end".into()));
    }
    Ok((label, far))
}

/// A key as text, for [`GraphStore::dump`]: `v tenant id`, `o tenant from label to`,
/// `i tenant to label from`, or the metadata key as it is.
fn key_text(key: &[u8]) -> Result<String> {
    let (&kind, rest) = key.split_first().unwrap_or((&META, &[]));
    if kind == META {
        return Ok(String::from_utf8_lossy(key).into_owned());
    }
    let corrupt = || Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "a key that is no vertex or edge".into(),
    };
    let (&len, rest) = rest.split_first().ok_or_else(corrupt)?;
    let tenant = rest.get(..usize::from(len)).ok_or_else(corrupt)?;
    let tenant = String::from_utf8_lossy(tenant);
    let rest = &rest[usize::from(len)..];
    let (near, used) = crate::compact::take_id(rest)?;
    Ok(match kind {
        VERTEX if used == rest.len() => format!("v {tenant} {near}"),
        OUT | IN => {
            let (label, far) = edge_rest(key, &rest[used..])?;
            format!("{} {tenant} {near} {label} {far}", kind as char)
        }
        _ => return Err(corrupt()),
    })
}

fn events_key(tenant: &str) -> Vec<u8> {
    let mut key = b"mevents/".to_vec();
    key.extend_from_slice(tenant.as_bytes());
    key
}

fn u64_value(key: &[u8], value: Option<sled::IVec>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => v
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: "not an 8-byte integer".into(),
            }),
    }
}

/// The sled graph store.
#[derive(Debug, Clone)]
pub struct SledGraph {
    db: sled::Db,
    path: PathBuf,
}

/// How [`SledGraph::open_or_reset`] found the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Opened as it was.
    Intact,
    /// It could not be opened or was corrupt: moved to this path, and a fresh, empty graph
    /// opened in its place (the runner rebuilds it from the log).
    MovedAside(PathBuf),
}

impl SledGraph {
    fn config(path: &Path) -> sled::Config {
        sled::Config::new()
            .path(path)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(Some(SLED_FLUSH_EVERY_MS))
            .mode(sled::Mode::HighThroughput)
    }

    /// The vertices and edges of `write` as sled entries. They are written as plain inserts,
    /// not in the checkpoint's batch: each is a whole value computed from the state at the
    /// batch's end, so writing it twice writes the same thing, and a runner restarting from
    /// the older checkpoint after a crash mid-commit rewrites them identically. sled recovers
    /// a prefix of its log, so a checkpoint that survives a crash has every insert before it.
    /// A sled batch is applied under a lock that stops every other sled operation of the
    /// process, and building it hashes and copies every key: the graph view rebuilt 230-240 k
    /// events/s this way against 183 k with everything in the batch.
    fn entries(write: &GraphWrite) -> impl Iterator<Item = (Vec<u8>, &[u8])> + '_ {
        let vertices = write
            .vertices
            .iter()
            .map(|((tenant, id), doc)| (vertex_key(tenant, id), doc.as_slice()));
        // An edge is all key: its document is derived from the key when read, which keeps
        // sled's nodes small (it copies a leaf on every insert).
        let edges = write.edges.iter().flat_map(|((tenant, edge), stored)| {
            let out = (*stored != Stored::In)
                .then(|| edge_key(OUT, tenant, &edge.from, edge.label, &edge.to));
            let inbound = (*stored != Stored::Out)
                .then(|| edge_key(IN, tenant, &edge.to, edge.label, &edge.from));
            out.into_iter().chain(inbound).map(|key| (key, &[][..]))
        });
        vertices.chain(edges)
    }

    /// Writes `write`'s event counters (increments, which are not idempotent) and checkpoint
    /// in one atomic batch, once its entries are written.
    fn checkpoint(&self, write: &GraphWrite) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (tenant, n) in &write.tenant_events {
            let key = events_key(tenant);
            let now = u64_value(&key, self.db.get(&key)?)?;
            batch.insert(key, &(now + n).to_be_bytes()[..]);
        }
        batch.insert(APPLIED_KEY, &write.applied_lsn.to_be_bytes()[..]);
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Opens the graph at `path`; fails on any error (see [`SledGraph::open_or_reset`]).
    pub fn open(path: &Path) -> Result<Self> {
        let db = Self::config(path).open()?;
        let graph = Self {
            db,
            path: path.to_path_buf(),
        };
        // Reading the checkpoint walks the tree's root: a cheap check it is readable.
        let applied = graph.applied_lsn()?;
        let format = graph.db.get(FORMAT_KEY)?;
        if format.is_none() || u64_value(FORMAT_KEY, format)? != GRAPH_FORMAT {
            if applied > 0 {
                tracing::warn!(
                    path = %path.display(),
                    "graph view written in an older format; clearing it to rebuild from the WAL"
                );
            }
            graph.db.clear()?;
            graph
                .db
                .insert(FORMAT_KEY, &GRAPH_FORMAT.to_be_bytes()[..])?;
            graph.db.flush()?;
        }
        Ok(graph)
    }

    /// Opens the graph; if sled cannot open it or reports corruption, moves the directory
    /// aside to `PATH.corrupt-SUFFIX` (the caller picks the suffix, e.g. a timestamp) and
    /// opens a fresh one, logging a line that says so. A directory locked by another process
    /// is an error, never moved.
    pub fn open_or_reset(path: &Path, suffix: &str) -> Result<(Self, Opened)> {
        match Self::open(path) {
            Ok(graph) => Ok((graph, Opened::Intact)),
            Err(Error::Graph(e)) if !e.to_string().contains("could not acquire lock") => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(format!(".corrupt-{suffix}"));
                let aside = PathBuf::from(aside);
                std::fs::rename(path, &aside).map_err(|io| {
                    Error::Io(
                        format!(
                            "moving the unreadable graph {} aside to {}",
                            path.display(),
                            aside.display()
                        ),
                        io,
                    )
                })?;
                tracing::warn!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "graph view could not be opened; moved it aside and rebuilding it from the WAL"
                );
                prune_moved_aside(path);
                Ok((Self::open(path)?, Opened::MovedAside(aside)))
            }
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes everything to disk now.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// Deletes all but the newest [`GRAPH_MOVED_ASIDE_KEPT`] directories moved aside from `path`
/// (`<path>.corrupt-<ms>`, newest by that number), so repeated corruption cannot fill the disk.
fn prune_moved_aside(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.corrupt-", name.to_string_lossy());
    let mut aside: Vec<(u64, PathBuf)> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let ms = name.to_string_lossy().strip_prefix(&prefix)?.parse().ok()?;
            Some((ms, entry.path()))
        })
        .collect();
    aside.sort();
    for (_, old) in aside.iter().rev().skip(GRAPH_MOVED_ASIDE_KEPT) {
        match std::fs::remove_dir_all(old) {
            Ok(()) => tracing::info!(path = %old.display(), "removed an older unreadable graph"),
            Err(e) => {
                tracing::warn!(path = %old.display(), error = %e, "could not remove an older unreadable graph")
            }
        }
    }
}

impl GraphStore for SledGraph {
    fn applied_lsn(&self) -> Result<Lsn> {
        u64_value(APPLIED_KEY, self.db.get(APPLIED_KEY)?)
    }

    fn commit(&self, write: &GraphWrite) -> Result<()> {
        for (key, value) in Self::entries(write) {
            self.db.insert(key, value)?;
        }
        self.checkpoint(write)
    }

    fn tenant_events(&self, tenant: &str) -> Result<u64> {
        let key = events_key(tenant);
        u64_value(&key, self.db.get(&key)?)
    }

    fn dump(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for entry in self.db.iter() {
            let (k, v) = entry?;
            let value = match k.first() {
                Some(&META) => u64_value(&k, Some(v))?.to_string(),
                Some(&VERTEX) => crate::compact::decode(&v)?.to_string(),
                _ => String::from_utf8_lossy(&v).into_owned(),
            };
            out.push((key_text(&k)?, value));
        }
        Ok(out)
    }

    fn clear(&self) -> Result<()> {
        self.db.clear()?;
        self.db
            .insert(FORMAT_KEY, &GRAPH_FORMAT.to_be_bytes()[..])?;
        self.db.flush()?;
        Ok(())
    }

    fn vertex(&self, tenant: &str, id: &str) -> Result<Option<Value>> {
        if let Some((execution, index)) = step_of(id) {
            return Ok(self
                .stored_vertex(tenant, &format!("executions/{execution}"))?
                .and_then(|e| step_vertex(tenant, execution, index, &e)));
        }
        if id.starts_with("intents/") {
            return Ok(self
                .execution_of_intent(tenant, id)?
                .map(|e| intent_vertex(tenant, &e)));
        }
        self.stored_vertex(tenant, id)
    }

    fn edges(
        &self,
        tenant: &str,
        id: &str,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Edge>> {
        let mut out = self.stored_edges(tenant, id, direction, limit)?;
        let outbound = matches!(direction, Direction::Outbound | Direction::Any);
        let inbound = matches!(direction, Direction::Inbound | Direction::Any);
        let text = |v: &Value, field: &str| v[field].as_str().map(str::to_string);
        if let Some(execution) = id.strip_prefix("executions/")
            && let Some(doc) = self.stored_vertex(tenant, id)?
        {
            if outbound {
                if let (Some(name), Some(version)) =
                    (text(&doc, "capability"), doc["capability_version"].as_u64())
                {
                    out.push(Edge {
                        from: id.to_string(),
                        label: "uses",
                        to: format!("capabilities/{name}@{version}"),
                    });
                }
                for i in 0..doc["step_count"].as_u64().unwrap_or(0) {
                    out.push(Edge {
                        from: id.to_string(),
                        label: "has_step",
                        to: format!("steps/{execution}-{i}"),
                    });
                }
            }
            if inbound && let Some(intent) = text(&doc, "intent_id") {
                out.push(Edge {
                    from: format!("intents/{intent}"),
                    label: "executed_as",
                    to: id.to_string(),
                });
            }
        }
        if inbound
            && id.starts_with("intents/")
            && let Some(doc) = self.execution_of_intent(tenant, id)?
            && let Some(session) = text(&doc, "session_id")
        {
            out.push(Edge {
                from: format!("sessions/{session}"),
                label: "submitted",
                to: id.to_string(),
            });
        }
        if inbound
            && let Some((execution, _)) = step_of(id)
            && self.vertex(tenant, id)?.is_some()
        {
            out.push(Edge {
                from: format!("executions/{execution}"),
                label: "has_step",
                to: id.to_string(),
            });
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// `steps/<execution>-<index>` split.
fn step_of(id: &str) -> Option<(&str, usize)> {
    let rest = id.strip_prefix("steps/")?;
    let (execution, index) = rest.rsplit_once('-')?;
    Some((execution, index.parse().ok()?))
}

/// The vertex of step `index` of an execution vertex.
fn step_vertex(tenant: &str, execution: &str, index: usize, e: &Value) -> Option<Value> {
    let mut doc = e["steps"].as_array()?.get(index)?.clone();
    doc["tenant_id"] = json!(tenant);
    doc["execution_id"] = json!(execution);
    doc["index"] = json!(index);
    Some(with_id(doc, "steps", &format!("{execution}-{index}")))
}

/// The vertex of an intent, derived from its execution's vertex (which carries the intent's
/// fields), so an execution costs one vertex write instead of two.
fn intent_vertex(tenant: &str, e: &Value) -> Value {
    let intent = e["intent_id"].as_str().unwrap_or_default().to_string();
    let doc = json!({
        "tenant_id": tenant, "intent_type": e["intent_type"], "realm": e["realm"],
        "session_id": e["session_id"], "execution_id": e["execution_id"],
        "idempotency_key": e["idempotency_key"], "submitted_at": e["submitted_at"],
        "lsn": e["lsn"],
    });
    with_id(doc, "intents", &intent)
}

impl SledGraph {
    /// The vertex of the execution an intent ran as: its one `executed_as` edge names it.
    fn execution_of_intent(&self, tenant: &str, intent: &str) -> Result<Option<Value>> {
        let edges = self.stored_edges(tenant, intent, Direction::Outbound, usize::MAX)?;
        match edges.iter().find(|e| e.label == "executed_as") {
            Some(edge) => self.stored_vertex(tenant, &edge.to),
            None => Ok(None),
        }
    }

    fn stored_vertex(&self, tenant: &str, id: &str) -> Result<Option<Value>> {
        let key = vertex_key(tenant, id);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(v) => crate::compact::decode(&v)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    key: format!("{tenant}:{id}"),
                    reason: e.to_string(),
                }),
        }
    }

    fn stored_edges(
        &self,
        tenant: &str,
        id: &str,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Edge>> {
        let kinds: &[u8] = match direction {
            Direction::Outbound => &[OUT],
            Direction::Inbound => &[IN],
            Direction::Any => &[OUT, IN],
        };
        let mut out = Vec::new();
        for &kind in kinds {
            let mut prefix = tenant_prefix(kind, tenant);
            crate::compact::put_id(&mut prefix, id);
            for entry in self.db.scan_prefix(&prefix) {
                if out.len() >= limit {
                    return Ok(out);
                }
                let (key, _) = entry?;
                let (label, far) = edge_rest(&key, &key[prefix.len()..])?;
                let (from, to) = if kind == OUT {
                    (id.to_string(), far)
                } else {
                    (far, id.to_string())
                };
                out.push(Edge { from, label, to });
            }
        }
        Ok(out)
    }
}

/// Every edge label the view writes.
pub const LABELS: [&str; 9] = [
    "owns",
    "submitted",
    "executed_as",
    "uses",
    "has_step",
    "produced",
    "has_chunk",
    "in_chunk",
    "of_document",
];

/// The graph view as a projection over a [`GraphStore`].
#[derive(Debug)]
pub struct GraphView<G: GraphStore> {
    store: Arc<G>,
}

impl<G: GraphStore> GraphView<G> {
    pub fn new(store: Arc<G>) -> Self {
        Self { store }
    }
}

fn with_id(mut doc: Value, collection: &str, key: &str) -> Value {
    doc["_id"] = json!(format!("{collection}/{key}"));
    doc["_key"] = json!(key);
    doc
}

/// The vertices and edges of one execution.
/// Renders an execution's vertex; with `created` (its first event is in this batch) also
/// what never changes about it: its intent, its capability and the edges between them.
fn render_execution(
    state: &State,
    tenant: &str,
    e: &Execution,
    created: bool,
    out: &mut GraphWrite,
) {
    let (intent, execution) = (e.intent_id.to_string(), e.execution_id.to_string());
    // Steps live inside their execution's vertex (one write instead of one per step plus
    // two per edge); `steps/<execution>-<index>` vertices and `has_step` edges are derived
    // from it when read, and the intent's vertex from its fields.
    let vertex = ExecutionVertex {
        status: view::execution_status_view(state, e),
        step_count: e.steps.len(),
        realm: &e.realm,
        idempotency_key: e.idempotency_key.as_deref(),
    };
    out.vertex(tenant, "executions", &execution, &vertex);
    if let Some(record) = crate::content::document_of(e) {
        render_document(tenant, &execution, &record, out);
    }
    if !created {
        return;
    }
    // The outbound `uses` and the inbound `executed_as` and `submitted` sides are derived from
    // the execution's vertex when read; only the sides that need a lookup are stored.
    if let Some(spec) = state.capability(&e.capability, e.capability_version) {
        let key = format!("{}@{}", spec.name, spec.version);
        let id = (tenant.to_string(), format!("capabilities/{key}"));
        if !out.vertices.contains_key(&id) {
            out.vertex(tenant, "capabilities", &key, &view::capability(spec));
        }
        out.edge(
            tenant,
            format!("executions/{execution}"),
            "uses",
            format!("capabilities/{key}"),
            Stored::In,
        );
    }
    out.edge(
        tenant,
        format!("sessions/{}", e.session_id),
        "submitted",
        format!("intents/{intent}"),
        Stored::Out,
    );
    out.edge(
        tenant,
        format!("intents/{intent}"),
        "executed_as",
        format!("executions/{execution}"),
        Stored::Out,
    );
}

/// The document an upload produced, its chunks and its facts.
fn render_document(
    tenant: &str,
    execution: &str,
    r: &symphainy_engine::realms::content::DocumentRecord,
    out: &mut GraphWrite,
) {
    let doc_id = format!("documents/{}", r.document_id);
    let mut vertex = |collection: &str, key: &str, doc: Value| {
        out.vertex(tenant, collection, key, &doc);
    };
    vertex(
        "documents",
        &r.document_id,
        json!({
            "tenant_id": tenant, "document_id": r.document_id, "filename": r.filename,
            "media_type": r.media_type, "size_bytes": r.size_bytes, "sha256": r.sha256,
            "format": r.format, "words": r.words, "rows": r.rows, "chunks": r.chunks.len(),
            "facts": r.facts.len(), "execution_id": execution,
        }),
    );
    let mut edges = vec![Edge {
        from: format!("executions/{execution}"),
        label: "produced",
        to: doc_id.clone(),
    }];
    for (i, [s, e]) in r.chunks.iter().enumerate() {
        let chunk = symphainy_engine::realms::content::facts::chunk_id(&r.document_id, i);
        vertex(
            "chunks",
            &chunk,
            json!({"tenant_id": tenant, "document_id": r.document_id, "index": i, "span": [s, e]}),
        );
        edges.push(Edge {
            from: doc_id.clone(),
            label: "has_chunk",
            to: format!("chunks/{chunk}"),
        });
    }
    for f in &r.facts {
        vertex(
            "facts",
            &f.fact_id,
            json!({
                "tenant_id": tenant, "fact_id": f.fact_id, "kind": f.kind, "value": f.value,
                "document_id": f.document_id, "chunk_id": f.chunk_id, "span": f.span,
            }),
        );
        let fact = format!("facts/{}", f.fact_id);
        edges.push(Edge {
            from: fact.clone(),
            label: "in_chunk",
            to: format!("chunks/{}", f.chunk_id),
        });
        edges.push(Edge {
            from: fact,
            label: "of_document",
            to: doc_id.clone(),
        });
    }
    for Edge { from, label, to } in edges {
        out.edge(tenant, from, label, to, Stored::Both);
    }
}

/// Renders the batch's touched entities into graph writes.
pub fn render_batch(state: &State, batch: &Batch) -> GraphWrite {
    let mut out = GraphWrite {
        applied_lsn: batch.last_lsn,
        ..GraphWrite::default()
    };
    for (tenant, lsns) in &batch.tenant_lsns {
        out.tenant_events.insert(tenant.clone(), lsns.len() as u64);
    }
    for (tenant, touched) in &batch.touched {
        for t in touched {
            match t {
                Touched::Tenant(name) => {
                    if let Some(record) = state.tenants.get(name) {
                        let doc =
                            json!({"tenant_id": name, "created_at": rfc3339(record.created_at_ms)});
                        out.vertex(name, "tenants", name, &doc);
                    }
                }
                Touched::Session(id) => {
                    if let Some(s) = state.session_of(tenant, *id) {
                        let key = id.to_string();
                        out.vertex(tenant, "sessions", &key, &view::session_view(s));
                        if !batch.created.contains(id) {
                            continue;
                        }
                        out.edge(
                            tenant,
                            format!("tenants/{tenant}"),
                            "owns",
                            format!("sessions/{key}"),
                            Stored::Both,
                        );
                    }
                }
                Touched::Execution(id) => {
                    if let Some(e) = state.execution_of(tenant, *id) {
                        render_execution(state, tenant, e, batch.created.contains(id), &mut out);
                    }
                }
                // Capabilities enter a tenant's namespace when one of its executions uses them.
                Touched::Capability(..) => {}
            }
        }
    }
    out
}

impl<G: GraphStore> Projection for GraphView<G> {
    fn name(&self) -> &'static str {
        "graph_view"
    }

    async fn applied_lsn(&mut self) -> Result<Lsn> {
        self.store.applied_lsn()
    }

    async fn write(&mut self, state: &State, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Rendering and sled's writes are CPU work: tell the scheduler, so this worker's other
        // tasks (request handling) move elsewhere meanwhile.
        let commit = || self.store.commit(&render_batch(state, batch));
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(commit)
            }
            _ => commit(),
        };
        match outcome {
            // sled found corruption while writing: the runner clears and rebuilds the view.
            Err(Error::Graph(e @ sled::Error::Corruption { .. })) => {
                Err(Error::StoreCorrupt(e.to_string()))
            }
            other => other,
        }
    }

    async fn clear(&mut self) -> Result<()> {
        self.store.clear()
    }
}

/// A traversal's answer (CONTRACT section 5).
#[derive(Debug, Clone, PartialEq)]
pub struct Traversal {
    pub vertices: Vec<Value>,
    pub edges: Vec<Value>,
    /// A limit cut the traversal short.
    pub truncated: bool,
}

/// Splits `collection/key` and checks both parts.
pub fn parse_vertex_id(id: &str) -> Result<(&str, &str)> {
    let (collection, key) = id
        .split_once('/')
        .ok_or_else(|| Error::Query(format!("{id:?} is not COLLECTION/KEY")))?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.@:".contains(&b))
    };
    if !ok(collection) || !ok(key) {
        return Err(Error::Query(format!("{id:?} is not a valid vertex id")));
    }
    Ok((collection, key))
}

/// Breadth-first traversal from `start` up to `depth` hops, within `tenant`.
pub fn traverse<G: GraphStore + ?Sized>(
    store: &G,
    tenant: &str,
    start: &str,
    direction: Direction,
    depth: u32,
) -> Result<Option<Traversal>> {
    parse_vertex_id(start)?;
    if depth > TRAVERSE_DEPTH_MAX {
        return Err(Error::Query(format!(
            "depth {depth} exceeds the limit of {TRAVERSE_DEPTH_MAX}"
        )));
    }
    let Some(first) = store.vertex(tenant, start)? else {
        return Ok(None);
    };
    let mut seen = BTreeSet::from([start.to_string()]);
    let mut vertices = vec![first];
    let mut edges = BTreeMap::new();
    let mut truncated = false;
    let mut queue = VecDeque::from([(start.to_string(), 0)]);
    'walk: while let Some((id, level)) = queue.pop_front() {
        if level == depth {
            continue;
        }
        for edge in store.edges(tenant, &id, direction, TRAVERSE_EDGES_MAX + 1)? {
            if edges.len() >= TRAVERSE_EDGES_MAX {
                truncated = true;
                break 'walk;
            }
            let next = if edge.from == id {
                edge.to.clone()
            } else {
                edge.from.clone()
            };
            edges.insert(edge.key(), edge.to_json());
            if seen.contains(&next) {
                continue;
            }
            if vertices.len() >= TRAVERSE_VERTICES_MAX {
                truncated = true;
                break 'walk;
            }
            seen.insert(next.clone());
            if let Some(doc) = store.vertex(tenant, &next)? {
                vertices.push(doc);
            }
            queue.push_back((next, level + 1));
        }
    }
    Ok(Some(Traversal {
        vertices,
        edges: edges.into_values().collect(),
        truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lsn: Lsn) -> GraphWrite {
        let mut w = GraphWrite {
            applied_lsn: lsn,
            ..GraphWrite::default()
        };
        w.vertex(
            "acme",
            "sessions",
            "S",
            &json!({"status": "open", "created_at": rfc3339(1_700_000_000_123)}),
        );
        w
    }

    /// Opens the graph again; sled's background threads let go of the previous handle's
    /// directory lock a moment after it is dropped.
    fn reopen(path: &Path) -> SledGraph {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledGraph::open(path) {
                Ok(g) => return g,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("reopening the graph: {e}"),
            }
        }
    }

    // Edges are found by their near end's id only: not those of an id it is a text prefix
    // of, nor another tenant's; the dump spells every key out.
    #[test]
    fn edges_belong_to_exactly_their_vertex_and_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let g = reopen(&dir.path().join("graph"));
        let execution = "executions/01M8ARR8ZBSRTDT3TGMFND4E34";
        let mut w = write(3);
        for (tenant, capability) in [
            ("acme", "capabilities/x@1"),
            ("acme", "capabilities/x@10"),
            ("acme-b", "capabilities/x@1"),
        ] {
            w.edge(
                tenant,
                format!("{execution}{}", &capability[capability.len() - 1..]),
                "uses",
                capability.to_string(),
                Stored::Both,
            );
        }
        g.commit(&w).unwrap();
        let found = g
            .stored_edges("acme", "capabilities/x@1", Direction::Inbound, 10)
            .unwrap();
        assert_eq!(
            found,
            vec![Edge {
                from: format!("{execution}1"),
                label: "uses",
                to: "capabilities/x@1".into(),
            }]
        );
        let out = g
            .stored_edges("acme", &format!("{execution}0"), Direction::Outbound, 10)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, "capabilities/x@10");
        let keys: Vec<String> = g.dump().unwrap().into_iter().map(|(k, _)| k).collect();
        for key in [
            "v acme sessions/S".to_string(),
            format!("o acme {execution}0 uses capabilities/x@10"),
            format!("i acme-b capabilities/x@1 uses {execution}1"),
            "mapplied_lsn".into(),
        ] {
            assert!(keys.contains(&key), "{key:?} not in {keys:?}");
        }
    }

    // A graph written in another vertex format is cleared on open (the runner rebuilds it);
    // one in the current format, cleared or not, is kept across reopens.
    #[test]
    fn a_graph_of_another_format_is_cleared_on_open_and_the_current_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph");
        {
            let g = reopen(&path);
            g.commit(&write(7)).unwrap();
            assert_eq!(
                g.vertex("acme", "sessions/S").unwrap().unwrap()["status"],
                "open"
            );
            g.flush().unwrap();
        }
        {
            let g = reopen(&path);
            assert_eq!(g.applied_lsn().unwrap(), 7, "same format: kept");
            g.clear().unwrap();
            g.commit(&write(9)).unwrap();
            g.flush().unwrap();
        }
        {
            let g = reopen(&path);
            assert_eq!(g.applied_lsn().unwrap(), 9, "cleared then rebuilt: kept");
            // As an older release would have left it: JSON text and no format key.
            g.db.remove(FORMAT_KEY).unwrap();
            g.db.insert(
                vertex_key("acme", "sessions/S"),
                &b"{\"status\":\"open\"}"[..],
            )
            .unwrap();
            g.flush().unwrap();
        }
        let g = reopen(&path);
        assert_eq!(g.applied_lsn().unwrap(), 0);
        assert_eq!(g.vertex("acme", "sessions/S").unwrap(), None);
    }

    // An unreadable graph is moved aside; only the newest moved-aside directories are kept.
    #[test]
    fn unreadable_graphs_moved_aside_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("graph");
        for ms in [10, 20, 30] {
            std::fs::create_dir(dir.path().join(format!("graph.corrupt-{ms}"))).unwrap();
        }
        std::fs::create_dir(dir.path().join("graph.corrupt-notes")).unwrap();
        // A file where the directory should be: sled cannot open it.
        std::fs::write(&path, b"not a sled directory").unwrap();
        let (graph, opened) = SledGraph::open_or_reset(&path, "40").unwrap();
        assert_eq!(
            opened,
            Opened::MovedAside(dir.path().join("graph.corrupt-40"))
        );
        assert_eq!(graph.applied_lsn().unwrap(), 0);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "graph",
                "graph.corrupt-30",
                "graph.corrupt-40",
                "graph.corrupt-notes"
            ]
        );
    }

    // An event counter of the view's own that does not parse is damage: the runner clears
    // the view and rebuilds it from the log, and the counter is right again.

    // A commit cut short after some of its vertices and edges (a crash before its
    // checkpoint): the runner restarts from the previous checkpoint and the graph ends equal,
    // entry for entry and counter for counter, to one built without interruption.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_cut_short_is_completed_by_the_runner_from_its_checkpoint() {
        use crate::fold::Fold;
        use crate::runner::{Runner, RunnerConfig, rebuild};
        use symphainy_wal::{Config, Log, Wal};
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path().join("wal"), Config::default()).unwrap());
        let appender = wal.clone();
        tokio::task::spawn_blocking(move || {
            symphainy_engine::testing::synthetic_log(&appender, 3_000)
        })
        .await
        .unwrap();
        let end = wal.durable_lsn();
        let whole = Arc::new(reopen(&dir.path().join("whole")));
        rebuild(
            &mut GraphView::new(whole.clone()),
            &mut wal.cursor(1),
            512,
            |_| {},
        )
        .await
        .unwrap();
        let expected = whole.dump().unwrap();
        for cut in [0, 1, 7, 500] {
            let graph = Arc::new(reopen(&dir.path().join(format!("cut-{cut}"))));
            // The first half committed; the second half's write cut after `cut` entries.
            let mut fold = Fold::default();
            let mut cursor = wal.cursor(1);
            let half = end / 2;
            for upto in [half, end] {
                let want = (upto + 1 - cursor.next_lsn()) as usize;
                cursor
                    .visit(want, |lsn, meta, payload| {
                        fold.apply_record(lsn, meta, payload).unwrap()
                    })
                    .unwrap();
                let batch = fold.take_batch();
                let write = render_batch(fold.state(), &batch);
                if upto == end {
                    // Cut short: some entries, no checkpoint.
                    for (key, value) in SledGraph::entries(&write).take(cut) {
                        graph.db.insert(key, value).unwrap();
                    }
                } else {
                    graph.commit(&write).unwrap();
                }
            }
            assert_eq!(graph.applied_lsn().unwrap(), half, "cut {cut}");
            let runner = Runner::start(
                wal.clone(),
                GraphView::new(graph.clone()),
                State::default(),
                RunnerConfig::default(),
            );
            assert!(
                runner
                    .wait_applied(end, std::time::Duration::from_secs(20))
                    .await
            );
            runner.stop().await;
            let got = graph.dump().unwrap();
            let differs = got.iter().zip(&expected).find(|(a, b)| a != b);
            assert!(
                got.len() == expected.len() && differs.is_none(),
                "cut {cut}: {} entries against {}, first difference {differs:?}",
                got.len(),
                expected.len()
            );
        }
        assert!(expected.len() > 1_000, "{} entries", expected.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_counter_is_rebuilt_from_the_log() {
        use crate::runner::{Runner, RunnerConfig};
        use symphainy_wal::{Config, Log, Wal};
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path().join("wal"), Config::default()).unwrap());
        let graph = Arc::new(reopen(&dir.path().join("graph")));
        let config = RunnerConfig {
            backoff_min: std::time::Duration::from_millis(1),
            ..RunnerConfig::default()
        };
        let runner = Runner::start(
            wal.clone(),
            GraphView::new(graph.clone()),
            State::default(),
            config,
        );
        let grow = |wal: Arc<Wal>| async move {
            tokio::task::spawn_blocking(move || {
                symphainy_engine::testing::synthetic_log(&wal, 200)
            })
            .await
            .unwrap();
        };
        grow(wal.clone()).await;
        let wait = std::time::Duration::from_secs(20);
        assert!(runner.wait_applied(wal.durable_lsn(), wait).await);
        graph.db.insert(events_key("acme"), &b"bad"[..]).unwrap();
        grow(wal.clone()).await;
        let target = wal.durable_lsn();
        let expected = crate::testing::tenant_event_counts(wal.as_ref(), target)["acme"];
        let deadline = std::time::Instant::now() + wait;
        while graph.tenant_events("acme").ok() != Some(expected)
            || runner.status().applied_lsn() < target
        {
            assert!(
                std::time::Instant::now() < deadline,
                "not rebuilt: {:?}",
                runner.status().snapshot(target)
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        runner.stop().await;
    }
}
