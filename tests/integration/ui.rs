//! The UI: its files are served from the binary with a strict content security policy; the
//! routes it relies on beyond the contract (`/sessions`, `/auth/whoami`, `/ui/dev-signin`)
//! behave; and the end-to-end run in headless Chromium (`tests/ui/e2e.mjs`, Playwright)
//! passes, leaving a screenshot of each screen.
//!
//! The browser run needs `node`, `tests/ui/node_modules/playwright-core` and Chromium, which
//! `scripts/test.sh` installs. When they are missing it fails if `SYMPHAINY_UI_TESTS=required`
//! (what `scripts/test.sh` sets) and otherwise says it was skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use symphainy_tests::{TestServer, acme_with_limits};

/// How long the whole browser run may take.
const E2E_TIMEOUT: Duration = Duration::from_secs(300);

// Every UI file is embedded and served with its type and the security headers; unknown names
// are 404 with the error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_files_are_served_from_the_binary() {
    let server = TestServer::start().await.unwrap();
    let http = reqwest::Client::new();
    for (path, media_type, marker) in [
        ("/ui", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "SessionFeed"),
        ("/ui/client.js", "text/javascript", "export class Client"),
        ("/ui/style.css", "text/css", ":root"),
    ] {
        let r = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(media_type),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(r.text().await.unwrap().contains(marker), "{path}");
    }
    let r = http
        .get(format!("{}/ui/../admin.token", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}/ui/secret.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

// `GET /sessions` lists only the caller's sessions, newest first, in pages; `whoami` says who
// a token is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_is_per_tenant_and_paged() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let globex = server.tenant("globex").await.unwrap();
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(acme.create_session(json!({})).await.unwrap().session_id);
    }
    let theirs = globex.create_session(json!({})).await.unwrap().session_id;
    let (page1, next) = acme.list_sessions(3, None).await.unwrap();
    let (page2, last) = acme.list_sessions(3, next.as_deref()).await.unwrap();
    assert!(last.is_none());
    let listed: Vec<String> = page1
        .iter()
        .chain(&page2)
        .map(|s| s.session_id.clone())
        .collect();
    mine.reverse();
    assert_eq!(listed, mine, "newest first, every session once");
    assert!(!listed.contains(&theirs));
    let (other, _) = globex.list_sessions(100, None).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].session_id, theirs);
    for bad in [
        "/sessions?limit=0",
        "/sessions?limit=501",
        "/sessions?before=nope",
    ] {
        let (status, body) = acme.raw(Method::GET, bad, None).await.unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let me = acme.whoami().await.unwrap();
    assert_eq!(
        (me["kind"].as_str(), me["tenant_id"].as_str()),
        (Some("tenant"), Some("acme"))
    );
    assert!(me["expires_at"].as_str().is_some());
    assert_eq!(server.admin().whoami().await.unwrap()["kind"], "admin");
}

// The dev sign-in exists only when the server runs on its embedded defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_signin_only_on_embedded_defaults() {
    let off = TestServer::start().await.unwrap();
    let (status, body) = off
        .admin()
        .with_token("")
        .raw(Method::POST, "/ui/dev-signin", None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let on = TestServer::start_with(|c| c.dev_signin = true)
        .await
        .unwrap();
    let anonymous = on.admin().with_token("");
    let (status, first) = anonymous
        .raw(Method::POST, "/ui/dev-signin", None)
        .await
        .unwrap();
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["tenant_id"], "dev");
    // A second sign-in reuses the tenant; both tokens work and see the same tenant.
    let (status, second) = anonymous
        .raw(Method::POST, "/ui/dev-signin", None)
        .await
        .unwrap();
    assert_eq!(status, 201);
    let dev = anonymous.with_token(first["token"].as_str().unwrap());
    let session = dev.create_session(json!({})).await.unwrap().session_id;
    let dev2 = anonymous.with_token(second["token"].as_str().unwrap());
    assert_eq!(dev2.session(&session).await.unwrap().tenant_id, "dev");
    // A request naming another host (DNS rebinding) gets nothing.
    let r = reqwest::Client::new()
        .post(format!("{}/ui/dev-signin", on.base))
        .header("host", "attacker.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

/// What the browser run needs and is missing, if anything.
fn missing_tools(chromium: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        missing.push("node (apt-get install nodejs npm)".to_string());
    }
    if !ui_dir().join("node_modules/playwright-core").is_dir() {
        missing.push("playwright-core (npm ci --prefix tests/ui)".to_string());
    }
    if !chromium.exists() {
        missing.push(format!("{} (apt-get install chromium)", chromium.display()));
    }
    missing
}

// The end-to-end run: sign in, create a session, upload 3 files in parallel and see them
// complete live, resume after a dropped connection and a reload without gap or duplicate,
// open a timeline, a document, search, the WAL browser, the graph, metrics, the admin page;
// another tenant sees none of it; a revoked token leads back to sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_end_to_end() {
    let chromium = PathBuf::from(
        std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string()),
    );
    let missing = missing_tools(&chromium);
    if !missing.is_empty() {
        let message = format!("the UI browser test needs: {}", missing.join(", "));
        if std::env::var("SYMPHAINY_UI_TESTS").as_deref() == Ok("required") {
            panic!("{message} (scripts/test.sh installs them)");
        }
        eprintln!("SKIPPED: {message}; run ./scripts/test.sh, which installs them");
        return;
    }
    let (server, acme) = acme_with_limits(|l| l.upload_file_bytes_max = 256 * 1024).await;
    let globex = server.tenant("globex").await.unwrap();
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    let child = tokio::process::Command::new("node")
        .arg(ui_dir().join("e2e.mjs"))
        .current_dir(ui_dir())
        .env("SYMPHAINY_BASE", &server.base)
        .env("ACME_TOKEN", acme.token())
        .env("GLOBEX_TOKEN", globex.token())
        .env("ADMIN_TOKEN", &server.running.admin_token)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &screenshots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node");
    let output = tokio::time::timeout(E2E_TIMEOUT, child.wait_with_output())
        .await
        .expect("the browser run took too long")
        .expect("waiting for node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "UI checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all UI checks passed"));
    let pictures: Vec<_> = std::fs::read_dir(&screenshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    assert!(pictures.len() >= 12, "screenshots: {pictures:?}");
    for p in &pictures {
        assert!(
            std::fs::metadata(p).unwrap().len() > 5_000,
            "{}",
            p.display()
        );
    }
    println!("screenshots in {}", screenshots.display());
}
