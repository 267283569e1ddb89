//! The in-process cache: moka's concurrent future cache with a TTL per entry.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::{Cache, CacheError, CacheHealth, CacheKey, CachedCompletion, TenantTag};

/// Settings of a [`MemoryCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCacheConfig {
    /// The most entries held; beyond it moka evicts the least useful (TinyLFU).
    pub max_entries: u64,
    /// The most bytes held, by each entry's approximate size ([`entry_size`]: key, the
    /// strings of the answer, and a fixed overhead); beyond it moka evicts as for the
    /// entry count. Both bounds hold at once.
    pub max_bytes: u64,
    /// The longest time to live granted; a `put` asking for more is clamped to it.
    pub max_ttl: Duration,
}

impl MemoryCacheConfig {
    /// Defaults: 10 000 entries, 256 MiB, at most 24 hours per entry.
    pub fn new() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }

    /// Sets the entry bound.
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// Sets the byte bound.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The weight moka charges an entry of `size` bytes: its size, but at least an equal
    /// share of `max_bytes` per allowed entry, so that a total weight within `max_bytes`
    /// keeps both bounds — the entry count (every entry weighs at least
    /// `max_bytes / max_entries`) and the bytes (every entry weighs at least its size).
    fn weight(&self, size: u64) -> u32 {
        let share = self.max_bytes.div_ceil(self.max_entries.max(1));
        u32::try_from(size.max(share)).unwrap_or(u32::MAX)
    }

    /// Sets the longest time to live.
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The approximate bytes an entry takes in a [`MemoryCache`]: its key, the strings of the
/// answer (content, provider, model), and a fixed overhead for the rest (the struct, moka's
/// bookkeeping).
pub fn entry_size(value: &CachedCompletion) -> u64 {
    const OVERHEAD: usize = 256;
    (std::mem::size_of::<CacheKey>()
        + value.content.len()
        + value.provider.len()
        + value.model.len()
        + OVERHEAD) as u64
}

/// What moka stores: the value, the TTL it was put with, and when.
#[derive(Clone)]
struct Entry {
    value: Arc<CachedCompletion>,
    ttl: Duration,
    stored_at: Instant,
}

/// One live entry of a [`MemoryCache`], as [`MemoryCache::entries`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEntry {
    /// The entry's key (tenant tag and digest; no request text).
    pub key: CacheKey,
    /// The stored answer.
    pub value: CachedCompletion,
    /// The time to live left.
    pub ttl_left: Duration,
}

/// Expires each entry `ttl` after its latest `put`; reads do not extend it.
struct PerEntryTtl;

impl Expiry<CacheKey, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        // An overwrite starts a fresh TTL: the new value's own.
        Some(value.ttl)
    }
}

