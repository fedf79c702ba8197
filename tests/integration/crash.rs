//! Kill -9 the real server binary during a load of intents, restart it on the same data
//! directory: every acknowledged execution exists and finishes, and the graph view resumed
//! to exactly what a clean rebuild gives. SIGTERM exits 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use symphainy_projections::graph::{GraphStore, GraphView, SledGraph};
use symphainy_projections::runner::rebuild;
use symphainy_sdk::{Client, Intent};
use symphainy_tests::ServerProcess;
use symphainy_wal::WalReader;

// Every execution acknowledged before a SIGKILL is there after restart, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_load_loses_no_acknowledged_execution() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).unwrap();
    let (_, acme, session) = server.tenant_with_session("acme").await.unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for worker in 0..16 {
        let (client, session, acked) = (acme.clone(), session.clone(), acked.clone());
        load.push(tokio::spawn(async move {
            for n in 0.. {
                let intent = Intent::new(
                    "runtime.echo",
                    &session,
                    json!({"value": [worker, n], "steps": 3}),
                );
                match client.submit(&intent).await {
                    Ok((_, submitted)) => acked.lock().unwrap().push(submitted.execution_id),
                    Err(_) => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || server.kill9().unwrap())
        .await
        .unwrap();
    for task in load {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too little load: {}", acked.len());

    let server = ServerProcess::start(dir.path()).unwrap();
    let acme = Client::new(&server.base, acme.token());
    for id in &acked {
        let status = acme
            .wait_finished(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(status.status, "completed", "execution {id} after restart");
    }
    // The graph view survived the kill at whatever point it was, resumed from its
    // checkpoint and caught up: it shows every execution as completed.
    for id in &acked {
        let vertex = acme.graph_vertex("executions", id).await.unwrap();
        assert_eq!(vertex["status"], "completed", "graph vertex of {id}");
    }
    let code = tokio::task::spawn_blocking(move || server.terminate().unwrap())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "SIGTERM exits 0");
    // And it equals a clean rebuild of the log: nothing applied twice or skipped.
    let live = SledGraph::open(&dir.path().join("graph")).unwrap();
    let reader = WalReader::open(dir.path().join("wal")).unwrap();
    let fresh = Arc::new(SledGraph::open(&dir.path().join("graph-check")).unwrap());
    rebuild(
        &mut GraphView::new(fresh.clone()),
        &mut reader.cursor(1),
        4096,
        |_| {},
    )
    .await
    .unwrap();
    let (a, b) = (live.dump().unwrap(), fresh.dump().unwrap());
    let sa: std::collections::BTreeSet<_> = a.iter().collect();
    let sb: std::collections::BTreeSet<_> = b.iter().collect();
    let only_live: Vec<_> = sa.difference(&sb).take(5).collect();
    let only_fresh: Vec<_> = sb.difference(&sa).take(5).collect();
    assert!(
        only_live.is_empty() && only_fresh.is_empty(),
        "the live graph differs from a rebuild: only live {only_live:?}; only rebuilt {only_fresh:?}"
    );
}
