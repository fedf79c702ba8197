//! `symphainy-sdk`: the typed Rust client of the HTTP and WebSocket API (CONTRACT.md): admin
//! calls, sessions, intents, execution status, WAL slices, and WebSocket subscriptions with
//! resume and intent submission. It depends on none of the server's crates: it speaks only the
//! public contract, like any other client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Longest `wait_ms` the server accepts on one request (CONTRACT section 4).
pub const WAIT_MS_MAX: u64 = 30_000;

/// An answer that was not a success, with the contract's error body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error("HTTP {status}: {code}: {message} (request {request_id})")]
    Api {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    /// The request did not complete.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer was not what the contract says.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// The contract's error code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// An issued token.
#[derive(Clone, Debug, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    pub token_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub expires_at: String,
}

/// A session.
#[derive(Clone, Debug, Deserialize)]
pub struct Session {
    pub session_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub created_at: String,
    pub status: String,
    pub context: Value,
    pub active_sagas: Vec<String>,
}

/// The answer to a submitted intent (202, or 200 for a duplicate idempotency key).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Submitted {
    pub execution_id: String,
    pub intent_id: String,
    pub status: String,
    pub lsn: u64,
}

/// An intent to submit.
#[derive(Clone, Debug)]
pub struct Intent {
    pub intent_type: String,
    pub session_id: String,
    pub payload: Value,
    pub idempotency_key: Option<String>,
}

impl Intent {
    /// An intent with no idempotency key.
    pub fn new(intent_type: &str, session_id: &str, payload: Value) -> Self {
        Self {
            intent_type: intent_type.into(),
            session_id: session_id.into(),
            payload,
            idempotency_key: None,
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({ "intent_type": self.intent_type, "session_id": self.session_id, "payload": self.payload });
        if let Some(key) = &self.idempotency_key {
            body["idempotency_key"] = json!(key);
        }
        body
    }
}

/// A step of an execution.
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    pub name: String,
    pub status: String,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
}

/// An execution's status.
#[derive(Clone, Debug, Deserialize)]
pub struct ExecutionStatus {
    pub execution_id: String,
    pub intent_id: String,
    pub session_id: String,
    pub tenant_id: String,
    pub intent_type: String,
    pub capability: String,
    pub capability_version: u32,
    pub status: String,
    pub steps: Vec<Step>,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub submitted_at: String,
    pub finished_at: Option<String>,
}

impl ExecutionStatus {
    /// Completed, failed or compensated.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "compensated")
    }
}

/// A page of a session's WAL events.
#[derive(Clone, Debug, Deserialize)]
pub struct WalPage {
    pub events: Vec<Value>,
    pub next_lsn: u64,
}

