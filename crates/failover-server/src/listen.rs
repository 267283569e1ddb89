//! The HTTP/1.1 accept loop and the drain.
//!
//! Our own loop over hyper rather than `axum::serve`, for what a gateway facing the internet
//! needs: a header-read time-out (a slow-loris client is dropped), and a graceful shutdown
//! that lets requests in flight finish up to a deadline and then tells open streams,
//! instead of cutting them silently.
//!
//! The drain: `/readyz` and new chat requests answer 503 at once (the listener and the
//! open connections stay open so a load balancer and a pooled client read that; a 503 of
//! the drain closes its connection); once no request is in flight — or at the drain
//! deadline, after the open streams have sent their error frame — the listener and the
//! idle connections close and the ledger is flushed.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// After the drain deadline, how long open streams have to send their error frame and
/// waiting requests their 503 before the connections are dropped.
const CUT_GRACE: Duration = Duration::from_secs(5);

/// How a drain ended.
#[derive(Debug)]
pub struct DrainReport {
    /// Whether requests were still in flight at the drain deadline (open streams then got
    /// the error frame).
    pub cut: bool,
    /// Whether every connection closed before the process may exit.
    pub all_closed: bool,
    /// The ledger's flush at shutdown: `Err` with why when usage could not be stored
    /// (the sink then spilled what it could durably).
    pub ledger: Result<(), String>,
}

/// Starts a drain: `/readyz` and new requests answer 503 at once, requests in flight
/// finish up to the drain deadline, then the listener closes and the ledger is flushed.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    state: Arc<AppState>,
}

impl ShutdownHandle {
    pub(crate) fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Begins the drain (idempotent).
    pub fn drain(&self) {
        self.state.drain.begin();
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    state: Arc<AppState>,
) -> DrainReport {
    let connections = TaskTracker::new();
    let mut serving = http1::Builder::new();
    serving
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_timeout())
        .keep_alive(true);
    // While draining, the listener stays open, so a load balancer's probe reads the 503 of
    // `/readyz` and a late request its 503 with `Retry-After`; each such connection closes
    // after one answer.
    let mut draining = serving.clone();
    draining.keep_alive(false);
    // Open connections stay open through the drain: a request on one is answered (a 503
    // that closes the connection while draining), where closing it under the client would
    // be a connection error. Once drained, the idle ones are closed.
    let closing = CancellationToken::new();
    let drained = drained(&state);
    tokio::pin!(drained);
    let cut = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small SSE frames must leave at once, not wait for Nagle.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "TCP_NODELAY not set");
                    }
                    let builder = if state.drain.is_draining() { &draining } else { &serving };
                    let service = TowerToHyperService::new(router.clone());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let closing = closing.clone();
                    connections.spawn(async move {
                        tokio::pin!(connection);
                        let ended = tokio::select! {
                            ended = connection.as_mut() => ended,
                            // Finish the request in progress, then close.
                            () = closing.cancelled() => {
                                connection.as_mut().graceful_shutdown();
                                connection.await
                            }
                        };
                        if let Err(error) = ended {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                // Out of file descriptors, or a connection reset before it was accepted:
                // the loop must outlive both.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            cut = &mut drained => break cut,
        }
    };
    drop(listener);
    closing.cancel();
    connections.close();
    let all_closed = tokio::time::timeout(CUT_GRACE, connections.wait())
        .await
        .is_ok();
    let ledger = state
        .adapter
        .shutdown()
        .await
        .map_err(|error| error.to_string());
    DrainReport {
        cut,
        all_closed,
        ledger,
    }
}

/// Resolves once a drain has begun and every request in flight has been answered — or,
/// at the drain deadline, once the rest have been told (streams their error frame, waiting
/// requests their 503). Its value: whether the deadline came first.
async fn drained(state: &AppState) -> bool {
    state.drain.begun().await;
    tokio::select! {
        () = state.idle() => false,
        () = tokio::time::sleep(state.limits.drain_timeout()) => {
            state.drain.cut_now();
            // Told, they end at once; the bound covers a client that stopped reading.
            let _ = tokio::time::timeout(CUT_GRACE, state.idle()).await;
            true
        }
    }
}
