//! The content realm: upload -> store -> parse -> chunk -> embed -> extract facts, and
//! grounded analysis over a document's facts. It composes its logic only through the curator
//! (capabilities) and the saga coordinator (steps); it never writes state: every result is a
//! step output in the log, and the document index, search and graph vertices are projections
//! of those outputs.
//!
//! - Manager: [`ContentRealm`] holds the services and registers the capabilities.
//! - Orchestrators: [`ParseAndEmbed`] (`content.upload`) and [`GroundedAnalysis`]
//!   (`content.analyze`), each a saga of steps.
//! - Services: [`blob`] (content-addressed bytes), [`parse`], [`chunk`], [`embed`], [`facts`].

pub mod blob;
pub mod chunk;
pub mod embed;
pub mod facts;
pub mod parse;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agents::{BaseAgent, FactView, GroundedReasoningAgent, Proposal, Reasoner};
use crate::event::{CapabilitySpec, StepSpec};
use crate::saga::{CapabilityHandler, Registry, SagaStep, StepError, StepFuture, StepInput};
use blob::BlobStore;
use embed::Embedder;
use facts::Fact;
use parse::Format;

/// Longest file name kept.
pub const FILENAME_BYTES_MAX: usize = 255;
/// Longest question of `content.analyze`.
pub const QUESTION_BYTES_MAX: usize = 2_000;
/// Time limit of one content step (parsing a large file included).
pub const CONTENT_STEP_TIMEOUT_MS: u64 = 30_000;

/// A document as the realm's steps record it; each step adds its part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub document_id: String,
    pub filename: String,
    pub media_type: String,
    pub sha256: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub format: Option<Format>,
    /// The text facts and chunks point into (the file itself for text formats).
    #[serde(default)]
    pub text_sha256: Option<String>,
    #[serde(default)]
    pub text_bytes: Option<u64>,
    #[serde(default)]
    pub words: Option<u64>,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub chunks: Vec<[usize; 2]>,
    #[serde(default)]
    pub embedder: Option<String>,
    /// sha256 of every chunk vector's little-endian bytes: pins the embedder's output.
    #[serde(default)]
    pub vectors_sha256: Option<String>,
    #[serde(default)]
    pub facts: Vec<Fact>,
}

/// Where the analysis finds a document's facts (the content index projection).
pub trait FactSource: Send + Sync + std::fmt::Debug {
    /// The facts of `tenant`'s document; `None` when the tenant has no such document.
    fn facts(&self, tenant: &str, document_id: &str) -> Option<Vec<Fact>>;
    /// The `k` chunks of `tenant` closest to `query`: `(document_id, chunk_id, score, text)`.
    fn search(&self, tenant: &str, query: &str, k: usize) -> Vec<(String, String, f32, String)>;
}

/// Tool requests run for one analysis at most.
pub const TOOL_REQUESTS_MAX: usize = 4;
/// Tools an agent may ask the runtime for (read-only, inside the caller's tenant).
pub const TOOLS: [&str; 1] = ["content.search"];

/// The fact source of offline replay: `gather_facts` is a non-deterministic step, so replay
/// uses its recorded output and never asks; if asked, it knows no document.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordedFactsOnly;

impl FactSource for RecordedFactsOnly {
    fn facts(&self, _tenant: &str, _document_id: &str) -> Option<Vec<Fact>> {
        None
    }

    fn search(&self, _tenant: &str, _query: &str, _k: usize) -> Vec<(String, String, f32, String)> {
        Vec::new()
    }
}

/// The realm with its default services over the blob store in `blob_dir` (what the replay
/// tool re-executes deterministic steps with).
pub fn offline_realm(blob_dir: impl Into<std::path::PathBuf>) -> Arc<ContentRealm> {
    Arc::new(ContentRealm {
        blobs: BlobStore::new(blob_dir),
        embedder: Arc::new(embed::FeatureHashEmbedder),
        facts: Arc::new(RecordedFactsOnly),
        reasoner: Arc::new(crate::agents::ExtractiveReasoner),
        validate_claims: true,
    })
}

