//! Metrics (CONTRACT section 7): `/runtime/metrics` as JSON (admin: everything; tenant: its
//! own execution, step and event counts, node-wide WAL figures) and `/metrics` in the
//! Prometheus text format (no token, no tenant labels). Both are built from one snapshot.
//!
//! `state.ops` counts the state surface's store operations (a SET or INCRBY is a `set`),
//! `state.keys` is the store's key count (Redis: `DBSIZE`), `state.fallback_reads` the reads
//! the runtime answered because the surface could not. `projections` has, per projection,
//! its applied LSN, lag, errors and whether it is stalled.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use symphainy_engine::state::ExecutionStatus;
use symphainy_wal::Log;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::AppError;
use crate::policy::Action;

/// The figures, filtered to `tenant` when given.
pub async fn snapshot(state: &AppState, tenant: Option<&str>) -> Value {
    let stats = state.wal.stats();
    let report = state.wal.recovery_report();
    let uptime = state.started_at.elapsed().as_secs_f64().max(0.001);
    let appended_bytes = stats.bytes.load(Ordering::Relaxed);
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for (t, kind, n) in state.runtime.metrics().events() {
        if tenant.is_none_or(|want| want == t) {
            *by_type.entry(kind).or_default() += n;
        }
    }
    let mut steps = serde_json::Map::new();
    for (capability, step, count, success, failure, p50, p99) in state.runtime.metrics().steps() {
        steps.insert(
            format!("{capability}/{step}"),
            json!({"count": count, "success": success, "failure": failure, "p50_ms": p50, "p99_ms": p99}),
        );
    }
    // Kept per tenant by the state as executions change: no scan of the executions.
    let by_status = state.runtime.peek(|s| {
        let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
        let tenants: Vec<&symphainy_engine::state::Tenant> = match tenant {
            Some(want) => s.tenants.get(want).into_iter().collect(),
            None => s.tenants.values().collect(),
        };
        for t in tenants {
            for status in ExecutionStatus::ALL {
                let n = t.executions_by_status[status.index()];
                if n > 0 {
                    *by_status.entry(status.name()).or_default() += n;
                }
            }
        }
        by_status
    });
    let projections = &state.projections;
    let keys = tokio::time::timeout(KEY_COUNT_WAIT, projections.store.key_count())
        .await
        .ok()
        .and_then(|r| r.ok());
    let ops = projections.store.ops();
    let durable = state.wal.durable_lsn();
    json!({
        "wal": {
            "events_by_type": by_type,
            "bytes": report.bytes + appended_bytes,
            "segments": state.wal.catalog().segment_list().len(),
            "growth_bytes_per_sec": appended_bytes as f64 / uptime,
            "fsync_p50_us": stats.fsync_us.quantile(0.5),
            "fsync_p99_us": stats.fsync_us.quantile(0.99),
            "batch_size_avg": stats.batch_size_avg(),
            "fsyncs": stats.batches.load(Ordering::Relaxed),
            "encoder_fsyncs": stats.encoder_syncs.load(Ordering::Relaxed),
            "append_p99_us": stats.append_us.quantile(0.99),
            "durable_lsn": durable,
        },
        "saga": match tenant {
            Some(_) => json!({"steps": {}}),
            None => json!({
                "steps": Value::Object(steps),
                "result_waiters": state.runtime.result_waiters(),
            }),
        },
        "executions_by_status": by_status,
        "http": match tenant {
            Some(_) => json!({}),
            None => json!({
                "connections_open": state.http_connections.open(),
                "websockets_open": state.ws_connections.load(Ordering::Relaxed),
            }),
        },
        "state": {
            "backend": projections.store.describe(),
            "ops": {
                "get": ops.get.load(Ordering::Relaxed),
                "set": ops.set.load(Ordering::Relaxed),
                "delete": ops.delete.load(Ordering::Relaxed),
            },
            "keys": keys,
            "fallback_reads": projections.fallback_reads.load(Ordering::Relaxed),
        },
        "projections": {
            "state_surface": projection(projections.surface.status().snapshot(durable)),
            "graph_view": projection(projections.graph_runner.status().snapshot(durable)),
            "content_index": projection(projections.content_runner.status().snapshot(durable)),
        },
    })
}

/// How long the metrics wait for the store's key count before leaving it null.
const KEY_COUNT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

fn projection(p: symphainy_projections::StatusSnapshot) -> Value {
    json!({
        "applied_lsn": p.applied_lsn,
        "lag_events": p.lag_events,
        "events_applied": p.events_applied,
        "batches": p.batches,
        "errors": p.errors,
        "last_error": p.last_error,
        "stalled": p.stalled,
    })
}

