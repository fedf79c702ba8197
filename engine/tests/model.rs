//! Replay equivalence under a model-generated workload: random tenant, session, token and
//! intent commands, step outcomes (success, failure, timeout, retry, failed compensation),
//! clean restarts and crashes with sagas in flight (unsynced data dropped or torn). After
//! every transition, once in-flight sagas finish, digest(live state) equals digest(replay of
//! the durable WAL) at the same LSN, and every acknowledged execution still exists.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use serde_json::json;
use symphainy_engine::event::EventBody;
use symphainy_engine::state::ExecutionStatus;
use symphainy_engine::testing::Probe;
use symphainy_engine::{Id, digest, runtime};
use symphainy_wal::{CrashMode, MemFs, WalReader};

const TENANTS: usize = 3;

#[derive(Clone, Debug)]
enum Command {
    CreateTenant(usize),
    CreateSession(usize),
    CloseSession(usize, usize),
    IssueToken(usize),
    RevokeToken(usize),
    Echo {
        tenant: usize,
        session: usize,
        steps: u32,
        key: Option<u8>,
    },
    Scripted {
        tenant: usize,
        session: usize,
        script: Vec<(u32, bool, u32, bool)>,
    },
    Restart,
    SubmitThenCrash {
        tenant: usize,
        session: usize,
        torn: Option<u64>,
    },
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = ();
    type Transition = Command;

    fn init_state() -> BoxedStrategy<()> {
        Just(()).boxed()
    }

    fn transitions(_: &()) -> BoxedStrategy<Command> {
        let t = 0..TENANTS;
        let script_step = (
            0u32..4,
            any::<bool>(),
            prop_oneof![9 => Just(0u32), 1 => Just(1u32)],
            prop::bool::weighted(0.2),
        );
        prop_oneof![
            1 => t.clone().prop_map(Command::CreateTenant),
            3 => t.clone().prop_map(Command::CreateSession),
            1 => (t.clone(), 0..4usize).prop_map(|(a, b)| Command::CloseSession(a, b)),
            1 => t.clone().prop_map(Command::IssueToken),
            1 => t.clone().prop_map(Command::RevokeToken),
            4 => (t.clone(), 0..4usize, 1u32..5, prop::option::of(0u8..3))
                .prop_map(|(tenant, session, steps, key)| Command::Echo { tenant, session, steps, key }),
            3 => (t.clone(), 0..4usize, prop::collection::vec(script_step, 1..4))
                .prop_map(|(tenant, session, script)| Command::Scripted { tenant, session, script }),
            1 => Just(Command::Restart),
            1 => (t, 0..4usize, prop::option::of(any::<u64>()))
                .prop_map(|(tenant, session, torn)| Command::SubmitThenCrash { tenant, session, torn }),
        ]
        .boxed()
    }

    fn apply(state: (), _: &Command) {
        state
    }
}

struct Sut {
    fs: MemFs,
    probe: Arc<Probe>,
    tokio: Option<tokio::runtime::Runtime>,
    rt: Option<Arc<Rt>>,
    sessions: Vec<Vec<Id>>,
    tokens: Vec<Vec<Id>>,
    acknowledged: Vec<(String, Id)>,
}

fn tenant(i: usize) -> String {
    format!("t{i}")
}

impl Sut {
    fn boot(fs: MemFs, probe: Arc<Probe>) -> (tokio::runtime::Runtime, Arc<Rt>) {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rt = tokio.block_on(start(&fs, &probe));
        (tokio, rt)
    }

