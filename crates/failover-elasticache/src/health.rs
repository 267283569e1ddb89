//! Counters for [`Cache::health`](failover_cache::Cache::health) and the one-line-per-state-change
//! log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use failover_cache::{CacheError, CacheErrorKind, CacheHealth};

/// Counters beyond [`CacheHealth`]: what this backend saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ElastiCacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found nothing (rejected and unknown-version values included).
    pub misses: u64,
    /// Operations that failed (time-outs not included).
    pub errors: u64,
    /// Operations that ran out of their time.
    pub timeouts: u64,
    /// Stored values that failed to open for their key (another key's or another tenant's
    /// value, tampered, truncated) and were deleted.
    pub rejected: u64,
    /// Stored values that did not open but were kept (read as misses): sealed with a key
    /// this cache does not hold (a replica on a newer key), or any value that failed to
    /// open while a key rotation is configured (more than one key).
    pub kept_unopened: u64,
    /// Stored values in a format this build does not know (left in place, read as misses).
    pub unknown_version: u64,
    /// Connections replaced because the server answered `READONLY` (a failed-over primary).
    pub reconnects: u64,
}

#[derive(Debug)]
pub(crate) struct Health {
    available: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    rejected: AtomicU64,
    kept_unopened: AtomicU64,
    unknown_version: AtomicU64,
    /// What the last failed operation said, while the server is unavailable.
    last_failure: std::sync::Mutex<Option<String>>,
    reconnects: AtomicU64,
    endpoint: String,
}

impl Health {
    pub(crate) fn new(endpoint: String) -> Self {
        Self {
            available: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            kept_unopened: AtomicU64::new(0),
            unknown_version: AtomicU64::new(0),
            last_failure: std::sync::Mutex::new(None),
            reconnects: AtomicU64::new(0),
            endpoint,
        }
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn kept_unopened(&self) {
        self.kept_unopened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unknown_version(&self) {
        self.unknown_version.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// An operation succeeded: logs once when the server comes back.
    pub(crate) fn ok(&self) {
        if !self.available.swap(true, Ordering::Relaxed) {
            tracing::info!(
                endpoint = %self.endpoint,
                "elasticache cache reachable again"
            );
        }
    }

    /// An operation failed: counts it, and logs once when the server goes away.
    pub(crate) fn failed(&self, error: &CacheError) {
        let counter = if error.kind == CacheErrorKind::Timeout {
            &self.timeouts
        } else {
            &self.errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let what = if error.kind == CacheErrorKind::Timeout {
            "redis is not answering in time"
        } else {
            "redis is unreachable"
        };
        *self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(format!("{what}: {}", error.message));
        if self.available.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                endpoint = %self.endpoint,
                error = %error,
                "elasticache cache unavailable; requests go on without it"
            );
        }
    }

    /// `Some(reason)` while the last operation failed (unreachable, or timing out);
    /// `None` once one succeeds again.
    fn degraded(&self) -> Option<String> {
        if self.available.load(Ordering::Relaxed) {
            return None;
        }
        Some(
            self.last_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "redis is unavailable".to_owned()),
        )
    }

    pub(crate) fn report(&self, backend: &str) -> CacheHealth {
        CacheHealth {
            backend: backend.to_owned(),
            degraded: self.degraded(),
            available: self.available.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            entries: None,
        }
    }

    pub(crate) fn stats(&self) -> ElastiCacheStats {
        ElastiCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            kept_unopened: self.kept_unopened.load(Ordering::Relaxed),
            unknown_version: self.unknown_version.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}
