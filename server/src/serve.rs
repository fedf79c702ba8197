//! The connection loop: the router served on hyper's HTTP/1 with the two limits `axum::serve`
//! cannot set. A request's headers must arrive within `header_read_timeout_ms` (hyper's header
//! timer, which also closes a keep-alive connection that sends no next request): without it a
//! client that sends half a request line holds its connection, and the file descriptor,
//! forever. And at most `connections_max` connections are open at once: at the cap the loop
//! stops accepting (the kernel's backlog holds newcomers) until one closes, instead of taking
//! descriptors until `accept` fails. A WebSocket leaves this count when it is upgraded (its own
//! limit is `ws_connections_max`).
//!
//! Shutdown: stop accepting, ask every connection to finish its request in flight and close,
//! and return once all have.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// After a failed `accept` (out of descriptors, say), the loop waits this long before the next.
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Descriptors the process needs besides its connections: the log's segments, the graph
/// view's files, snapshots, blobs, Redis, the listener.
pub const FILES_RESERVED: usize = 256;

/// The process's open-file limit (the soft one), from `/proc/self/limits`, if it says.
pub fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit of the "Max open files" line of a `/proc/PID/limits` text; `None` when
/// absent or "unlimited".
fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A warning to log when `connections` (HTTP and WebSocket together) and the
/// [`FILES_RESERVED`] descriptors do not fit the open-file `limit`: at that point `accept`
/// fails with "too many open files" before the connection cap is reached.
pub fn files_warning(connections: usize, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    let needed = connections.saturating_add(FILES_RESERVED) as u64;
    (needed > limit).then(|| {
        format!(
            "the open-file limit ({limit}) is below the connections allowed plus {FILES_RESERVED} \
             for the log and views ({needed}): raise `ulimit -n` or lower --connections-max"
        )
    })
}

/// The connection loop's slots: one per open connection, at most `max`. The count of open
/// connections is read off it (the metrics), not kept beside it.
#[derive(Clone, Debug)]
pub struct ConnectionSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionSlots {
    /// Slots for `max` connections (at least one, at most `u32::MAX`).
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, u32::MAX as usize);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Connections open now (all of them once a shutdown drained them, which holds every
    /// slot).
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

/// Serves `router` on `listener` until `stop` completes, then drains (see the module's doc).
/// Each connection holds one of `slots` while it lives; a request's headers must arrive
/// within `header_read_timeout`, counted from when the connection is ready to read them (its
/// start, or the end of the previous response).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    slots: ConnectionSlots,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let ConnectionSlots { slots: open, max } = slots;
    let (closing, closed) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    tokio::pin!(stop);
    let mut at_cap = false;
    loop {
        // A free slot first, then the next connection: at the cap, nothing is accepted.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        if open.available_permits() == 0 && !at_cap {
            tracing::warn!(
                connections_max = max,
                "open connections reached their limit; new ones wait until one closes"
            );
        }
        at_cap = open.available_permits() == 0;
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|request: hyper::Request<Incoming>| request.map(Body::new)),
        );
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = closed.wait_for(|closing| *closing) => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection gives its slot back when it ends.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = open.acquire_many(all).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The soft limit is read from the kernel's table; an unlimited or missing line says
    // nothing; a warning comes only when the connections and the reserve do not fit.
    #[test]
    fn the_open_file_limit_is_read_and_checked() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95473                95473                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert_eq!(
            parse_open_files_limit("Max processes 10 10 processes\n"),
            None
        );
        let warning = files_warning(4_096 + 1_024, Some(1024)).expect("does not fit");
        assert!(
            warning.contains("1024") && warning.contains("5376"),
            "{warning}"
        );
        assert_eq!(files_warning(4_096 + 1_024, Some(20_000)), None);
        assert_eq!(files_warning(4_096, None), None);
    }
}
