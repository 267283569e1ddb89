//! The cache as the adapter uses it: every operation time-boxed, and every error a miss.
//! (Not a request layer: where the cache sits in the order is in [`crate::layers`].)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use failover_cache::{Cache, CacheHealth, CacheKey, CacheKeyInput, CachedCompletion, KeyDeriver};
use failover_provider::CompletionRequest;
use failover_telemetry::names::{label, metric, span, value};
use metrics::Counter;
use serde::Serialize;
use tracing::Instrument;
use tracing::field::Empty;

/// The cache's part of the health report: the backend's own counters and the adapter's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheReport {
    /// The backend's counters.
    pub backend: CacheHealth,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing (errors and time-outs included).
    pub misses: u64,
    /// Lookups or writes that failed.
    pub errors: u64,
    /// Lookups or writes that ran out of their budget.
    pub timeouts: u64,
    /// Requests answered by an identical request that was in flight (no provider call of
    /// their own); also counted as misses, since the cache did not have the answer.
    pub coalesced: u64,
    /// Whether the last operation succeeded.
    pub available: bool,
}

/// A cache lookup failed or ran out of its budget (already counted and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheUnavailable;

/// A [`Cache`] with a time budget per operation and the counters of the health report.
#[derive(Debug)]
pub(crate) struct TimeBoxedCache {
    cache: Arc<dyn Cache>,
    deriver: KeyDeriver,
    ttl: Duration,
    lookup_budget: Duration,
    write_budget: Duration,
    available: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    coalesced: AtomicU64,
    metrics: CacheMetrics,
}

/// The cache's metric handles, registered with the recorder when the adapter is built.
#[derive(Debug)]
struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    lookup_errors: Counter,
    store_errors: Counter,
    lookup_timeouts: Counter,
    store_timeouts: Counter,
    coalesced: Counter,
}

impl CacheMetrics {
    fn new() -> Self {
        Self {
            hits: metrics::counter!(metric::CACHE_HITS),
            misses: metrics::counter!(metric::CACHE_MISSES),
            lookup_errors: metrics::counter!(metric::CACHE_ERRORS, label::CACHE_OPERATION => value::LOOKUP),
            store_errors: metrics::counter!(metric::CACHE_ERRORS, label::CACHE_OPERATION => value::STORE),
            lookup_timeouts: metrics::counter!(metric::CACHE_TIMEOUTS, label::CACHE_OPERATION => value::LOOKUP),
            store_timeouts: metrics::counter!(metric::CACHE_TIMEOUTS, label::CACHE_OPERATION => value::STORE),
            coalesced: metrics::counter!(metric::COALESCED),
        }
    }
}

impl TimeBoxedCache {
    pub(crate) fn new(
        cache: Arc<dyn Cache>,
        deriver: KeyDeriver,
        ttl: Duration,
        lookup_budget: Duration,
        write_budget: Duration,
    ) -> Self {
        Self {
            cache,
            deriver,
            ttl,
            lookup_budget,
            write_budget,
            available: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            metrics: CacheMetrics::new(),
        }
    }

    pub(crate) fn key(
        &self,
        request: &CompletionRequest,
        messages: &[failover_provider::Message],
    ) -> CacheKey {
        self.deriver.derive(&CacheKeyInput {
            tenant_id: &request.tenant_id,
            model: &request.model,
            messages,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            stop: &request.stop,
            response_format: &request.response_format,
            tools: &request.tools,
            sampling: &request.sampling,
        })
    }

    /// Looks `key` up within the lookup budget. An error or time-out counts as a miss and
    /// is reported as [`CacheUnavailable`], so the caller can skip its write.
    pub(crate) async fn lookup(
        &self,
        key: &CacheKey,
    ) -> Result<Option<CachedCompletion>, CacheUnavailable> {
        let span = tracing::debug_span!(
            span::CACHE_LOOKUP,
            failover.cache = self.cache.name(),
            failover.cache.result = Empty
        );
        let lookup = tokio::time::timeout(self.lookup_budget, self.cache.get(key));
        let (result, outcome) = match lookup.instrument(span.clone()).await {
            Ok(Ok(found)) => {
                self.mark_available();
                let outcome = if found.is_some() { "hit" } else { "miss" };
                (Ok(found), outcome)
            }
            Ok(Err(error)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.lookup_errors.increment(1);
                self.mark_unavailable(&error.to_string());
                (Err(CacheUnavailable), "error")
            }
            Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.metrics.lookup_timeouts.increment(1);
                self.mark_unavailable("lookup exceeded its time budget");
                (Err(CacheUnavailable), "timeout")
            }
        };
        span.record("failover.cache.result", outcome);
        if matches!(result, Ok(Some(_))) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.metrics.hits.increment(1);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.metrics.misses.increment(1);
        }
        result
    }

    /// Stores an answer within the write budget; a failure is logged, never raised.
    pub(crate) async fn store(&self, key: &CacheKey, value: CachedCompletion) {
        let span = tracing::debug_span!(
            span::CACHE_STORE,
            failover.cache = self.cache.name(),
            failover.cache.result = Empty
        );
        let write = tokio::time::timeout(self.write_budget, self.cache.put(key, value, self.ttl));
        let outcome = match write.instrument(span.clone()).await {
            Ok(Ok(())) => {
                self.mark_available();
                "stored"
            }
            Ok(Err(error)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.store_errors.increment(1);
                self.mark_unavailable(&error.to_string());
                "error"
            }
            Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.metrics.store_timeouts.increment(1);
                self.mark_unavailable("write exceeded its time budget");
                "timeout"
            }
        };
        span.record("failover.cache.result", outcome);
    }

    /// Removes every cached answer of one tenant.
    pub(crate) async fn purge_tenant(
        &self,
        tenant_id: &str,
    ) -> Result<u64, failover_cache::CacheError> {
        self.cache
            .purge_tenant(&self.deriver.tenant_tag(tenant_id))
            .await
    }

    pub(crate) fn count_coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
        self.metrics.coalesced.increment(1);
    }

    // One log line per change of state, not one per request: a cache outage under load
    // must not flood the logs.
    fn mark_unavailable(&self, reason: &str) {
        if self.available.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                cache = self.cache.name(),
                reason,
                "cache unavailable; serving without it"
            );
        }
    }

    fn mark_available(&self) {
        if !self.available.swap(true, Ordering::Relaxed) {
            tracing::info!(cache = self.cache.name(), "cache available again");
        }
    }

    pub(crate) fn report(&self) -> CacheReport {
        CacheReport {
            backend: self.cache.health(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            available: self.available.load(Ordering::Relaxed),
        }
    }
}
