//! The log's error type.

use std::io;
use std::path::PathBuf;

use crate::Lsn;

/// Where in the log a fault was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultLocation {
    /// Segment file name.
    pub segment: String,
    /// Byte offset of the fault within that file.
    pub offset: u64,
    /// LSN that was expected at that offset.
    pub lsn: Lsn,
}

impl std::fmt::Display for FaultLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "segment {} at byte offset {} (LSN {})",
            self.segment, self.offset, self.lsn
        )
    }
}

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error (part of the message, so not also the error's source: an
        /// error chain would print it twice).
        error: io::Error,
    },
    /// The log is damaged somewhere other than a torn tail; it will not be opened for writing.
    #[error("corruption in {location}: {reason}")]
    Corruption {
        /// Where.
        location: FaultLocation,
        /// What is wrong there.
        reason: String,
    },
    /// Another writer holds the directory.
    #[error("the log directory {0} is locked by another writer")]
    Locked(PathBuf),
    /// A record exceeds `record_bytes_max`.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Size of the rejected record.
        size: usize,
        /// The configured limit.
        max: u32,
    },
    /// A batch exceeds `request_bytes_max`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Size of the rejected batch.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An empty batch was submitted.
    #[error("a batch needs at least one record")]
    EmptyBatch,
    /// The append queue is full (only from `try_append*`).
    #[error("the append queue is full ({0} pending requests)")]
    QueueFull(usize),
    /// A write or fsync failed earlier; the log accepts no more appends until reopened.
    #[error("the log writer failed earlier and accepts no more appends: {0}")]
    Poisoned(String),
    /// The writer has shut down.
    #[error("the log is closed")]
    Closed,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The requested LSN is not in the log.
    #[error("LSN {requested} is beyond the end of the log (durable LSN {durable})")]
    LsnOutOfRange {
        /// What was asked for.
        requested: Lsn,
        /// The last durable LSN.
        durable: Lsn,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            error,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
