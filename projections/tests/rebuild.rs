//! Invariant 8: a projection maintained incrementally, with its runner killed at random
//! points and restarted, equals the same projection rebuilt from scratch; both match the
//! engine's own views. State surface in memory, graph view on sled (the Redis runs of the
//! same checks are in `tests/integration/projections.rs`).

use std::sync::Arc;

use proptest::prelude::*;
use symphainy_projections::store::StateStore;
use symphainy_projections::testing::{Op, incremental_vs_rebuild, op_from};

fn op() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 1..4),
    )
        .prop_map(|(kind, t, s, steps)| op_from(kind, t, s, &steps))
}

fn case(ops: Vec<Op>, batch: usize, kills: Vec<usize>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(incremental_vs_rebuild(
        dir.path(),
        Arc::new(StateStore::memory()),
        Arc::new(StateStore::memory()),
        ops,
        batch,
        kills,
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn incremental_with_kills_equals_rebuild(
        ops in prop::collection::vec(op(), 1..40),
        batch in 1usize..64,
        kills in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        case(ops, batch, kills);
    }
}
