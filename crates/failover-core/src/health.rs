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
    /// Every breaker admits calls, and the cache and the ledger work.
    Healthy,
    /// Requests are served, but not everything works: a provider is unavailable (at least
    /// one admits calls), or the cache or the ledger is degraded (see
    /// [`HealthReport::problems`]).
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
    /// Why the status is not healthy, one line each (a breaker open, a provider needing an
    /// operator, the cache unreachable, usage spilled); empty when healthy.
    pub problems: Vec<String>,
}

impl HealthReport {
    pub(crate) fn new(
        providers: Vec<ProviderHealth>,
        cache: Option<CacheReport>,
        usage: SinkHealth,
        usage_records_refused: u64,
    ) -> Self {
        let mut problems = Vec::new();
        for provider in &providers {
            if provider.breaker.needs_operator {
                problems.push(format!(
                    "{}: needs an operator ({}): held open until the configuration is fixed \
                     or the breaker is reset",
                    provider.name,
                    provider
                        .breaker
                        .needs_operator_kind
                        .unwrap_or("configuration fault")
                ));
            } else if !admits(provider.breaker.state) {
                problems.push(format!(
                    "{}: circuit breaker {}{}",
                    provider.name,
                    provider.breaker.state,
                    provider
                        .breaker
                        .last_error_kind
                        .map(|kind| format!(" (last error: {kind})"))
                        .unwrap_or_default()
                ));
            }
        }
        if let Some(cache) = &cache {
            if let Some(reason) = &cache.backend.degraded {
                problems.push(format!("cache: {reason}"));
            } else if !cache.available {
                problems.push("cache: its last operation failed or timed out".to_owned());
            }
        }
        if let Some(reason) = &usage.degraded {
            problems.push(format!("usage ledger: {reason}"));
        }
        if usage_records_refused > 0 {
            problems.push(format!(
                "usage ledger: {usage_records_refused} records refused by the sink"
            ));
        }
        let admitting = providers.iter().filter(|p| admits(p.breaker.state)).count();
        let status = if admitting == 0 {
            HealthStatus::Unhealthy
        } else if problems.is_empty() {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        Self {
            status,
            providers,
            cache,
            usage,
            usage_records_refused,
            problems,
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