/// The HTTP client; one per token.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`) using `token`.
    pub fn new(base: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    /// The token this client sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The same server with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            base: self.base.clone(),
            token: token.to_string(),
            http: self.http.clone(),
        }
    }

    /// Sends a request; returns the status and the JSON body (null when empty).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status.as_u16(), value))
    }

    /// Uploads files (`(filename, media type, bytes)`) into a session: one `content.upload`
    /// execution each. Answers `{"executions": [{"execution_id", "filename"}]}`.
    pub async fn upload(&self, session_id: &str, files: &[(&str, &str, Vec<u8>)]) -> Result<Value> {
        let mut form = reqwest::multipart::Form::new().text("session_id", session_id.to_string());
        for (name, media_type, bytes) in files {
            let part = reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(name.to_string())
                .mime_str(media_type)
                .map_err(|e| Error::Protocol(e.to_string()))?;
            form = form.part("file", part);
        }
        let mut request = self
            .http
            .post(format!("{}/content/upload", self.base))
            .multipart(form);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Self::check(status, value).map(|(_, v)| v)
    }

    /// A document: metadata, chunk count and facts.
    pub async fn document(&self, document_id: &str) -> Result<Value> {
        let path = format!("/content/documents/{document_id}");
        Ok(self.call(Method::GET, &path, None).await?.1)
    }

    /// The `k` best chunks of the caller's documents for `q`.
    pub async fn search(&self, q: &str, k: usize) -> Result<Vec<Value>> {
        let mut url = reqwest::Url::parse(&format!("{}/content/search", self.base))
            .map_err(|e| Error::Protocol(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("q", q)
            .append_pair("k", &k.to_string());
        let path = format!("/content/search?{}", url.query().unwrap_or_default());
        let (_, v) = self.call(Method::GET, &path, None).await?;
        Ok(v["results"].as_array().cloned().unwrap_or_default())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let (status, value) = self.raw(method, path, body).await?;
        Self::check(status, value)
    }

    fn check(status: u16, value: Value) -> Result<(u16, Value)> {
        if StatusCode::from_u16(status).is_ok_and(|s| s.is_success()) {
            return Ok((status, value));
        }
        let field = |name: &str| {
            value["error"][name]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        Err(Error::Api {
            status,
            code: field("code"),
            message: field("message"),
            request_id: field("request_id"),
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
        serde_json::from_value(value).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Admin: creates a tenant.
    pub async fn create_tenant(&self, tenant_id: &str) -> Result<Value> {
        Ok(self
            .call(
                Method::POST,
                "/admin/tenants",
                Some(json!({ "tenant_id": tenant_id })),
            )
            .await?
            .1)
    }

    /// Admin: lists tenants.
    pub async fn tenants(&self) -> Result<Vec<Value>> {
        let (_, v) = self.call(Method::GET, "/admin/tenants", None).await?;
        Ok(v["tenants"].as_array().cloned().unwrap_or_default())
    }

    /// Admin: issues a token for a tenant's user.
    pub async fn issue_token(
        &self,
        tenant_id: &str,
        user_id: &str,
        ttl_seconds: u64,
    ) -> Result<IssuedToken> {
        let body =
            json!({ "tenant_id": tenant_id, "user_id": user_id, "ttl_seconds": ttl_seconds });
        Self::parse(
            self.call(Method::POST, "/admin/tokens", Some(body))
                .await?
                .1,
        )
    }

    /// Admin: revokes a token.
    pub async fn revoke_token(&self, token_id: &str) -> Result<()> {
        self.call(
            Method::POST,
            &format!("/admin/tokens/{token_id}/revoke"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Admin: the state digest and its LSN.
    pub async fn digest(&self) -> Result<(u64, String)> {
        let (_, v) = self.call(Method::GET, "/runtime/digest", None).await?;
        let lsn = v["lsn"]
            .as_u64()
            .ok_or_else(|| Error::Protocol("digest without lsn".into()))?;
        Ok((lsn, v["digest"].as_str().unwrap_or_default().to_string()))
    }

    /// Opens a session.
    pub async fn create_session(&self, context: Value) -> Result<Session> {
        Self::parse(
            self.call(
                Method::POST,
                "/session/create",
                Some(json!({ "context": context })),
            )
            .await?
            .1,
        )
    }

    /// Reads a session.
    pub async fn session(&self, session_id: &str) -> Result<Session> {
        Self::parse(
            self.call(Method::GET, &format!("/session/{session_id}"), None)
                .await?
                .1,
        )
    }

    /// The caller's sessions, newest first: one page of at most `limit`, continuing after
    /// the session id `before`. Returns the sessions and where the next page starts.
    pub async fn list_sessions(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<Session>, Option<String>)> {
        let mut path = format!("/sessions?limit={limit}");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        let page = self.call(Method::GET, &path, None).await?.1;
        let next = page["next_before"].as_str().map(str::to_string);
        Ok((Self::parse(page["sessions"].clone())?, next))
    }

    /// Who the server takes this client's token for (`kind`: `admin` or `tenant`).
    pub async fn whoami(&self) -> Result<Value> {
        Ok(self.call(Method::GET, "/auth/whoami", None).await?.1)
    }

    /// Closes a session.
    pub async fn close_session(&self, session_id: &str) -> Result<Session> {
        Self::parse(
            self.call(Method::POST, &format!("/session/{session_id}/close"), None)
                .await?
                .1,
        )
    }

    /// Submits an intent; the answer's status is 202 (new) or 200 (duplicate key).
    pub async fn submit(&self, intent: &Intent) -> Result<(u16, Submitted)> {
        let (status, v) = self
            .call(Method::POST, "/intent/submit", Some(intent.body()))
            .await?;
        Ok((status, Self::parse(v)?))
    }

    /// Submits an intent and waits up to `wait_ms` for its end: the status if it finished.
    pub async fn submit_and_wait(
        &self,
        intent: &Intent,
        wait_ms: u64,
    ) -> Result<std::result::Result<ExecutionStatus, Submitted>> {
        let path = format!("/intent/submit?wait_ms={wait_ms}");
        let (status, v) = self.call(Method::POST, &path, Some(intent.body())).await?;
        if status == 200 && v.get("steps").is_some() {
            return Ok(Ok(Self::parse(v)?));
        }
        Ok(Err(Self::parse(v)?))
    }

    /// An execution's status.
    pub async fn execution(&self, execution_id: &str) -> Result<ExecutionStatus> {
        Self::parse(
            self.call(
                Method::GET,
                &format!("/execution/{execution_id}/status"),
                None,
            )
            .await?
            .1,
        )
    }

    /// An execution's status once it has finished, or as it is after `wait_ms` milliseconds
    /// (at most 30,000).
    pub async fn wait_execution(
        &self,
        execution_id: &str,
        wait_ms: u64,
    ) -> Result<ExecutionStatus> {
        Self::parse(
            self.call(
                Method::GET,
                &format!("/execution/{execution_id}/status?wait_ms={wait_ms}"),
                None,
            )
            .await?
            .1,
        )
    }

    /// An execution's status once it finishes or `timeout` passes: the server holds each
    /// request until then (`wait_ms`, at most [`WAIT_MS_MAX`] per request), so nothing polls.
    pub async fn wait_finished(
        &self,
        execution_id: &str,
        timeout: Duration,
    ) -> Result<ExecutionStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait_ms =
                u64::try_from(left.as_millis()).map_or(WAIT_MS_MAX, |ms| ms.min(WAIT_MS_MAX));
            let status = self.wait_execution(execution_id, wait_ms).await?;
            if status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
        }
    }

    /// The execution's full record.
    pub async fn runtime_state(&self, execution_id: &str) -> Result<Value> {
        Ok(self
            .call(Method::GET, &format!("/runtime/state/{execution_id}"), None)
            .await?
            .1)
    }

    /// A page of a session's WAL events.
    pub async fn wal(&self, session_id: &str, from_lsn: u64, limit: usize) -> Result<WalPage> {
        let path = format!("/runtime/wal/{session_id}?from_lsn={from_lsn}&limit={limit}");
        Self::parse(self.call(Method::GET, &path, None).await?.1)
    }

    /// A vertex of the graph view (`collection/key`).
    pub async fn graph_vertex(&self, collection: &str, key: &str) -> Result<Value> {
        let path = format!("/graph/vertex/{collection}/{key}");
        Ok(self.call(Method::GET, &path, None).await?.1)
    }

    /// A traversal of the graph view from `start` (`collection/key`); `direction` is
    /// `outbound`, `inbound` or `any`. Answers `{"vertices", "edges", "truncated"}`.
    pub async fn graph_traverse(&self, start: &str, direction: &str, depth: u32) -> Result<Value> {
        let path = format!("/graph/traverse?start={start}&direction={direction}&depth={depth}");
        Ok(self.call(Method::GET, &path, None).await?.1)
    }

    /// The JSON metrics.
    pub async fn metrics(&self) -> Result<Value> {
        Ok(self.call(Method::GET, "/runtime/metrics", None).await?.1)
    }

    /// Registered capabilities.
    pub async fn capabilities(&self) -> Result<Vec<Value>> {
        let (_, v) = self
            .call(Method::GET, "/curator/capabilities", None)
            .await?;
        Ok(v["capabilities"].as_array().cloned().unwrap_or_default())
    }

    /// Opens a WebSocket (token passed as `?token=`).
    pub async fn websocket(&self) -> Result<Socket> {
        let url = format!(
            "{}/ws?token={}",
            self.base.replacen("http", "ws", 1),
            self.token
        );
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Socket { stream })
    }
}

/// A message from the server over the WebSocket.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    /// A session event.
    Event {
        session_id: String,
        lsn: u64,
        event_type: String,
        execution_id: Option<String>,
        data: Value,
    },
    /// An intent was accepted.
    Ack {
        request_id: Value,
        execution_id: String,
        lsn: u64,
    },
    /// Something failed.
    Error {
        request_id: Option<Value>,
        code: String,
        message: String,
    },
    /// Answer to a ping.
    Pong,
    /// The server closed the connection, with its close code.
    Closed(Option<u16>),
}

/// An open WebSocket.
#[derive(Debug)]
pub struct Socket {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Socket {
    async fn send(&mut self, value: Value) -> Result<()> {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }

    /// Subscribes to a session from `from_lsn`.
    pub async fn subscribe(&mut self, session_id: &str, from_lsn: u64) -> Result<()> {
        self.send(json!({ "type": "subscribe", "session_id": session_id, "from_lsn": from_lsn }))
            .await
    }

    /// Stops a subscription.
    pub async fn unsubscribe(&mut self, session_id: &str) -> Result<()> {
        self.send(json!({ "type": "unsubscribe", "session_id": session_id }))
            .await
    }

    /// Submits an intent over the socket; the ack arrives as a message.
    pub async fn submit(&mut self, request_id: &str, intent: &Intent) -> Result<()> {
        let mut body = intent.body();
        body["type"] = json!("submit_intent");
        body["request_id"] = json!(request_id);
        self.send(body).await
    }

    /// Sends a ping.
    pub async fn ping(&mut self) -> Result<()> {
        self.send(json!({ "type": "ping" })).await
    }

    /// Sends raw text (for tests of malformed input).
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.stream
            .send(Message::Text(text.to_string().into()))
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }

    /// Sends a binary frame (for tests of malformed input: the protocol is JSON text).
    pub async fn send_binary(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }

    /// The next message, or `None` if nothing arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<ServerMessage>> {
        loop {
            let message = match tokio::time::timeout(timeout, self.stream.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Ok(Some(ServerMessage::Closed(None))),
                Ok(Some(Err(_))) => return Ok(Some(ServerMessage::Closed(None))),
                Ok(Some(Ok(message))) => message,
            };
            let text = match message {
                Message::Text(text) => text.to_string(),
                Message::Close(frame) => {
                    return Ok(Some(ServerMessage::Closed(
                        frame.map(|f| u16::from(f.code)),
                    )));
                }
                _ => continue,
            };
            let v: Value =
                serde_json::from_str(&text).map_err(|e| Error::Protocol(e.to_string()))?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            return Ok(Some(match v["type"].as_str() {
                Some("event") => ServerMessage::Event {
                    session_id: s("session_id"),
                    lsn: v["lsn"].as_u64().unwrap_or(0),
                    event_type: s("event_type"),
                    execution_id: v["execution_id"].as_str().map(String::from),
                    data: v["data"].clone(),
                },
                Some("ack") => ServerMessage::Ack {
                    request_id: v["request_id"].clone(),
                    execution_id: s("execution_id"),
                    lsn: v["lsn"].as_u64().unwrap_or(0),
                },
                Some("pong") => ServerMessage::Pong,
                _ => ServerMessage::Error {
                    request_id: v.get("request_id").cloned(),
                    code: s("code"),
                    message: s("message"),
                },
            }));
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}
