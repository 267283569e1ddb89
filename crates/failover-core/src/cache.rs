//! The cache as the adapter uses it: every operation time-boxed, and every error a miss.
//! (Not a request layer: where the cache sits in the order is in [`crate::layers`].)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use failover_cache::{Cache, CacheHealth, CacheKey, CacheKeyInput, CachedCompletion, KeyDeriver};
use failover_provider::CompletionRequest;
use serde::Serialize;

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
        })
    }

    /// Looks `key` up within the lookup budget. An error or time-out counts as a miss and
    /// is reported as [`CacheUnavailable`], so the caller can skip its write.
    pub(crate) async fn lookup(
        &self,
        key: &CacheKey,
    ) -> Result<Option<CachedCompletion>, CacheUnavailable> {
        let result = match tokio::time::timeout(self.lookup_budget, self.cache.get(key)).await {
            Ok(Ok(found)) => {
                self.mark_available();
                Ok(found)
            }
            Ok(Err(error)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.mark_unavailable(&error.to_string());
                Err(CacheUnavailable)
            }
            Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.mark_unavailable("lookup exceeded its time budget");
                Err(CacheUnavailable)
            }
        };
        let counter = if matches!(result, Ok(Some(_))) {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Stores an answer within the write budget; a failure is logged, never raised.
    pub(crate) async fn store(&self, key: &CacheKey, value: CachedCompletion) {
        match tokio::time::timeout(self.write_budget, self.cache.put(key, value, self.ttl)).await {
            Ok(Ok(())) => self.mark_available(),
            Ok(Err(error)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.mark_unavailable(&error.to_string());
            }
            Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.mark_unavailable("write exceeded its time budget");
            }
        }
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
