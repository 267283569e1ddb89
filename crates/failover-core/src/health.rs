//! The health report: every breaker, the cache and the usage sink.

use failover_breaker::{BreakerSnapshot, BreakerState};
use failover_provider::Capabilities;
use failover_usage::SinkHealth;
use serde::Serialize;

use crate::cache::CacheReport;

/// Overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Every breaker admits calls.
    Healthy,
    /// Some provider is unavailable, but at least one admits calls.
    Degraded,
    /// No provider admits calls.
    Unhealthy,
}

/// One provider's health.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderHealth {
    /// The provider's name.
    pub name: String,
    /// What it declares it can do.
    pub capabilities: Capabilities,
    /// Its breaker (the seed's `circuit_breaker_state` is `breaker.state`).
    pub breaker: BreakerSnapshot,
}

/// What [`FailoverAdapter::health`](crate::FailoverAdapter::health) reports.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Overall status, derived from the breakers.
    pub status: HealthStatus,
    /// Every provider, in chain order.
    pub providers: Vec<ProviderHealth>,
    /// The cache, when one is configured.
    pub cache: Option<CacheReport>,
    /// The usage sink.
    pub usage: SinkHealth,
    /// Usage records the sink refused (each one logged).
    pub usage_records_refused: u64,
}

impl HealthReport {
    pub(crate) fn new(
        providers: Vec<ProviderHealth>,
        cache: Option<CacheReport>,
        usage: SinkHealth,
        usage_records_refused: u64,
    ) -> Self {
        let admitting = providers.iter().filter(|p| admits(p.breaker.state)).count();
        let status = if admitting == providers.len() {
            HealthStatus::Healthy
        } else if admitting > 0 {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        Self {
            status,
            providers,
            cache,
            usage,
            usage_records_refused,
        }
    }

    /// One provider's health by name.
    pub fn provider(&self, name: &str) -> Option<&ProviderHealth> {
        self.providers.iter().find(|p| p.name == name)
    }
}

fn admits(state: BreakerState) -> bool {
    !matches!(state, BreakerState::Open | BreakerState::ForcedOpen)
}
