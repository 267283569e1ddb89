#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod connection;
mod health;
mod keys;
mod telemetry;

pub use codec::{VALUE_FORMAT_V1, VALUE_FORMAT_V2};
pub use config::{
    ConfigError, DEFAULT_PREFIX, ENV_CLUSTER, ENV_ENCRYPTION_KEY, ENV_ENDPOINT, ENV_KEY_PREFIX,
    ENV_PASSWORD, ENV_TLS_CA_FILE, ENV_USERNAME, ElastiCacheConfig, EncryptionKey, Endpoint,
};
pub use health::ElastiCacheStats;
pub use keys::MAX_PREFIX_LEN;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use failover_cache::{
    Cache, CacheError, CacheErrorKind, CacheHealth, CacheKey, CachedCompletion, TenantTag,
};
use redis::RedisResult;

use crate::codec::{Opened, ValueCodec};
use crate::connection::Connection;
use crate::health::Health;
use crate::keys::KeyLayout;
use crate::telemetry::{Command, RedisMetrics};

/// The backend's name in health reports.
pub const BACKEND_NAME: &str = "elasticache";

/// How many keys one `SCAN` step asks for during a purge.
const SCAN_COUNT: usize = 1_000;

/// A [`Cache`] on ElastiCache / Redis / Valkey. See the crate docs for the key layout,
/// the value format and the failure behaviour. Clones share one connection and counters.
#[derive(Clone)]
pub struct ElastiCacheCache {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    layout: KeyLayout,
    codec: ValueCodec,
    health: Health,
    metrics: RedisMetrics,
    endpoint: String,
    operation_timeout: Duration,
    purge_timeout: Duration,
    max_ttl: Duration,
    warned_rejection: AtomicBool,
}

impl fmt::Debug for ElastiCacheCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElastiCacheCache")
            .field("endpoint", &self.inner.endpoint)
            .field("key_prefix", &self.inner.layout.prefix())
            .field("operation_timeout", &self.inner.operation_timeout)
            .field("encryption_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ElastiCacheCache {
    /// A cache with `config`. Does not touch the network: the first operation connects, so
    /// an application starts while the cache is down. Must be called inside a Tokio
    /// runtime. Registers the cache's `failover.redis.duration` histograms with the
    /// [`metrics`](https://docs.rs/metrics) recorder installed now: install the exporter
    /// first.
    pub fn new(config: ElastiCacheConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::Invalid {
                setting: "runtime",
                message: "ElastiCacheCache::new must be called inside a Tokio runtime".to_owned(),
            });
        }
        let connection = Connection::new(&config)?;
        let endpoint = format!("{:?}", config.endpoint);
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                layout: KeyLayout::new(&config.key_prefix),
                codec: ValueCodec::with_ring(&config.key_ring()),
                health: Health::new(endpoint.clone()),
                metrics: RedisMetrics::new(),
                endpoint,
                operation_timeout: config.operation_timeout,
                purge_timeout: config.purge_timeout,
                max_ttl: config.max_ttl,
                warned_rejection: AtomicBool::new(false),
            }),
        })
    }

    /// A cache configured from the environment ([`ElastiCacheConfig::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(ElastiCacheConfig::from_env()?)
    }

    /// Sends `PING` within the operation timeout; returns the round-trip time. For
    /// readiness probes and the CLI.
    pub async fn ping(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        let ping = Command::Ping.cmd();
        self.run(
            "ping",
            self.inner.operation_timeout,
            self.inner
                .metrics
                .time(Command::Ping, self.inner.connection.query::<String>(&ping)),
        )
        .await?;
        Ok(started.elapsed())
    }

    /// Counters beyond [`CacheHealth`]: rejected values, unknown formats, reconnects.
    pub fn stats(&self) -> ElastiCacheStats {
        self.inner.health.stats()
    }

    /// The Redis key an entry is stored under (`{prefix}:{<tenant_hex>}:<digest_hex>`),
    /// for operators and tests.
    pub fn redis_key(&self, key: &CacheKey) -> Vec<u8> {
        self.inner.layout.entry_key(key)
    }

    /// `GET` of a Redis key on this cache's own connection, with nothing around it: no
    /// timeout, no counters, no decryption. Only for the benchmark that compares a cache
    /// hit with a raw `GET` on the same connection; not part of the supported API.
    #[doc(hidden)]
    pub async fn bench_raw_get(&self, redis_key: &[u8]) -> Option<Vec<u8>> {
        let mut get = redis::cmd("GET");
        get.arg(redis_key);
        self.inner.connection.query(&get).await.ok().flatten()
    }

    /// Opens stored bytes for `key` (decrypt + decode) without any I/O. Only for the
    /// benchmark that isolates the codec's cost; not part of the supported API.
    #[doc(hidden)]
    pub fn bench_open(&self, key: &CacheKey, stored: Vec<u8>) -> Option<CachedCompletion> {
        match self
            .inner
            .codec
            .open(key, &self.inner.layout.entry_key(key), stored)
        {
            Opened::Value(value) => Some(value),
            Opened::UnknownVersion(_) | Opened::UnknownKey | Opened::Rejected(_) => None,
        }
    }

    /// Runs one Redis call within `budget`, mapping errors and recording health.
    async fn run<T>(
        &self,
        op: &'static str,
        budget: Duration,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CacheError> {
        let result = match tokio::time::timeout(budget, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                    && self.inner.connection.reconnect()
                {
                    self.inner.health.reconnected();
                    tracing::info!(
                        endpoint = %self.inner.endpoint,
                        "server answered READONLY (a failed-over primary); reconnecting"
                    );
                }
                let kind = if error.is_timeout() {
                    CacheErrorKind::Timeout
                } else {
                    CacheErrorKind::Unavailable
                };
                Err(CacheError::new(kind, format!("{op}: {error}")))
            }
            Err(_) => Err(CacheError::new(
                CacheErrorKind::Timeout,
                format!("{op}: no answer within {budget:?}"),
            )),
        };
        match &result {
            Ok(_) => self.inner.health.ok(),
            Err(error) => self.inner.health.failed(error),
        }
        result
    }

    /// Deletes a value that failed to open, within the operation timeout; best effort.
    async fn discard(&self, redis_key: &[u8], reason: &'static str) {
        self.inner.health.rejected();
        if !self.inner.warned_rejection.swap(true, Ordering::Relaxed) {
            // Once per process: a value that does not open for its key is either
            // corruption, a key rotation, or someone writing to the cache. Later ones go to
            // debug and the `rejected` counter.
            tracing::warn!(
                reason,
                "a stored value failed to open for its key; treated as a miss and deleted \
                 (further ones are counted in stats().rejected)"
            );
        } else {
            tracing::debug!(reason, "stored value rejected and deleted");
        }
        let mut del = Command::Del.cmd();
        del.arg(redis_key);
        // A failure here is already counted by `run`; the entry then expires by its TTL.
        let _ = self
            .run(
                "delete rejected value",
                self.inner.operation_timeout,
                self.inner
                    .metrics
                    .time(Command::Del, self.inner.connection.query::<u64>(&del)),
            )
            .await;
    }
}