    fn rt(&self) -> Arc<Rt> {
        self.rt.clone().unwrap()
    }

    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.tokio.as_ref().unwrap().block_on(f)
    }

    fn session(&self, t: usize, pick: usize) -> Option<Id> {
        let list = &self.sessions[t];
        (!list.is_empty()).then(|| list[pick % list.len()])
    }

    fn shutdown(&mut self) {
        self.rt = None;
        if let Some(tokio) = self.tokio.take() {
            tokio.shutdown_timeout(Duration::from_secs(2));
        }
    }

    fn restart(&mut self) {
        self.shutdown();
        let (tokio, rt) = Self::boot(self.fs.clone(), self.probe.clone());
        self.tokio = Some(tokio);
        self.rt = Some(rt);
    }

    fn submit(&mut self, intent: symphainy_engine::SubmitIntent) {
        let tenant = intent.tenant_id.clone();
        let rt = self.rt();
        if let Ok(submitted) = self.block(rt.submit_intent(intent)) {
            self.acknowledged.push((tenant, submitted.execution_id));
        }
    }

    /// Waits for every execution to finish, then compares live and replayed digests.
    fn check(&self) {
        let rt = self.rt();
        self.block(async {
            let running: Vec<(String, Id)> = rt
                .read(|s| {
                    s.executions
                        .values()
                        .filter(|e| !e.status.is_terminal())
                        .map(|e| (e.tenant_id.to_string(), e.execution_id))
                        .collect()
                })
                .await
                .unwrap();
            for (tenant, id) in running {
                assert!(
                    rt.wait_finished(&tenant, id, Duration::from_secs(20))
                        .await
                        .unwrap(),
                    "{id} stuck"
                );
            }
        });
        let (lsn, live) = self.block(rt.digest()).unwrap();
        let reader = WalReader::open_with(Arc::new(self.fs.clone()), dir()).unwrap();
        let (replayed, _) = runtime::replay_cursor(&mut reader.cursor(1), Some(lsn)).unwrap();
        assert_eq!(replayed.last_lsn, lsn);
        assert_eq!(
            digest::digest(&replayed),
            live,
            "live and replayed digests differ at LSN {lsn}"
        );
        for (tenant, id) in &self.acknowledged {
            assert!(
                replayed.execution_of(tenant, *id).is_some(),
                "acknowledged execution {id} lost"
            );
        }
        // The derived indexes agree with a scan, live and replayed: executions by status and
        // sessions per tenant.
        let live_state = self.block(rt.read(|s| s.clone())).unwrap();
        for state in [&live_state, &replayed] {
            for (id, t) in &state.tenants {
                let mut counted = [0u64; ExecutionStatus::ALL.len()];
                for e in state.executions.values().filter(|e| *e.tenant_id == **id) {
                    counted[e.status.index()] += 1;
                }
                assert_eq!(t.executions_by_status, counted, "tenant {id}");
                let sessions: std::collections::BTreeSet<Id> = state
                    .sessions
                    .values()
                    .filter(|x| &x.tenant_id == id)
                    .map(|x| x.session_id)
                    .collect();
                assert_eq!(t.sessions, sessions, "tenant {id}");
            }
        }
        // Each session's creation LSN is the same live and replayed, and names its
        // `session_created` in the log.
        for (id, session) in &replayed.sessions {
            let live = live_state.sessions.get(id).map(|s| s.created_lsn);
            assert_eq!(live, Some(session.created_lsn), "session {id}");
            let mut created = None;
            reader
                .cursor(session.created_lsn)
                .visit(1, |_, meta, payload| {
                    created = symphainy_engine::codec::decode(meta, payload).ok();
                })
                .unwrap();
            assert!(
                matches!(
                    created.map(|e| e.body),
                    Some(EventBody::SessionCreated { session_id, .. }) if session_id == *id
                ),
                "session {id} at LSN {}",
                session.created_lsn
            );
        }
    }
}

struct EngineModel;

