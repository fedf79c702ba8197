//! The OpenAPI 3.1 document, generated from the route table ([`crate::routes::ROUTES`]) so it
//! covers every route, its auth scheme and its error answers by construction.

use serde_json::{Value, json};

use crate::routes::{Access, ROUTES};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut responses = serde_json::Map::new();
        responses.insert(route.ok.to_string(), json!({ "description": route.summary, "content": { "application/json": { "schema": { "type": "object" } } } }));
        for (status, what) in [
            ("400", "invalid request"),
            ("404", "not found (or another tenant's)"),
            ("413", "payload too large"),
            ("429", "rate limited"),
            ("503", "overloaded"),
        ] {
            responses.insert(status.into(), error_response(what));
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
        if route.access != Access::Public {
            operation["responses"]["401"] =
                error_response("missing, malformed, expired or revoked token");
        }
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = json!(parameters);
        }
        if route.method == "POST" {
            operation["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": { "type": "object" } } } });
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
