//! The OpenAPI 3.1 document, generated from the route table ([`crate::routes::ROUTES`]) so it
//! covers every route, its auth scheme and its error answers by construction. Request bodies
//! and query parameters are described by schemas derived (utoipa) from the very types the
//! handlers parse, so the document cannot drift from what a route accepts.

use serde_json::{Value, json};

use crate::routes::{Access, Input, ROUTES};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// What each error status means, for the routes that may answer it.
fn error_description(status: u16) -> &'static str {
    match status {
        400 => {
            "invalid request (malformed JSON, a body that is not an object, a missing or mistyped field or parameter)"
        }
        401 => "missing, malformed, expired or revoked token",
        403 => {
            "tenant_mismatch (a body tenant_id that is not the token's) or refused by the policy"
        }
        404 => "not found (or another tenant's)",
        409 => "conflict: tenant_exists, or session_closed",
        413 => "payload too large",
        422 => "unknown_intent (no capability handles the intent type) or idempotency_key_reused",
        429 => "rate limited (Retry-After)",
        500 => "internal error",
        503 => "overloaded or unavailable (Retry-After)",
        507 => "insufficient_storage: the disk is full; nothing was stored or logged",
        _ => "error",
    }
}

/// The multipart form of an upload.
fn multipart_schema() -> Value {
    json!({
        "type": "object",
        "required": ["session_id", "file"],
        "additionalProperties": false,
        "properties": {
            "session_id": { "type": "string", "description": "an open session of the caller's tenant" },
            "file": { "type": "array", "minItems": 1, "items": { "type": "string", "format": "binary" }, "description": "one or more files" },
        },
    })
}

/// The whole document; the intent types and realms of the curator's capabilities are listed
/// as the values an intent's `intent_type` and `realm` may take.
pub fn document(intent_types: &[&str], realms: &[&str]) -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut responses = serde_json::Map::new();
        let mut content = serde_json::Map::new();
        for media_type in route.produces {
            let schema = if media_type.starts_with("application/json") {
                json!({ "type": "object" })
            } else {
                json!({ "type": "string" })
            };
            content.insert(media_type.to_string(), json!({ "schema": schema }));
        }
        for status in std::iter::once(&route.ok).chain(route.also_ok) {
            let mut ok = json!({ "description": route.summary });
            if !content.is_empty() {
                ok["content"] = Value::Object(content.clone());
            }
            responses.insert(status.to_string(), ok);
        }
        let mut errors = vec![400, 404, 413, 429, 500, 503];
        if route.access != Access::Public {
            errors.push(401);
        }
        if matches!(route.access, Access::Tenant | Access::AdminOrTenant) {
            errors.push(403);
        }
        errors.extend_from_slice(route.errors);
        for status in errors {
            responses.insert(
                status.to_string(),
                error_response(error_description(status)),
            );
        }
        let mut operation = json!({
            "summary": route.summary,
            "operationId": format!("{} {}", route.method.to_lowercase(), route.path),
            "responses": responses,
        });
        match route.access {
            Access::Public => {}
            Access::Tenant => operation["security"] = json!([{ "tenant_token": [] }]),
            Access::Admin => operation["security"] = json!([{ "admin_token": [] }]),
            Access::AdminOrTenant => {
                operation["security"] = json!([{ "tenant_token": [] }, { "admin_token": [] }])
            }
        }
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(query) = route.query {
            parameters.extend(query());
        }
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        match route.input {
            Input::Empty => {}
            Input::Json(schema) => {
                let mut schema = schema();
                if let Some(intent_type) = schema["properties"].get_mut("intent_type") {
                    intent_type["enum"] = json!(intent_types);
                }
                if let Some(realm) = schema["properties"].get_mut("realm") {
                    // Optional: null stays allowed.
                    let mut values = json!(realms);
                    if let Some(values) = values.as_array_mut() {
                        values.push(Value::Null);
                    }
                    realm["enum"] = values;
                }
                operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema } } });
            }
            Input::Multipart => {
                operation["requestBody"] = json!({ "required": true, "content": { "multipart/form-data": { "schema": multipart_schema() } } });
            }
        }
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Symphainy runtime", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "tenant_token": { "type": "http", "scheme": "bearer", "description": "a tenant token (st.<token_id>.<mac>)" },
                "admin_token": { "type": "http", "scheme": "bearer", "description": "the node's admin token" },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message", "request_id"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" }, "request_id": { "type": "string" } } } },
                },
            },
        },
    })
}