impl StateMachineTest for EngineModel {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(_: &()) -> Sut {
        let (fs, probe) = (MemFs::new(), Arc::new(Probe::default()));
        let (tokio, rt) = Sut::boot(fs.clone(), probe.clone());
        // Every case starts with each tenant holding two open sessions, so most generated
        // commands do real work; CreateTenant then exercises the "exists" path.
        let sessions = tokio.block_on(async {
            let mut sessions = Vec::new();
            for t in 0..TENANTS {
                rt.create_tenant(&tenant(t)).await.unwrap();
                let mut list = Vec::new();
                for _ in 0..2 {
                    list.push(
                        rt.create_session(&tenant(t), "user", "{}".into())
                            .await
                            .unwrap()
                            .session_id,
                    );
                }
                sessions.push(list);
            }
            sessions
        });
        Sut {
            fs,
            probe,
            tokio: Some(tokio),
            rt: Some(rt),
            sessions,
            tokens: vec![Vec::new(); TENANTS],
            acknowledged: Vec::new(),
        }
    }

    fn apply(mut sut: Sut, _: &(), command: Command) -> Sut {
        let rt = sut.rt();
        match command {
            Command::CreateTenant(t) => {
                let _ = sut.block(rt.create_tenant(&tenant(t)));
            }
            Command::CreateSession(t) => {
                if let Ok(s) = sut.block(rt.create_session(&tenant(t), "user", "{\"k\":1}".into()))
                {
                    sut.sessions[t].push(s.session_id);
                }
            }
            Command::CloseSession(t, pick) => {
                if let Some(s) = sut.session(t, pick) {
                    sut.block(rt.close_session(&tenant(t), s)).unwrap();
                }
            }
            Command::IssueToken(t) => {
                if let Ok(token) = sut.block(rt.issue_token(&tenant(t), "user", 3600)) {
                    sut.tokens[t].push(token.token_id);
                }
            }
            Command::RevokeToken(t) => {
                if let Some(token) = sut.tokens[t].first().copied() {
                    assert_eq!(sut.block(rt.revoke_token(token)).unwrap(), tenant(t));
                }
            }
            Command::Echo {
                tenant: t,
                session,
                steps,
                key,
            } => {
                if let Some(s) = sut.session(t, session) {
                    let mut intent = echo(&tenant(t), s, json!({"n": steps}), steps);
                    intent.idempotency_key = key.map(|k| format!("key-{k}"));
                    sut.submit(intent);
                }
            }
            Command::Scripted {
                tenant: t,
                session,
                script,
            } => {
                if let Some(s) = sut.session(t, session) {
                    let steps: Vec<_> = script
                        .iter()
                        .map(|&(fail, permanent, hang, compensation_fails)| {
                            json!({"fail_attempts": fail, "permanent": permanent, "hang_attempts": hang, "compensation_fails": compensation_fails})
                        })
                        .collect();
                    sut.submit(scripted(&tenant(t), s, json!(steps)));
                }
            }
            Command::Restart => {
                drop(rt);
                sut.restart();
            }
            Command::SubmitThenCrash {
                tenant: t,
                session,
                torn,
            } => {
                if let Some(s) = sut.session(t, session) {
                    sut.submit(echo(&tenant(t), s, json!("crash"), 4));
                }
                drop(rt);
                let mode = torn.map_or(CrashMode::DropUnsynced, |seed| CrashMode::TornSectors {
                    seed,
                });
                sut.fs.crash(mode);
                sut.restart();
            }
        }
        sut
    }

    fn check_invariants(sut: &Sut, _: &()) {
        sut.check();
    }

    fn teardown(mut sut: Sut, _: ()) {
        if std::env::var("MODEL_VERBOSE").is_ok() {
            let n = sut
                .block(sut.rt().read(|s| (s.executions.len(), s.last_lsn)))
                .unwrap();
            eprintln!(
                "executions={} last_lsn={} acknowledged={}",
                n.0,
                n.1,
                sut.acknowledged.len()
            );
        }
        sut.shutdown();
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    // Live state and replayed WAL agree after every command, restart and crash.
    #[test]
    fn live_digest_equals_replayed_digest(sequential 5..40 => EngineModel);
}
