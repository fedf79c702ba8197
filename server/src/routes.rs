//! The route table and the HTTP handlers. The table is the single source of the router, of
//! `/openapi.json`, and of the cross-tenant test matrix: a route cannot be added to one and
//! forgotten in the others.
//!
//! Handlers only translate: parse and check the request, call the runtime, shape the answer.
//! No business logic lives here.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use symphainy_engine::event::Event;
use symphainy_engine::id::rfc3339;
use symphainy_engine::view::{self, SessionIndex};
use symphainy_engine::{Id, SubmitIntent, codec};
use symphainy_wal::Log;

use crate::app::AppState;
use crate::auth::{AdminPrincipal, Principal, TenantPrincipal};
use crate::error::AppError;
use crate::policy::Action;

type Shared = State<Arc<AppState>>;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token.
    Public,
    /// A tenant token.
    Tenant,
    /// The admin token.
    Admin,
    /// The admin token or a tenant token.
    AdminOrTenant,
}

/// What a route reads from its body, as `/openapi.json` documents it.
#[derive(Clone, Copy, Debug)]
pub enum Input {
    /// No body.
    Empty,
    /// A JSON object, required; the schema is derived from the type the handler parses.
    Json(fn() -> Value),
    /// A `multipart/form-data` form: a `session_id` field and one or more `file` parts.
    Multipart,
}

/// One route of the API.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Status of a successful answer.
    pub ok: u16,
    /// Other success statuses (a duplicate or waited submission's 200).
    pub also_ok: &'static [u16],
    pub input: Input,
    /// The query parameters, derived from the type the handler parses.
    pub query: Option<fn() -> Vec<Value>>,
    /// Content types of a successful answer (none for 101 and 204).
    pub produces: &'static [&'static str],
    /// Error statuses of this route besides the ones every route may answer.
    pub errors: &'static [u16],
}

const JSON: &[&str] = &["application/json"];

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    ok: u16,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        summary,
        ok,
        also_ok: &[],
        input: Input::Empty,
        query: None,
        produces: if ok == 101 || ok == 204 { &[] } else { JSON },
        errors: &[],
    }
}

/// The JSON schema of `T`, for [`Input::Json`].
fn schema_of<T: utoipa::PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap_or(Value::Null)
}

/// The query parameters of `T`, for [`RouteSpec::query`].
fn params_of<T: utoipa::IntoParams>() -> Vec<Value> {
    T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
        .into_iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect()
}

impl RouteSpec {
    /// Takes a JSON body parsed as `T`.
    const fn json<T: utoipa::PartialSchema>(mut self) -> Self {
        self.input = Input::Json(schema_of::<T>);
        self
    }

    /// Takes the query parameters of `T`.
    const fn query<T: utoipa::IntoParams>(mut self) -> Self {
        self.query = Some(params_of::<T>);
        self
    }

    const fn input(mut self, input: Input) -> Self {
        self.input = input;
        self
    }

    const fn produces(mut self, types: &'static [&'static str]) -> Self {
        self.produces = types;
        self
    }

    const fn also_ok(mut self, statuses: &'static [u16]) -> Self {
        self.also_ok = statuses;
        self
    }

    const fn errors(mut self, statuses: &'static [u16]) -> Self {
        self.errors = statuses;
        self
    }
}

