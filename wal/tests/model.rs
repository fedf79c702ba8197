//! Model-based test: the WAL against a `Vec` of records, over random appends, batch appends,
//! lazy appends (no fsync of their own), reads from random LSNs, clean reopens, crashes (unsynced data dropped or torn) with and
//! without appends in flight, and segment rollovers (segments are 8 KiB).

mod common;

use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use symphainy_wal::{CrashMode, Log, MemFs, Record, RecordMeta, Wal};

#[derive(Clone, Debug)]
enum Transition {
    Append(Vec<u8>),
    AppendBatch(Vec<Vec<u8>>),
    /// Lazy appends, some followed by one waited-on append, then all waited for.
    AppendLazy {
        payloads: Vec<Vec<u8>>,
        then_urgent: bool,
    },
    Read {
        from_permille: u16,
        max: usize,
    },
    Reopen,
    Crash {
        torn_seed: Option<u64>,
    },
    CrashWithPending {
        payloads: Vec<Vec<u8>>,
        lazy: bool,
        torn_seed: Option<u64>,
    },
}

/// The reference only needs to know roughly how long the log is to generate transitions.
struct Reference;

impl ReferenceStateMachine for Reference {
    type State = usize;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<usize> {
        Just(0).boxed()
    }

    fn transitions(_state: &usize) -> BoxedStrategy<Transition> {
        let payload = prop::collection::vec(any::<u8>(), 0..700);
        let seed = prop::option::of(any::<u64>());
        prop_oneof![
            4 => payload.clone().prop_map(Transition::Append),
            3 => prop::collection::vec(payload.clone(), 1..20).prop_map(Transition::AppendBatch),
            2 => (prop::collection::vec(payload.clone(), 1..10), any::<bool>())
                .prop_map(|(payloads, then_urgent)| Transition::AppendLazy { payloads, then_urgent }),
            3 => (0u16..=1000, 1usize..200)
                .prop_map(|(from_permille, max)| Transition::Read { from_permille, max }),
            1 => Just(Transition::Reopen),
            1 => seed.clone().prop_map(|torn_seed| Transition::Crash { torn_seed }),
            1 => (prop::collection::vec(payload, 1..10), any::<bool>(), seed)
                .prop_map(|(payloads, lazy, torn_seed)| Transition::CrashWithPending { payloads, lazy, torn_seed }),
        ]
        .boxed()
    }

    fn apply(state: usize, transition: &Transition) -> usize {
        match transition {
            Transition::Append(_) => state + 1,
            Transition::AppendBatch(batch) => state + batch.len(),
            Transition::AppendLazy {
                payloads,
                then_urgent,
            } => state + payloads.len() + usize::from(*then_urgent),
            _ => state,
        }
    }
}

/// The system under test with the exact contents it must hold.
struct Sut {
    fs: MemFs,
    wal: Option<Wal>,
    contents: Vec<Record>,
}

fn to_record(payload: &[u8]) -> Record {
    let tag = payload.first().copied().unwrap_or(0);
    Record {
        meta: RecordMeta {
            codec: 1,
            record_type: tag,
            schema_version: 3,
        },
        payload: payload.to_vec(),
    }
}

fn crash_mode(seed: Option<u64>) -> CrashMode {
    seed.map_or(CrashMode::DropUnsynced, |seed| CrashMode::TornSectors {
        seed,
    })
}

impl Sut {
    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("wal open")
    }

    fn reopen(&mut self) {
        self.wal = None;
        self.wal = Some(common::open_mem(&self.fs).expect("reopen"));
    }

    fn check_everything(&self) {
        let wal = self.wal();
        assert_eq!(wal.durable_lsn(), self.contents.len() as u64);
        let all = wal.read(1, usize::MAX).expect("read all");
        assert_eq!(all.len(), self.contents.len());
        for (stored, want) in all.iter().zip(&self.contents) {
            assert_eq!(
                (stored.meta, &stored.payload),
                (want.meta, &want.payload),
                "lsn {}",
                stored.lsn
            );
        }
    }
}

