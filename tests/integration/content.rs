//! The content realm end to end: every format uploaded becomes a document with chunks and
//! facts whose spans hold their values; search finds documents by a phrase; parallel uploads
//! across tenants stay isolated; bad files fail cleanly; grounded analysis cites existing facts
//! and validation rejects invented citations; replay reproduces the digest.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use symphainy_engine::agents::{Claim, FactView, Proposal, Reasoner};
use symphainy_engine::realms::content::blob::BlobStore;
use symphainy_sdk::{Client, Intent};
use symphainy_server::ServerConfig;
use symphainy_tests::TestServer;

const WAIT: Duration = Duration::from_secs(20);

fn files() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "notes.txt",
            "text/plain",
            "Orbital maintenance log\nThe pelican thruster was serviced on 2026-04-02.\nCost: 4,250 credits\n".into(),
        ),
        (
            "report.md",
            "text/markdown",
            "# Marmalade Quarterly\n\nOwner: Jane Doe\n\n## Revenue\nRevenue grew 12% to $1,250.50 in the tangerine division.\n".into(),
        ),
        (
            "stock.csv",
            "text/csv",
            "sku,warehouse,quantity\nA1,Lisbon,10\nB2,Osaka,20\nC3,Quito,30\n".into(),
        ),
        (
            "order.json",
            "application/json",
            r#"{"customer": "Zanzibar Freight", "total": 99.5, "lines": [{"item": "anchor", "qty": 2}]}"#.into(),
        ),
        (
            "page.html",
            "text/html",
            "<html><head><title>Heliotrope Garden</title></head><body><h1>Planting guide</h1><p>Water the heliotrope every 3 days.</p></body></html>".into(),
        ),
    ]
}

