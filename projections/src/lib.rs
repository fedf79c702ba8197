//! `symphainy-projections`: views derived from the log, each disposable and rebuildable.
//!
//! - [`runner`]: the [`Projection`] trait and the [`Runner`] that tails the WAL's durable
//!   events, folds them in batches and stores each batch with its LSN atomically; resumes
//!   from that checkpoint after a crash; retries a failing projection with backoff without
//!   ever touching ingestion.
//! - [`fold`]: the shared fold (the engine's own pure `apply`) and what a batch touched.
//! - [`surface`] over [`store`]: the state surface, hot state under `t:{tenant}:...` keys in
//!   Redis or in memory.
//! - [`graph`]: the Arango-style graph view on sled behind [`GraphStore`]; its vertices are
//!   stored in [`compact`] form.
//! - [`conformance`]: the suite every [`StateStore`] backend passes.
//!
//! Nothing in a projection exists that is not in the WAL: every write is rendered from the
//! state folded from durable events.

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod compact;
/// Test support (panics on failure by design): only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod content;
pub mod fold;
pub mod graph;
pub mod runner;
pub mod store;
pub mod surface;
/// Test support (panics on failure by design): only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use fold::{Batch, Fold, Touched};
pub use graph::{GraphStore, GraphView, SledGraph};
pub use runner::{Projection, RebuildReport, Runner, RunnerConfig, StatusSnapshot};
pub use store::StateStore;
pub use surface::{StateSurface, SurfaceReader};

/// What can go wrong in a projection. The messages of the wrapped errors are part of these
/// messages, so they are not also given as sources (an error chain would print them twice).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    #[error("state store: {0}")]
    Store(String),
    #[error("graph store (sled): {0}")]
    Graph(sled::Error),
    #[error("log: {0}")]
    Wal(symphainy_wal::Error),
    #[error("record at LSN {lsn} cannot be decoded: {reason}")]
    Decode { lsn: u64, reason: String },
    #[error("stored value at {key} is not valid: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the projection store lost writes: its checkpoint is {found:?}, {expected} was written \
         (restarted without persistence?); it is rebuilt from the log"
    )]
    Diverged { expected: u64, found: Option<u64> },
    #[error(
        "the state surface's checkpoint of tenant {tenant} is {found:?}, {wanted} was written \
         (the store lost writes; it is rebuilt from the log)"
    )]
    Behind {
        tenant: String,
        wanted: u64,
        found: Option<u64>,
    },
    #[error("the projection store reports corruption: {0}; it is rebuilt from the log")]
    StoreCorrupt(String),
    #[error("rendering a view: {0}")]
    Render(String),
    #[error("bad query: {0}")]
    Query(String),
    /// The I/O error is part of the message (so not also the source).
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Self::Graph(e)
    }
}

impl From<symphainy_wal::Error> for Error {
    fn from(e: symphainy_wal::Error) -> Self {
        Self::Wal(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value a projection wrote for itself (checkpoint, counter) that does not parse: its store
/// was damaged (by hand, or by another program sharing it). The runner maps what a
/// projection reports through this, so every projection's damage is rebuilt alike.
pub(crate) fn damaged(e: Error) -> Error {
    match e {
        Error::Corrupt { key, reason } => Error::StoreCorrupt(format!("{key}: {reason}")),
        other => other,
    }
}
