//! Application state, limits, and the router with its middleware (request ids, the contract's
//! error body on every non-2xx answer, body limits, load shedding).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};
use symphainy_engine::id::Clock;
use symphainy_engine::{Id, Runtime};
use symphainy_wal::Wal;
use tokio::sync::broadcast;

use crate::auth::Keys;
use crate::error::{AppError, REQUEST_ID, body, code_for};
use crate::policy::Policy;

/// Every limit of the service; each has a documented default (see `main.rs` flags).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body. Default 1 MiB.
    pub body_bytes_max: usize,
    /// Requests per second per tenant (token bucket, burst = 2x). Default 20,000.
    pub tenant_requests_per_sec: u32,
    /// Requests served at once; more are refused with 503 `overloaded`. Default 8,192.
    pub requests_in_flight_max: usize,
    /// Messages buffered for one WebSocket client before it is closed as too slow. Default 1,024.
    pub ws_buffer_messages: usize,
    /// Open HTTP connections; at the limit new ones wait in the listen backlog until one
    /// closes (`serve.rs`). Keep it under the process's open-file limit. Default 4,096.
    pub connections_max: usize,
    /// Longest wait for a request's headers (also how long an idle keep-alive connection is
    /// kept); then the connection is closed. Default 30,000 ms.
    pub header_read_timeout_ms: u64,
    /// Open WebSocket connections. Default 1,024.
    pub ws_connections_max: usize,
    /// Sessions one WebSocket connection follows at once (each is a reader of the log);
    /// another `subscribe` is refused with `limit_exceeded`. Default 64.
    pub ws_subscriptions_max: usize,
    /// How long a WebSocket client's queue may stay full before the client is closed as too
    /// slow (1013). Default 2,000 ms.
    pub ws_slow_client_ms: u64,
    /// Largest `wait_ms` of `/intent/submit`. Fixed by the contract: 30,000.
    pub wait_ms_max: u64,
    /// Events in one WAL page (`limit`). Default 1,000.
    pub wal_page_max: usize,
    /// Records scanned for one WAL page before answering with what was found. Default 100,000.
    pub wal_scan_max: usize,
    /// How long a read waits for the state surface to apply what is durable before the
    /// runtime answers it instead. Default 1,000 ms.
    pub state_read_wait_ms: u64,
    /// Largest `depth` of `/graph/traverse`. Default (and most) 5.
    pub graph_depth_max: u32,
    /// Largest file of `POST /content/upload`. Default 16 MiB (the parsers' limit).
    pub upload_file_bytes_max: usize,
    /// Files in one upload request. Default 32.
    pub upload_files_max: usize,
    /// All files of one upload request together. Default 64 MiB.
    pub upload_request_bytes_max: usize,
    /// Most sessions `GET /sessions` lists (`limit`). Default 500.
    pub sessions_page_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes_max: 1024 * 1024,
            tenant_requests_per_sec: 20_000,
            requests_in_flight_max: 8_192,
            ws_buffer_messages: 1_024,
            connections_max: 4_096,
            header_read_timeout_ms: 30_000,
            ws_connections_max: 1_024,
            ws_subscriptions_max: 64,
            ws_slow_client_ms: 2_000,
            wait_ms_max: 30_000,
            wal_page_max: 1_000,
            wal_scan_max: 100_000,
            state_read_wait_ms: 1_000,
            graph_depth_max: symphainy_projections::graph::TRAVERSE_DEPTH_MAX,
            upload_file_bytes_max: symphainy_engine::realms::content::parse::PARSE_BYTES_MAX,
            upload_files_max: 32,
            upload_request_bytes_max: 64 * 1024 * 1024,
            sessions_page_max: 500,
        }
    }
}

