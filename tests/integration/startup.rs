//! Starting the real server binary on a data directory it must not or cannot serve as is: a
//! second server on a directory in use, a log damaged in its middle, a damaged snapshot. The
//! server either refuses with one clear error (exit code 1, the fault located, the error said
//! once) and changes nothing, or, for a snapshot, ignores it and replays the log to the same
//! state. Blobs that no logged upload names (an upload cut short) are removed at start once
//! past a grace period; every blob an execution names stays.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use symphainy_sdk::{Client, Intent};
use symphainy_tests::ServerProcess;

/// How long a refusing server may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Every segment file of the log with its bytes.
fn segments(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// A server with a tenant, a session and some finished executions; returns the admin client.
/// A server on a new data directory with `--snapshot-every-events EVERY`, populated.
async fn populated_with_snapshots_every(every: &str) -> (tempfile::TempDir, ServerProcess, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with_args(dir.path(), &["--snapshot-every-events", every]).unwrap();
    let admin = populate(&server).await;
    (dir, server, admin)
}

async fn populate(server: &ServerProcess) -> Client {
    let (admin, client, session) = server.tenant_with_session("tenant-0").await.unwrap();
    for n in 1..5 {
        admin.create_tenant(&format!("tenant-{n}")).await.unwrap();
    }
    for n in 0..10 {
        let intent = Intent::new("runtime.echo", &session, json!({"value": n, "steps": 3}));
        let finished = client.submit_and_wait(&intent, 10_000).await.unwrap();
        assert!(finished.is_ok(), "the execution finishes");
    }
    admin
}

// A second server on a directory in use exits 1 naming the lock, once; the first serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServerProcess::start(dir.path()).unwrap();
    let admin = Client::new(&first.base, &first.admin_token);
    admin.create_tenant("acme").await.unwrap();
    let before = segments(dir.path());

    let (code, stderr) = ServerProcess::refused(dir.path(), REFUSAL_TIMEOUT).unwrap();
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert_eq!(
        stderr.matches("is locked by another writer").count(),
        1,
        "the cause is said once: {stderr}"
    );
    assert!(stderr.contains(&dir.path().join("wal").display().to_string()));

    assert_eq!(
        admin.tenants().await.unwrap().len(),
        1,
        "the first still serves"
    );
    admin.create_tenant("acme-2").await.unwrap();
    assert_eq!(first.terminate().unwrap(), Some(0));
    let after = segments(dir.path());
    assert_eq!(before.len(), after.len());
}

// A flipped byte in the middle of the log (valid records after it) stops the server with the
// segment, byte offset and LSN of the fault; the log is left byte for byte as it was, and once
// the byte is restored the server starts with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_damaged_in_the_middle_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).unwrap();
    let admin = populate(&server).await;
    let (lsn, digest) = admin.digest().await.unwrap();
    assert_eq!(server.terminate().unwrap(), Some(0));

    let intact = segments(dir.path());
    let (name, bytes) = intact.first().cloned().unwrap();
    let used = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    let offset = used / 2;
    let segment = dir.path().join("wal").join(&name);
    let mut damaged = bytes.clone();
    damaged[offset] ^= 0x20;
    std::fs::write(&segment, &damaged).unwrap();

    let (code, stderr) = ServerProcess::refused(dir.path(), REFUSAL_TIMEOUT).unwrap();
    assert_eq!(code, Some(1), "stderr: {stderr}");
    assert_eq!(
        stderr.matches("corruption in segment").count(),
        1,
        "the cause is said once: {stderr}"
    );
    assert!(stderr.contains(&format!("corruption in segment {name} at byte offset")));
    assert!(stderr.contains("(LSN "), "names the LSN: {stderr}");
    assert!(stderr.contains("replay-tool verify --data-dir"), "{stderr}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        damaged,
        "nothing was truncated or repaired"
    );
    assert_eq!(segments(dir.path()).len(), intact.len());

    std::fs::write(&segment, &bytes).unwrap();
    let server = ServerProcess::start(dir.path()).unwrap();
    let admin = Client::new(&server.base, &server.admin_token);
    assert_eq!(admin.digest().await.unwrap(), (lsn, digest));
    assert_eq!(admin.tenants().await.unwrap().len(), 5);
    assert_eq!(server.terminate().unwrap(), Some(0));
}