/// Every route the server serves.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/health", Access::Public, "Liveness", 200),
    route(
        "GET",
        "/ready",
        Access::Public,
        "Readiness (recovery finished)",
        200,
    ),
    route(
        "POST",
        "/admin/tenants",
        Access::Admin,
        "Create a tenant",
        201,
    )
    .json::<CreateTenant>()
    .errors(&[409]),
    route("GET", "/admin/tenants", Access::Admin, "List tenants", 200),
    route(
        "POST",
        "/admin/tokens",
        Access::Admin,
        "Issue a tenant token",
        201,
    )
    .json::<IssueToken>(),
    route(
        "POST",
        "/admin/tokens/{token_id}/revoke",
        Access::Admin,
        "Revoke a token",
        204,
    ),
    route(
        "POST",
        "/session/create",
        Access::Tenant,
        "Open a session",
        201,
    )
    .json::<CreateSession>(),
    route(
        "GET",
        "/session/{session_id}",
        Access::Tenant,
        "Read a session",
        200,
    ),
    route(
        "POST",
        "/session/{session_id}/close",
        Access::Tenant,
        "Close a session (again: the same answer, nothing logged)",
        200,
    ),
    route(
        "POST",
        "/intent/submit",
        Access::Tenant,
        "Submit an intent (202, or 200 with wait_ms)",
        202,
    )
    .json::<IntentBody>()
    .query::<WaitQuery>()
    .also_ok(&[200])
    .errors(&[409, 422]),
    route(
        "GET",
        "/execution/{execution_id}/status",
        Access::Tenant,
        "Execution status (with wait_ms: once it has finished, or when the wait ends)",
        200,
    )
    .query::<StatusQuery>(),
    route(
        "GET",
        "/runtime/state/{execution_id}",
        Access::Tenant,
        "The execution's full record",
        200,
    ),
    route(
        "GET",
        "/runtime/wal/{session_id}",
        Access::Tenant,
        "A session's WAL events in LSN order",
        200,
    )
    .query::<WalQuery>(),
    route(
        "GET",
        "/runtime/metrics",
        Access::AdminOrTenant,
        "Metrics as JSON",
        200,
    ),
    route(
        "GET",
        "/metrics",
        Access::Public,
        "Metrics in Prometheus text format",
        200,
    )
    .produces(&["text/plain; version=0.0.4"]),
    route(
        "GET",
        "/runtime/digest",
        Access::Admin,
        "State digest at the durable LSN",
        200,
    ),
    route(
        "GET",
        "/curator/capabilities",
        Access::AdminOrTenant,
        "Registered capabilities",
        200,
    ),
    route(
        "POST",
        "/content/upload",
        Access::Tenant,
        "Upload files (multipart: session_id, one or more file parts); each becomes a content.upload execution",
        202,
    )
    .input(Input::Multipart)
    .errors(&[409, 507]),
    route(
        "GET",
        "/content/documents/{document_id}",
        Access::Tenant,
        "A document: metadata, chunk count and facts",
        200,
    )
    .query::<DocumentQuery>(),
    route(
        "GET",
        "/content/search",
        Access::Tenant,
        "Search the caller's documents (q, k): exact cosine top-k chunks",
        200,
    )
    .query::<SearchQuery>(),
    route(
        "GET",
        "/graph/vertex/{collection}/{key}",
        Access::Tenant,
        "A vertex of the graph view (`_id`, `_key`, ...)",
        200,
    ),
    route(
        "GET",
        "/graph/traverse",
        Access::Tenant,
        "Traverse the graph view from a vertex (direction, depth)",
        200,
    )
    .query::<TraverseQuery>(),
    route(
        "GET",
        "/openapi.json",
        Access::Public,
        "This API's OpenAPI document",
        200,
    ),
    route(
        "GET",
        "/ws",
        Access::Tenant,
        "WebSocket: subscribe to sessions, submit intents",
        101,
    ),
    route(
        "GET",
        "/auth/whoami",
        Access::AdminOrTenant,
        "Who the token is: admin, or tenant, user, token id and expiry",
        200,
    ),
    route(
        "GET",
        "/sessions",
        Access::Tenant,
        "List the caller's sessions, newest first (limit, before)",
        200,
    )
    .query::<SessionsQuery>(),
    route(
        "GET",
        "/ui",
        Access::Public,
        "The browser UI (a static page that calls this API)",
        200,
    )
    .produces(&["text/html; charset=utf-8"]),
    route(
        "GET",
        "/ui/{asset}",
        Access::Public,
        "A static file of the browser UI (app.js, client.js, style.css)",
        200,
    )
    .produces(&["text/javascript; charset=utf-8", "text/css; charset=utf-8"]),
    route(
        "POST",
        "/ui/dev-signin",
        Access::Public,
        "A token of the `dev` tenant, only on a server on its embedded defaults (else 404)",
        201,
    ),
];

fn handler(spec: &RouteSpec) -> MethodRouter<Arc<AppState>> {
    match (spec.method, spec.path) {
        ("GET", "/health") | ("GET", "/ready") => get(health),
        ("POST", "/admin/tenants") => post(create_tenant),
        ("GET", "/admin/tenants") => get(list_tenants),
        ("POST", "/admin/tokens") => post(issue_token),
        ("POST", "/admin/tokens/{token_id}/revoke") => post(revoke_token),
        ("POST", "/session/create") => post(create_session),
        ("GET", "/session/{session_id}") => get(get_session),
        ("POST", "/session/{session_id}/close") => post(close_session),
        ("POST", "/intent/submit") => post(submit_intent),
        ("GET", "/execution/{execution_id}/status") => get(execution_status),
        ("GET", "/runtime/state/{execution_id}") => get(execution_record),
        ("GET", "/runtime/wal/{session_id}") => get(wal_slice),
        ("GET", "/runtime/metrics") => get(crate::metrics::json),
        ("GET", "/metrics") => get(crate::metrics::prometheus),
        ("GET", "/runtime/digest") => get(digest),
        ("GET", "/curator/capabilities") => get(capabilities),
        ("POST", "/content/upload") => {
            post(content_upload).layer(axum::extract::DefaultBodyLimit::disable())
        }
        ("GET", "/content/documents/{document_id}") => get(content_document),
        ("GET", "/content/search") => get(content_search),
        ("GET", "/graph/vertex/{collection}/{key}") => get(graph_vertex),
        ("GET", "/graph/traverse") => get(graph_traverse),
        ("GET", "/openapi.json") => get(openapi),
        ("GET", "/ws") => get(crate::ws::upgrade),
        ("GET", "/ui") => get(ui),
        ("GET", "/ui/{asset}") => get(ui_asset),
        ("POST", "/ui/dev-signin") => post(dev_signin),
        ("GET", "/sessions") => get(list_sessions),
        ("GET", "/auth/whoami") => get(whoami),
        _ => get(unrouted),
    }
}

