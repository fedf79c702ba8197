//! WebSocket `/ws` (CONTRACT section 6). A reader loop handles client messages; a writer task
//! owns the socket's sink and drains one bounded queue; each subscription is a task that
//! tails the WAL for one session and pushes events into that queue. A client whose
//! queue (`ws_buffer_messages`) stays full for `ws_slow_client_ms` is closed with 1013 and
//! resumes with `from_lsn`; revoking the
//! connection's token closes it with 1008. Events come from the log, never from memory shared
//! between connections, in LSN order with no gap and no duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use symphainy_engine::view::SessionIndex;
use symphainy_engine::{Id, codec};
use symphainy_wal::Log;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::auth::{TenantPrincipal, token_valid};
use crate::error::AppError;
use crate::routes::{IntentBody, session_event};

/// Close code for a client too slow to keep up ("try again later").
pub const CLOSE_TOO_SLOW: u16 = 1013;
/// Close code for a revoked or expired token ("policy violation").
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for a message over the size limit (`Limits::body_bytes_max`, as for HTTP).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Records a subscription reads from the log per step.
const TAIL_BATCH_RECORDS: usize = 256;

type Closer = watch::Sender<Option<(u16, &'static str)>>;

pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    principal: TenantPrincipal,
    ws: WebSocketUpgrade,
) -> Response {
    // The slot is taken before the upgrade (a check here and a count once upgraded would let
    // simultaneous upgrades all pass the check); the guard gives it back however the
    // connection ends, or if the upgrade never happens.
    let taken = state.ws_connections.fetch_add(1, Ordering::SeqCst);
    let guard = ConnectionGuard(state.clone());
    if taken >= state.limits.ws_connections_max {
        drop(guard);
        return AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many WebSocket connections",
        )
        .retry_after(1)
        .into_response();
    }
    ws.max_message_size(state.limits.body_bytes_max)
        .on_upgrade(move |socket| serve(state, principal, socket, guard))
}

struct ConnectionGuard(Arc<AppState>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.ws_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    state: Arc<AppState>,
    principal: TenantPrincipal,
    socket: WebSocket,
    _slot: ConnectionGuard,
) {
    let (mut sink, mut stream) = socket.split();
    let (queue, mut outgoing) = mpsc::channel::<String>(state.limits.ws_buffer_messages);
    let (closer, mut closing) = watch::channel::<Option<(u16, &'static str)>>(None);
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                // A requested close wins over queued messages.
                biased;
                _ = closing.changed() => break,
                message = outgoing.recv() => match message {
                    Some(text) => if sink.send(Message::Text(text.into())).await.is_err() { return },
                    None => break,
                },
            }
        }
        // Whatever ended the loop, a close that was asked for is sent.
        let close: Option<(u16, &'static str)> = *closing.borrow();
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
    });
    let mut subscriptions: HashMap<Id, JoinHandle<()>> = HashMap::new();
    let mut revocations = state.revocations.subscribe();
    loop {
        tokio::select! {
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Err(e)) => {
                        if too_big(e) {
                            let _ = closer.send(Some((CLOSE_TOO_BIG, "message over the size limit")));
                        }
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    // The protocol is JSON text: a binary frame gets an error (it was dropped
                    // without a word, leaving a client waiting for an answer).
                    Some(Ok(Message::Binary(_))) => {
                        let message = "messages are JSON text frames, not binary";
                        reply(&queue, &closer, error(None, "invalid_request", message));
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                // The signature was checked at the upgrade; expiry and revocation each time.
                if !token_valid(&state, principal.token_id) {
                    let _ = closer.send(Some((CLOSE_POLICY, "token expired or revoked")));
                    break;
                }
                handle(&state, &principal, &text, &queue, &closer, &mut subscriptions).await;
            }
            revoked = revocations.recv() => {
                if revoked.is_ok_and(|id| id == principal.token_id) {
                    let _ = closer.send(Some((CLOSE_POLICY, "token revoked")));
                    break;
                }
            }
            _ = writer_closed(&closer) => break,
        }
    }
    for (_, task) in subscriptions {
        task.abort();
    }
    drop(queue);
    let _ = writer.await;
}