// A log recovered without a snapshot (or far past its newest one) gets a snapshot soon after
// the start, without waiting for as many new events: the next start folds less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_log_without_a_snapshot_gets_one() {
    let (dir, server, admin) = populated_with_snapshots_every("0").await;
    let (lsn, digest) = admin.digest().await.unwrap();
    assert_eq!(server.terminate().unwrap(), Some(0));
    let snapshots = dir.path().join("snapshots");
    assert!(std::fs::read_dir(&snapshots).map_or(true, |mut d| d.next().is_none()));

    let server =
        ServerProcess::start_with_args(dir.path(), &["--snapshot-every-events", "20"]).unwrap();
    let mut waited = Duration::ZERO;
    let newest = loop {
        if let Some(state) = symphainy_engine::snapshot::load_latest(&snapshots, lsn) {
            break state;
        }
        assert!(waited < Duration::from_secs(20), "no snapshot was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    assert_eq!(
        newest.last_lsn, lsn,
        "a snapshot of the whole recovered log"
    );
    assert_eq!(symphainy_engine::digest::digest(&newest), digest);
    assert_eq!(server.terminate().unwrap(), Some(0));
}

// SIGTERM or SIGINT as soon as the server says it listens (a supervisor stopping it right
// away) is a graceful shutdown with exit code 0, never the signal's default abrupt end: the
// handlers are in place before the server listens.
#[test]
fn a_signal_as_soon_as_it_listens_is_a_clean_shutdown() {
    for (round, signal) in ["TERM", "INT", "TERM", "INT", "TERM", "INT"]
        .iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProcess::start(dir.path()).unwrap();
        assert_eq!(
            server.stop_with(signal).unwrap(),
            Some(0),
            "round {round}: SIG{signal}"
        );
    }
}

// A damaged snapshot is ignored: the server replays the log and serves the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_ignored_and_the_log_replayed() {
    let (dir, server, admin) = populated_with_snapshots_every("20").await;
    let snapshots = dir.path().join("snapshots");
    let mut waited = Duration::ZERO;
    let snapshot = loop {
        let found = std::fs::read_dir(&snapshots).ok().and_then(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "bin"))
        });
        if let Some(path) = found {
            break path;
        }
        assert!(waited < Duration::from_secs(20), "no snapshot was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    };
    let (lsn, digest) = admin.digest().await.unwrap();
    assert_eq!(server.terminate().unwrap(), Some(0));

    // Damage every snapshot there is (the newest may have been written after the first).
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "bin") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    assert!(snapshot.exists());

    let server = ServerProcess::start(dir.path()).unwrap();
    let admin = Client::new(&server.base, &server.admin_token);
    assert_eq!(admin.digest().await.unwrap(), (lsn, digest));
    assert_eq!(admin.tenants().await.unwrap().len(), 5);
    assert_eq!(server.terminate().unwrap(), Some(0));
}

/// Every blob file of the data directory.
fn blob_files(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("blobs"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|shard| {
            std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// Blobs of uploads cut short (stored, intent never logged) are removed at the next start once
// older than the grace period; the blobs uploads and their steps recorded stay, documents read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_no_logged_upload_names_are_removed_at_start() {
    use symphainy_engine::realms::content::{BLOB_ORPHAN_GRACE, blob::BlobStore};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).unwrap();
    let (_, client, session) = server.tenant_with_session("acme").await.unwrap();
    let answer = client
        .upload(
            &session,
            &[(
                "notes.md",
                "text/markdown",
                b"# Notes\nThe pump runs at 40 rpm.".to_vec(),
            )],
        )
        .await
        .unwrap();
    let uploaded = answer["executions"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let inline = Intent::new(
        "content.upload",
        &session,
        json!({"filename": "inline.txt", "text": "The valve opens at 3 bar."}),
    );
    let (_, submitted) = client.submit(&inline).await.unwrap();
    for id in [&uploaded, &submitted.execution_id] {
        let status = client
            .wait_finished(id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(status.status, "completed", "{status:?}");
    }
    assert_eq!(server.terminate().unwrap(), Some(0));
    let referenced = blob_files(dir.path());
    assert!(referenced.len() >= 2, "{referenced:?}");

    // Two uploads cut short: one long ago, one just now.
    let store = BlobStore::new(dir.path().join("blobs"));
    let old = store.put(b"stored, intent never logged").unwrap();
    let young = store.put(b"stored a moment ago").unwrap();
    // Every blob but the young orphan is past the grace period, the named ones included.
    for name in referenced.iter().chain([&old]) {
        let path = dir.path().join("blobs").join(&name[..2]).join(name);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * BLOB_ORPHAN_GRACE)
            .unwrap();
    }

    let server = ServerProcess::start(dir.path()).unwrap();
    let mut expected = referenced.clone();
    expected.push(young.clone());
    expected.sort();
    assert_eq!(
        blob_files(dir.path()),
        expected,
        "only the old orphan is gone"
    );
    let client = Client::new(&server.base, client.token());
    for id in [&uploaded, &submitted.execution_id] {
        let document = client.document(id).await.unwrap();
        assert_eq!(document["document_id"], id.as_str());
    }
    assert_eq!(server.terminate().unwrap(), Some(0));
}