struct WalModel;

impl StateMachineTest for WalModel {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(_: &usize) -> Sut {
        let fs = MemFs::new();
        let wal = common::open_mem(&fs).expect("open");
        Sut {
            fs,
            wal: Some(wal),
            contents: Vec::new(),
        }
    }

    fn apply(mut sut: Sut, _: &usize, transition: Transition) -> Sut {
        match transition {
            Transition::Append(payload) => {
                let record = to_record(&payload);
                let appended = sut
                    .wal()
                    .append_blocking(vec![record.clone()])
                    .expect("append");
                sut.contents.push(record);
                assert_eq!(appended.first, sut.contents.len() as u64);
            }
            Transition::AppendBatch(payloads) => {
                let records: Vec<_> = payloads.iter().map(|p| to_record(p)).collect();
                let appended = sut.wal().append_blocking(records.clone()).expect("batch");
                assert_eq!(appended.first, sut.contents.len() as u64 + 1);
                sut.contents.extend(records);
                assert_eq!(appended.last, sut.contents.len() as u64);
            }
            Transition::AppendLazy {
                payloads,
                then_urgent,
            } => {
                let mut records: Vec<_> = payloads.iter().map(|p| to_record(p)).collect();
                let mut pending: Vec<_> = records
                    .iter()
                    .map(|r| sut.wal().submit_lazy(vec![r.clone()]).expect("submit lazy"))
                    .collect();
                if then_urgent {
                    let urgent = to_record(b"urgent");
                    pending.push(sut.wal().submit(vec![urgent.clone()]).expect("submit"));
                    records.push(urgent);
                }
                let first = sut.contents.len() as u64 + 1;
                for (lsn, p) in (first..).zip(pending) {
                    assert_eq!(p.wait().expect("lazy append").first, lsn);
                }
                sut.contents.extend(records);
            }
            Transition::Read { from_permille, max } => {
                let from = (sut.contents.len() as u64 * u64::from(from_permille) / 1000).max(1);
                let got = sut.wal().read(from, max).expect("read");
                let want = sut.contents.iter().skip(from as usize - 1).take(max);
                assert_eq!(got.len(), want.len());
                for (stored, (want, lsn)) in got.iter().zip(want.zip(from..)) {
                    assert_eq!(stored.lsn, lsn);
                    assert_eq!(stored.payload, want.payload);
                }
            }
            Transition::Reopen => sut.reopen(),
            Transition::Crash { torn_seed } => {
                sut.fs.crash(crash_mode(torn_seed));
                sut.reopen();
            }
            Transition::CrashWithPending {
                payloads,
                lazy,
                torn_seed,
            } => {
                let records: Vec<_> = payloads.iter().map(|p| to_record(p)).collect();
                let pending: Vec<_> = records
                    .iter()
                    .map(|r| {
                        let records = vec![r.clone()];
                        if lazy {
                            sut.wal().submit_lazy(records)
                        } else {
                            sut.wal().submit(records)
                        }
                        .expect("submit")
                    })
                    .collect();
                sut.fs.crash(crash_mode(torn_seed));
                let acked: Vec<bool> = pending.into_iter().map(|p| p.wait().is_ok()).collect();
                sut.reopen();
                let survived = sut.wal().durable_lsn() as usize - sut.contents.len();
                let acked_count = acked.iter().take_while(|ok| **ok).count();
                assert!(survived >= acked_count, "acknowledged records lost");
                assert!(survived <= records.len());
                sut.contents.extend(records.into_iter().take(survived));
            }
        }
        sut
    }

    fn check_invariants(sut: &Sut, _: &usize) {
        sut.check_everything();
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]
    // The WAL behaves like a Vec of records through appends, reads, reopens and crashes.
    #[test]
    fn wal_matches_vec_model(sequential 1..40 => WalModel);
}