#[async_trait::async_trait]
impl Cache for ElastiCacheCache {
    fn name(&self) -> &str {
        BACKEND_NAME
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError> {
        let redis_key = self.inner.layout.entry_key(key);
        let mut get = Command::Get.cmd();
        get.arg(&redis_key);
        let stored = self
            .run(
                "get",
                self.inner.operation_timeout,
                self.inner.metrics.time(
                    Command::Get,
                    self.inner.connection.query::<Option<Vec<u8>>>(&get),
                ),
            )
            .await?;
        let Some(stored) = stored else {
            self.inner.health.miss();
            return Ok(None);
        };
        match self.inner.codec.open(key, &redis_key, stored) {
            Opened::Value(value) => {
                self.inner.health.hit();
                Ok(Some(value))
            }
            Opened::UnknownVersion(version) => {
                // Written by a newer build (a rolling deploy): a miss, and left alone so
                // that build keeps its entry.
                tracing::debug!(version, "stored value in an unknown format; a miss");
                self.inner.health.unknown_version();
                self.inner.health.miss();
                Ok(None)
            }
            Opened::UnknownKey => {
                // Sealed by a replica that already has a newer key: its entry, left alone.
                tracing::debug!("stored value sealed with a key this cache does not hold; a miss");
                self.inner.health.kept_unopened();
                self.inner.health.miss();
                Ok(None)
            }
            Opened::Rejected(reason) if self.inner.codec.ring_len() > 1 => {
                // A rotation is in progress: the value may be another replica's, sealed
                // with a key this one does not hold. Keep it; it expires by its TTL.
                tracing::debug!(
                    reason,
                    "stored value did not open during a key rotation; kept, a miss"
                );
                self.inner.health.kept_unopened();
                self.inner.health.miss();
                Ok(None)
            }
            Opened::Rejected(reason) => {
                self.inner.health.miss();
                self.discard(&redis_key, reason).await;
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
        let redis_key = self.inner.layout.entry_key(key);
        let ttl_ms = u64::try_from(ttl.min(self.inner.max_ttl).as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            // Redis refuses `PX 0`; a zero TTL means "do not keep", so drop any old value.
            let mut del = Command::Del.cmd();
            del.arg(&redis_key);
            return self
                .run(
                    "put (zero TTL)",
                    self.inner.operation_timeout,
                    self.inner
                        .metrics
                        .time(Command::Del, self.inner.connection.query::<u64>(&del)),
                )
                .await
                .map(|_| ());
        }
        let sealed = self.inner.codec.seal(key, &redis_key, &value)?;
        let mut set = Command::Set.cmd();
        // Every write carries its expiry: no key without a TTL, ever.
        set.arg(&redis_key).arg(sealed).arg("PX").arg(ttl_ms);
        self.run(
            "put",
            self.inner.operation_timeout,
            self.inner
                .metrics
                .time(Command::Set, self.inner.connection.query::<()>(&set)),
        )
        .await
    }

    async fn purge_tenant(&self, tenant: &TenantTag) -> Result<u64, CacheError> {
        let pattern = self.inner.layout.tenant_pattern(tenant);
        let slot_key = self.inner.layout.tenant_hash_tag_key(tenant);
        let connection = &self.inner.connection;
        let metrics = &self.inner.metrics;
        self.run("purge_tenant", self.inner.purge_timeout, async {
            // Every key of the tenant shares one hash tag, so one slot, so one primary:
            // the whole SCAN walk and every UNLINK go to that node.
            let mut cursor: u64 = 0;
            let mut removed: u64 = 0;
            loop {
                // Each command of the walk is a sample of its own; the purge's time budget
                // bounds them all.
                let mut scan = Command::Scan.cmd();
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let (next, keys): (u64, Vec<Vec<u8>>) = metrics
                    .time(Command::Scan, connection.query_on_slot(scan, &slot_key))
                    .await?;
                if !keys.is_empty() {
                    let mut unlink = Command::Unlink.cmd();
                    for key in &keys {
                        unlink.arg(key);
                    }
                    removed += metrics
                        .time(
                            Command::Unlink,
                            connection.query_on_slot::<u64>(unlink, &slot_key),
                        )
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(removed)
        })
        .await
    }

    fn health(&self) -> CacheHealth {
        self.inner.health.report(BACKEND_NAME)
    }

    /// Always: a Redis server is read by every replica (and by anyone with `SCAN`), so
    /// it must not run on the published default cache key
    /// ([`failover_cache::check_key_deriver`] refuses the pair).
    fn is_shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ElastiCacheConfig {
        ElastiCacheConfig::new(
            "redis://user:url-secret@127.0.0.1:1",
            EncryptionKey::from_bytes([0x5a; 32]),
        )
        .with_credentials(None, Some("config-secret".into()))
    }

    #[test]
    fn building_outside_a_runtime_is_a_config_error_not_a_panic() {
        let error = ElastiCacheCache::new(config()).unwrap_err();
        assert!(error.to_string().contains("Tokio runtime"), "{error}");
    }

    #[tokio::test]
    async fn building_does_not_touch_the_network_and_debug_hides_secrets() {
        // Port 1 has no server: building still succeeds (the first operation connects).
        let cache = ElastiCacheCache::new(config()).unwrap();
        let text = format!("{cache:?}");
        assert!(!text.contains("url-secret"), "{text}");
        assert!(!text.contains("config-secret"), "{text}");
        assert!(!text.contains("5a5a"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert_eq!(cache.name(), BACKEND_NAME);
        assert_eq!(cache.health().backend, BACKEND_NAME);
    }

    #[tokio::test]
    async fn a_shared_cache_refuses_the_default_key_deriver() {
        let cache = ElastiCacheCache::new(config()).unwrap();
        assert!(cache.is_shared());
        let error =
            failover_cache::check_key_deriver(&cache, &failover_cache::KeyDeriver::default())
                .unwrap_err();
        assert_eq!(error.kind, CacheErrorKind::Config);
        assert!(error.message.contains("FAILOVER_CACHE_KEY"), "{error}");
        failover_cache::check_key_deriver(&cache, &failover_cache::KeyDeriver::new([9; 32]))
            .unwrap();
    }

    #[tokio::test]
    async fn tls_without_a_crypto_provider_is_refused_up_front() {
        let config =
            ElastiCacheConfig::new("rediss://127.0.0.1:1", EncryptionKey::from_bytes([1; 32]));
        // Nothing in this test binary installs a process-wide provider.
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let error = ElastiCacheCache::new(config).unwrap_err();
        assert!(error.to_string().contains("CryptoProvider"), "{error}");
    }
}
