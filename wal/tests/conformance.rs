//! The log conformance suite, run against the real file system and the in-memory one.

mod common;

use std::sync::Arc;

use symphainy_wal::{Config, MemFs, Wal, conformance};

// The WAL on the real file system passes the conformance suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_fs_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Config::small_for_tests()).unwrap();
    conformance::run_all(&wal).await;
}

// The WAL on the in-memory file system passes the conformance suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_fs_conforms() {
    let fs = MemFs::new();
    let wal = Wal::open_with(Arc::new(fs), common::mem_dir(), Config::small_for_tests()).unwrap();
    conformance::run_all(&wal).await;
}