/// The realm's services.
#[derive(Debug, Clone)]
pub struct ContentRealm {
    pub blobs: BlobStore,
    pub embedder: Arc<dyn Embedder>,
    pub facts: Arc<dyn FactSource>,
    pub reasoner: Arc<dyn Reasoner>,
    /// Policy: check every claim's citations (the analysis' validation phase).
    pub validate_claims: bool,
}

impl ContentRealm {
    /// Registers `content.parse_and_embed` and `content.grounded_analysis`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) -> crate::Result<()> {
        registry.register(Arc::new(ParseAndEmbed {
            realm: self.clone(),
        }))?;
        registry.register(Arc::new(GroundedAnalysis {
            realm: self.clone(),
        }))?;
        Ok(())
    }
}

fn permanent(code: &str, message: impl Into<String>) -> StepError {
    StepError::permanent(code, message)
}

fn step_spec(name: &str, deterministic: bool) -> StepSpec {
    StepSpec {
        name: name.into(),
        deterministic,
        max_attempts: 3,
        timeout_ms: CONTENT_STEP_TIMEOUT_MS,
        backoff_base_ms: 50,
    }
}

fn previous(input: &StepInput) -> Result<DocumentRecord, StepError> {
    let text = input
        .previous_output_json
        .as_deref()
        .ok_or_else(|| permanent("bad_input", "the step has no previous output"))?;
    serde_json::from_str(text).map_err(|e| permanent("bad_input", format!("previous output: {e}")))
}

fn output(record: &DocumentRecord) -> Result<String, StepError> {
    serde_json::to_string(record).map_err(|e| permanent("internal", e.to_string()))
}

/// Runs blocking work (file I/O, parsing) off the async workers; a panic in it fails the
/// step with `parser_crashed` instead of taking anything else down.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(permanent(
            "parser_crashed",
            format!("the parser failed: {e}"),
        )),
    }
}

/// How old a blob no logged event names must be before the server removes it at start
/// ([`BlobStore::sweep`]), one hour.
pub const BLOB_ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Every blob the content executions of `state` name: an upload's `blob_sha256`, and the
/// `sha256` and `text_sha256` their steps recorded. Executions of every status count (a
/// failed one's blobs are kept for audit and `check-determinism`).
pub fn referenced_blobs(state: &crate::state::State) -> std::collections::BTreeSet<String> {
    #[derive(Deserialize)]
    struct Names {
        #[serde(default)]
        blob_sha256: Option<String>,
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        text_sha256: Option<String>,
    }
    let mut keep = std::collections::BTreeSet::new();
    let content = state
        .executions
        .values()
        .filter(|e| &*e.realm == "content" || &*e.intent_type == "content.upload");
    for e in content {
        let outputs = e.steps.iter().filter_map(|s| s.output_json.as_deref());
        for json in std::iter::once(&*e.payload_json).chain(outputs) {
            if let Ok(names) = serde_json::from_str::<Names>(json) {
                keep.extend(names.blob_sha256);
                keep.extend(names.sha256);
                keep.extend(names.text_sha256);
            }
        }
    }
    keep
}

/// The intent's payload for `content.upload`.
#[derive(Debug, Deserialize)]
struct UploadPayload {
    filename: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    content_base64: Option<String>,
    /// Set by `POST /content/upload`: the bytes are already in the blob store.
    #[serde(default)]
    blob_sha256: Option<String>,
}

fn upload_payload(payload: &Value) -> Result<UploadPayload, String> {
    let p: UploadPayload = serde_json::from_value(payload.clone())
        .map_err(|e| format!("payload: {e} (expected filename and one of text, content_base64)"))?;
    if p.filename.is_empty() || p.filename.len() > FILENAME_BYTES_MAX {
        return Err(format!(
            "payload.filename must be 1 to {FILENAME_BYTES_MAX} bytes"
        ));
    }
    let given = [
        p.text.is_some(),
        p.content_base64.is_some(),
        p.blob_sha256.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err("payload needs exactly one of text and content_base64".into());
    }
    Ok(p)
}

/// `content.parse_and_embed`.
#[derive(Debug)]
pub struct ParseAndEmbed {
    realm: Arc<ContentRealm>,
}

