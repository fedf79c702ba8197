//! Content benchmark.
//! 1. Uploads: `--docs` markdown documents of about 5 KB through `POST /content/upload` of an
//!    in-process server (`--clients` concurrent uploaders, one file per request), each run to
//!    completion (store, parse, chunk, embed, extract facts, indexed); documents per second and
//!    MB per second, wall clock from first upload to last completion.
//! 2. Search: exact cosine top-5 over `--chunks` chunks in the content index (in process),
//!    1,000 queries; and over HTTP against the uploaded documents.
//!
//! 3. Fact extraction of adversarial texts as large as the parser takes (one shape repeated):
//!    seconds per text, which must stay linear in its size.
//!
//! Last line: `uploads_per_sec=... mb_per_sec=... search_p99_ms=...` (search over the
//! `--chunks` chunks).
//!
//! cargo run --release -p symphainy-tests --bin content-bench -- --docs 1000 --chunks 100000

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use symphainy_engine::realms::content::DocumentRecord;
use symphainy_engine::realms::content::embed::FeatureHashEmbedder;
use symphainy_projections::content::ContentIndex;
use symphainy_tests::TestServer;
use symphainy_tests::flag;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORDS: [&str; 24] = [
    "ledger", "orbit", "harbor", "copper", "meadow", "signal", "lantern", "quartz", "river",
    "summit", "falcon", "garnet", "willow", "beacon", "cinder", "delta", "ember", "fjord",
    "glacier", "hollow", "island", "juniper", "kestrel", "lagoon",
];

/// A ~5 KB markdown document, distinct per `n`.
fn document(n: u64) -> String {
    let mut s = format!(
        "# Report {n}\n\nOwner: Team {}\nDate: 2026-0{}-1{}\n\n",
        n % 7,
        1 + n % 9,
        n % 9
    );
    let mut i = n;
    while s.len() < 5_000 {
        s.push_str(&format!("## Section {}\n", s.len() / 700));
        for _ in 0..60 {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(WORDS[(i >> 33) as usize % WORDS.len()]);
            s.push(if (i >> 20).is_multiple_of(11) {
                '\n'
            } else {
                ' '
            });
        }
        s.push_str(&format!("Measured {} units.\n\n", (i >> 40) % 10_000));
    }
    s
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let docs = flag("--docs", 1_000)?;
    let clients = flag("--clients", 16)?;
    let chunks = flag("--chunks", 100_000)?;
    let server = TestServer::start().await?;
    let client = server.tenant("acme").await?;
    let session = client.create_session(json!({})).await?.session_id;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per = docs.div_ceil(clients);
    for c in 0..clients {
        let (client, session) = (client.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut bytes = 0u64;
            for n in (c * per)..((c + 1) * per).min(docs) {
                let text = document(n);
                bytes += text.len() as u64;
                let name = format!("report-{n}.md");
                let answer = client
                    .upload(
                        &session,
                        &[(name.as_str(), "text/markdown", text.into_bytes())],
                    )
                    .await?;
                ids.push(
                    answer["executions"][0]["execution_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            let mut failed = 0;
            for id in &ids {
                if client
                    .wait_finished(id, Duration::from_secs(120))
                    .await?
                    .status
                    != "completed"
                {
                    failed += 1;
                }
            }
            anyhow::Ok((ids.len() as u64, bytes, failed))
        }));
    }
    let (mut done, mut bytes, mut failed) = (0, 0, 0);
    for t in tasks {
        let (d, b, f) = t.await??;
        done += d;
        bytes += b;
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    let uploads_per_sec = done as f64 / seconds;
    let mb_per_sec = bytes as f64 / seconds / 1e6;
    let indexed = server.running.state.projections.content.chunk_count();
    println!(
        "uploads: documents={done} failed={failed} bytes={bytes} seconds={seconds:.2} uploads_per_sec={uploads_per_sec:.0} mb_per_sec={mb_per_sec:.2} chunks_indexed={indexed}"
    );
    let mut http = Vec::new();
    for q in 0..200u64 {
        let query = format!(
            "{} {} report",
            WORDS[q as usize % 24],
            WORDS[(q as usize * 7) % 24]
        );
        let t = Instant::now();
        let hits = client.search(&query, 5).await?;
        http.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(!hits.is_empty(), "no hit for {query}");
    }
    http.sort_by(f64::total_cmp);
    println!(
        "http search over {indexed} chunks: p50_ms={:.2} p99_ms={:.2}",
        percentile(&http, 0.5),
        percentile(&http, 0.99)
    );

    // Search over `chunks` chunks, in process.
    let index = Arc::new(ContentIndex::new(Arc::new(FeatureHashEmbedder)));
    let built = Instant::now();
    let mut n = 0u64;
    let mut total_chunks = 0u64;
    while total_chunks < chunks {
        let text = document(n);
        let spans = symphainy_engine::realms::content::chunk::chunk(&text);
        total_chunks += spans.len() as u64;
        let record = DocumentRecord {
            document_id: format!("doc{n}"),
            chunks: spans.into_iter().map(|(s, e)| [s, e]).collect(),
            ..DocumentRecord::default()
        };
        index.insert("acme", record, &text);
        n += 1;
    }
    println!(
        "index: documents={n} chunks={} build_seconds={:.1}",
        index.chunk_count(),
        built.elapsed().as_secs_f64()
    );
    let mut lat = Vec::new();
    for q in 0..1_000u64 {
        let query = format!(
            "{} {}",
            WORDS[q as usize % 24],
            WORDS[(q as usize * 5 + 3) % 24]
        );
        let t = Instant::now();
        let hits = index.search("acme", &query, 5);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(hits.len() == 5, "short result for {query}");
    }
    lat.sort_by(f64::total_cmp);
    let p99 = percentile(&lat, 0.99);
    println!(
        "search over {} chunks (exact cosine, top 5): p50_ms={:.2} p99_ms={p99:.2}",
        index.chunk_count(),
        percentile(&lat, 0.5)
    );
    adversarial_extraction()?;
    println!(
        "uploads_per_sec={uploads_per_sec:.0} mb_per_sec={mb_per_sec:.2} search_p99_ms={p99:.2}"
    );
    Ok(())
}

/// Parse, chunk and fact extraction of texts as large as the parser takes, each made of one
/// shape repeated (dates and numbers, sentences, grouped numbers, list items, `key: value`
/// lines, headings between sentences): each must stay linear in the text's size.
fn adversarial_extraction() -> anyhow::Result<()> {
    use symphainy_engine::realms::content::{chunk, facts, parse};
    let bytes = parse::PARSE_BYTES_MAX - 1024;
    for (name, unit, format) in [
        (
            "dates_and_numbers",
            "2026-01-01 123 4.5\n",
            parse::Format::Txt,
        ),
        ("sentences", "Ab cd ef. Gh ij kl! ", parse::Format::Md),
        ("grouped_numbers", "1,000,000,", parse::Format::Txt),
        ("list_items", "- a b c\n1. d e f\n", parse::Format::Md),
        ("key_values", "Key: value here.\n", parse::Format::Md),
        (
            "headings_and_sentences",
            "# Part\n\nSome words here. More words there.\n\n",
            parse::Format::Md,
        ),
    ] {
        let text = unit.repeat(bytes / unit.len());
        let started = Instant::now();
        let parsed = parse::parse(format, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{name}: {}", e.message))?;
        let found = facts::extract("D", &parsed, &chunk::chunk(&parsed.text));
        println!(
            "extraction of {:.1} MiB of {name}: {} facts in {:.2} s",
            text.len() as f64 / (1024.0 * 1024.0),
            found.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
