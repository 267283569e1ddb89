//! The permit a breaker hands out for one call.

use std::sync::Arc;

use crate::Outcome;

/// Identifies one issued permit to the breaker that issued it.
///
/// Breakers stamp the generation they were in when they issued the permit, so that an
/// outcome arriving after a transition can be recognised as late and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermitToken {
    /// The breaker's generation (incremented on every state transition) at issue time.
    pub generation: u64,
    /// Whether the permit is one of the bounded HALF_OPEN probes.
    pub probe: bool,
    /// A 64-bit hash of the tenant the permit was issued for
    /// ([`Breaker::try_acquire_for`](crate::Breaker::try_acquire_for)); `0` for an anonymous
    /// caller, or when the breaker does not cap tenants.
    pub tenant: u64,
}

/// Where a [`Permit`] reports its outcome: implemented by breakers.
pub trait PermitSink: Send + Sync {
    /// Records the outcome of the call made under `token`. Called exactly once per permit.
    fn complete(&self, token: PermitToken, outcome: Outcome);
}

/// Leave to make one call. Report how it ended with [`Permit::record`]; dropping it
/// unreported counts as [`Outcome::Ignored`] (the call was cancelled), which releases a
/// half-open probe slot without judging the provider.
#[must_use = "a permit must be recorded or dropped once the call ends"]
pub struct Permit {
    sink: Option<Arc<dyn PermitSink>>,
    token: PermitToken,
}

impl Permit {
    /// A permit that reports to `sink`. Called by breaker implementations.
    pub fn new(sink: Arc<dyn PermitSink>, token: PermitToken) -> Self {
        Self {
            sink: Some(sink),
            token,
        }
    }

    /// A permit that reports nowhere (for a disabled breaker).
    pub fn detached() -> Self {
        Self {
            sink: None,
            token: PermitToken {
                generation: 0,
                probe: false,
                tenant: 0,
            },
        }
    }

    /// The token this permit carries.
    pub fn token(&self) -> PermitToken {
        self.token
    }

    /// Reports the outcome of the call and consumes the permit.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(sink) = self.sink.take() {
            sink.complete(self.token, outcome);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.complete(self.token, Outcome::Ignored);
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}
