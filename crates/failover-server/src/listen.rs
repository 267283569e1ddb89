//! The HTTP/1.1 accept loop and the drain.
//!
//! Our own loop over hyper rather than `axum::serve`, for what a gateway facing the internet
//! needs: a header-read time-out (a slow-loris client is dropped), and a graceful shutdown
//! that lets requests in flight finish up to a deadline and then tells open streams,
//! instead of cutting them silently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Starts a drain: `/readyz` turns 503 at once, the listener closes, requests in flight
/// finish up to the drain deadline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    state: Arc<AppState>,
    stop: CancellationToken,
}

impl ShutdownHandle {
    pub(crate) fn new(state: Arc<AppState>, stop: CancellationToken) -> Self {
        Self { state, stop }
    }

    /// Begins the drain (idempotent).
    pub fn drain(&self) {
        self.state.drain.begin();
        self.stop.cancel();
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    state: Arc<AppState>,
    stop: CancellationToken,
) -> DrainReport {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_timeout())
        .keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small SSE frames must leave at once, not wait for Nagle.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "TCP_NODELAY not set");
                    }
                    let service = TowerToHyperService::new(router.clone());
                    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
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
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    let closed = graceful.shutdown();
    tokio::pin!(closed);
    let mut cut = false;
    let mut all_closed = true;
    tokio::select! {
        () = &mut closed => {}
        () = tokio::time::sleep(state.limits.drain_timeout()) => {
            cut = true;
            state.drain.cut_now();
            all_closed = tokio::time::timeout(CUT_GRACE, &mut closed).await.is_ok();
        }
    }
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

/// Binds `addr`.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
