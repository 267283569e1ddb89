//! Backends that fail on purpose: for proving the adapter treats them as normal weather.

use std::time::Duration;

use failover_cache::{
    Cache, CacheError, CacheErrorKind, CacheHealth, CacheKey, CachedCompletion, TenantTag,
};

/// How a [`BrokenCache`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFault {
    /// Every operation fails at once, as with a refused connection.
    Unavailable,
    /// Every operation waits this long before failing, as with a black-holed endpoint.
    Hang(Duration),
}

/// A cache whose every operation fails the configured way.
#[derive(Debug, Clone)]
pub struct BrokenCache {
    fault: CacheFault,
}

impl BrokenCache {
    /// A cache with `fault`.
    pub fn new(fault: CacheFault) -> Self {
        Self { fault }
    }

    async fn fail<T>(&self) -> Result<T, CacheError> {
        match self.fault {
            CacheFault::Unavailable => Err(CacheError::new(
                CacheErrorKind::Unavailable,
                "connection refused",
            )),
            CacheFault::Hang(wait) => {
                tokio::time::sleep(wait).await;
                Err(CacheError::new(CacheErrorKind::Timeout, "no answer"))
            }
        }
    }
}

#[async_trait::async_trait]
impl Cache for BrokenCache {
    fn name(&self) -> &str {
        "broken"
    }

    async fn get(&self, _key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError> {
        self.fail().await
    }

    async fn put(
        &self,
        _key: &CacheKey,
        _value: CachedCompletion,
        _ttl: Duration,
    ) -> Result<(), CacheError> {
        self.fail().await
    }

    async fn purge_tenant(&self, _tenant: &TenantTag) -> Result<u64, CacheError> {
        self.fail().await
    }

    fn health(&self) -> CacheHealth {
        CacheHealth {
            backend: "broken".into(),
            available: false,
            ..CacheHealth::default()
        }
    }
}