/// What every handler can reach.
pub struct AppState {
    pub runtime: Arc<Runtime<Wal>>,
    pub wal: Arc<Wal>,
    pub projections: crate::views::Projections,
    pub keys: Keys,
    pub limits: Limits,
    pub policy: Policy,
    pub clock: Arc<dyn Clock>,
    pub rate: DefaultKeyedRateLimiter<String>,
    /// Token ids revoked since start; open WebSockets using them close.
    pub revocations: broadcast::Sender<Id>,
    pub ready: AtomicBool,
    pub started_at: Instant,
    pub in_flight: AtomicUsize,
    pub ws_connections: AtomicUsize,
    /// The connection loop's slots, one per open HTTP connection (a WebSocket leaves its
    /// slot when upgraded).
    pub http_connections: crate::serve::ConnectionSlots,
    /// `POST /ui/dev-signin` answers (the server runs on its embedded defaults).
    pub dev_signin: bool,
    /// `/openapi.json`, built on its first request (the registry does not change after start).
    pub openapi: std::sync::OnceLock<axum::body::Bytes>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        runtime: Arc<Runtime<Wal>>,
        wal: Arc<Wal>,
        projections: crate::views::Projections,
        keys: Keys,
        limits: Limits,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let per_sec =
            NonZeroU32::new(limits.tenant_requests_per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = per_sec.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        let quota = Quota::per_second(per_sec).allow_burst(burst);
        Self {
            runtime,
            wal,
            projections,
            keys,
            http_connections: crate::serve::ConnectionSlots::new(limits.connections_max),
            limits,
            policy,
            clock,
            rate: DefaultKeyedRateLimiter::keyed(quota),
            revocations: broadcast::channel(1024).0,
            ready: AtomicBool::new(true),
            started_at: Instant::now(),
            in_flight: AtomicUsize::new(0),
            ws_connections: AtomicUsize::new(0),
            dev_signin: false,
            openapi: std::sync::OnceLock::new(),
        }
    }

    /// Now, from the edge clock.
    pub fn clock_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Charges one request to a tenant's rate; 429 with Retry-After beyond it.
    pub fn rate_limit(&self, tenant_id: &str) -> Result<(), AppError> {
        match self.rate.check_key(&tenant_id.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "request rate limit reached",
                )
                .retry_after(wait.as_secs() + 1))
            }
        }
    }
}

/// Gives every request an id (header `x-request-id` in and out) and makes it available to
/// error bodies and logs.
async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| ulid::Ulid::new().to_string(), str::to_string);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response =
        tracing::Instrument::instrument(REQUEST_ID.scope(id.clone(), next.run(request)), span)
            .await;
    tracing::debug!(request_id = %id, status = response.status().as_u16(), "answered");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Longest rejection text kept as an error's message (a longer one is replaced by the
/// status's reason).
const REJECTION_TEXT_BYTES_MAX: usize = 1024;

/// Rewrites any non-2xx answer that is not already the contract's JSON error (axum's own
/// rejections, 404/405 fallbacks, body limits) into it, keeping the status.
async fn contract_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success() || status.is_informational() || status.is_redirection() || is_json {
        return response;
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    let (mut parts, original) = response.into_parts();
    let message = match status.as_u16() {
        404 => "no such resource".to_string(),
        405 => "method not allowed on this path".to_string(),
        413 => "request body too large".to_string(),
        // axum's rejections (a query string that does not parse...) say what is wrong in
        // their text: keep it.
        400 | 415 | 422 => match axum::body::to_bytes(original, REJECTION_TEXT_BYTES_MAX).await {
            Ok(text) if !text.is_empty() => String::from_utf8_lossy(&text).trim().to_string(),
            _ => status.canonical_reason().unwrap_or("error").to_string(),
        },
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut value = body(code_for(status), &message);
    value["error"]["request_id"] = serde_json::Value::String(id);
    Response::from_parts(parts, Body::from(value.to_string()))
}

/// Refuses a body whose declared length exceeds the limit at once (413), without reading it
/// or waiting for it; bodies without a declared length are cut at the limit while read.
async fn declared_body_limit(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Uploads have their own, larger limit (also enforced while the files stream in).
    let limit = if request.uri().path() == crate::routes::UPLOAD_PATH {
        state.limits.upload_request_bytes_max
    } else {
        state.limits.body_bytes_max
    };
    if declared.is_some_and(|n| n > limit as u64) {
        let mut response = AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

/// Refuses requests beyond `requests_in_flight_max` with 503 instead of queueing them.
async fn shed_load(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let before = state.in_flight.fetch_add(1, Ordering::SeqCst);
    // Counted out when the request ends, however it ends: a client that goes away drops this
    // future mid-request, and the count must not keep it.
    let _counted = InFlight(&state.in_flight);
    if before >= state.limits.requests_in_flight_max {
        return AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight",
        )
        .retry_after(1)
        .into_response();
    }
    next.run(request).await
}

/// One request in `AppState::in_flight`, released when dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The full application: every route of the table plus middleware.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.body_bytes_max;
    crate::routes::router()
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), shed_load))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            declared_body_limit,
        ))
        .layer(middleware::from_fn(contract_errors))
        .layer(middleware::from_fn(request_id))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// How long graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