/// The router of every route in [`ROUTES`], with JSON 404 and 405 answers.
pub fn router() -> Router<Arc<AppState>> {
    let mut by_path: Vec<(&str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for spec in ROUTES {
        let method_router = handler(spec);
        match by_path.iter_mut().find(|(p, _)| *p == spec.path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(method_router),
            None => by_path.push((spec.path, method_router)),
        }
    }
    let mut router = Router::new();
    for (path, method_router) in by_path {
        router = router.route(path, method_router);
    }
    router.fallback(|| async { AppError::not_found() })
}

async fn unrouted() -> AppError {
    AppError::internal("a route of the table has no handler")
}

/// A JSON body parsed whatever its content type; errors map to the contract's codes.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;
    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "request body too large",
                    )
                } else {
                    AppError::bad_request(rejection.body_text())
                }
            })?;
        // Every body of the API is a JSON object; serde would also fill a struct from an
        // array, positionally, which no client means.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AppError::bad_request(
                "the body must be a JSON object ({...})",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| AppError::bad_request(format!("invalid JSON body: {e}")))
    }
}

fn parse_id(raw: &str) -> Result<Id, AppError> {
    // A malformed id names no resource: answer as for an unknown one.
    raw.parse().map_err(|_| AppError::not_found())
}

/// Refuses a body `tenant_id` that is malformed (400) or not the token's (403).
fn check_body_tenant(principal: &TenantPrincipal, tenant_id: Option<&str>) -> Result<(), AppError> {
    match tenant_id {
        None => Ok(()),
        Some(t) if !symphainy_engine::runtime::valid_tenant_id(t) => {
            Err(AppError::from(symphainy_engine::Error::InvalidTenantId))
        }
        Some(t) if t != principal.tenant_id => Err(AppError::forbidden(
            "tenant_mismatch",
            "tenant_id differs from the token's tenant",
        )),
        Some(_) => Ok(()),
    }
}

fn tenant_access(state: &AppState, principal: &TenantPrincipal) -> Result<(), AppError> {
    state.policy.check(
        &Principal::Tenant(principal.clone()),
        Action::TenantResource,
    )
}

async fn health(State(state): Shared) -> Response {
    if state.runtime.stopped_reason().is_some() {
        return AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the runtime stopped",
        )
        .into_response();
    }
    axum::Json(json!({ "status": "ok" })).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateTenant {
    /// A new tenant's id.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant_id: String,
}

async fn create_tenant(
    State(state): Shared,
    _: AdminPrincipal,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<Response, AppError> {
    let created = state.runtime.create_tenant(&body.tenant_id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "tenant_id": body.tenant_id, "created_at": rfc3339(created) })),
    )
        .into_response())
}

async fn list_tenants(State(state): Shared, _: AdminPrincipal) -> Result<Response, AppError> {
    let tenants = state
        .runtime
        .read(|s| {
            s.tenants
                .iter()
                .map(|(id, t)| json!({ "tenant_id": id, "created_at": rfc3339(t.created_at_ms), "open_sessions": t.sessions_open }))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(axum::Json(json!({ "tenants": tenants })).into_response())
}

/// Default lifetime of an issued token when the request gives none: one hour.
pub const TOKEN_TTL_SECONDS_DEFAULT: u64 = 3600;

#[derive(Deserialize, utoipa::ToSchema)]
struct IssueToken {
    /// An existing tenant (404 otherwise).
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant_id: String,
    /// 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    user_id: String,
    /// Lifetime of the token (default 3600).
    #[schema(minimum = 1, maximum = 7776000)]
    ttl_seconds: Option<u64>,
}

async fn issue_token(
    State(state): Shared,
    _: AdminPrincipal,
    ApiJson(body): ApiJson<IssueToken>,
) -> Result<Response, AppError> {
    if !symphainy_engine::runtime::valid_tenant_id(&body.tenant_id) {
        return Err(symphainy_engine::Error::InvalidTenantId.into());
    }
    let ttl = body.ttl_seconds.unwrap_or(TOKEN_TTL_SECONDS_DEFAULT);
    let issued = state
        .runtime
        .issue_token(&body.tenant_id, &body.user_id, ttl)
        .await?;
    Ok(issued_answer(&state, &issued))
}

/// 201 with a freshly issued token.
fn issued_answer(state: &AppState, issued: &symphainy_engine::runtime::IssuedToken) -> Response {
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": state.keys.tenant_token(issued.token_id),
            "token_id": issued.token_id.to_string(),
            "tenant_id": issued.tenant_id,
            "user_id": issued.user_id,
            "expires_at": rfc3339(issued.expires_at_ms),
        })),
    )
        .into_response()
}

async fn revoke_token(
    State(state): Shared,
    _: AdminPrincipal,
    Path(token_id): Path<String>,
) -> Result<Response, AppError> {
    let token_id = parse_id(&token_id)?;
    state.runtime.revoke_token(token_id).await?;
    let _ = state.revocations.send(token_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct CreateSession {
    /// Defaults to the token's user; 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    user_id: Option<String>,
    /// When given, the token's tenant (403 `tenant_mismatch` otherwise).
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    tenant_id: Option<String>,
    /// A JSON object kept with the session (default `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
}

async fn create_session(
    State(state): Shared,
    principal: TenantPrincipal,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    check_body_tenant(&principal, body.tenant_id.as_deref())?;
    let context = body.context.unwrap_or_else(|| json!({}));
    if !context.is_object() {
        return Err(AppError::bad_request("context must be a JSON object"));
    }
    let user = body.user_id.unwrap_or_else(|| principal.user_id.clone());
    let session = state
        .runtime
        .create_session(&principal.tenant_id, &user, context.to_string())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view::session(&session))).into_response())
}

