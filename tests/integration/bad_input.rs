//! Bad input gets the contract's error and loses nothing: malformed JSON, wrong types, huge
//! bodies, unknown intents and sessions, closed sessions, invalid tenant ids; the server keeps
//! serving throughout.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use symphainy_sdk::Intent;
use symphainy_tests::{TestServer, acme_with_limits, finished_echo};

/// (name, method, path, body, expected status, expected code).
type Case = (
    &'static str,
    Method,
    String,
    Option<Value>,
    u16,
    &'static str,
);

// Each bad request answers its contract status and code, with a request id and no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_contract_errors() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap();
    let closed = acme.create_session(json!({})).await.unwrap();
    acme.close_session(&closed.session_id).await.unwrap();
    let sid = session.session_id.clone();
    let cases: Vec<Case> = vec![
        (
            "unknown intent",
            Method::POST,
            "/intent/submit".into(),
            Some(json!({"intent_type": "no.such", "session_id": sid, "payload": {}})),
            422,
            "unknown_intent",
        ),
        (
            "unknown session",
            Method::POST,
            "/intent/submit".into(),
            Some(
                json!({"intent_type": "runtime.echo", "session_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "payload": {}}),
            ),
            404,
            "not_found",
        ),
        (
            "malformed session id",
            Method::POST,
            "/intent/submit".into(),
            Some(json!({"intent_type": "runtime.echo", "session_id": "nope", "payload": {}})),
            404,
            "not_found",
        ),
        (
            "closed session",
            Method::POST,
            "/intent/submit".into(),
            Some(
                json!({"intent_type": "runtime.echo", "session_id": closed.session_id, "payload": {}}),
            ),
            409,
            "session_closed",
        ),
        (
            "wrong field type",
            Method::POST,
            "/intent/submit".into(),
            Some(json!({"intent_type": 5, "session_id": sid})),
            400,
            "invalid_request",
        ),
        (
            "payload not an object",
            Method::POST,
            "/intent/submit".into(),
            Some(json!({"intent_type": "runtime.echo", "session_id": sid, "payload": [1]})),
            400,
            "invalid_request",
        ),
        (
            "echo steps out of range",
            Method::POST,
            "/intent/submit".into(),
            Some(
                json!({"intent_type": "runtime.echo", "session_id": sid, "payload": {"steps": 99}}),
            ),
            400,
            "invalid_request",
        ),
        (
            "missing fields",
            Method::POST,
            "/intent/submit".into(),
            Some(json!({})),
            400,
            "invalid_request",
        ),
        (
            "wait too long",
            Method::POST,
            "/intent/submit?wait_ms=30001".into(),
            Some(json!({"intent_type": "runtime.echo", "session_id": sid})),
            400,
            "invalid_request",
        ),
        (
            "status wait too long",
            Method::GET,
            "/execution/01M8CQ16RRKX17Z6AFJ04DWVHZ/status?wait_ms=30001".into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "status wait on an unknown execution",
            Method::GET,
            "/execution/01M8CQ16RRKX17Z6AFJ04DWVHZ/status?wait_ms=50".into(),
            None,
            404,
            "not_found",
        ),
        (
            "context not an object",
            Method::POST,
            "/session/create".into(),
            Some(json!({"context": "x"})),
            400,
            "invalid_request",
        ),
        (
            "context over its 64 KiB limit, in a body under the 1 MiB one",
            Method::POST,
            "/session/create".into(),
            Some(json!({"context": {"notes": "x".repeat(70_000)}})),
            413,
            "payload_too_large",
        ),
        (
            "unknown route",
            Method::GET,
            "/no/such/route".into(),
            None,
            404,
            "not_found",
        ),
    ];
    for (name, method, path, body, want_status, want_code) in cases {
        let (status, answer) = acme.raw(method, &path, body).await.unwrap();
        assert_eq!(status, want_status, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{name}");
        assert!(
            answer["error"]["request_id"]
                .as_str()
                .is_some_and(|r| r.len() == 26),
            "{name}"
        );
        assert!(
            !answer.to_string().contains("/src/"),
            "{name}: leaks a path"
        );
    }
    // A query parameter that does not parse: the message names it.
    let (status, answer) = acme
        .raw(
            Method::POST,
            "/intent/submit?wait_ms=soon",
            Some(json!({"intent_type": "runtime.echo", "session_id": sid})),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_request");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("wait_ms"), "{message}");
    // A request too large to ever succeed is not told to come back (no Retry-After).
    let response = reqwest::Client::new()
        .post(format!("{}/session/create", server.base))
        .bearer_auth(&acme_token(&server).await)
        .json(&json!({"context": {"notes": "x".repeat(70_000)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.headers().get("retry-after").is_none());
    // Malformed JSON, raw.
    let response = reqwest::Client::new()
        .post(format!("{}/intent/submit", server.base))
        .bearer_auth(&acme_token(&server).await)
        .body("{\"intent_type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_request");
    // Tenant ids.
    for bad in [
        "",
        "UPPER",
        "-lead",
        "has space",
        "a".repeat(64).as_str(),
        "_system",
    ] {
        let (status, answer) = admin
            .raw(
                Method::POST,
                "/admin/tenants",
                Some(json!({"tenant_id": bad})),
            )
            .await
            .unwrap();
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_tenant_id")),
            "{bad:?}"
        );
    }
    let (status, answer) = admin
        .raw(
            Method::POST,
            "/admin/tenants",
            Some(json!({"tenant_id": "acme"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("tenant_exists"))
    );
    let (status, _) = admin
        .raw(
            Method::POST,
            "/admin/tokens",
            Some(json!({"tenant_id": "ghost", "user_id": "x", "ttl_seconds": 5})),
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    // Still serving, and nothing was lost.
    finished_echo(&acme, &sid, 1).await;
}

async fn acme_token(server: &TestServer) -> String {
    server
        .admin()
        .issue_token("acme", "raw", 60)
        .await
        .unwrap()
        .token
}

// Duplicates of an idempotency key get 200 and the same execution; 100 racing ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_submissions_over_http() {
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap();
    let mut intent = Intent::new("runtime.echo", &session.session_id, json!({"value": 1}));
    intent.idempotency_key = Some("once".into());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (client, intent) = (acme.clone(), intent.clone());
            tokio::spawn(async move { client.submit(&intent).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|(s, _)| *s == 202).count(), 1);
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 99);
    assert!(answers.iter().all(|(_, a)| a == &answers[0].1));
    let page = acme.wal(&session.session_id, 1, 1000).await.unwrap();
    let intents = page
        .events
        .iter()
        .filter(|e| e["event_type"] == "intent_received")
        .count();
    assert_eq!(intents, 1);
    // The key again with another payload: refused, naming the execution the key belongs to.
    let mut other = Intent::new("runtime.echo", &session.session_id, json!({"value": 2}));
    other.idempotency_key = Some("once".into());
    match acme.submit(&other).await.unwrap_err() {
        symphainy_sdk::Error::Api {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!((status, code.as_str()), (422, "idempotency_key_reused"));
            assert!(message.contains(&answers[0].1.execution_id), "{message}");
        }
        other => panic!("{other}"),
    }
}

// The OpenAPI document lists every route of the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_covers_every_route() {
    let server = TestServer::start().await.unwrap();
    let (status, doc) = server
        .admin()
        .with_token("")
        .raw(Method::GET, "/openapi.json", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    for route in symphainy_server::routes::ROUTES {
        let op = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing from /openapi.json",
            route.method,
            route.path
        );
    }
    assert!(doc["components"]["securitySchemes"]["tenant_token"].is_object());
}

// The OpenAPI document says what each route accepts, and the routes behave as it says: a
// body the schema requires refuses `{}` and accepts no array; a body whose fields are all
// optional takes `{}`; a required query parameter is required; every integer parameter with a
// documented maximum takes it and refuses one more (so the document cannot drift from the
// server's limits); every answer's content type is one the document lists. Driven by the
// document itself, so a new route or parameter is checked without editing this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_what_each_route_accepts() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin();
    let acme = server.tenant("acme").await.unwrap();
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    let execution = finished_echo(&acme, &session, 1).await;
    let (_, doc) = admin.raw(Method::GET, "/openapi.json", None).await.unwrap();
    let http = reqwest::Client::new();
    let mut checked = (0, 0, 0, 0);
    for route in symphainy_server::routes::ROUTES {
        let op = &doc["paths"][route.path][route.method.to_lowercase()];
        // Path parameters this test can fill with something that exists.
        let Some(path) = [("{session_id}", &session), ("{execution_id}", &execution)]
            .iter()
            .try_fold(route.path.to_string(), |path, (name, value)| {
                Some(path.replace(name, value))
            })
            .filter(|path| !path.contains('{'))
        else {
            continue;
        };
        if route.path == "/ws"
            || route.path == "/ui/dev-signin"
            || route.method == "POST" && op["requestBody"].is_null()
        {
            continue;
        }
        let token = match op["security"][0].as_object().and_then(|o| o.keys().next()) {
            Some(scheme) if scheme == "admin_token" => admin.token().to_string(),
            Some(_) => acme.token().to_string(),
            None => String::new(),
        };
        let send = |query: String, body: Option<&str>| {
            let url = format!("{}{path}{query}", server.base);
            let request = if route.method == "POST" {
                http.post(url)
                    .header("content-type", "application/json")
                    .body(body.unwrap_or("").to_string())
            } else {
                http.get(url)
            };
            request.bearer_auth(&token).send()
        };
        let what = format!("{} {}", route.method, route.path);
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        if schema.is_object() {
            let required = schema["required"].as_array().map_or(0, Vec::len);
            let empty = send(String::new(), Some("{}"))
                .await
                .unwrap()
                .status()
                .as_u16();
            if required > 0 {
                assert_eq!(empty, 400, "{what}: {{}} lacks {required} required fields");
            } else {
                assert!(
                    empty < 300,
                    "{what}: every field is optional, yet {{}} got {empty}"
                );
            }
            let array = send(String::new(), Some("[null, null]")).await.unwrap();
            assert_eq!(array.status(), 400, "{what}: an array is not an object");
            checked.0 += 1;
        }
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let query_params: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
        // Values that satisfy every parameter, for the routes that need some.
        let valid = |name: &str| match name {
            "q" => "alpha",
            "start" => "executions/x",
            _ => "",
        };
        let base_query: Vec<String> = query_params
            .iter()
            .filter(|p| p["required"] == true)
            .map(|p| {
                let name = p["name"].as_str().unwrap_or_default();
                format!("{name}={}", valid(name))
            })
            .collect();
        for p in &query_params {
            let name = p["name"].as_str().unwrap_or_default();
            let others: Vec<&String> = base_query
                .iter()
                .filter(|q| !q.starts_with(&format!("{name}=")))
                .collect();
            let with = |extra: Option<String>| {
                let mut all: Vec<String> = others.iter().map(|s| s.to_string()).collect();
                all.extend(extra);
                format!("?{}", all.join("&"))
            };
            if p["required"] == true {
                let status = send(with(None), Some("{}")).await.unwrap().status();
                assert_eq!(status, 400, "{what}: {name} is documented as required");
                checked.1 += 1;
            }
            if let Some(max) = p["schema"]["maximum"].as_u64()
                && route.method == "GET"
            {
                let at = send(with(Some(format!("{name}={max}"))), None)
                    .await
                    .unwrap();
                assert!(
                    at.status().is_success() || at.status() == 404,
                    "{what}: {name}={max} is documented as allowed, got {}",
                    at.status()
                );
                let over = send(with(Some(format!("{name}={}", max + 1))), None)
                    .await
                    .unwrap();
                assert_eq!(
                    over.status(),
                    400,
                    "{what}: {name}={} is over the documented maximum",
                    max + 1
                );
                checked.2 += 1;
            }
        }
        if route.method == "GET" {
            let query = if base_query.is_empty() {
                String::new()
            } else {
                format!("?{}", base_query.join("&"))
            };
            let answer = send(query, None).await.unwrap();
            if answer.status().is_success() {
                let content_type = answer.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let documented: Vec<&String> = op["responses"][answer.status().as_str()]["content"]
                    .as_object()
                    .map(|c| c.keys().collect())
                    .unwrap_or_default();
                assert!(
                    documented.iter().any(|t| **t == content_type),
                    "{what}: answered {content_type}, documented {documented:?}"
                );
                checked.3 += 1;
            }
        }
    }
    // An intent's type may be any the curator resolves, and only those.
    let (_, capabilities) = acme
        .raw(Method::GET, "/curator/capabilities", None)
        .await
        .unwrap();
    let mut resolved: Vec<&str> = capabilities["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["intent_types"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    resolved.sort_unstable();
    resolved.dedup();
    let documented = &doc["paths"]["/intent/submit"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["intent_type"]["enum"];
    assert!(resolved.contains(&"runtime.echo"), "{resolved:?}");
    assert_eq!(documented, &json!(resolved));
    let realms = &doc["paths"]["/intent/submit"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["realm"]["enum"];
    for realm in capabilities["capabilities"].as_array().unwrap() {
        let realm = &realm["realm"];
        assert!(
            realms.as_array().unwrap().contains(realm),
            "{realm} not in {realms}"
        );
    }
    assert!(realms.as_array().unwrap().contains(&Value::Null));
    // The submission's wait_ms is a POST parameter: its maximum, checked apart.
    let over = send_submit(&http, &server.base, acme.token(), &session, 30_001).await;
    assert_eq!(over, 400, "wait_ms over the documented maximum");
    assert!(send_submit(&http, &server.base, acme.token(), &session, 30_000).await < 300);
    let (bodies, required, maxima, content_types) = checked;
    assert!(bodies >= 4, "JSON bodies checked: {bodies}");
    assert!(
        required >= 2,
        "required query parameters checked: {required}"
    );
    assert!(maxima >= 4, "documented maxima checked: {maxima}");
    assert!(
        content_types >= 10,
        "content types checked: {content_types}"
    );
}

async fn send_submit(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: &str,
    wait_ms: u64,
) -> u16 {
    let body = json!({"intent_type": "runtime.echo", "session_id": session, "payload": {"value": 1, "steps": 1}});
    http.post(format!("{base}/intent/submit?wait_ms={wait_ms}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// A tenant over its request rate gets 429 rate_limited with Retry-After; other tenants are
// unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after() {
    let (server, acme) = acme_with_limits(|l| l.tenant_requests_per_sec = 5).await;
    let globex = server.tenant("globex").await.unwrap();
    let token = acme_token(&server).await;
    let http = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..40 {
        let response = http
            .get(format!("{}/curator/capabilities", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("no 429 after 40 requests at a limit of 5/s");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        globex.capabilities().await.is_ok(),
        "another tenant was limited too"
    );
    drop(acme);
}

// A body declared larger than the limit is refused with 413 payload_too_large before it is
// read (raw socket: the declared length is never sent, so no client races the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_refused_up_front() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start().await.unwrap();
    server.tenant("acme").await.unwrap();
    let token = acme_token(&server).await;
    let mut stream = send_raw(
        &server,
        &format!(
            "POST /intent/submit HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut answer),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
}

// Clients that go away in the middle of a request (half a body sent, then the connection
// dropped) leave nothing behind: the in-flight count that sheds load returns to zero, so they
// can never make the server refuse everyone else. (The count is released by a guard, so also
// when a request's future is dropped rather than finished.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_mid_request_are_not_counted_in_flight() {
    use std::sync::atomic::Ordering;
    let server = TestServer::start().await.unwrap();
    let acme = server.tenant("acme").await.unwrap();
    let token = acme_token(&server).await;
    let in_flight = || server.running.state.in_flight.load(Ordering::SeqCst);
    for _ in 0..20 {
        let stream = send_raw(
            &server,
            &format!(
                "POST /intent/submit HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"intent_type\": "
            ),
        )
        .await;
        // The request is inside the server (counted) when the client goes away.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while in_flight() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never counted");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(stream);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} requests of clients that left are still counted in flight",
            in_flight()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And the server still serves.
    let session = acme.create_session(json!({})).await.unwrap().session_id;
    acme.submit(&Intent::new("runtime.echo", &session, json!({"value": 1})))
        .await
        .unwrap();
}

/// Opens a connection to the server and writes `request` as it is (a raw socket: headers and
/// body exactly as a misbehaving client would send them).
async fn send_raw(server: &TestServer, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(server.running.addr)
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads from `stream` until the server closes it (or resets it); false if `within` passes first.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

// A client that sends half a request and then nothing (slowloris), or that keeps a connection
// without a next request, is closed once the header read timeout passes; before, it held its
// connection (and a file descriptor) for as long as it liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_no_headers_are_closed() {
    let server = TestServer::with_limits(|l| l.header_read_timeout_ms = 300)
        .await
        .unwrap();
    let mut half = send_raw(&server, "POST /intent/submit HTTP/1.1\r\nHost: te").await;
    let mut idle = send_raw(&server, "GET /health HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert!(
        closed_within(&mut half, Duration::from_secs(20)).await,
        "a connection with half a request line was never closed"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(20)).await,
        "an idle keep-alive connection was never closed"
    );
    // The server goes on serving.
    let acme = server.tenant("acme").await.unwrap();
    acme.create_session(json!({})).await.unwrap();
}

// At most `connections_max` connections are open: one more waits (it is not answered) until
// another closes, then it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    use tokio::io::AsyncReadExt;
    const CAP: usize = 3;
    let server = TestServer::with_limits(|l| l.connections_max = CAP)
        .await
        .unwrap();
    let health = "GET /health HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut stream = send_raw(&server, health).await;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    assert_eq!(server.running.state.http_connections.open(), CAP);
    let mut waiting = send_raw(&server, health).await;
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(10), waiting.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
