//! What every handler shares: the engine, the keys, the limits, the in-flight bound and
//! the drain state.

use std::sync::Arc;

use failover_core::FailoverAdapter;
use failover_telemetry::prometheus::PrometheusMetrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::auth::{KeyHash, Keys};
use crate::error::ApiError;
use crate::settings::Limits;

/// The shared state of one gateway.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) adapter: FailoverAdapter,
    pub(crate) keys: Keys,
    pub(crate) admin_key: Option<KeyHash>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Option<PrometheusMetrics>,
    pub(crate) drain: Drain,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    pub(crate) fn new(
        adapter: FailoverAdapter,
        keys: Keys,
        admin_key: Option<KeyHash>,
        limits: Limits,
        metrics: Option<PrometheusMetrics>,
    ) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            adapter,
            keys,
            admin_key,
            limits,
            metrics,
            drain: Drain::default(),
        }
    }

    /// A slot for one request, held until its answer (a stream's last byte) is sent; a 503
    /// with `Retry-After` when every slot is taken — shedding load rather than queueing it.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded(self.limits.max_in_flight))
    }

    /// Resolves once no request is being answered (every slot is back). Only meaningful
    /// while draining, when no new request takes a slot.
    pub(crate) async fn idle(&self) {
        let all = u32::try_from(self.limits.max_in_flight).unwrap_or(u32::MAX);
        // The semaphore is never closed, so acquiring can only wait.
        let _ = self.in_flight.acquire_many(all).await;
    }

    /// Requests being answered now.
    pub(crate) fn in_flight(&self) -> usize {
        self.limits.max_in_flight - self.in_flight.available_permits()
    }
}

/// The drain: set when shutdown begins (`/readyz` turns 503 at once); cut when its deadline
/// passes (open streams send the error frame, plain requests still waiting answer 503).
#[derive(Debug, Default)]
pub(crate) struct Drain {
    begun: CancellationToken,
    cut: CancellationToken,
}

impl Drain {
    /// Begins the drain (idempotent).
    pub(crate) fn begin(&self) {
        self.begun.cancel();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.begun.is_cancelled()
    }

    /// Resolves when the drain begins.
    pub(crate) async fn begun(&self) {
        self.begun.cancelled().await;
    }

    pub(crate) fn cut_now(&self) {
        self.cut.cancel();
    }

    /// Resolves when the drain deadline has passed.
    pub(crate) fn cut(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.cut.clone().cancelled_owned()
    }
}
