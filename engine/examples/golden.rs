//! Writes the golden WAL used by `tests/golden.rs`: a small log covering every event type,
//! produced by the current code with a fixed clock and sequential ids, and its digest.
//! Regenerate only when the format changes on purpose (old goldens must keep replaying):
//!
//! cargo run -p symphainy-engine --example golden -- engine/tests/golden/v1

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use symphainy_engine::id::{ManualClock, SequentialIds};
use symphainy_engine::saga::Registry;
use symphainy_engine::testing::{Probe, Scripted};
use symphainy_engine::{Runtime, RuntimeConfig, SubmitIntent, builtin, digest, runtime};
use symphainy_wal::{Config, Wal, WalReader};

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: golden OUT_DIR"));
    let wal_dir = out.join("wal");
    let _ = std::fs::remove_dir_all(&out);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let mut registry = Registry::default();
        registry.register(Arc::new(builtin::Echo)).unwrap();
        registry
            .register(Arc::new(Scripted {
                probe: Arc::new(Probe::default()),
            }))
            .unwrap();
        let config = Config {
            segment_bytes: 16 * 1024,
            record_bytes_max: 8 * 1024,
            ..Config::small_for_tests()
        };
        let wal = Arc::new(Wal::open(&wal_dir, config).unwrap());
        let clock = Arc::new(ManualClock::new(1_767_225_600_000));
        let rt = Runtime::start(
            wal,
            Arc::new(registry),
            clock.clone(),
            Arc::new(SequentialIds::default()),
            RuntimeConfig::default(),
        )
        .await
        .unwrap();
        rt.create_tenant("acme").await.unwrap();
        rt.create_tenant("globex").await.unwrap();
        let token = rt.issue_token("acme", "alice", 3600).await.unwrap();
        rt.revoke_token(token.token_id).await.unwrap();
        rt.issue_token("globex", "bob", 7200).await.unwrap();
        let session = rt
            .create_session("acme", "alice", json!({"purpose": "golden"}).to_string())
            .await
            .unwrap();
        let other = rt
            .create_session("globex", "bob", "{}".into())
            .await
            .unwrap();
        let intents = [
            (
                "acme",
                session.session_id,
                "runtime.echo",
                json!({"value": "hello", "steps": 3}),
                Some("golden-1"),
            ),
            (
                "acme",
                session.session_id,
                "test.scripted",
                json!({"steps": [{}, {"fail_attempts": 1}]}),
                None,
            ),
            (
                "acme",
                session.session_id,
                "test.scripted",
                json!({"steps": [{}, {}, {"fail_attempts": 9}]}),
                None,
            ),
            (
                "globex",
                other.session_id,
                "test.scripted",
                json!({"steps": [{"fail_attempts": 1, "permanent": true}]}),
                None,
            ),
            (
                "globex",
                other.session_id,
                "runtime.echo",
                json!({"value": [1, 2, 3]}),
                None,
            ),
        ];
        for (tenant, session_id, intent_type, payload, key) in intents {
            clock.advance(1000);
            let intent = SubmitIntent {
                tenant_id: tenant.into(),
                session_id,
                intent_type: intent_type.into(),
                realm: None,
                payload,
                idempotency_key: key.map(String::from),
            };
            let submitted = rt.submit_intent(intent).await.unwrap();
            assert!(
                rt.wait_finished(tenant, submitted.execution_id, Duration::from_secs(10))
                    .await
                    .unwrap()
            );
        }
        rt.close_session("acme", session.session_id).await.unwrap();
    });
    tokio.shutdown_timeout(Duration::from_secs(2));
    let reader = WalReader::open(&wal_dir).unwrap();
    let (state, events) = runtime::replay_cursor(&mut reader.cursor(1), None).unwrap();
    let text = format!(
        "lsn={}\nevents={events}\ndigest={}\n",
        state.last_lsn,
        digest::digest(&state)
    );
    std::fs::write(out.join("expected.txt"), &text).unwrap();
    let _ = std::fs::remove_file(wal_dir.join(symphainy_wal::LOCK_FILE_NAME));
    let _ = std::fs::remove_file(wal_dir.join("next-segment.tmp"));
    print!("{text}");
}