async fn get_session(
    State(state): Shared,
    principal: TenantPrincipal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let id = parse_id(&id)?;
    let tenant = principal.tenant_id.clone();
    if let Some(found) = state
        .projections
        .read(state_read_wait(&state), |r| async move {
            r.session(&tenant, id).await
        })
        .await
    {
        return found
            .map(|v| axum::Json(v).into_response())
            .ok_or_else(AppError::not_found);
    }
    let session = state.runtime.session(&principal.tenant_id, id).await?;
    Ok(axum::Json(view::session(&session)).into_response())
}

fn state_read_wait(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_millis(state.limits.state_read_wait_ms)
}

async fn close_session(
    State(state): Shared,
    principal: TenantPrincipal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let session = state
        .runtime
        .close_session(&principal.tenant_id, parse_id(&id)?)
        .await?;
    Ok(axum::Json(view::session(&session)).into_response())
}

/// An intent as the API takes it.
#[derive(Deserialize, Debug, utoipa::ToSchema)]
pub struct IntentBody {
    /// An intent type a registered capability handles (422 `unknown_intent` otherwise).
    pub intent_type: String,
    /// When given, the realm of the capability the intent type resolves to.
    pub realm: Option<String>,
    /// An open session of the caller's tenant.
    pub session_id: String,
    /// When given, the token's tenant (403 `tenant_mismatch` otherwise).
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub tenant_id: Option<String>,
    /// The capability's input, a JSON object (default `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// The same key in the same tenant answers the first execution (200) and logs nothing;
    /// 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub idempotency_key: Option<String>,
}

impl IntentBody {
    /// Checks the intent against its caller and turns it into the runtime's command.
    pub fn into_command(self, principal: &TenantPrincipal) -> Result<SubmitIntent, AppError> {
        check_body_tenant(principal, self.tenant_id.as_deref())?;
        let payload = self.payload.unwrap_or_else(|| json!({}));
        if !payload.is_object() {
            return Err(AppError::bad_request("payload must be a JSON object"));
        }
        Ok(SubmitIntent {
            tenant_id: principal.tenant_id.clone(),
            session_id: parse_id(&self.session_id)?,
            intent_type: self.intent_type,
            realm: self.realm,
            payload,
            idempotency_key: self.idempotency_key,
        })
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Hold the answer until the execution finishes (200 with its status) or this many
    /// milliseconds pass (202).
    #[param(maximum = 30000)]
    wait_ms: Option<u64>,
}

async fn submit_intent(
    State(state): Shared,
    principal: TenantPrincipal,
    Query(query): Query<WaitQuery>,
    ApiJson(body): ApiJson<IntentBody>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    if query.wait_ms.is_some_and(|w| w > state.limits.wait_ms_max) {
        return Err(AppError::bad_request(format!(
            "wait_ms must be at most {}",
            state.limits.wait_ms_max
        )));
    }
    let command = body.into_command(&principal)?;
    let (submitted, finished) = match query.wait_ms.filter(|w| *w > 0) {
        Some(wait_ms) => {
            state
                .runtime
                .submit_and_wait(command, Duration::from_millis(wait_ms))
                .await?
        }
        None => (state.runtime.submit_intent(command).await?, false),
    };
    if finished {
        let tenant = &principal.tenant_id;
        let status = state
            .runtime
            .read(|s| {
                s.execution_of(tenant, submitted.execution_id)
                    .map(|e| view::execution_status_json(s, e))
            })
            .await?
            .ok_or_else(AppError::not_found)?;
        return Ok(json_text(StatusCode::OK, status));
    }
    let status = if submitted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let answer = Accepted {
        execution_id: submitted.execution_id.to_string(),
        intent_id: submitted.intent_id.to_string(),
        status: "accepted",
        lsn: submitted.lsn,
    };
    Ok((status, axum::Json(answer)).into_response())
}

/// The answer to an accepted intent (typed: rendered without building a JSON tree).
#[derive(serde::Serialize)]
struct Accepted {
    execution_id: String,
    intent_id: String,
    status: &'static str,
    lsn: u64,
}

/// Renders one of the caller's executions with `render`; another tenant's is answered as
/// a missing one.
async fn execution_view(
    state: &AppState,
    principal: &TenantPrincipal,
    raw_id: &str,
    status_only: bool,
) -> Result<Response, AppError> {
    tenant_access(state, principal)?;
    let id = parse_id(raw_id)?;
    let owned = principal.tenant_id.clone();
    let render = if status_only {
        view::execution_status_json
    } else {
        view::execution_record_json
    };
    let from_surface = state
        .projections
        .read(state_read_wait(state), |r| async move {
            let record = r.execution_record(&owned, id).await?;
            Ok(if status_only {
                record.map(view::status_of_record)
            } else {
                record
            })
        })
        .await;
    if let Some(found) = from_surface {
        return found
            .map(|v| axum::Json(v).into_response())
            .ok_or_else(AppError::not_found);
    }
    let tenant = principal.tenant_id.as_str();
    let view = state
        .runtime
        .read(|s| s.execution_of(tenant, id).map(|e| render(s, e)))
        .await?;
    view.map(|text| json_text(StatusCode::OK, text))
        .ok_or_else(AppError::not_found)
}

/// A response whose body is JSON text rendered already (typed views skip building a
/// `serde_json::Value`).
fn json_text(status: StatusCode, text: String) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// Hold the answer until the execution finishes or this many milliseconds pass; the
    /// answer is the status as it then is (200 either way). A multipart upload's caller waits
    /// for its result this way.
    #[param(maximum = 30000)]
    wait_ms: Option<u64>,
}

