//! The conformance suite every [`Log`] backend must pass. Backends' tests call [`run_all`]
//! with a fresh, empty log.
//!
//! It is test code, built only for tests and with the `testing` feature (so every backend
//! crate's tests can run it): it panics on the first failed check, like any test.
#![allow(clippy::expect_used, clippy::panic)]

use crate::{Log, Lsn, Record, RecordMeta};

fn record(n: u64) -> Record {
    let len = (n % 97) as usize + 1;
    Record {
        meta: RecordMeta {
            codec: 1,
            record_type: (n % 7) as u8,
            schema_version: 1,
        },
        payload: (0..len).map(|i| (n as usize * 31 + i) as u8).collect(),
    }
}

/// Runs every check against `log`, which must be empty. Panics with the failing check.
pub async fn run_all<L: Log>(log: &L) {
    assert_eq!(log.durable_lsn(), 0, "a new log is empty");
    appends_are_dense_and_ordered(log).await;
    reads_from_any_lsn(log);
    subscribe_wakes(log).await;
    cursor_follows_later_appends(log).await;
    empty_batches_are_refused(log).await;
}

/// A cursor that caught up keeps returning new records as they become durable (it must not
/// serve bytes it read before they were written).
async fn cursor_follows_later_appends<L: Log>(log: &L) {
    let start = log.durable_lsn() + 1;
    let mut cursor = log.cursor(start);
    assert!(cursor.next_batch(10).expect("caught up").is_empty());
    for round in 0..5u64 {
        let lsn = log
            .append(vec![record(start + round)])
            .await
            .expect("append")
            .first;
        let got = cursor.next_batch(10).expect("read after append");
        assert_eq!(got.len(), 1, "round {round}: the cursor missed LSN {lsn}");
        assert_eq!(got[0].lsn, lsn);
    }
}

async fn appends_are_dense_and_ordered<L: Log>(log: &L) {
    let first = log.append(vec![record(1)]).await.expect("append");
    assert_eq!((first.first, first.last), (1, 1));
    let batch = log
        .append((2..=50).map(record).collect())
        .await
        .expect("batch");
    assert_eq!((batch.first, batch.last), (2, 50));
    let pending: Vec<_> = (51..=100)
        .map(|n| log.submit(vec![record(n)]).expect("submit"))
        .collect();
    for (n, pending) in (51..=100).zip(pending) {
        assert_eq!(
            pending.await.expect("durable").first,
            n,
            "submit order is LSN order"
        );
    }
    assert_eq!(log.durable_lsn(), 100);
}

fn reads_from_any_lsn<L: Log>(log: &L) {
    for from in [1, 2, 37, 99, 100] {
        let mut cursor = log.cursor(from);
        let got = cursor.next_batch(1000).expect("read");
        assert_eq!(got.len() as u64, 101 - from, "records from {from}");
        for (stored, lsn) in got.iter().zip(from..) {
            assert_eq!(stored.lsn, lsn);
            let want = record(lsn);
            assert_eq!((stored.meta, &stored.payload), (want.meta, &want.payload));
        }
        assert!(cursor.next_batch(10).expect("caught up").is_empty());
    }
}

async fn subscribe_wakes<L: Log>(log: &L) {
    let mut durable = log.subscribe();
    let before: Lsn = *durable.borrow_and_update();
    let appended = log.append(vec![record(before + 1)]).await.expect("append");
    durable.changed().await.expect("writer alive");
    assert!(*durable.borrow() >= appended.last);
}

async fn empty_batches_are_refused<L: Log>(log: &L) {
    assert!(log.append(Vec::new()).await.is_err());
}
