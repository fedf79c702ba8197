//! The content index: every document the content realm produced (its record and facts) and a
//! vector per chunk, per tenant, in memory — a projection of the `content.parse_and_embed`
//! executions in the log, rebuilt from it at start. It answers `GET /content/documents/{id}`,
//! `GET /content/search` (exact cosine top-k) and the analysis' fact gathering.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};
use symphainy_engine::State;
use symphainy_engine::agents::Fact;
use symphainy_engine::realms::content::blob::BlobStore;
use symphainy_engine::realms::content::embed::{Embedder, cosine};
use symphainy_engine::realms::content::{DocumentRecord, FactSource, document_text};
use symphainy_engine::state::{Execution, ExecutionStatus};
use symphainy_wal::Lsn;

use crate::fold::{Batch, Touched};
use crate::runner::Projection;
use crate::{Error, Result};

/// The capability whose executions produce documents.
pub const DOCUMENT_CAPABILITY: &str = "content.parse_and_embed";
/// Most results one search returns.
pub const SEARCH_K_MAX: usize = 100;
/// Longest search query.
pub const SEARCH_QUERY_BYTES_MAX: usize = 2_000;

/// The document record an execution produced, if it is a completed content upload.
pub fn document_of(e: &Execution) -> Option<DocumentRecord> {
    if &*e.capability != DOCUMENT_CAPABILITY || e.status != ExecutionStatus::Completed {
        return None;
    }
    let last = e.steps.last()?.output_json.as_deref()?;
    serde_json::from_str(last).ok()
}

#[derive(Debug)]
struct Chunk {
    chunk_id: String,
    text: String,
    vector: Vec<f32>,
}

#[derive(Debug)]
struct Document {
    record: DocumentRecord,
    chunks: Vec<Chunk>,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub document_id: String,
    pub chunk_id: String,
    pub score: f32,
    pub text: String,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: HashMap<String, BTreeMap<String, Document>>,
    applied_lsn: Lsn,
}

/// The index (shared by its projection, the read endpoints and the realm's fact source).
#[derive(Debug)]
pub struct ContentIndex {
    inner: RwLock<Inner>,
    embedder: Arc<dyn Embedder>,
}

impl ContentIndex {
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            embedder,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Writers do not panic while holding the lock; the data stays consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A document of `tenant` as `GET /content/documents/{id}` shows it.
    pub fn document(&self, tenant: &str, document_id: &str) -> Option<Value> {
        self.document_view(tenant, document_id, false)
    }

    /// The document's metadata and facts; with `with_chunks`, also `chunk_list`: every chunk's
    /// id, byte span in the document text and text.
    pub fn document_view(
        &self,
        tenant: &str,
        document_id: &str,
        with_chunks: bool,
    ) -> Option<Value> {
        let inner = self.read();
        let d = inner.tenants.get(tenant)?.get(document_id)?;
        let r = &d.record;
        let mut out = json!({
            "document_id": r.document_id,
            "filename": r.filename,
            "media_type": r.media_type,
            "size_bytes": r.size_bytes,
            "sha256": r.sha256,
            "format": r.format,
            "words": r.words,
            "rows": r.rows,
            "chunks": r.chunks.len(),
            "chunk_ids": d.chunks.iter().map(|c| c.chunk_id.clone()).collect::<Vec<_>>(),
            "embedder": r.embedder,
            "facts": r.facts,
        });
        if with_chunks {
            out["chunk_list"] = d
                .chunks
                .iter()
                .zip(&r.chunks)
                .map(|(c, span)| json!({"chunk_id": c.chunk_id, "span": span, "text": c.text}))
                .collect();
        }
        Some(out)
    }

    /// The text of one chunk of a document of `tenant`.
    pub fn chunk_text(&self, tenant: &str, document_id: &str, chunk_id: &str) -> Option<String> {
        let inner = self.read();
        let d = inner.tenants.get(tenant)?.get(document_id)?;
        d.chunks
            .iter()
            .find(|c| c.chunk_id == chunk_id)
            .map(|c| c.text.clone())
    }

