//! What the integration tests share: the discovered Redis, fresh caches with their own key
//! prefix (each test owns its keys), raw connections, adapters over scripted providers.
#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failover_breaker::BreakerConfig;
use failover_cache::Cache;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig, EncryptionKey};
use failover_testkit::ScriptedProvider;

/// Random bits from std's per-process hasher keys.
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// A key prefix no other test (or earlier run) uses.
pub fn fresh_prefix() -> String {
    format!("t{:016x}", random_u64())
}

/// A random encryption key.
pub fn fresh_key() -> EncryptionKey {
    EncryptionKey::generate().expect("randomness")
}

/// Settings for a test against `url`: its own prefix and key, short timeouts.
pub fn config(url: &str) -> ElastiCacheConfig {
    ElastiCacheConfig::new(url, fresh_key())
        .with_key_prefix(fresh_prefix())
        .with_operation_timeout(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_millis(200))
}

/// A cache against `url` with [`config`].
pub fn cache(url: &str) -> ElastiCacheCache {
    ElastiCacheCache::new(config(url)).expect("valid config")
}

/// The behaviour suite's factory: a fresh cache (own prefix) on the shared server.
pub async fn suite_cache(url: String) -> Arc<dyn Cache> {
    Arc::new(cache(&url))
}

/// A raw connection, to look at and tamper with what the cache stored.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to the test server")
}

/// Every key under `prefix`.
pub async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let mut conn = raw(url).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Breakers that never open during these tests.
pub fn breaker() -> BreakerConfig {
    BreakerConfig::default()
}

/// An adapter over an always-answering scripted Bedrock and OpenAI with `cache`.
pub fn adapter(
    cache: Arc<dyn Cache>,
    config: AdapterConfig,
) -> (FailoverAdapter, Arc<ScriptedProvider>) {
    let bedrock = Arc::new(ScriptedProvider::always("bedrock", "Paris"));
    let openai = Arc::new(ScriptedProvider::always("openai", "unused"));
    let adapter = FailoverAdapter::builder()
        // A shared cache needs a cache key secret of its own (never the published default).
        .key_deriver(failover_cache::KeyDeriver::new(std::array::from_fn(|i| {
            random_u64() as u8 ^ i as u8
        })))
        .provider(bedrock.clone(), breaker())
        .provider(openai, breaker())
        .cache(cache)
        .config(config)
        .build()
        .expect("adapter builds");
    (adapter, bedrock)
}
