//! The projections this node keeps: the state surface (Redis when `--redis-url` is given,
//! else in memory) and the graph view (sled in `DATA_DIR/graph`), each with its runner.
//!
//! Reads of sessions and executions go to the state surface once it has applied everything
//! durable at the time of the request (read-your-writes), waiting at most
//! [`Limits::state_read_wait_ms`](crate::app::Limits), and only if the store shows it still
//! holds what the runner wrote (the tenant's checkpoint, read with the value as of one
//! instant: a Redis that restarted empty is caught before the runner notices). When the
//! surface is failing or too far behind, the read is answered from the runtime's own fold of
//! the same log and counted in `state.fallback_reads`: a projection outage never fails a read.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;

/// How long each projection lets events gather between writes while keeping up (see
/// `RunnerConfig::coalesce`); a read waiting for a projection ends its pause at once, so
/// these bound the write rate, not the read latency. The content index pauses least: the
/// content realm's analysis reads the facts it holds.
pub const SURFACE_COALESCE: Duration = Duration::from_millis(50);
pub const GRAPH_COALESCE: Duration = Duration::from_millis(250);
pub const CONTENT_COALESCE: Duration = Duration::from_millis(20);

fn runner_config(coalesce: Duration) -> RunnerConfig {
    RunnerConfig {
        coalesce,
        ..RunnerConfig::default()
    }
}
use serde_json::Value;
use symphainy_engine::State;
use symphainy_engine::realms::content::blob::BlobStore;
use symphainy_projections::content::{ContentIndex, ContentProjection};
use symphainy_projections::graph::{GraphView, Opened, SledGraph};
use symphainy_projections::runner::{Runner, RunnerConfig};
use symphainy_projections::store::StateStore;
use symphainy_projections::surface::{StateSurface, SurfaceReader};
use symphainy_wal::{Log, Wal};

/// The node's projections.
#[derive(Debug)]
pub struct Projections {
    pub store: Arc<StateStore>,
    /// Checked reads of the state surface (see [`SurfaceReader::checked`]).
    pub reader: SurfaceReader,
    pub surface: Runner,
    pub graph: Arc<SledGraph>,
    pub graph_runner: Runner,
    /// How the graph directory was found at start.
    pub graph_opened: Opened,
    /// Documents, chunk vectors and facts of the content realm.
    pub content: Arc<ContentIndex>,
    pub content_runner: Runner,
    /// The content realm's blob store (uploads land here before their intent is logged).
    pub blobs: BlobStore,
    /// Reads the surface could not answer, answered by the runtime instead.
    pub fallback_reads: AtomicU64,
    wal: Arc<Wal>,
}

impl Projections {
    /// Opens the stores and starts both runners from `recovered` (the runtime's state).
    pub fn start(
        wal: Arc<Wal>,
        recovered: &State,
        redis_url: Option<&str>,
        graph_dir: &Path,
        aside_suffix: &str,
        content: Arc<ContentIndex>,
        blobs: BlobStore,
    ) -> anyhow::Result<Self> {
        let store = Arc::new(match redis_url {
            Some(url) => StateStore::redis(url).with_context(|| "parsing the Redis URL")?,
            None => StateStore::memory(),
        });
        tracing::info!(backend = %store.describe(), "state surface");
        let (graph, graph_opened) = SledGraph::open_or_reset(graph_dir, aside_suffix)
            .with_context(|| format!("opening the graph view in {}", graph_dir.display()))?;
        let graph = Arc::new(graph);
        let surface = StateSurface::new(store.clone());
        // Every read is checked: the store must show it still holds what the runner wrote
        // (it may have lost writes, e.g. a restarted Redis, the runner has not noticed yet).
        let reader = surface.reader().checked();
        let surface = Runner::start(
            wal.clone(),
            surface,
            recovered.clone(),
            runner_config(SURFACE_COALESCE),
        );
        let graph_runner = Runner::start(
            wal.clone(),
            GraphView::new(graph.clone()),
            recovered.clone(),
            runner_config(GRAPH_COALESCE),
        );
        let content_runner = Runner::start(
            wal.clone(),
            ContentProjection::new(content.clone(), blobs.clone()),
            State::default(),
            runner_config(CONTENT_COALESCE),
        );
        Ok(Self {
            content,
            content_runner,
            blobs,
            reader,
            store,
            surface,
            graph,
            graph_runner,
            graph_opened,
            fallback_reads: AtomicU64::new(0),
            wal,
        })
    }

    /// Reads from the surface once it holds everything durable now; `None` means "ask the
    /// runtime" (the surface is failing, or did not catch up and answer within `wait`: a
    /// Redis that hangs without closing its connections holds a read no longer than that,
    /// not for the client's whole response timeout).
    pub async fn read<F, Fut>(&self, wait: Duration, read: F) -> Option<Option<Value>>
    where
        F: FnOnce(SurfaceReader) -> Fut,
        Fut: Future<Output = symphainy_projections::Result<Option<Value>>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        let healthy = self.surface.status().healthy();
        let target = self.wal.durable_lsn();
        if healthy && self.surface.wait_applied(target, wait).await {
            let answered = tokio::time::timeout_at(deadline, read(self.reader.clone())).await;
            match answered {
                Ok(Ok(found)) => return Some(found),
                Ok(Err(e @ symphainy_projections::Error::Behind { .. })) => {
                    tracing::debug!(error = %e, "state surface behind; answering from the runtime")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "state surface read failed; answering from the runtime")
                }
                Err(_) => tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    "state surface did not answer in time; answering from the runtime"
                ),
            }
        }
        self.fallback_reads.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Stops both runners and writes the graph to disk (on shutdown).
    pub async fn stop(&self) {
        self.surface.stop().await;
        self.graph_runner.stop().await;
        self.content_runner.stop().await;
        if let Err(e) = self.graph.flush() {
            tracing::warn!(error = %e, "flushing the graph view failed");
        }
    }
}