const PARSE_AND_EMBED_STEPS: [&str; 5] = ["store", "parse", "chunk", "embed", "extract_facts"];

impl CapabilityHandler for ParseAndEmbed {
    fn spec(&self) -> CapabilitySpec {
        CapabilitySpec {
            name: "content.parse_and_embed".into(),
            realm: "content".into(),
            // 2: word_count and row_count facts. 3: sentence and csv_row facts, CSV numbers
            // read cell by cell, thousands grouped by three, no CSV title.
            version: 3,
            intent_types: vec!["content.upload".into()],
            inputs: vec![
                "filename".into(),
                "media_type".into(),
                "text".into(),
                "content_base64".into(),
            ],
            outputs: vec!["document_id".into(), "chunks".into(), "facts".into()],
            deterministic: true,
            steps: PARSE_AND_EMBED_STEPS
                .iter()
                .map(|n| step_spec(n, true))
                .collect(),
        }
    }

    fn plan(&self, payload: &Value) -> Result<u32, String> {
        upload_payload(payload).map(|_| PARSE_AND_EMBED_STEPS.len() as u32)
    }

    fn step(&self, index: usize) -> Option<Arc<dyn SagaStep>> {
        (index < PARSE_AND_EMBED_STEPS.len()).then(|| {
            Arc::new(ContentStep {
                realm: self.realm.clone(),
                index,
            }) as Arc<dyn SagaStep>
        })
    }

    fn result(&self, outputs: &[&str]) -> String {
        let Some(record) = outputs
            .last()
            .and_then(|o| serde_json::from_str::<DocumentRecord>(o).ok())
        else {
            return "null".into();
        };
        json!({
            "document_id": record.document_id,
            "filename": record.filename,
            "sha256": record.sha256,
            "chunks": record.chunks.len(),
            "facts": record.facts.len(),
        })
        .to_string()
    }
}

#[derive(Debug)]
struct ContentStep {
    realm: Arc<ContentRealm>,
    index: usize,
}

impl SagaStep for ContentStep {
    fn execute(&self, input: StepInput) -> StepFuture<String> {
        let realm = self.realm.clone();
        let index = self.index;
        Box::pin(async move {
            blocking(move || match index {
                0 => store(&realm, &input),
                1 => parse_step(&realm, &input),
                2 => chunk_step(&realm, &input),
                3 => embed_step(&realm, &input),
                _ => facts_step(&realm, &input),
            })
            .await
        })
    }
}

fn store(realm: &ContentRealm, input: &StepInput) -> Result<String, StepError> {
    let payload: Value = serde_json::from_str(&input.payload_json)
        .map_err(|e| permanent("bad_input", e.to_string()))?;
    let p = upload_payload(&payload).map_err(|e| permanent("bad_input", e))?;
    let sha256 = match (&p.text, &p.content_base64, &p.blob_sha256) {
        (Some(text), _, _) => realm.blobs.put(text.as_bytes()),
        (_, Some(b64), _) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| permanent("bad_input", format!("content_base64: {e}")))?;
            realm.blobs.put(&bytes)
        }
        (_, _, Some(sha)) => realm.blobs.get(sha).map(|_| sha.clone()),
        _ => return Err(permanent("bad_input", "no content")),
    }
    .map_err(|e| match e {
        blob::BlobError::TooLarge { .. } => permanent("file_too_large", e.to_string()),
        blob::BlobError::NotFound(_)
        | blob::BlobError::BadHash(_)
        | blob::BlobError::Corrupt { .. } => permanent("blob_unavailable", e.to_string()),
        blob::BlobError::Io { .. } => StepError::retryable("storage_error", e.to_string()),
    })?;
    let bytes = realm
        .blobs
        .get(&sha256)
        .map_err(|e| StepError::retryable("storage_error", e.to_string()))?;
    let media_type = match Format::detect(&p.filename, p.media_type.as_deref(), &bytes) {
        Ok(f) => p
            .media_type
            .clone()
            .unwrap_or_else(|| f.media_type().to_string()),
        Err(_) => p
            .media_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_string()),
    };
    output(&DocumentRecord {
        document_id: input.execution_id.to_string(),
        filename: p.filename,
        media_type,
        sha256,
        size_bytes: bytes.len() as u64,
        ..DocumentRecord::default()
    })
}