pub async fn json(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, AppError> {
    state.policy.check(&principal, Action::ReadNode)?;
    let tenant = match &principal {
        Principal::Admin => None,
        Principal::Tenant(t) => Some(t.tenant_id.clone()),
    };
    Ok(axum::Json(snapshot(&state, tenant.as_deref()).await).into_response())
}

fn line(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "symphainy_{name}{labels} {value}");
}

pub async fn prometheus(State(state): State<Arc<AppState>>) -> Response {
    let v = snapshot(&state, None).await;
    let mut out = String::new();
    let wal = &v["wal"];
    for (name, key) in [
        ("wal_bytes", "bytes"),
        ("wal_segments", "segments"),
        ("wal_growth_bytes_per_sec", "growth_bytes_per_sec"),
        ("wal_fsync_p50_us", "fsync_p50_us"),
        ("wal_fsync_p99_us", "fsync_p99_us"),
        ("wal_batch_size_avg", "batch_size_avg"),
        ("wal_durable_lsn", "durable_lsn"),
    ] {
        let _ = writeln!(out, "# TYPE symphainy_{name} gauge");
        line(&mut out, name, "", &wal[key]);
    }
    for (name, key) in [
        ("wal_fsyncs_total", "fsyncs"),
        ("wal_encoder_fsyncs_total", "encoder_fsyncs"),
    ] {
        let _ = writeln!(out, "# TYPE symphainy_{name} counter");
        line(&mut out, name, "", &wal[key]);
    }
    let _ = writeln!(out, "# TYPE symphainy_wal_events_total counter");
    for (kind, n) in wal["events_by_type"].as_object().into_iter().flatten() {
        line(
            &mut out,
            "wal_events_total",
            &format!("{{type=\"{kind}\"}}"),
            n,
        );
    }
    let _ = writeln!(out, "# TYPE symphainy_saga_steps_total counter");
    for (key, s) in v["saga"]["steps"].as_object().into_iter().flatten() {
        let (capability, step) = key.split_once('/').unwrap_or((key, ""));
        let labels = format!("{{capability=\"{capability}\",step=\"{step}\"");
        line(
            &mut out,
            "saga_steps_total",
            &format!("{labels},outcome=\"success\"}}"),
            &s["success"],
        );
        line(
            &mut out,
            "saga_steps_total",
            &format!("{labels},outcome=\"failure\"}}"),
            &s["failure"],
        );
        line(
            &mut out,
            "saga_step_p50_ms",
            &format!("{labels}}}"),
            &s["p50_ms"],
        );
        line(
            &mut out,
            "saga_step_p99_ms",
            &format!("{labels}}}"),
            &s["p99_ms"],
        );
    }
    let _ = writeln!(out, "# TYPE symphainy_saga_result_waiters gauge");
    line(
        &mut out,
        "saga_result_waiters",
        "",
        &v["saga"]["result_waiters"],
    );
    for name in ["connections_open", "websockets_open"] {
        let _ = writeln!(out, "# TYPE symphainy_http_{name} gauge");
        line(&mut out, &format!("http_{name}"), "", &v["http"][name]);
    }
    let _ = writeln!(out, "# TYPE symphainy_executions gauge");
    for (status, n) in v["executions_by_status"].as_object().into_iter().flatten() {
        line(
            &mut out,
            "executions",
            &format!("{{status=\"{status}\"}}"),
            n,
        );
    }
    let _ = writeln!(out, "# TYPE symphainy_state_ops_total counter");
    for op in ["get", "set", "delete"] {
        line(
            &mut out,
            "state_ops_total",
            &format!("{{op=\"{op}\"}}"),
            &v["state"]["ops"][op],
        );
    }
    line(&mut out, "state_keys", "", &v["state"]["keys"]);
    for (name, p) in v["projections"].as_object().into_iter().flatten() {
        line(
            &mut out,
            "projection_applied_lsn",
            &format!("{{projection=\"{name}\"}}"),
            &p["applied_lsn"],
        );
        line(
            &mut out,
            "projection_lag_events",
            &format!("{{projection=\"{name}\"}}"),
            &p["lag_events"],
        );
        line(
            &mut out,
            "projection_errors_total",
            &format!("{{projection=\"{name}\"}}"),
            &p["errors"],
        );
        line(
            &mut out,
            "projection_stalled",
            &format!("{{projection=\"{name}\"}}"),
            u8::from(p["stalled"].as_bool().unwrap_or(false)),
        );
    }
    line(
        &mut out,
        "state_fallback_reads_total",
        "",
        &v["state"]["fallback_reads"],
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