    /// The `k` chunks of `tenant` closest to `query`, best first (ties by chunk id).
    pub fn search(&self, tenant: &str, query: &str, k: usize) -> Vec<Hit> {
        let q = self.embedder.embed(query);
        let q = q.as_slice();
        let inner = self.read();
        let Some(docs) = inner.tenants.get(tenant) else {
            return Vec::new();
        };
        // Keep the best k in a small sorted buffer: no allocation per chunk, no full sort.
        let k = k.clamp(1, SEARCH_K_MAX);
        let mut best: Vec<(f32, &str, &Chunk)> = Vec::with_capacity(k + 1);
        let better = |a: &(f32, &str, &Chunk), b: &(f32, &str, &Chunk)| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.2.chunk_id.cmp(&b.2.chunk_id))
        };
        for (id, d) in docs {
            for c in &d.chunks {
                let score = cosine(q, &c.vector);
                if score <= 0.0 {
                    continue;
                }
                let hit = (score, id.as_str(), c);
                if best.len() == k && better(&hit, &best[k - 1]) != std::cmp::Ordering::Less {
                    continue;
                }
                let at = best.partition_point(|b| better(b, &hit) == std::cmp::Ordering::Less);
                best.insert(at, hit);
                best.truncate(k);
            }
        }
        best.into_iter()
            .map(|(score, document_id, c)| Hit {
                document_id: document_id.to_string(),
                chunk_id: c.chunk_id.clone(),
                score,
                text: c.text.clone(),
            })
            .collect()
    }

    /// Embeds the chunks of a document whose text is `text`.
    fn prepare(&self, record: DocumentRecord, text: &str) -> Document {
        let chunks = record
            .chunks
            .iter()
            .enumerate()
            .map(|(i, [s, e])| {
                let piece = text.get(*s..*e).unwrap_or_default().to_string();
                Chunk {
                    chunk_id: symphainy_engine::realms::content::facts::chunk_id(
                        &record.document_id,
                        i,
                    ),
                    vector: self.embedder.embed(&piece),
                    text: piece,
                }
            })
            .collect();
        Document { record, chunks }
    }

    /// Adds a document directly (benchmarks; the projection is the only writer in a server).
    pub fn insert(&self, tenant: &str, record: DocumentRecord, text: &str) {
        let doc = self.prepare(record, text);
        self.write()
            .tenants
            .entry(tenant.to_string())
            .or_default()
            .insert(doc.record.document_id.clone(), doc);
    }

    /// How many chunks the index holds (all tenants).
    pub fn chunk_count(&self) -> usize {
        self.read()
            .tenants
            .values()
            .flat_map(|d| d.values())
            .map(|d| d.chunks.len())
            .sum()
    }
}

impl FactSource for ContentIndex {
    fn facts(&self, tenant: &str, document_id: &str) -> Option<Vec<Fact>> {
        let inner = self.read();
        Some(
            inner
                .tenants
                .get(tenant)?
                .get(document_id)?
                .record
                .facts
                .clone(),
        )
    }

    fn search(&self, tenant: &str, query: &str, k: usize) -> Vec<(String, String, f32, String)> {
        ContentIndex::search(self, tenant, query, k)
            .into_iter()
            .map(|h| (h.document_id, h.chunk_id, h.score, h.text))
            .collect()
    }
}

/// The content index as a projection; reads chunk text from the blob store.
#[derive(Debug)]
pub struct ContentProjection {
    index: Arc<ContentIndex>,
    blobs: BlobStore,
}

impl ContentProjection {
    pub fn new(index: Arc<ContentIndex>, blobs: BlobStore) -> Self {
        Self { index, blobs }
    }

    fn load(&self, record: DocumentRecord) -> Result<Document> {
        let text = document_text(&self.blobs, &record)
            .map_err(|e| Error::Store(format!("document {}: {e}", record.document_id)))?;
        Ok(self.index.prepare(record, &text))
    }
}

impl Projection for ContentProjection {
    fn name(&self) -> &'static str {
        "content_index"
    }

    async fn applied_lsn(&mut self) -> Result<Lsn> {
        Ok(self.index.read().applied_lsn)
    }

    async fn write(&mut self, state: &State, batch: &Batch) -> Result<()> {
        // Load outside the lock (blob reads, embeddings), then apply with the checkpoint.
        let mut loaded = Vec::new();
        for (tenant, touched) in &batch.touched {
            for t in touched {
                if let Touched::Execution(id) = t
                    && let Some(record) = state.execution_of(tenant, *id).and_then(document_of)
                {
                    loaded.push((tenant.clone(), self.load(record)?));
                }
            }
        }
        let mut inner = self.index.write();
        for (tenant, doc) in loaded {
            inner
                .tenants
                .entry(tenant)
                .or_default()
                .insert(doc.record.document_id.clone(), doc);
        }
        inner.applied_lsn = batch.last_lsn;
        Ok(())
    }

    async fn clear(&mut self) -> Result<()> {
        *self.index.write() = Inner::default();
        Ok(())
    }
}