/// The source bytes and their parse.
fn load_parsed(realm: &ContentRealm, record: &DocumentRecord) -> Result<parse::Parsed, StepError> {
    let bytes = realm
        .blobs
        .get(&record.sha256)
        .map_err(|e| StepError::retryable("storage_error", e.to_string()))?;
    let format = Format::detect(&record.filename, Some(&record.media_type), &bytes)
        .map_err(|e| permanent(e.code, e.message))?;
    parse::parse(format, &bytes).map_err(|e| permanent(e.code, e.message))
}

fn parse_step(realm: &ContentRealm, input: &StepInput) -> Result<String, StepError> {
    let mut record = previous(input)?;
    let parsed = load_parsed(realm, &record)?;
    let text_sha256 = if parsed.format.derives_text() {
        realm
            .blobs
            .put(parsed.text.as_bytes())
            .map_err(|e| StepError::retryable("storage_error", e.to_string()))?
    } else {
        record.sha256.clone()
    };
    record.format = Some(parsed.format);
    record.text_sha256 = Some(text_sha256);
    record.text_bytes = Some(parsed.text.len() as u64);
    record.words = Some(facts::words_in(&parsed.text));
    record.rows = parsed.csv_rows;
    output(&record)
}

fn chunk_step(realm: &ContentRealm, input: &StepInput) -> Result<String, StepError> {
    let mut record = previous(input)?;
    let text = document_text(&realm.blobs, &record)
        .map_err(|e| StepError::retryable("storage_error", e))?;
    record.chunks = chunk::chunk(&text)
        .into_iter()
        .map(|(s, e)| [s, e])
        .collect();
    if record.chunks.is_empty() {
        return Err(permanent("empty_file", "the file has no text to index"));
    }
    output(&record)
}

fn embed_step(realm: &ContentRealm, input: &StepInput) -> Result<String, StepError> {
    use sha2::{Digest, Sha256};
    let mut record = previous(input)?;
    let text = document_text(&realm.blobs, &record)
        .map_err(|e| StepError::retryable("storage_error", e))?;
    let mut hash = Sha256::new();
    for [s, e] in &record.chunks {
        let piece = text
            .get(*s..*e)
            .ok_or_else(|| permanent("bad_input", "chunk outside the text"))?;
        for x in realm.embedder.embed(piece) {
            hash.update(x.to_le_bytes());
        }
    }
    record.embedder = Some(realm.embedder.id());
    record.vectors_sha256 = Some(hex::encode(hash.finalize()));
    output(&record)
}

fn facts_step(realm: &ContentRealm, input: &StepInput) -> Result<String, StepError> {
    let mut record = previous(input)?;
    let parsed = load_parsed(realm, &record)?;
    let chunks: Vec<(usize, usize)> = record.chunks.iter().map(|[s, e]| (*s, *e)).collect();
    record.facts = facts::extract(&record.document_id, &parsed, &chunks);
    output(&record)
}

/// The text a document's chunks and facts point into.
pub fn document_text(blobs: &BlobStore, record: &DocumentRecord) -> Result<String, String> {
    let sha = record.text_sha256.as_deref().unwrap_or(&record.sha256);
    let bytes = blobs.get(sha).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| format!("document text is not UTF-8: {e}"))
}

/// `content.grounded_analysis`: gather the document's facts, reason, validate.
#[derive(Debug)]
pub struct GroundedAnalysis {
    realm: Arc<ContentRealm>,
}

/// `gather_facts` reads the content index, `reason` may call an external reasoner and
/// `run_tools` runs the tools the agent asked for against the index: all three are
/// non-deterministic, so replay uses their recorded outputs.
const ANALYSIS_STEPS: [(&str, bool); 4] = [
    ("gather_facts", false),
    ("reason", false),
    ("run_tools", false),
    ("validate", true),
];