/// An in-process [`Cache`] on moka's concurrent cache.
///
/// - Bounded by entry count ([`MemoryCacheConfig::max_entries`]) and by bytes
///   ([`MemoryCacheConfig::max_bytes`], each entry weighed by [`entry_size`]); TinyLFU
///   eviction. An entry larger than `max_bytes` is not kept.
/// - Each entry lives for the TTL of its `put` (clamped to
///   [`MemoryCacheConfig::max_ttl`]); a `put` with a zero TTL removes the key. moka removes
///   expired entries lazily, but `get` never returns one.
/// - `purge_tenant` walks the entries and removes those whose key carries the tenant's
///   tag. That is O(entries), fine for a rare administrative call on a cache of this size,
///   and needs no secondary index that would have to be kept consistent with moka's
///   evictions and expiries. It returns the exact number of live entries it removed; an
///   entry put concurrently with the purge may survive it.
/// - Never fails: every method returns `Ok`.
/// - Clones share the same entries and counters.
#[derive(Clone)]
pub struct MemoryCache {
    inner: moka::future::Cache<CacheKey, Entry>,
    config: MemoryCacheConfig,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl MemoryCache {
    /// A cache with the default settings.
    pub fn new() -> Self {
        Self::with_config(MemoryCacheConfig::default())
    }

    /// A cache with the given settings.
    pub fn with_config(config: MemoryCacheConfig) -> Self {
        let weights = config.clone();
        let capacity = if config.max_entries == 0 {
            0
        } else {
            config.max_bytes
        };
        let inner = moka::future::Cache::builder()
            .name("failover-memory-cache")
            .weigher(move |_key: &CacheKey, entry: &Entry| weights.weight(entry_size(&entry.value)))
            .max_capacity(capacity)
            .expire_after(PerEntryTtl)
            .build();
        Self {
            inner,
            config,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &MemoryCacheConfig {
        &self.config
    }

    /// Entries held (approximate until moka's pending maintenance has run; expired
    /// entries count until they are swept).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// The total weight held, the measure [`MemoryCacheConfig::max_bytes`] bounds: each
    /// entry's [`entry_size`], or its share of the bytes when that is more (see
    /// [`MemoryCacheConfig::max_bytes`]). Approximate until pending maintenance has run.
    pub fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Every live entry with its time to live left, in no particular order: what the cache
    /// holds, for inspection (the scenario suite reads it back the way it reads Redis).
    /// O(entries); entries put or removed concurrently may or may not be listed.
    pub fn entries(&self) -> Vec<MemoryEntry> {
        self.inner
            .iter()
            .filter_map(|(key, entry)| {
                let ttl_left = entry.ttl.checked_sub(entry.stored_at.elapsed())?;
                (!ttl_left.is_zero()).then(|| MemoryEntry {
                    key: *key,
                    value: CachedCompletion::clone(&entry.value),
                    ttl_left,
                })
            })
            .collect()
    }

    /// Runs moka's pending maintenance (eviction, expiry sweeps) now; tests use it to
    /// make [`MemoryCache::entry_count`] exact.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("config", &self.config)
            .field("entries", &self.inner.entry_count())
            .field("hits", &self.counters.hits.load(Ordering::Relaxed))
            .field("misses", &self.counters.misses.load(Ordering::Relaxed))
            .finish()
    }
}

#[async_trait::async_trait]
impl Cache for MemoryCache {
    fn name(&self) -> &str {
        "memory"
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError> {
        match self.inner.get(key).await {
            Some(entry) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(CachedCompletion::clone(&entry.value)))
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    async fn put(
        &self,
        key: &CacheKey,
        value: CachedCompletion,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let ttl = ttl.min(self.config.max_ttl);
        if ttl.is_zero() {
            self.inner.invalidate(key).await;
            return Ok(());
        }
        let entry = Entry {
            value: Arc::new(value),
            ttl,
            stored_at: Instant::now(),
        };
        self.inner.insert(*key, entry).await;
        Ok(())
    }

    async fn purge_tenant(&self, tenant: &TenantTag) -> Result<u64, CacheError> {
        let doomed: Vec<CacheKey> = self
            .inner
            .iter()
            .filter(|(key, _)| key.tenant() == tenant)
            .map(|(key, _)| *key)
            .collect();
        let mut removed = 0;
        for key in doomed {
            if self.inner.remove(&key).await.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn health(&self) -> CacheHealth {
        CacheHealth {
            backend: "memory".to_owned(),
            available: true,
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            errors: 0,
            timeouts: 0,
            entries: Some(self.inner.entry_count()),
            degraded: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheKeyInput, KeyDeriver};
    use failover_provider::{FinishReason, Message, ResponseFormat, TokenUsage, Usd};

    fn key(deriver: &KeyDeriver, tenant: &str, prompt: &str) -> CacheKey {
        let messages = [Message::user(prompt)];
        deriver.derive(&CacheKeyInput {
            tenant_id: tenant,
            model: "gpt-4",
            messages: &messages,
            temperature: None,
            max_tokens: None,
            stop: &[],
            response_format: &ResponseFormat::Text,
            tools: &failover_provider::ToolConfig::NONE,
            sampling: &failover_provider::Sampling::NONE,
        })
    }

    fn value(content: &str) -> CachedCompletion {
        CachedCompletion {
            provider: "bedrock".into(),
            model: "m".into(),
            content: content.into(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: TokenUsage::new(1, 2),
            estimated_cost: Usd::ZERO,
            stored_at_unix_ms: 1,
        }
    }

    #[tokio::test]
    async fn entry_expires_after_its_ttl() {
        let cache = MemoryCache::new();
        let d = KeyDeriver::default();
        let short = key(&d, "t", "short");
        let long = key(&d, "t", "long");
        cache
            .put(&short, value("s"), Duration::from_millis(50))
            .await
            .unwrap();
        cache
            .put(&long, value("l"), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(cache.get(&short).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get(&short).await.unwrap(), None, "expired");
        assert_eq!(cache.get(&long).await.unwrap(), Some(value("l")));
    }

    #[tokio::test]
    async fn entries_lists_what_is_held_with_the_ttl_left() {
        let cache = MemoryCache::new();
        let d = KeyDeriver::default();
        let a = key(&d, "t", "a");
        let b = key(&d, "u", "b");
        assert!(cache.entries().is_empty());
        cache
            .put(&a, value("va"), Duration::from_secs(60))
            .await
            .unwrap();
        cache
            .put(&b, value("vb"), Duration::from_secs(3600))
            .await
            .unwrap();
        let mut entries = cache.entries();
        entries.sort_by_key(|entry| entry.ttl_left);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].key, &entries[0].value), (a, &value("va")));
        assert_eq!((entries[1].key, &entries[1].value), (b, &value("vb")));
        assert!(entries[0].ttl_left <= Duration::from_secs(60));
        assert!(entries[1].ttl_left > Duration::from_secs(60));
        // Removed entries are gone from the list.
        cache.put(&a, value("va"), Duration::ZERO).await.unwrap();
        assert_eq!(cache.entries().len(), 1);
    }

    #[tokio::test]
    async fn ttl_is_clamped_to_max_ttl() {
        let cache =
            MemoryCache::with_config(MemoryCacheConfig::new().max_ttl(Duration::from_millis(50)));
        let k = key(&KeyDeriver::default(), "t", "p");
        cache
            .put(&k, value("v"), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(cache.get(&k).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get(&k).await.unwrap(), None);
    }

    #[tokio::test]
    async fn overwrite_restarts_the_ttl_with_the_new_value() {
        let cache = MemoryCache::new();
        let k = key(&KeyDeriver::default(), "t", "p");
        cache
            .put(&k, value("old"), Duration::from_secs(60))
            .await
            .unwrap();
        cache
            .put(&k, value("new"), Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(cache.get(&k).await.unwrap(), Some(value("new")));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get(&k).await.unwrap(), None);
    }

    #[tokio::test]
    async fn zero_ttl_removes_the_key() {
        let cache = MemoryCache::new();
        let k = key(&KeyDeriver::default(), "t", "p");
        cache
            .put(&k, value("v"), Duration::from_secs(60))
            .await
            .unwrap();
        cache.put(&k, value("w"), Duration::ZERO).await.unwrap();
        assert_eq!(cache.get(&k).await.unwrap(), None);
    }

    #[tokio::test]
    async fn purge_counts_exactly_and_spares_other_tenants() {
        let cache = MemoryCache::new();
        let d = KeyDeriver::default();
        for i in 0..5 {
            let p = format!("p{i}");
            cache
                .put(&key(&d, "a", &p), value("a"), Duration::from_secs(60))
                .await
                .unwrap();
            cache
                .put(&key(&d, "b", &p), value("b"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(cache.purge_tenant(&d.tenant_tag("a")).await.unwrap(), 5);
        assert_eq!(cache.purge_tenant(&d.tenant_tag("a")).await.unwrap(), 0);
        cache.run_pending_tasks().await;
        assert_eq!(cache.entry_count(), 5);
        assert!(cache.get(&key(&d, "b", "p3")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn health_counts_hits_and_misses_and_debug_is_useful() {
        let cache = MemoryCache::new();
        let k = key(&KeyDeriver::default(), "t", "secret prompt text");
        assert_eq!(cache.get(&k).await.unwrap(), None);
        cache
            .put(&k, value("v"), Duration::from_secs(60))
            .await
            .unwrap();
        cache.get(&k).await.unwrap();
        cache.get(&k).await.unwrap();
        let health = cache.health();
        assert_eq!((health.hits, health.misses), (2, 1));
        assert!(health.available);
        assert_eq!(health.backend, "memory");
        let debug = format!("{cache:?}");
        assert!(debug.contains("hits: 2"), "{debug}");
        assert!(!debug.contains("secret prompt"), "{debug}");
    }

    #[tokio::test]
    async fn bounded_by_max_entries() {
        let cache = MemoryCache::with_config(MemoryCacheConfig::new().max_entries(10));
        let d = KeyDeriver::default();
        for i in 0..100 {
            cache
                .put(
                    &key(&d, "t", &i.to_string()),
                    value("v"),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
        }
        cache.run_pending_tasks().await;
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
    }

    #[test]
    fn a_process_local_cache_may_use_the_default_key() {
        let cache = MemoryCache::new();
        assert!(!cache.is_shared());
        crate::check_key_deriver(&cache, &KeyDeriver::default()).unwrap();
    }

    #[tokio::test]
    async fn bounded_by_bytes_as_well() {
        // Room for 1 000 small entries, but only ~100 KB: ten entries of 10 KB fill it.
        let cache = MemoryCache::with_config(
            MemoryCacheConfig::new()
                .max_entries(1_000)
                .max_bytes(100_000),
        );
        let d = KeyDeriver::default();
        let large = "x".repeat(10_000);
        for i in 0..50 {
            cache
                .put(
                    &key(&d, "t", &i.to_string()),
                    value(&large),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
            cache.run_pending_tasks().await;
        }
        let held = cache.entry_count();
        assert!(held <= 9, "{held} entries of 10 KB within 100 KB");
        assert!(held > 0);
        assert!(
            cache.weighted_size() <= 100_000,
            "{}",
            cache.weighted_size()
        );
        let bytes: u64 = cache.entries().iter().map(|e| entry_size(&e.value)).sum();
        assert!(bytes <= 100_000, "{bytes}");
        // Small entries are bounded by the count, not squeezed by the bytes.
        let small = MemoryCache::with_config(
            MemoryCacheConfig::new()
                .max_entries(20)
                .max_bytes(1_000_000),
        );
        for i in 0..100 {
            small
                .put(
                    &key(&d, "t", &i.to_string()),
                    value("v"),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
        }
        small.run_pending_tasks().await;
        assert!(small.entry_count() <= 20, "{}", small.entry_count());
        // One entry larger than the whole bound is not kept.
        let tiny = MemoryCache::with_config(MemoryCacheConfig::new().max_bytes(1_000));
        let k = key(&d, "t", "huge");
        tiny.put(&k, value(&large), Duration::from_secs(60))
            .await
            .unwrap();
        tiny.run_pending_tasks().await;
        assert_eq!(tiny.get(&k).await.unwrap(), None);
    }
}
