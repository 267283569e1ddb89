//! The request's one deadline, and how it is shared along the chain.
//!
//! Every step spends the same deadline: layers deciding, waiting for a coalesced answer,
//! and the provider calls. A call that a later provider could still take over from gets
//! only a share of the time left ([`AdapterConfig::attempt_share`]), so a hung primary
//! leaves the fallback time to answer; running past that share is the provider's own
//! time-out ([`ProviderError::attempt_deadline`]), which counts against its breaker. Only
//! the request's own deadline is the caller's ([`ProviderError::request_deadline`]), which
//! judges no provider. Everything here uses tokio's clock, so the checks and the time-outs
//! agree, also under a paused test clock.
//!
//! [`AdapterConfig::attempt_share`]: crate::AdapterConfig::attempt_share

use std::time::Instant;

use failover_provider::{CallDeadlines, ProviderError, ProviderRequest};

/// Whether `deadline` has passed.
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| {
        tokio::time::Instant::now() >= tokio::time::Instant::from_std(deadline)
    })
}

/// Runs `work` until `deadline`; `None` when the deadline came first.
pub(crate) async fn within<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Option<T> {
    match deadline {
        None => Some(work.await),
        Some(deadline) => tokio::time::timeout_at(deadline.into(), work).await.ok(),
    }
}

/// The time limits of one provider call, taken from its request before the request is
/// handed to the provider.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLimits(CallDeadlines);

impl CallLimits {
    pub(crate) fn of(request: &ProviderRequest) -> Self {
        Self(request.deadlines())
    }

    /// Runs a provider call until the call deadline; running out is the request's
    /// deadline when that has passed, else the provider's time-out for its share — the
    /// providers' own rule ([`CallDeadlines::out_of_time`]), judged on tokio's clock.
    pub(crate) async fn run<T>(
        self,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        within(self.0.call_deadline(), call)
            .await
            .unwrap_or_else(|| {
                Err(self
                    .0
                    .out_of_time_at(tokio::time::Instant::now().into_std()))
            })
    }
}

/// The share of the time left before `deadline` a call gets when a later provider could
/// still answer: it must end by the returned instant.
pub(crate) fn share_of(deadline: Instant, share: f64) -> Instant {
    let now = tokio::time::Instant::now().into_std();
    let left = deadline.saturating_duration_since(now);
    now + left.mul_f64(share.clamp(0.0, 1.0))
}

/// Runs a provider call until the request's own deadline (a committed stream, which no
/// other provider can take over any more).
pub(crate) async fn before_deadline<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    within(deadline, call)
        .await
        .unwrap_or_else(|| Err(ProviderError::request_deadline()))
}