#[derive(Debug, Deserialize)]
struct AnalyzePayload {
    document_id: String,
    question: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Gathered {
    document_id: String,
    question: String,
    facts: Vec<Fact>,
    #[serde(default)]
    proposal: Option<Proposal>,
    /// What the runtime ran for the agent's tool requests.
    #[serde(default)]
    tool_results: Vec<Value>,
}

impl CapabilityHandler for GroundedAnalysis {
    fn spec(&self) -> CapabilitySpec {
        CapabilitySpec {
            name: "content.grounded_analysis".into(),
            realm: "content".into(),
            version: 1,
            intent_types: vec!["content.analyze".into()],
            inputs: vec!["document_id".into(), "question".into()],
            outputs: vec!["answer".into(), "claims".into(), "validated".into()],
            deterministic: false,
            steps: ANALYSIS_STEPS
                .iter()
                .map(|(n, d)| step_spec(n, *d))
                .collect(),
        }
    }

    fn plan(&self, payload: &Value) -> Result<u32, String> {
        let p: AnalyzePayload = serde_json::from_value(payload.clone())
            .map_err(|e| format!("payload: {e} (expected document_id and question)"))?;
        if p.question.trim().is_empty() || p.question.len() > QUESTION_BYTES_MAX {
            return Err(format!(
                "payload.question must be 1 to {QUESTION_BYTES_MAX} bytes"
            ));
        }
        Ok(ANALYSIS_STEPS.len() as u32)
    }

    fn step(&self, index: usize) -> Option<Arc<dyn SagaStep>> {
        (index < ANALYSIS_STEPS.len()).then(|| {
            Arc::new(AnalysisStep {
                realm: self.realm.clone(),
                index,
            }) as Arc<dyn SagaStep>
        })
    }
}

#[derive(Debug)]
struct AnalysisStep {
    realm: Arc<ContentRealm>,
    index: usize,
}

impl SagaStep for AnalysisStep {
    fn execute(&self, input: StepInput) -> StepFuture<String> {
        let realm = self.realm.clone();
        let index = self.index;
        Box::pin(async move {
            let json = |v: &Gathered| {
                serde_json::to_string(v).map_err(|e| permanent("internal", e.to_string()))
            };
            match index {
                0 => {
                    let p: AnalyzePayload = serde_json::from_str(&input.payload_json)
                        .map_err(|e| permanent("bad_input", e.to_string()))?;
                    let facts = realm
                        .facts
                        .facts(&input.tenant_id, &p.document_id)
                        .ok_or_else(|| {
                            // Unknown now; the document may still be indexing: retried, then failed.
                            StepError::retryable(
                                "document_not_found",
                                format!("no document {}", p.document_id),
                            )
                        })?;
                    json(&Gathered {
                        document_id: p.document_id,
                        question: p.question,
                        facts,
                        proposal: None,
                        tool_results: Vec::new(),
                    })
                }
                1 => {
                    let mut g: Gathered = serde_json::from_str(
                        input.previous_output_json.as_deref().unwrap_or("null"),
                    )
                    .map_err(|e| permanent("bad_input", e.to_string()))?;
                    // A reasoner may block (an HTTP call): run it off the async workers.
                    blocking(move || {
                        let agent = GroundedReasoningAgent {
                            reasoner: SharedReasoner(realm.reasoner.clone()),
                        };
                        let view = FactView::new(&g.facts);
                        let gathered = agent.gather(&g.question, view);
                        g.proposal = Some(agent.reason(&g.question, FactView::new(&gathered)));
                        serde_json::to_string(&g).map_err(|e| permanent("internal", e.to_string()))
                    })
                    .await
                }
                2 => {
                    let mut g: Gathered = serde_json::from_str(
                        input.previous_output_json.as_deref().unwrap_or("null"),
                    )
                    .map_err(|e| permanent("bad_input", e.to_string()))?;
                    let requests = g
                        .proposal
                        .as_ref()
                        .map(|p| p.tool_requests.clone())
                        .unwrap_or_default();
                    g.tool_results = requests
                        .iter()
                        .take(TOOL_REQUESTS_MAX)
                        .map(|r| run_tool(&realm, &input.tenant_id, r))
                        .collect();
                    json(&g)
                }
                _ => {
                    let g: Gathered = serde_json::from_str(
                        input.previous_output_json.as_deref().unwrap_or("null"),
                    )
                    .map_err(|e| permanent("bad_input", e.to_string()))?;
                    let proposal = g.proposal.unwrap_or_default();
                    let (claims, validated, rejected) = if realm.validate_claims {
                        let checked =
                            crate::agents::validate(proposal.clone(), FactView::new(&g.facts));
                        (checked.claims, checked.validated, checked.rejected)
                    } else {
                        (proposal.claims.clone(), false, Vec::new())
                    };
                    Ok(json!({
                        "document_id": g.document_id,
                        "answer": proposal.answer,
                        "claims": claims,
                        "validated": validated,
                        "validation": if realm.validate_claims { "on" } else { "off" },
                        "rejected_claims": rejected.iter().map(|(c, why)| json!({"claim": c, "reason": why})).collect::<Vec<_>>(),
                        "tool_results": g.tool_results,
                    })
                    .to_string())
                }
            }
        })
    }
}

/// Runs one tool an agent asked for, if it is an allowed one; the outcome is recorded.
fn run_tool(realm: &ContentRealm, tenant: &str, request: &crate::agents::ToolRequest) -> Value {
    let payload: Value = serde_json::from_str(&request.payload_json).unwrap_or(Value::Null);
    match request.intent_type.as_str() {
        "content.search" => {
            let q = payload["q"].as_str().unwrap_or_default();
            let k = payload["k"].as_u64().unwrap_or(3).clamp(1, 10) as usize;
            let hits: Vec<Value> = realm
                .facts
                .search(tenant, q, k)
                .into_iter()
                .map(|(d, c, score, text)| json!({"document_id": d, "chunk_id": c, "score": score, "text": text}))
                .collect();
            json!({"tool": "content.search", "payload": payload, "results": hits})
        }
        other => json!({
            "tool": other,
            "payload": payload,
            "error": format!("tool {other:?} is not allowed (allowed: {})", TOOLS.join(", ")),
        }),
    }
}

#[derive(Debug)]
struct SharedReasoner(Arc<dyn Reasoner>);

impl Reasoner for SharedReasoner {
    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal {
        self.0.reason(question, facts)
    }
}

/// Arbitrary files through parse, chunk and fact extraction: never a panic, and every span
/// any of them reports lies inside the text, on character boundaries.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::{chunk, facts, parse};
    use parse::Format;

