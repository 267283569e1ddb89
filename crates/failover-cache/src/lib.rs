#![doc = include_str!("../README.md")]

mod key;
mod memory;

pub use key::{
    CacheKey, CacheKeyInput, ENV_CACHE_KEY, KEY_FORMAT_VERSION, KeyDeriver, KeySecretError,
    MIN_SECRET_LEN, TENANT_TAG_LEN, TenantTag,
};
pub use memory::{MemoryCache, MemoryCacheConfig, MemoryEntry, entry_size};

use std::fmt::Debug;
use std::time::Duration;

use failover_provider::{FinishReason, TokenUsage, ToolCall, Usd};
use serde::{Deserialize, Serialize};

/// What the cache stores for one answered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedCompletion {
    /// The provider that produced the answer.
    pub provider: String,
    /// The concrete model that produced it.
    pub model: String,
    /// The generated text.
    pub content: String,
    /// The tools the model called (replayed like text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens the original call consumed.
    pub usage: TokenUsage,
    /// What the original call cost.
    pub estimated_cost: Usd,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_at_unix_ms: u64,
}

/// Why a cache operation failed. The adapter treats every one as a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheErrorKind {
    /// The backend cannot be reached.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// A stored value could not be decoded or authenticated.
    Corrupt,
    /// The cache is misconfigured.
    Config,
}

/// A failed cache operation.
#[derive(Debug, thiserror::Error)]
#[error("cache {kind:?}: {message}")]
pub struct CacheError {
    /// What went wrong.
    pub kind: CacheErrorKind,
    /// Details, never containing a secret or prompt text.
    pub message: String,
}

impl CacheError {
    /// A new error.
    pub fn new(kind: CacheErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Counters and status of a cache backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheHealth {
    /// The backend's name (`"memory"`, `"elasticache"`).
    pub backend: String,
    /// Whether the last operation succeeded.
    pub available: bool,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Operations that timed out.
    pub timeouts: u64,
    /// Entries held, where the backend knows cheaply.
    pub entries: Option<u64>,
    /// Why the cache is not fully healthy (the backend unreachable, operations timing
    /// out); `None` when it is.
    pub degraded: Option<String>,
}

/// A response cache shared by requests of many tenants.
///
/// # Contract
/// - Keys come from [`KeyDeriver`]: they bind the tenant and every generation parameter,
///   and carry no prompt text. A backend never returns an entry stored under another key.
/// - `put` stores with the given time to live; an expired entry is never returned.
/// - `purge_tenant` removes every entry of one tenant and no entry of another.
/// - Errors are reported, never hidden; the adapter turns them into misses.
#[async_trait::async_trait]
pub trait Cache: Send + Sync + Debug {
    /// A short name of the backend.
    fn name(&self) -> &str;

    /// Looks an entry up.
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError>;

    /// Stores an entry for `ttl`.
    async fn put(
        &self,
        key: &CacheKey,
        value: CachedCompletion,
        ttl: Duration,
    ) -> Result<(), CacheError>;

    /// Removes every entry of one tenant; returns how many were removed where known.
    async fn purge_tenant(&self, tenant: &TenantTag) -> Result<u64, CacheError>;

    /// Counters and status.
    fn health(&self) -> CacheHealth;

    /// Whether others can read this cache's keys (a server shared by replicas, backups,
    /// operators with `SCAN`): such a cache must not run on the published default key of
    /// [`KeyDeriver::default`] — see [`check_key_deriver`]. `false` (the default) for a
    /// process-local cache.
    fn is_shared(&self) -> bool {
        false
    }
}

/// Refuses a shared cache ([`Cache::is_shared`]) keyed by the published default key
/// ([`KeyDeriver::is_default`]): anyone who can read the cache could then confirm a
/// guessed prompt by recomputing its key. A [`CacheErrorKind::Config`] error naming
/// [`ENV_CACHE_KEY`]; `Ok` for a process-local cache or a deriver with a secret of the
/// user's own. Call it where the cache and the deriver are put together.
pub fn check_key_deriver(cache: &dyn Cache, deriver: &KeyDeriver) -> Result<(), CacheError> {
    if cache.is_shared() && deriver.is_default() {
        return Err(CacheError::new(
            CacheErrorKind::Config,
            format!(
                "the {} cache is shared, so it needs a cache key secret of your own \
                 (KeyDeriver::new / from_secret, or {ENV_CACHE_KEY}); the default key is published",
                cache.name()
            ),
        ));
    }
    Ok(())
}