async fn upload_all(client: &Client, session: &str, files: &[(&str, &str, String)]) -> Vec<String> {
    let parts: Vec<(&str, &str, Vec<u8>)> = files
        .iter()
        .map(|(n, m, t)| (*n, *m, t.clone().into_bytes()))
        .collect();
    let answer = client.upload(session, &parts).await.unwrap();
    answer["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_string())
        .collect()
}

async fn finished(client: &Client, id: &str) -> symphainy_sdk::ExecutionStatus {
    client.wait_finished(id, WAIT).await.unwrap()
}

// Each format: the document exists with chunks and facts, each fact's span holds its value in
// the document text, and a phrase from the document finds it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_becomes_a_searchable_document_with_grounded_facts() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let files = files();
    let ids = upload_all(&acme, &session, &files).await;
    // And one more through the intent with inline base64 content.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode("Vermilion lighthouse keeper's diary\nDate: 2026-01-09\n");
    let (_, inline) = acme
        .submit(&Intent::new(
            "content.upload",
            &session,
            json!({"filename": "diary.txt", "content_base64": b64}),
        ))
        .await
        .unwrap();
    // And a PDF.
    let pdf =
        symphainy_engine::testing::minimal_pdf(&["Cobalt Almanac", "Launch window: 2026-09-30"]);
    let answer = acme
        .upload(&session, &[("almanac.pdf", "application/pdf", pdf)])
        .await
        .unwrap();
    let pdf_id = answer["executions"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let blobs = BlobStore::new(server.data_dir().join("blobs"));
    let phrases = [
        "pelican thruster was serviced",
        "tangerine division",
        "Osaka",
        "Zanzibar Freight",
        "water the heliotrope every",
        "lighthouse keeper",
        "Cobalt Almanac",
    ];
    for (i, id) in ids
        .iter()
        .chain([&inline.execution_id, &pdf_id])
        .enumerate()
    {
        let status = finished(&acme, id).await;
        assert_eq!(status.status, "completed", "{id}: {:?}", status.error);
        let result = status.result.unwrap();
        let document_id = result["document_id"].as_str().unwrap().to_string();
        assert!(result["chunks"].as_u64().unwrap() >= 1);
        let doc = acme.document(&document_id).await.unwrap();
        assert!(doc["chunks"].as_u64().unwrap() >= 1);
        let facts = doc["facts"].as_array().unwrap();
        assert!(!facts.is_empty(), "{doc}");
        // The text the spans point into (the file itself, or for HTML its visible text).
        let record = acme.runtime_state(id).await.unwrap();
        let last = record["steps"].as_array().unwrap().last().unwrap()["output"].clone();
        let text_sha = last["text_sha256"].as_str().unwrap();
        let text = String::from_utf8(blobs.get(text_sha).unwrap()).unwrap();
        for f in facts {
            let [s, e] = [
                f["span"][0].as_u64().unwrap() as usize,
                f["span"][1].as_u64().unwrap() as usize,
            ];
            let value = f["value"].as_str().unwrap();
            match f["kind"].as_str().unwrap() {
                // Aggregates are computed over their span, not quoted from it.
                "word_count" => {
                    assert_eq!(value, text[s..e].split_whitespace().count().to_string())
                }
                "row_count" => assert_eq!(
                    value,
                    text[s..e]
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .count()
                        .to_string(),
                    "{f}"
                ),
                _ => assert!(text[s..e].contains(value), "{f}"),
            }
            assert_eq!(f["document_id"], document_id);
        }
        let hits = acme.search(phrases[i], 3).await.unwrap();
        assert_eq!(
            hits[0]["document_id"], document_id,
            "search {:?}: {hits:?}",
            phrases[i]
        );
        assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
        // Graph: the document, its chunks and facts are vertices linked to each other.
        let graph = acme
            .graph_traverse(&format!("documents/{document_id}"), "any", 1)
            .await
            .unwrap();
        let kinds: std::collections::BTreeSet<&str> = graph["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["_id"].as_str().unwrap().split('/').next().unwrap())
            .collect();
        assert!(
            kinds.contains("chunks") && kinds.contains("facts") && kinds.contains("executions"),
            "{kinds:?}"
        );
    }
    // Kinds the formats are known to give.
    let all: Vec<Value> = {
        let mut v = Vec::new();
        for id in &ids {
            let doc_id = finished(&acme, id).await.result.unwrap()["document_id"]
                .as_str()
                .unwrap()
                .to_string();
            v.extend(
                acme.document(&doc_id).await.unwrap()["facts"]
                    .as_array()
                    .unwrap()
                    .clone(),
            );
        }
        v
    };
    let has =
        |kind: &str, value: &str| all.iter().any(|f| f["kind"] == kind && f["value"] == value);
    assert!(has("title", "Marmalade Quarterly"));
    assert!(has("heading", "Revenue"));
    assert!(has("key_value", "Owner: Jane Doe"));
    assert!(has("date", "2026-04-02"));
    assert!(has("number", "$1,250.50"));
    assert!(has("csv_column", "warehouse"));
    assert!(has("row_count", "3"), "the CSV's three data rows");
    assert!(
        has("word_count", "4"),
        "the CSV's four whitespace-separated words"
    );
    assert!(has("json_key", "customer"));
    assert!(has("title", "Heliotrope Garden"));

    // Replay of the log gives the server's digest, content steps included.
    let (lsn, digest) = server.admin().digest().await.unwrap();
    let reader = symphainy_wal::WalReader::open(server.data_dir().join("wal")).unwrap();
    let (state, _) =
        symphainy_engine::runtime::replay_cursor(&mut reader.cursor(1), Some(lsn)).unwrap();
    assert_eq!(symphainy_engine::digest::digest(&state), digest);
}

// 20 uploads from two tenants at once all complete; nothing crosses tenants: search results,
// documents, graph vertices and facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_uploads_across_tenants_stay_isolated() {
    let server = TestServer::start().await.unwrap();
    let mut tasks = Vec::new();
    for tenant in ["acme", "globex"] {
        let client = server.tenant(tenant).await.unwrap();
        let session = client.create_session(json!({})).await.unwrap().session_id;
        for n in 0..10 {
            let (client, session) = (client.clone(), session.clone());
            tasks.push(tokio::spawn(async move {
                let text = format!("# {tenant} memo {n}\n\nSecret word: {tenant}zebra{n}\n");
                let name = format!("{tenant}-{n}.md");
                let ids =
                    upload_all(&client, &session, &[(name.as_str(), "text/markdown", text)]).await;
                let status = finished(&client, &ids[0]).await;
                assert_eq!(status.status, "completed");
                (
                    tenant,
                    client,
                    status.result.unwrap()["document_id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            }));
        }
    }
    let mut docs = Vec::new();
    for t in tasks {
        docs.push(t.await.unwrap());
    }
    assert_eq!(docs.len(), 20);
    for (tenant, client, doc) in &docs {
        let other = if *tenant == "acme" { "globex" } else { "acme" };
        for hit in client
            .search(&format!("{other}zebra3 memo secret"), 50)
            .await
            .unwrap()
        {
            let id = hit["document_id"].as_str().unwrap();
            assert!(
                docs.iter().any(|(t, _, d)| t == tenant && d == id),
                "{tenant} saw {id}"
            );
        }
        let foreign = docs.iter().find(|(t, _, _)| t == &other).unwrap();
        let err = client.document(&foreign.2).await.unwrap_err();
        assert_eq!(err.status(), Some(404));
        let err = client
            .graph_vertex("documents", &foreign.2)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
        let err = client
            .graph_vertex("facts", &format!("{}-f0", foreign.2))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
        // The upload's execution (its id is the document's): waiting on it is not found either.
        let err = client.wait_execution(&foreign.2, 100).await.unwrap_err();
        assert_eq!(err.status(), Some(404));
        assert_eq!(
            client.wait_execution(doc, 100).await.unwrap().status,
            "completed"
        );
        assert!(client.document(doc).await.is_ok());
    }
    // Uploading into another tenant's session is refused like a missing session.
    let (_, acme, _) = docs.iter().find(|(t, _, _)| *t == "acme").unwrap();
    let globex_session = docs
        .iter()
        .find(|(t, _, _)| *t == "globex")
        .map(|(_, c, _)| c.clone())
        .unwrap()
        .create_session(json!({}))
        .await
        .unwrap()
        .session_id;
    let err = acme
        .upload(
            &globex_session,
            &[("x.txt", "text/plain", b"hello".to_vec())],
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

// Corrupt, binary, empty, unsupported and oversized files fail cleanly with a clear code; the
// server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_fail_cleanly_and_the_server_carries_on() {
    let server =
        TestServer::start_with(|c: &mut ServerConfig| c.limits.upload_file_bytes_max = 64 * 1024)
            .await
            .unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "broken.json",
            "application/json",
            b"{\"a\": [1, 2".to_vec(),
            "corrupt_file",
        ),
        (
            "garbage.txt",
            "text/plain",
            vec![0, 159, 146, 150, 255, 0, 1, 2],
            "unreadable_file",
        ),
        ("empty.md", "text/markdown", Vec::new(), "empty_file"),
        (
            "tool.exe",
            "application/octet-stream",
            b"MZ\x90\x00".to_vec(),
            "unsupported_format",
        ),
        (
            "ragged.csv",
            "text/csv",
            b"a,b\n1\n".to_vec(),
            "corrupt_file",
        ),
        (
            "scan.pdf",
            "application/pdf",
            b"%PDF-1.4 not really".to_vec(),
            "corrupt_file",
        ),
        (
            "fake.pdf",
            "application/pdf",
            b"just text".to_vec(),
            "corrupt_file",
        ),
        (
            "a.docx",
            "application/octet-stream",
            b"PK\x03\x04".to_vec(),
            "unsupported_format",
        ),
    ];
    for (name, media, bytes, code) in &cases {
        let answer = acme
            .upload(&session, &[(name, media, bytes.clone())])
            .await
            .unwrap();
        let ids = [answer["executions"][0]["execution_id"]
            .as_str()
            .unwrap()
            .to_string()];
        let status = finished(&acme, &ids[0]).await;
        assert_ne!(status.status, "completed", "{name}");
        let error = status.error.unwrap();
        let record = acme.runtime_state(&ids[0]).await.unwrap();
        let step_codes: Vec<&str> = record["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["error"]["code"].as_str())
            .collect();
        assert!(
            step_codes.contains(code) || error["code"] == *code,
            "{name}: {error} {step_codes:?}"
        );
    }
    // Oversized: refused at the door with 413, nothing logged.
    let big = vec![b'a'; 64 * 1024 + 1];
    let err = acme
        .upload(&session, &[("big.txt", "text/plain", big)])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413));
    // No file, no session: 400.
    let err = acme.upload(&session, &[]).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    // Still serving.
    let ids = upload_all(
        &acme,
        &session,
        &[("ok.txt", "text/plain", "all good here".into())],
    )
    .await;
    assert_eq!(finished(&acme, &ids[0]).await.status, "completed");
}

// A reasoner that invents a citation.
#[derive(Debug)]
struct Inventive;

impl Reasoner for Inventive {
    fn reason(&self, _question: &str, facts: FactView<'_>) -> Proposal {
        let real = facts.facts()[0].fact_id.clone();
        Proposal {
            answer: "partly invented".into(),
            claims: vec![
                Claim {
                    text: "grounded".into(),
                    citations: vec![real],
                },
                Claim {
                    text: "invented".into(),
                    citations: vec!["no-such-fact".into()],
                },
            ],
            tool_requests: vec![],
        }
    }
}

async fn analyze(server: &TestServer, question: &str) -> (Value, Value) {
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let ids = upload_all(
        &acme,
        &session,
        &[("report.md", "text/markdown", files()[1].2.clone())],
    )
    .await;
    let document_id = finished(&acme, &ids[0]).await.result.unwrap()["document_id"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = acme.document(&document_id).await.unwrap();
    let (_, s) = acme
        .submit(&Intent::new(
            "content.analyze",
            &session,
            json!({"document_id": document_id, "question": question}),
        ))
        .await
        .unwrap();
    let status = finished(&acme, &s.execution_id).await;
    assert_eq!(status.status, "completed", "{:?}", status.error);
    (status.result.unwrap(), doc)
}

// Every claim of the analysis cites facts of the document; an invented citation is rejected
// by validation and the result says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grounded_analysis_cites_existing_facts_and_rejects_inventions() {
    let server = TestServer::start().await.unwrap();
    let (result, doc) = analyze(&server, "What was the revenue growth?").await;
    let fact_ids: Vec<&str> = doc["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fact_id"].as_str().unwrap())
        .collect();
    let claims = result["claims"].as_array().unwrap();
    assert!(!claims.is_empty(), "{result}");
    for claim in claims {
        let citations = claim["citations"].as_array().unwrap();
        assert!(!citations.is_empty());
        for c in citations {
            assert!(fact_ids.contains(&c.as_str().unwrap()), "{c} is not a fact");
        }
    }
    assert_eq!(result["validated"], true);
    assert!(
        result["answer"].as_str().unwrap().contains("12%")
            || result["answer"].as_str().unwrap().contains("Revenue"),
        "{result}"
    );

    let inventive = TestServer::start_with(|c: &mut ServerConfig| c.reasoner = Arc::new(Inventive))
        .await
        .unwrap();
    let (result, _) = analyze(&inventive, "anything").await;
    assert_eq!(result["validated"], false, "{result}");
    assert_eq!(result["claims"].as_array().unwrap().len(), 1);
    assert_eq!(result["rejected_claims"][0]["claim"]["text"], "invented");
    // With validation switched off by policy, claims are reported unchecked.
    let unchecked = TestServer::start_with(|c: &mut ServerConfig| {
        c.reasoner = Arc::new(Inventive);
        c.validate_claims = false;
    })
    .await
    .unwrap();
    let (result, _) = analyze(&unchecked, "anything").await;
    assert_eq!(result["validation"], "off");
    assert_eq!(result["validated"], false);
    assert_eq!(result["claims"].as_array().unwrap().len(), 2);
    // Analysis of a document that does not exist fails with a clear code.
    let acme = inventive.tenant("globex").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let (_, s) = acme
        .submit(&Intent::new(
            "content.analyze",
            &session,
            json!({"document_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "question": "q"}),
        ))
        .await
        .unwrap();
    let status = finished(&acme, &s.execution_id).await;
    assert_ne!(status.status, "completed");
}

/// A local OpenAI-compatible endpoint: answers with one claim citing the first fact it was
/// given and one citing a fact that does not exist; counts its calls.
async fn mock_reasoner() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let user: Value = serde_json::from_str(body["messages"][1]["content"].as_str().unwrap_or("{}")).unwrap_or_default();
                let first = user["facts"][0]["fact_id"].as_str().unwrap_or("none").to_string();
                let content = json!({
                    "answer": format!("model answer to {}", user["question"]),
                    "claims": [
                        {"text": "from the document", "citations": [first]},
                        {"text": "from thin air", "citations": ["fact-that-does-not-exist"]},
                    ],
                    "tool_requests": [
                        {"intent_type": "content.search", "payload": {"q": "tangerine division"}},
                        {"intent_type": "runtime.shell", "payload": {"cmd": "rm -rf /"}},
                    ],
                });
                axum::Json(json!({"choices": [{"message": {"role": "assistant", "content": content.to_string()}}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), calls)
}

// The HTTP reasoner's answer is recorded as the reason step's output (the log holds it, so
// replay needs no reasoner); its invented citation is rejected by validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reasoner_answers_are_recorded_and_validated() {
    let (url, calls) = mock_reasoner().await;
    let reasoner =
        symphainy_server::reasoner::HttpReasoner::new(&url, "mock", Some("k".into())).unwrap();
    let server = TestServer::start_with(|c: &mut ServerConfig| c.reasoner = Arc::new(reasoner))
        .await
        .unwrap();
    let (result, doc) = analyze(&server, "Who owns the report?").await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(result["validated"], false, "{result}");
    assert_eq!(result["claims"].as_array().unwrap().len(), 1);
    let first_fact = doc["facts"][0]["fact_id"].as_str().unwrap();
    assert_eq!(result["claims"][0]["citations"][0], first_fact);
    assert!(
        result["answer"]
            .as_str()
            .unwrap()
            .starts_with("model answer")
    );
    // The proposal is in the log, as the reason step's recorded output.
    let (lsn, digest) = server.admin().digest().await.unwrap();
    let reader = symphainy_wal::WalReader::open(server.data_dir().join("wal")).unwrap();
    let (state, _) =
        symphainy_engine::runtime::replay_cursor(&mut reader.cursor(1), Some(lsn)).unwrap();
    assert_eq!(symphainy_engine::digest::digest(&state), digest);
    let recorded = state
        .executions
        .values()
        .find(|e| &*e.capability == "content.grounded_analysis")
        .and_then(|e| e.steps[1].output_json.clone())
        .unwrap();
    assert!(recorded.contains("fact-that-does-not-exist"), "{recorded}");
    // Tool requests: the allowed one ran (its results recorded), the other was refused.
    let tools = result["tool_results"].as_array().unwrap();
    assert_eq!(tools[0]["tool"], "content.search");
    assert!(
        tools[0]["results"][0]["text"]
            .as_str()
            .unwrap()
            .contains("tangerine"),
        "{tools:?}"
    );
    assert!(
        tools[1]["error"].as_str().unwrap().contains("not allowed"),
        "{tools:?}"
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "replay called nobody"
    );
}
