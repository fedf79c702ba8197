//! The cross-tenant matrix, generated from the server's own route table: every route x every
//! method x {no token, malformed token, forged token, expired token, revoked token, another
//! tenant's token on this tenant's ids, the admin token on tenant routes, a tenant token on
//! admin routes} answers 401/404/405 as the contract says, and never with this tenant's data.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use symphainy_sdk::{Client, Intent};
use symphainy_server::routes::{Access, ROUTES};
use symphainy_tests::TestServer;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

struct Fixture {
    session: String,
    execution: String,
    token_id: String,
}

fn fill(path: &str, f: &Fixture) -> String {
    if path == "/content/search" {
        return format!("{path}?q=acme-secret&k=5");
    }
    if path == "/graph/traverse" {
        return format!(
            "{path}?start=executions/{}&direction=any&depth=2",
            f.execution
        );
    }
    path.replace("{session_id}", &f.session)
        .replace("{execution_id}", &f.execution)
        .replace("{token_id}", &f.token_id)
        .replace("{collection}/{key}", &format!("executions/{}", f.execution))
        .replace("{document_id}", &f.execution)
}

fn body_for(path: &str, f: &Fixture) -> Option<Value> {
    match path {
        "/intent/submit" => {
            Some(json!({"intent_type": "runtime.echo", "session_id": f.session, "payload": {}}))
        }
        "/session/create" => Some(json!({})),
        "/admin/tenants" => Some(json!({"tenant_id": "intruder"})),
        "/admin/tokens" => {
            Some(json!({"tenant_id": "acme", "user_id": "mallory", "ttl_seconds": 60}))
        }
        _ => None,
    }
}

fn assert_no_leak(body: &Value, f: &Fixture, context: &str) {
    let text = body.to_string();
    for secret in ["acme-secret", "acme-context"] {
        assert!(!text.contains(secret), "{context}: leaked {secret}: {text}");
    }
    if body.get("error").is_none() {
        assert!(
            !text.contains(&f.execution),
            "{context}: leaked the execution: {text}"
        );
    }
}

// Every route and method answers the contract's status for every kind of bad credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_every_bad_credential() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let acme = server.tenant("acme").await.unwrap();
    let globex = server.tenant("globex").await.unwrap();
    let session = acme
        .create_session(json!({"note": "acme-context"}))
        .await
        .unwrap();
    let (_, submitted) = acme
        .submit(&Intent::new(
            "runtime.echo",
            &session.session_id,
            json!({"value": "acme-secret"}),
        ))
        .await
        .unwrap();
    acme.wait_finished(&submitted.execution_id, Duration::from_secs(10))
        .await
        .unwrap();
    let victim_token = admin.issue_token("acme", "bob", 3600).await.unwrap();
    let fixture = Fixture {
        session: session.session_id.clone(),
        execution: submitted.execution_id.clone(),
        token_id: victim_token.token_id.clone(),
    };

    let revoked = admin.issue_token("acme", "eve", 3600).await.unwrap();
    admin.revoke_token(&revoked.token_id).await.unwrap();
    let expired = admin.issue_token("acme", "old", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forged = format!("st.{}.{}", victim_token.token_id, "0".repeat(64));
    let bad_tokens: Vec<(&str, Client)> = vec![
        ("no token", acme.with_token("")),
        ("malformed token", acme.with_token("not-a-token")),
        ("forged token", acme.with_token(&forged)),
        ("expired token", acme.with_token(&expired.token)),
        ("revoked token", acme.with_token(&revoked.token)),
    ];
    let mut checked = 0;
    for route in ROUTES {
        let path = fill(route.path, &fixture);
        for method in METHODS {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let declared = ROUTES
                .iter()
                .any(|r| r.path == route.path && r.method == method);
            if !declared {
                let (status, body) = acme.raw(m.clone(), &path, None).await.unwrap();
                assert_eq!(status, 405, "{method} {path}: undeclared method");
                assert_eq!(body["error"]["code"], "method_not_allowed");
                continue;
            }
            if route.method != method || route.access == Access::Public || route.path == "/ws" {
                continue;
            }
            let body = body_for(route.path, &fixture);
            for (name, client) in &bad_tokens {
                let (status, answer) = client.raw(m.clone(), &path, body.clone()).await.unwrap();
                let context = format!("{method} {path} with {name}");
                assert_eq!(status, 401, "{context}: {answer}");
                assert_eq!(answer["error"]["code"], "unauthorized", "{context}");
                assert!(
                    answer["error"]["request_id"]
                        .as_str()
                        .is_some_and(|r| !r.is_empty()),
                    "{context}"
                );
                assert_no_leak(&answer, &fixture, &context);
                checked += 1;
            }
            let context = format!("{method} {path} with another tenant's token");
            let (status, answer) = globex.raw(m.clone(), &path, body.clone()).await.unwrap();
            match route.access {
                Access::Admin => assert_eq!(status, 401, "{context}"),
                // A JSON body is not a multipart upload: refused before any lookup (the
                // upload into another tenant's session is in tests/integration/content.rs).
                Access::Tenant if route.path == "/content/upload" => {
                    assert_eq!(status, 400, "{context}: {answer}");
                }
                Access::Tenant if route.path.contains('{') || route.path == "/intent/submit" => {
                    assert_eq!(status, 404, "{context}: {answer}");
                }
                _ => assert!(status < 300 || status == 404, "{context}: {status}"),
            }
            assert_no_leak(&answer, &fixture, &context);
            if route.access == Access::Tenant {
                let (status, _) = admin.raw(m.clone(), &path, body.clone()).await.unwrap();
                assert_eq!(status, 401, "{method} {path} with the admin token");
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "the matrix checked only {checked} cases");
    // The victim's own token still works and sees its data.
    let own = acme.execution(&submitted.execution_id).await.unwrap();
    assert_eq!(own.status, "completed");
}

// A body tenant_id other than the token's is refused with 403 tenant_mismatch; a malformed
// one with 400 invalid_tenant_id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_tenant_must_match_token() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    server.tenant("globex").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap();
    let intent = json!({"intent_type": "runtime.echo", "session_id": session.session_id, "tenant_id": "globex", "payload": {}});
    let (status, body) = acme
        .raw(Method::POST, "/intent/submit", Some(intent))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("tenant_mismatch"))
    );
    let (status, body) = acme
        .raw(
            Method::POST,
            "/session/create",
            Some(json!({"tenant_id": "Not Valid"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_tenant_id"))
    );
    let (status, _) = acme
        .raw(
            Method::POST,
            "/session/create",
            Some(json!({"tenant_id": "acme"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
}
