//! The one error type of the API and its contract body:
//! `{"error": {"code", "message", "request_id"}}`. Client errors are returned as they are;
//! internal errors answer with a generic message and are logged once with the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use symphainy_engine::Error as EngineError;

tokio::task_local! {
    /// The id of the request being served (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// The current request's id, or `-` outside a request.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_string())
}

/// An API error: status, snake_case code, human message, optional Retry-After seconds.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is required",
        )
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = %request_id(), error = %message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }
}

/// The contract body for an error.
pub fn body(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message, "request_id": request_id() } })
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(body(self.code, &self.message))).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidTenantId => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_tenant_id",
                "tenant ids match ^[a-z0-9][a-z0-9_-]{0,62}$",
            ),
            EngineError::TenantExists(t) => Self::new(
                StatusCode::CONFLICT,
                "tenant_exists",
                format!("tenant {t} exists"),
            ),
            EngineError::NotFound { .. } => Self::not_found(),
            EngineError::SessionClosed(_) => Self::new(
                StatusCode::CONFLICT,
                "session_closed",
                "the session is closed",
            ),
            EngineError::IdempotencyKeyReused(id) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "this idempotency key was used for a different intent (execution {id}); \
                     send that intent's session, type and payload, or use a new key"
                ),
            ),
            EngineError::UnknownIntent(t) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_intent",
                format!("no capability handles intent type {t:?}"),
            ),
            EngineError::InvalidRequest(m) => Self::bad_request(m),
            // Retrying cannot help: no Retry-After.
            EngineError::TooLarge(m) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
            }
            EngineError::LimitExceeded(m) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", m).retry_after(1)
            }
            EngineError::Overloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the log is saturated; retry shortly",
            )
            .retry_after(1),
            EngineError::Stopped(reason) => {
                tracing::error!(%reason, "request refused: runtime stopped");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the runtime stopped after a storage failure",
                )
                .retry_after(5)
            }
            other => Self::internal(other),
        }
    }
}

/// The code used for a bare status (responses produced outside the handlers).
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        429 => "rate_limited",
        503 => "overloaded",
        s if s >= 500 => "internal",
        _ => "invalid_request",
    }
}