async fn execution_status(
    State(state): Shared,
    principal: TenantPrincipal,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, AppError> {
    if let Some(wait_ms) = query.wait_ms.filter(|w| *w > 0) {
        tenant_access(&state, &principal)?;
        if wait_ms > state.limits.wait_ms_max {
            return Err(AppError::bad_request(format!(
                "wait_ms must be at most {}",
                state.limits.wait_ms_max
            )));
        }
        let execution_id = parse_id(&id)?;
        // Another tenant's execution is not found here, as below.
        state
            .runtime
            .wait_finished(
                &principal.tenant_id,
                execution_id,
                Duration::from_millis(wait_ms),
            )
            .await?;
    }
    execution_view(&state, &principal, &id, true).await
}

async fn execution_record(
    State(state): Shared,
    principal: TenantPrincipal,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    execution_view(&state, &principal, &id, false).await
}

/// Events `GET /runtime/wal/{session_id}` answers when no `limit` is given.
pub const WAL_PAGE_DEFAULT: usize = 100;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WalQuery {
    /// First LSN to return (default 1).
    from_lsn: Option<u64>,
    /// Most events per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// One page of a session's events: the matching events and the LSN to continue from.
pub fn session_events(
    state: &AppState,
    tenant_id: &str,
    session_id: Id,
    from_lsn: u64,
    limit: usize,
) -> Result<(Vec<Value>, u64), AppError> {
    let mut cursor = state.wal.cursor(from_lsn.max(1));
    let mut index = SessionIndex::default();
    let mut events = Vec::new();
    let mut scanned = 0usize;
    let mut failure = None;
    while events.len() < limit && scanned < state.limits.wal_scan_max {
        let seen = cursor
            .visit(
                1024.min(state.limits.wal_scan_max - scanned),
                |lsn, meta, payload| {
                    if events.len() >= limit || failure.is_some() {
                        return;
                    }
                    match codec::decode(meta, payload) {
                        Ok(event) => {
                            if let Some(value) =
                                session_event(state, &mut index, lsn, &event, tenant_id, session_id)
                            {
                                events.push(value);
                            }
                        }
                        Err(e) => failure = Some(e),
                    }
                },
            )
            .map_err(AppError::internal)?;
        if let Some(e) = failure {
            return Err(AppError::internal(e));
        }
        if seen == 0 {
            break;
        }
        scanned += seen;
    }
    let next_lsn = match events.len() {
        n if n >= limit => events
            .last()
            .and_then(|e| e["lsn"].as_u64())
            .map_or(cursor.next_lsn(), |l| l + 1),
        _ => cursor.next_lsn(),
    };
    Ok((events, next_lsn))
}

/// The JSON of `event` when it belongs to the tenant's session, else `None`.
pub fn session_event(
    state: &AppState,
    index: &mut SessionIndex,
    lsn: u64,
    event: &Event,
    tenant_id: &str,
    session_id: Id,
) -> Option<Value> {
    if event.tenant_id != tenant_id {
        return None;
    }
    let session = index.observe(event).or_else(|| {
        let execution = event.body.execution_id()?;
        state
            .runtime
            .peek(|s| s.executions.get(&execution).map(|e| e.session_id))
    })?;
    (session == session_id).then(|| view::wal_event(lsn, event, Some(session)))
}

async fn wal_slice(
    State(state): Shared,
    principal: TenantPrincipal,
    Path(id): Path<String>,
    Query(query): Query<WalQuery>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let session_id = parse_id(&id)?;
    let session = state
        .runtime
        .session(&principal.tenant_id, session_id)
        .await?;
    let limit = query.limit.unwrap_or(WAL_PAGE_DEFAULT);
    if limit == 0 || limit > state.limits.wal_page_max {
        return Err(AppError::bad_request(format!(
            "limit must be from 1 to {}",
            state.limits.wal_page_max
        )));
    }
    // Nothing of the session precedes its creation: the scan starts there at the earliest.
    let from = query.from_lsn.unwrap_or(1).max(session.created_lsn);
    let app = state.clone();
    let tenant = principal.tenant_id.clone();
    let (events, next_lsn) =
        tokio::task::spawn_blocking(move || session_events(&app, &tenant, session_id, from, limit))
            .await
            .map_err(AppError::internal)??;
    Ok(axum::Json(json!({ "events": events, "next_lsn": next_lsn })).into_response())
}

/// The upload route (its body limit differs from every other route's).
pub const UPLOAD_PATH: &str = "/content/upload";

/// A blob the store could not keep: a full disk is said plainly (507, nothing was logged and
/// the upload can be sent again once there is room); anything else is an internal error.
fn blob_error(e: symphainy_engine::realms::content::blob::BlobError) -> AppError {
    use symphainy_engine::realms::content::blob::BlobError;
    match &e {
        BlobError::Io { error, .. }
            if matches!(
                error.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) =>
        {
            tracing::warn!(error = %e, "upload refused: no room for its file");
            AppError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "the server's disk is full: the file was not stored and nothing was logged",
            )
        }
        _ => AppError::internal(e),
    }
}

fn too_large(message: String) -> AppError {
    AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
}

async fn content_upload(
    State(state): Shared,
    principal: TenantPrincipal,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let mut multipart = multipart.map_err(|e| AppError::bad_request(e.body_text()))?;
    let limits = &state.limits;
    let bad_part = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(e.body_text())
        } else {
            AppError::bad_request(format!("multipart body: {}", e.body_text()))
        }
    };
    let mut session_id = None;
    let mut files: Vec<(String, Option<String>, String)> = Vec::new();
    let mut total = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(bad_part)? {
        match field.name() {
            Some("session_id") => {
                let text = field.text().await.map_err(bad_part)?;
                session_id = Some(parse_id(text.trim())?);
            }
            Some("file") => {
                if files.len() >= limits.upload_files_max {
                    return Err(too_large(format!(
                        "at most {} files per upload request",
                        limits.upload_files_max
                    )));
                }
                let filename = field
                    .file_name()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("upload-{}", files.len() + 1));
                let media_type = field.content_type().map(str::to_string);
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad_part)? {
                    total += chunk.len();
                    if bytes.len() + chunk.len() > limits.upload_file_bytes_max {
                        return Err(too_large(format!(
                            "file {filename:?} exceeds the limit of {} bytes",
                            limits.upload_file_bytes_max
                        )));
                    }
                    if total > limits.upload_request_bytes_max {
                        return Err(too_large(format!(
                            "the upload exceeds the limit of {} bytes",
                            limits.upload_request_bytes_max
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                // The bytes are durable before the intent that names them is logged.
                let blobs = state.projections.blobs.clone();
                let sha = tokio::task::spawn_blocking(move || blobs.put(&bytes))
                    .await
                    .map_err(AppError::internal)?
                    .map_err(blob_error)?;
                files.push((filename, media_type, sha));
            }
            other => {
                return Err(AppError::bad_request(format!(
                    "unexpected multipart field {:?} (expected session_id and file)",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let session_id =
        session_id.ok_or_else(|| AppError::bad_request("the session_id field is required"))?;
    if files.is_empty() {
        return Err(AppError::bad_request("at least one file part is required"));
    }
    let mut executions = Vec::with_capacity(files.len());
    for (filename, media_type, sha) in files {
        let submitted = state
            .runtime
            .submit_intent(SubmitIntent {
                tenant_id: principal.tenant_id.clone(),
                session_id,
                intent_type: "content.upload".into(),
                realm: Some("content".into()),
                payload: json!({"filename": filename, "media_type": media_type, "blob_sha256": sha}),
                idempotency_key: None,
            })
            .await?;
        executions.push(
            json!({"execution_id": submitted.execution_id.to_string(), "filename": filename}),
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "executions": executions })),
    )
        .into_response())
}

/// Lets the content index apply what is durable now (bounded wait); false if it did not.
async fn content_caught_up(state: &AppState) -> bool {
    let target = state.wal.durable_lsn();
    state
        .projections
        .content_runner
        .wait_applied(target, state_read_wait(state))
        .await
}

/// What a projection read answers for something it does not hold: 404 once the projection
/// holds everything durable at the time of the request, but 503 `overloaded` (retry) while
/// it is still behind, since the log may already name what was asked for.
fn missing_from(caught_up: bool, projection: &str) -> AppError {
    if caught_up {
        AppError::not_found()
    } else {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the {projection} is behind the log; retry shortly"),
        )
        .retry_after(PROJECTION_BEHIND_RETRY_AFTER_S)
    }
}

/// `Retry-After` (seconds) of a read that found nothing while its projection was behind.
pub const PROJECTION_BEHIND_RETRY_AFTER_S: u64 = 1;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DocumentQuery {
    /// `chunks`: add every chunk's id, span and text (`chunk_list`).
    #[param(pattern = "^chunks$")]
    include: Option<String>,
}

async fn content_document(
    State(state): Shared,
    principal: TenantPrincipal,
    Path(id): Path<String>,
    Query(query): Query<DocumentQuery>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let caught_up = content_caught_up(&state).await;
    let with_chunks = match query.include.as_deref() {
        None => false,
        Some("chunks") => true,
        Some(_) => return Err(AppError::bad_request("include may only be `chunks`")),
    };
    state
        .projections
        .content
        .document_view(&principal.tenant_id, &id, with_chunks)
        .map(|v| axum::Json(v).into_response())
        .ok_or_else(|| missing_from(caught_up, "content index"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// The text to search for (not blank).
    #[param(required = true, pattern = "\\S")]
    q: Option<String>,
    /// How many chunks to return (default 5).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    k: Option<String>,
}

async fn content_search(
    State(state): Shared,
    principal: TenantPrincipal,
    Query(query): Query<SearchQuery>,
) -> Result<Response, AppError> {
    use symphainy_projections::content::{SEARCH_K_MAX, SEARCH_QUERY_BYTES_MAX};
    tenant_access(&state, &principal)?;
    let q = query
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| AppError::bad_request("q=TEXT is required"))?;
    if q.len() > SEARCH_QUERY_BYTES_MAX {
        return Err(AppError::bad_request(format!(
            "q exceeds {SEARCH_QUERY_BYTES_MAX} bytes"
        )));
    }
    let k = match query.k.as_deref() {
        None => 5,
        Some(k) => k
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=SEARCH_K_MAX).contains(k))
            .ok_or_else(|| {
                AppError::bad_request(format!("k must be a number from 1 to {SEARCH_K_MAX}"))
            })?,
    };
    // Past its read wait the index answers with what it holds, and says so.
    let partial = !content_caught_up(&state).await;
    let index = state.projections.content.clone();
    let tenant = principal.tenant_id.clone();
    let hits = tokio::task::spawn_blocking(move || index.search(&tenant, &q, k))
        .await
        .map_err(AppError::internal)?;
    let results: Vec<Value> = hits
        .into_iter()
        .map(|h| json!({"document_id": h.document_id, "chunk_id": h.chunk_id, "score": h.score, "text": h.text}))
        .collect();
    Ok(axum::Json(json!({ "results": results, "partial": partial })).into_response())
}

/// Lets the graph view apply what is durable now (bounded wait), so a caller sees its own
/// writes; past the wait the graph answers with what it has (false: it did not catch up).
async fn graph_caught_up(state: &AppState) -> bool {
    let target = state.wal.durable_lsn();
    state
        .projections
        .graph_runner
        .wait_applied(target, state_read_wait(state))
        .await
}

fn graph_error(e: symphainy_projections::Error) -> AppError {
    match e {
        symphainy_projections::Error::Query(message) => AppError::bad_request(message),
        other => AppError::internal(other),
    }
}

async fn graph_vertex(
    State(state): Shared,
    principal: TenantPrincipal,
    Path((collection, key)): Path<(String, String)>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let id = format!("{collection}/{key}");
    // A malformed id names no vertex.
    symphainy_projections::graph::parse_vertex_id(&id).map_err(|_| AppError::not_found())?;
    let caught_up = graph_caught_up(&state).await;
    let graph = state.projections.graph.clone();
    let tenant = principal.tenant_id.clone();
    let found = tokio::task::spawn_blocking(move || {
        symphainy_projections::GraphStore::vertex(graph.as_ref(), &tenant, &id)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(graph_error)?;
    found
        .map(|v| axum::Json(v).into_response())
        .ok_or_else(|| missing_from(caught_up, "graph view"))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TraverseQuery {
    /// The start vertex, `COLLECTION/KEY`.
    #[param(
        required = true,
        pattern = "^[A-Za-z0-9_.@:-]{1,256}/[A-Za-z0-9_.@:-]{1,256}$"
    )]
    start: Option<String>,
    /// `outbound` (default), `inbound` or `any`.
    #[param(pattern = "^(outbound|inbound|any)$")]
    direction: Option<String>,
    /// How many edges deep (default 1).
    #[param(value_type = Option<u32>, maximum = 5)]
    depth: Option<String>,
}

async fn graph_traverse(
    State(state): Shared,
    principal: TenantPrincipal,
    Query(query): Query<TraverseQuery>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let start = query
        .start
        .ok_or_else(|| AppError::bad_request("start=COLLECTION/KEY is required"))?;
    symphainy_projections::graph::parse_vertex_id(&start).map_err(graph_error)?;
    let direction: symphainy_projections::graph::Direction = query
        .direction
        .as_deref()
        .unwrap_or("outbound")
        .parse()
        .map_err(graph_error)?;
    let depth: u32 = match query.depth.as_deref() {
        None => 1,
        Some(d) => d
            .parse()
            .map_err(|_| AppError::bad_request(format!("depth must be a number, not {d:?}")))?,
    };
    if depth > state.limits.graph_depth_max {
        return Err(AppError::bad_request(format!(
            "depth {depth} exceeds the limit of {}",
            state.limits.graph_depth_max
        )));
    }
    let caught_up = graph_caught_up(&state).await;
    let graph = state.projections.graph.clone();
    let tenant = principal.tenant_id.clone();
    let found = tokio::task::spawn_blocking(move || {
        symphainy_projections::graph::traverse(graph.as_ref(), &tenant, &start, direction, depth)
    })
    .await
    .map_err(AppError::internal)?
    .map_err(graph_error)?;
    let t = found.ok_or_else(|| missing_from(caught_up, "graph view"))?;
    Ok(
        axum::Json(json!({"vertices": t.vertices, "edges": t.edges, "truncated": t.truncated}))
            .into_response(),
    )
}

async fn digest(State(state): Shared, _: AdminPrincipal) -> Result<Response, AppError> {
    let (lsn, digest) = state.runtime.digest().await?;
    Ok(axum::Json(json!({ "lsn": lsn, "digest": digest })).into_response())
}

async fn capabilities(State(state): Shared, principal: Principal) -> Result<Response, AppError> {
    state.policy.check(&principal, Action::ReadNode)?;
    let list: Vec<Value> = state
        .runtime
        .registry()
        .capabilities()
        .map(view::capability)
        .collect();
    Ok(axum::Json(json!({ "capabilities": list })).into_response())
}

/// The caller as the server sees its token.
async fn whoami(State(state): Shared, principal: Principal) -> Result<Response, AppError> {
    state.policy.check(&principal, Action::ReadNode)?;
    let body = match principal {
        Principal::Admin => json!({"kind": "admin"}),
        Principal::Tenant(t) => json!({
            "kind": "tenant",
            "tenant_id": t.tenant_id,
            "user_id": t.user_id,
            "token_id": t.token_id.to_string(),
            "expires_at": rfc3339(t.expires_at_ms),
        }),
    };
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SessionsQuery {
    /// Most sessions per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Continue after this session id (the last of the previous page).
    #[param(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    before: Option<String>,
}

/// Sessions `GET /sessions` lists when no `limit` is given.
pub const SESSIONS_PAGE_DEFAULT: usize = 50;

/// The caller's sessions, newest first (session ids are time-ordered), from the runtime's
/// per-tenant session index: one page of at most `limit`; `before` continues after the last
/// id of the previous page.
async fn list_sessions(
    State(state): Shared,
    principal: TenantPrincipal,
    Query(query): Query<SessionsQuery>,
) -> Result<Response, AppError> {
    tenant_access(&state, &principal)?;
    let limit = query.limit.unwrap_or(SESSIONS_PAGE_DEFAULT);
    if limit == 0 || limit > state.limits.sessions_page_max {
        return Err(AppError::bad_request(format!(
            "limit must be from 1 to {}",
            state.limits.sessions_page_max
        )));
    }
    let before = query
        .before
        .as_deref()
        .map(|b| {
            b.parse::<Id>()
                .map_err(|_| AppError::bad_request("before must be a session id"))
        })
        .transpose()?;
    let tenant = principal.tenant_id.as_str();
    let (sessions, next_before) = state.runtime.peek(|s| {
        let Some(t) = s.tenants.get(tenant) else {
            return (Vec::new(), None);
        };
        let older = match before {
            Some(b) => t.sessions.range(..b),
            None => t.sessions.range(..),
        };
        let mut ids = older.rev();
        let mut oldest = None;
        let list: Vec<Value> = ids
            .by_ref()
            .take(limit)
            .inspect(|id| oldest = Some(**id))
            .filter_map(|id| s.sessions.get(id).map(view::session))
            .collect();
        // Another page exists: it continues after this page's oldest session.
        let next = ids.next().and(oldest).map(|id| id.to_string());
        (list, next)
    });
    Ok(axum::Json(json!({"sessions": sessions, "next_before": next_before})).into_response())
}

/// The UI page, embedded in the binary.
const UI_HTML: &str = include_str!("../ui/index.html");

/// The UI's other files, embedded in the binary: name, media type, bytes.
const UI_ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "client.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/client.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
];

/// Headers of every UI file: no inline script or outside origin may run in the page that
/// holds the tokens.
fn ui_headers(media_type: &'static str) -> [(axum::http::header::HeaderName, &'static str); 4] {
    use axum::http::header;
    [
        (header::CONTENT_TYPE, media_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    ]
}

async fn ui() -> Response {
    (ui_headers("text/html; charset=utf-8"), UI_HTML).into_response()
}

async fn ui_asset(Path(name): Path<String>) -> Response {
    match UI_ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, media_type, body)) => (ui_headers(media_type), *body).into_response(),
        None => AppError::not_found().into_response(),
    }
}

/// The tenant the dev sign-in hands out tokens for.
pub const DEV_TENANT: &str = "dev";
/// How long a dev sign-in token lives: 8 hours.
pub const DEV_TOKEN_TTL_SECONDS: u64 = 8 * 3600;

/// A token of the `dev` tenant (created on first use) for the UI of a server on its embedded
/// defaults: loopback only, admin token generated. Anywhere else the route does not exist.
async fn dev_signin(
    State(state): Shared,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    // The Host must name this machine's loopback too, so a page whose own name resolves to
    // 127.0.0.1 (DNS rebinding) cannot fetch a token.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let loopback = matches!(name, "127.0.0.1" | "localhost" | "[::1]");
    if !state.dev_signin || !loopback {
        return Err(AppError::not_found());
    }
    match state.runtime.create_tenant(DEV_TENANT).await {
        Ok(_) | Err(symphainy_engine::Error::TenantExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let issued = state
        .runtime
        .issue_token(DEV_TENANT, "dev", DEV_TOKEN_TTL_SECONDS)
        .await?;
    Ok(issued_answer(&state, &issued))
}

async fn openapi(State(state): Shared) -> Response {
    let document = state.openapi.get_or_init(|| {
        let capabilities = || state.runtime.registry().capabilities();
        let mut intent_types: Vec<&str> = capabilities()
            .flat_map(|c| c.intent_types.iter().map(String::as_str))
            .collect();
        let mut realms: Vec<&str> = capabilities().map(|c| c.realm.as_str()).collect();
        for names in [&mut intent_types, &mut realms] {
            names.sort_unstable();
            names.dedup();
        }
        let document = crate::openapi::document(&intent_types, &realms);
        // A JSON tree of strings and numbers always serializes.
        serde_json::to_vec(&document).unwrap_or_default().into()
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
        .into_response()
}
