//! The request's one deadline, shared by every step: layers deciding, waiting for a
//! coalesced answer, and every provider attempt (each gets the time left, not a fresh
//! budget). Everything here uses tokio's clock, so the checks and the time-outs agree, also
//! under a paused test clock.

use std::time::Instant;

use failover_provider::{ErrorKind, ProviderError};

/// The provider code marking a time-out that is the request's own deadline running out,
/// not the provider's slowness.
const REQUEST_DEADLINE_CODE: &str = "request_deadline";

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

/// Runs a provider call until `deadline`; running out is an [`ErrorKind::Timeout`] marked
/// as the request's own (see [`is_request_deadline`]).
pub(crate) async fn before_deadline<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    within(deadline, call).await.unwrap_or_else(|| {
        Err(
            ProviderError::new(ErrorKind::Timeout, "the request's deadline passed")
                .with_provider_code(REQUEST_DEADLINE_CODE),
        )
    })
}

/// Whether `error` is the request's deadline running out (made by [`before_deadline`]).
pub(crate) fn is_request_deadline(error: &ProviderError) -> bool {
    error.kind() == ErrorKind::Timeout && error.provider_code() == Some(REQUEST_DEADLINE_CODE)
}