    fn check_span(text: &str, (start, end): (usize, usize), what: &str) {
        assert!(
            start <= end && end <= text.len(),
            "{what} span {start}..{end} outside a text of {} bytes",
            text.len()
        );
        assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "{what} span {start}..{end} splits a character"
        );
    }

    fn run(format: Format, bytes: &[u8]) {
        let Ok(parsed) = parse::parse(format, bytes) else {
            return;
        };
        let text = parsed.text.as_str();
        parsed
            .title
            .iter()
            .for_each(|s| check_span(text, *s, "title"));
        for heading in &parsed.headings {
            check_span(text, heading.span, "heading");
        }
        for s in parsed
            .csv_columns
            .iter()
            .chain(&parsed.csv_rows_span)
            .chain(&parsed.csv_row_spans)
        {
            check_span(text, *s, "csv");
        }
        for s in &parsed.json_keys {
            check_span(text, *s, "json key");
        }
        let chunks = chunk::chunk(text);
        for s in &chunks {
            check_span(text, *s, "chunk");
        }
        for fact in facts::extract("doc", &parsed, &chunks) {
            check_span(text, (fact.span[0], fact.span[1]), &fact.kind);
            if !facts::AGGREGATE_KINDS.contains(&fact.kind.as_str()) {
                assert_eq!(&text[fact.span[0]..fact.span[1]], fact.value, "{fact:?}");
            }
        }
    }

    /// Text made of the characters the parsers look for, plus multi-byte ones.
    fn structured() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("#".to_string()),
            Just("## ".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just(",".to_string()),
            Just("\"".to_string()),
            Just(":".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("<title>".to_string()),
            Just("<h1>".to_string()),
            Just("</h1>".to_string()),
            Just("<".to_string()),
            Just(">".to_string()),
            Just("&amp;".to_string()),
            Just("&#x1F600;".to_string()),
            Just("&".to_string()),
            Just(";".to_string()),
            Just("é".to_string()),
            Just("😀".to_string()),
            Just("\u{a0}".to_string()),
            Just("Total: 42".to_string()),
            Just(". ".to_string()),
            Just("! A".to_string()),
            Just("- ".to_string()),
            Just("12. ".to_string()),
            Just("1,234".to_string()),
            Just("```".to_string()),
            "[a-z ]{1,12}",
            "[0-9.]{1,6}",
        ];
        prop::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn structured_text_in_every_text_format(text in structured()) {
            for format in [Format::Txt, Format::Md, Format::Csv, Format::Json, Format::Html] {
                run(format, text.as_bytes());
            }
        }

        #[test]
        fn arbitrary_bytes_in_every_format(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            for format in [Format::Txt, Format::Md, Format::Csv, Format::Json, Format::Html] {
                run(format, &bytes);
            }
            let mut pdf = b"%PDF-1.4\n".to_vec();
            pdf.extend_from_slice(&bytes);
            run(Format::Pdf, &pdf);
        }
    }
}

