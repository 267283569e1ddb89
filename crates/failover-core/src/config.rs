//! Adapter settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::Limits;

/// Settings of a [`FailoverAdapter`](crate::FailoverAdapter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AdapterConfig {
    /// How long a cached answer lives.
    pub cache_ttl: Duration,
    /// The most time a cache lookup may take; past it the lookup is a miss.
    pub cache_lookup_budget: Duration,
    /// The most time a cache write may take; past it the write is abandoned.
    pub cache_write_budget: Duration,
    /// Whether a cache hit writes a usage record (the seed does not: "no usage logged").
    pub record_cache_hits: bool,
    /// The deadline of a request that states none.
    pub default_timeout: Option<Duration>,
    /// Request limits.
    pub limits: Limits,
    /// The share of the time left before a request's deadline that a provider call gets
    /// when a later provider of the chain could still answer (`0.0 < share <= 1.0`). Past
    /// its share the call is abandoned as the provider's time-out (counted by its breaker)
    /// and the next provider gets the rest; the last candidate gets all that is left. With
    /// two providers and the default 0.5, a hung primary fails over half-way to the
    /// deadline. Requests without a deadline are bounded by the providers' own time-outs.
    pub attempt_share: f64,
    /// Whether a route may target a model without a price (its cost then reads as zero).
    /// Off by default: an unpriced model is a billing hole, refused when the adapter is built.
    pub allow_unpriced_models: bool,
    /// How many distinct tenants get their own `failover.tenant` label on the request and
    /// cost metrics; later tenants share the value `_other`. 0 (the default) leaves the
    /// tenant out of metrics altogether: each labelled tenant multiplies the series kept by
    /// the metrics backend, so the bound is what keeps a flood of tenant ids from becoming
    /// its outage. Spans always carry the tenant.
    pub metrics_tenant_limit: usize,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(3600),
            cache_lookup_budget: Duration::from_millis(50),
            cache_write_budget: Duration::from_millis(50),
            record_cache_hits: false,
            default_timeout: Some(Duration::from_secs(120)),
            limits: Limits::default(),
            allow_unpriced_models: false,
            attempt_share: 0.5,
            metrics_tenant_limit: 0,
        }
    }
}

impl AdapterConfig {
    /// Sets the cache TTL.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets the cache lookup budget.
    pub fn with_cache_lookup_budget(mut self, budget: Duration) -> Self {
        self.cache_lookup_budget = budget;
        self
    }

    /// Sets the cache write budget.
    pub fn with_cache_write_budget(mut self, budget: Duration) -> Self {
        self.cache_write_budget = budget;
        self
    }

    /// Sets whether cache hits are recorded as usage.
    pub fn with_record_cache_hits(mut self, record: bool) -> Self {
        self.record_cache_hits = record;
        self
    }

    /// Sets the default request timeout.
    pub fn with_default_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Sets the request limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the share of the time left a call gets when a later provider could answer.
    pub fn with_attempt_share(mut self, share: f64) -> Self {
        self.attempt_share = share;
        self
    }

    /// Sets how many distinct tenants get their own metrics label (0: no tenant label).
    pub fn with_metrics_tenant_limit(mut self, limit: usize) -> Self {
        self.metrics_tenant_limit = limit;
        self
    }

    /// Allows routes to unpriced models.
    pub fn with_allow_unpriced_models(mut self, allow: bool) -> Self {
        self.allow_unpriced_models = allow;
        self
    }
}
