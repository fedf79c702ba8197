//! The behaviour every [`StateStore`] backend must have. `projections` runs it on the
//! in-memory store; the integration tests run it on a real Redis.

#![allow(clippy::unwrap_used)]

use crate::store::{StateStore, Tx, Write};

fn set(k: &str, v: &str) -> Write {
    Write::Set(k.into(), v.into())
}

/// Runs the suite on an empty store; panics (via `assert!`) on the first difference.
pub async fn state_store(store: &StateStore) {
    let k = |s: &str| format!("t:{{acme}}:{s}");
    assert_eq!(
        store.dump().await.unwrap(),
        Default::default(),
        "store must start empty"
    );
    assert_eq!(store.get(&k("a")).await.unwrap(), None);

    // Transactions apply in order.
    let txs = vec![
        Tx {
            writes: vec![set(&k("a"), "1"), Write::IncrBy(k("n"), 5)],
        },
        Tx {
            writes: vec![
                set(&k("a"), "2"),
                Write::IncrBy(k("n"), 2),
                set(&k("b"), "x"),
            ],
        },
    ];
    store.commit(&txs).await.unwrap();
    let keys = [k("a"), k("n"), k("missing"), k("b")];
    let values = store.get_many(&keys).await.unwrap();
    assert_eq!(
        values,
        [Some("2".into()), Some("7".into()), None, Some("x".into())]
    );
    assert_eq!(
        store.get_many(&[]).await.unwrap(),
        Vec::<Option<String>>::new()
    );

    // Delete, and the global meta namespace.
    let meta = "{_symphainy}:state:applied_lsn".to_string();
    store
        .commit(&[Tx {
            writes: vec![Write::Delete(k("b")), set(&meta, "42")],
        }])
        .await
        .unwrap();
    let dump = store.dump().await.unwrap();
    let expected: Vec<(String, String)> = vec![
        (k("a"), "2".into()),
        (k("n"), "7".into()),
        (meta.clone(), "42".into()),
    ];
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(dump.into_iter().collect::<Vec<_>>(), expected_sorted);
    assert_eq!(store.key_count().await.unwrap(), 3);

    // INCRBY of a non-integer fails the commit; like EXEC, the transaction's other writes
    // apply.
    let bad = Tx {
        writes: vec![set(&k("c"), "3"), Write::IncrBy(k("a"), 1)],
    };
    store
        .commit(&[Tx {
            writes: vec![set(&k("a"), "text")],
        }])
        .await
        .unwrap();
    // ...and it is reported as damage (the surface is then rebuilt), not as an outage.
    let failed = store.commit(&[bad]).await;
    assert!(
        matches!(failed, Err(crate::Error::StoreCorrupt(_))),
        "INCRBY of text must fail as damage: {failed:?}"
    );
    assert_eq!(store.get(&k("c")).await.unwrap(), Some("3".into()));
    assert_eq!(store.get(&k("a")).await.unwrap(), Some("text".into()));

    // Swap reports the value it replaced, in order, across transactions.
    let swaps = store
        .commit(&[
            Tx {
                writes: vec![Write::Swap(k("s"), "1".into()), set(&k("x"), "y")],
            },
            Tx {
                writes: vec![Write::Swap(k("s"), "2".into())],
            },
        ])
        .await
        .unwrap();
    assert_eq!(swaps, [None, Some("1".to_string())]);
    assert_eq!(store.get(&k("s")).await.unwrap(), Some("2".into()));
    store
        .commit(&[Tx {
            writes: vec![Write::Delete(k("s")), Write::Delete(k("x"))],
        }])
        .await
        .unwrap();

    // A commit larger than one pipeline.
    let big: Vec<Tx> = (0..600)
        .map(|t| Tx {
            writes: (0..100)
                .map(|i| set(&format!("t:{{big}}:{t}:{i}"), "v"))
                .collect(),
        })
        .collect();
    store.commit(&big).await.unwrap();
    assert_eq!(store.key_count().await.unwrap(), 4 + 60_000);
    assert_eq!(store.get("t:{big}:599:99").await.unwrap(), Some("v".into()));

    // Operation counts moved.
    let ops = store.ops();
    assert!(ops.set.load(std::sync::atomic::Ordering::Relaxed) >= 60_007);
    assert!(ops.get.load(std::sync::atomic::Ordering::Relaxed) >= 7);
    assert!(ops.delete.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    // Clear removes every owned key.
    assert_eq!(store.clear().await.unwrap(), 4 + 60_000);
    assert!(store.dump().await.unwrap().is_empty());
    assert_eq!(store.get(&meta).await.unwrap(), None);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_conforms() {
        super::state_store(&crate::StateStore::memory()).await;
    }
}