/// Whether a read failed because the client's message exceeded the size limit (the
/// connection is then closed with [`CLOSE_TOO_BIG`] rather than dropped without a word).
fn too_big(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// Resolves when something asked to close the connection.
async fn writer_closed(closer: &Closer) {
    let mut watching = closer.subscribe();
    while watching.borrow_and_update().is_none() {
        if watching.changed().await.is_err() {
            return;
        }
    }
}

fn error(request_id: Option<&Value>, code: &str, message: &str) -> String {
    let mut out = json!({ "type": "error", "code": code, "message": message });
    if let Some(id) = request_id {
        out["request_id"] = id.clone();
    }
    out.to_string()
}

/// Queues an answer to the client; a client whose queue is full is closed as too slow.
fn reply(queue: &mpsc::Sender<String>, closer: &Closer, message: String) {
    if queue.try_send(message).is_err() {
        let _ = closer.send(Some((CLOSE_TOO_SLOW, "client too slow")));
    }
}

async fn handle(
    state: &Arc<AppState>,
    principal: &TenantPrincipal,
    text: &str,
    queue: &mpsc::Sender<String>,
    closer: &Closer,
    subscriptions: &mut HashMap<Id, JoinHandle<()>>,
) {
    let reply = |message: String| reply(queue, closer, message);
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return reply(error(None, "invalid_request", "messages are JSON objects"));
    };
    let request_id = message.get("request_id");
    let session = || {
        message
            .get("session_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Id>().ok())
    };
    match message.get("type").and_then(Value::as_str) {
        Some("ping") => reply(json!({ "type": "pong" }).to_string()),
        Some("subscribe") => {
            let Some(session_id) = session() else {
                // A malformed id names no session: answered as an unknown one, as over HTTP.
                return match message.get("session_id").and_then(Value::as_str) {
                    Some(_) => reply(error(request_id, "not_found", "no such session")),
                    None => reply(error(
                        request_id,
                        "invalid_request",
                        "subscribe needs a session_id",
                    )),
                };
            };
            let Ok(found) = state
                .runtime
                .session(&principal.tenant_id, session_id)
                .await
            else {
                return reply(error(request_id, "not_found", "no such session"));
            };
            if !subscriptions.contains_key(&session_id)
                && subscriptions.len() >= state.limits.ws_subscriptions_max
            {
                return reply(error(
                    request_id,
                    "limit_exceeded",
                    &format!(
                        "a connection follows at most {} sessions; unsubscribe from one first",
                        state.limits.ws_subscriptions_max
                    ),
                ));
            }
            // Absent (or null) is the log's start; anything but a whole number is refused
            // rather than read as the start (a replay of everything the client did not ask for).
            let from_lsn = match message.get("from_lsn") {
                None | Some(Value::Null) => 1,
                Some(lsn) => match lsn.as_u64() {
                    Some(lsn) => lsn.max(1),
                    None => {
                        return reply(error(
                            request_id,
                            "invalid_request",
                            "from_lsn must be a whole number (an LSN)",
                        ));
                    }
                },
            };
            if let Some(old) = subscriptions.remove(&session_id) {
                old.abort();
            }
            let task = tokio::spawn(tail(
                state.clone(),
                principal.tenant_id.clone(),
                session_id,
                // Nothing of the session precedes its creation: the replay starts there at
                // the earliest instead of reading the whole log before it.
                from_lsn.max(found.created_lsn),
                queue.clone(),
                closer.clone(),
            ));
            subscriptions.insert(session_id, task);
        }
        Some("unsubscribe") => {
            if let Some(task) = session().and_then(|s| subscriptions.remove(&s)) {
                task.abort();
            }
        }
        Some("submit_intent") => {
            if let Err(e) = state.rate_limit(&principal.tenant_id) {
                return reply(error(request_id, e.code, &e.message));
            }
            let outcome = match serde_json::from_value::<IntentBody>(message.clone()) {
                Err(e) => Err(AppError::bad_request(format!("invalid intent: {e}"))),
                Ok(body) => match body.into_command(principal) {
                    Err(e) => Err(e),
                    Ok(command) => state
                        .runtime
                        .submit_intent(command)
                        .await
                        .map_err(AppError::from),
                },
            };
            match outcome {
                Ok(submitted) => reply(
                    json!({
                        "type": "ack",
                        "request_id": request_id,
                        "execution_id": submitted.execution_id.to_string(),
                        "lsn": submitted.lsn,
                    })
                    .to_string(),
                ),
                Err(e) => reply(error(request_id, e.code, &e.message)),
            }
        }
        _ => reply(error(request_id, "invalid_request", "unknown message type")),
    }
}

/// Streams one session's events from `from_lsn`, then live, into the connection's queue.
async fn tail(
    state: Arc<AppState>,
    tenant: String,
    session_id: Id,
    from_lsn: u64,
    queue: mpsc::Sender<String>,
    closer: Closer,
) {
    let mut cursor = state.wal.cursor(from_lsn);
    // Held for as long as the client stays: forgets each execution at its saga's end.
    let mut index = SessionIndex::following();
    let mut durable = state.wal.subscribe();
    let session_text = session_id.to_string();
    loop {
        let mut batch = Vec::new();
        let mut broken = None;
        let read = cursor.visit(
            TAIL_BATCH_RECORDS,
            |lsn, meta, payload| match codec::decode(meta, payload) {
                Ok(event) => {
                    if let Some(v) =
                        session_event(&state, &mut index, lsn, &event, &tenant, session_id)
                    {
                        batch.push(v);
                    }
                }
                Err(e) => broken = Some(e.to_string()),
            },
        );
        let seen = match (read, broken) {
            (Ok(seen), None) => seen,
            (Err(e), _) => {
                let _ = queue.try_send(error(
                    None,
                    "internal",
                    &format!("reading the log failed: {e}"),
                ));
                return;
            }
            (_, Some(e)) => {
                let _ = queue.try_send(error(None, "internal", &format!("undecodable event: {e}")));
                return;
            }
        };
        for event in batch {
            let mut message = json!({
                "type": "event",
                "session_id": session_text,
                "lsn": event["lsn"],
                "event_type": event["event_type"],
                "data": event["data"],
                "timestamp": event["timestamp"],
            });
            if let Some(execution) = event.get("execution_id") {
                message["execution_id"] = execution.clone();
            }
            // Wait while the client drains (catch-up bursts are normal); a queue that stays
            // full past the grace period means the client is too slow.
            let grace = std::time::Duration::from_millis(state.limits.ws_slow_client_ms);
            match tokio::time::timeout(grace, queue.send(message.to_string())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    let _ = closer.send(Some((
                        CLOSE_TOO_SLOW,
                        "client too slow; resume with from_lsn",
                    )));
                    return;
                }
            }
        }
        if seen == 0 && durable.changed().await.is_err() {
            return;
        }
    }
}