/// The extractive reasoner on facts extracted from real documents: the claim that answers is
/// the line that says it.
#[cfg(test)]
mod answers {
    use super::{chunk, facts, parse};
    use crate::agents::{ExtractiveReasoner, FactView, Reasoner};
    use parse::Format;

    fn answer(format: Format, text: &str, question: &str) -> String {
        let parsed = parse::parse(format, text.as_bytes()).unwrap();
        let facts = facts::extract("D", &parsed, &chunk::chunk(&parsed.text));
        let proposal = ExtractiveReasoner.reason(question, FactView::new(&facts));
        for claim in &proposal.claims {
            assert!(facts.iter().any(|f| f.fact_id == claim.citations[0]));
        }
        proposal.answer
    }

    const REPORT: &str = "# Quarterly report Q3\n\nOwner: Grace Hopper\nReview date: 2026-10-01\n\
        Budget: 125000 EUR\n\n## Revenue\n\nRevenue grew 12% to 4.2 million euros compared with \
        Q2. The largest customer, Initech, renewed for three years.\n\n## Risks\n\nSupplier \
        delays in the Rotterdam warehouse may push the November launch to January 2027.\n";

    #[test]
    fn prose_questions_are_answered_by_their_sentence() {
        let ask = |q| answer(Format::Md, REPORT, q);
        assert_eq!(ask("Who owns the report?"), "Owner: Grace Hopper");
        assert_eq!(ask("What is the budget?"), "Budget: 125000 EUR");
        assert_eq!(
            ask("When is the launch?"),
            "Supplier delays in the Rotterdam warehouse may push the November launch to January 2027."
        );
        let grew = ask("How much did revenue grow?");
        assert!(
            grew.starts_with("Revenue grew 12% to 4.2 million euros compared with Q2."),
            "{grew}"
        );
        assert!(!grew.contains("number: 12%"), "said twice: {grew}");
        assert_eq!(
            ask("Which customer renewed?"),
            "The largest customer, Initech, renewed for three years."
        );
        assert_eq!(ask("When was it reviewed?"), "Review date: 2026-10-01");
    }

    #[test]
    fn a_csv_row_is_read_against_its_columns() {
        let csv = "region,revenue,units\nnorth,1200,30\nsouth,\"1,500\",25\neast,1500,41\n";
        let ask = |q| answer(Format::Csv, csv, q);
        assert_eq!(
            ask("What is the revenue of the north region?"),
            "region: north, revenue: 1200, units: 30"
        );
        assert_eq!(
            ask("How many units in the south?"),
            "region: south, revenue: 1,500, units: 25"
        );
        assert_eq!(ask("How many rows are there?"), "row count: 3");
    }
}
