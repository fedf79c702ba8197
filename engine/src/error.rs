//! The engine's error type.

use crate::id::Id;

/// Everything a command or the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log refused or failed. The message includes the log's error, which is therefore
    /// not also given as the source (an error chain would print it twice).
    #[error("log: {0}")]
    Log(symphainy_wal::Error),
    /// Encoding or decoding an event failed.
    #[error("codec: {0}")]
    Codec(String),
    /// A tenant id does not match `^[a-z0-9][a-z0-9_-]{0,62}$`.
    #[error("invalid tenant id")]
    InvalidTenantId,
    /// The tenant exists already.
    #[error("tenant {0} exists already")]
    TenantExists(String),
    /// A tenant, session, execution or token that does not exist (or is another tenant's).
    #[error("{kind} not found")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
    },
    /// The session is closed.
    #[error("session {0} is closed")]
    SessionClosed(Id),
    /// An idempotency key already names an execution of a different intent (another
    /// session, intent type or payload): answering that execution would hide the mistake.
    #[error("idempotency key already used for a different intent (execution {0})")]
    IdempotencyKeyReused(Id),
    /// No capability handles the intent type.
    #[error("no capability handles intent type {0:?}")]
    UnknownIntent(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A quota was reached (open sessions of a tenant): the same request may succeed later.
    #[error("{0}")]
    LimitExceeded(String),
    /// The request is larger than a size limit allows (a payload, a context, an event the log
    /// cannot hold): it will never succeed as it is.
    #[error("{0}")]
    TooLarge(String),
    /// The log's queue is full; try again later.
    #[error("the runtime is overloaded; retry later")]
    Overloaded,
    /// The runtime stopped after a log failure; it must be restarted to recover.
    #[error("the runtime stopped after a log failure: {0}")]
    Stopped(String),
    /// A capability's steps are not registered with the coordinator.
    #[error("capability {0} has no registered steps")]
    MissingSteps(String),
    /// A snapshot could not be used.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The replay's reading thread could not run.
    #[error("replay: {0}")]
    Replay(String),
}

impl From<symphainy_wal::Error> for Error {
    fn from(e: symphainy_wal::Error) -> Self {
        Self::Log(e)
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
