//! The engine a configuration describes: its providers in order, routes, prices, cache
//! and ledger.

use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::{BedrockConfigBuilder, BedrockProvider};
use failover_cache::{Cache, KeyDeriver, MemoryCache};
use failover_core::layers::{ProviderLayer, RequestLayer};
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_dynamodb::{DynamoDbUsageSink, DynamoDbUsageSinkBuilder};
use failover_elasticache::ElastiCacheCache;
use failover_openai::{OpenAiConfigBuilder, OpenAiProvider};
use failover_provider::Provider;
use failover_shared::{
    FlightsConfig, RedisFlights, SharedBreaker, SharedBreakerConfig, SharedStore, TenantLimits,
    UsageEstimator,
};
use failover_usage::{MemoryUsageSink, UsageSink};

use super::config::{CacheBackend, LedgerBackend, ProviderKind, ServeConfig};

/// The engine, and one line per part for the start-up banner.
pub(crate) struct Engine {
    pub(crate) adapter: FailoverAdapter,
    pub(crate) parts: Vec<String>,
}

/// The configured providers, in the configured order, from their settings and the
/// environment.
pub(crate) async fn providers(config: &ServeConfig) -> Result<Vec<Arc<dyn Provider>>, String> {
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    for kind in &config.providers.order {
        match kind {
            ProviderKind::Bedrock => {
                let section = &config.providers.bedrock;
                let mut builder = BedrockConfigBuilder::from_env();
                if let Some(region) = &section.region {
                    builder = builder.region(region.clone());
                }
                if let Some(endpoint) = &section.endpoint_url {
                    builder = builder.endpoint_url(endpoint.clone());
                }
                let bedrock_config = builder.build();
                bedrock_config
                    .validate()
                    .map_err(|error| format!("providers.bedrock: {error}"))?;
                providers.push(Arc::new(BedrockProvider::new(bedrock_config).await));
            }
            ProviderKind::OpenAi => {
                let mut builder = OpenAiConfigBuilder::from_env();
                if let Some(base_url) = &config.providers.openai.base_url {
                    builder = builder.base_url(base_url.clone());
                }
                if let Some(attempts) = config.providers.openai.max_attempts {
                    builder = builder.max_attempts(attempts);
                }
                let provider = OpenAiProvider::new(builder.build())
                    .map_err(|error| format!("providers.openai: {error}"))?;
                providers.push(Arc::new(provider));
            }
        }
    }
    Ok(providers)
}

/// The adapter over `providers` with the configuration's routes, prices, cache and ledger.
pub(crate) async fn engine(
    config: &ServeConfig,
    providers: Vec<Arc<dyn Provider>>,
) -> Result<Engine, String> {
    let mut parts = Vec::new();
    let names: Vec<String> = providers
        .iter()
        .map(|provider| provider.name().to_owned())
        .collect();
    parts.push(format!("providers: {}", names.join(" → ")));
    let mut adapter_config = AdapterConfig::default();
    if let Some(ttl) = config.cache.ttl_secs {
        adapter_config = adapter_config.with_cache_ttl(Duration::from_secs(ttl));
    }
    let mut builder = FailoverAdapter::builder()
        .router(config.router()?)
        .pricing(config.pricing()?)
        .config(adapter_config);
    let sink: Arc<dyn UsageSink> = match config.ledger.backend {
        LedgerBackend::Memory => {
            parts.push("ledger: memory (lost at exit)".to_owned());
            Arc::new(MemoryUsageSink::default())
        }
        LedgerBackend::DynamoDb => {
            let sink: DynamoDbUsageSink = DynamoDbUsageSinkBuilder::from_env()
                .map_err(|error| format!("ledger (dynamodb): {error}"))?
                .build()
                .await
                .map_err(|error| format!("ledger (dynamodb): {error}"))?;
            parts.push(format!(
                "ledger: dynamodb table {}",
                sink.config().table_name
            ));
            Arc::new(sink)
        }
    };
    let breaker = config.breaker.config()?;
    match &config.shared {
        None => {
            for provider in providers {
                builder = builder.provider(provider, breaker.clone());
            }
        }
        Some(shared) => {
            let store =
                SharedStore::new(&shared.store()?).map_err(|error| format!("[shared]: {error}"))?;
            if let Some(limits) = &shared.limits {
                let estimator =
                    UsageEstimator::new(config.router()?, config.pricing()?, names.clone());
                // The ledger seeds the spend counters again after Redis lost them.
                let layer = TenantLimits::with_ledger(
                    store.clone(),
                    limits.clone(),
                    estimator,
                    Arc::clone(&sink),
                )
                .map_err(|error| format!("[shared.limits]: {error}"))?;
                builder = builder
                    .request_layer(Arc::clone(&layer) as Arc<dyn RequestLayer>)
                    .provider_layer(layer as Arc<dyn ProviderLayer>);
                parts.push("tenant limits: shared (redis)".to_owned());
            }
            for provider in providers {
                if shared.breakers {
                    let shared_config = SharedBreakerConfig::new(breaker.clone())
                        .with_probe_lease(Duration::from_millis(shared.probe_lease_ms))
                        .with_refresh_interval(Duration::from_millis(shared.refresh_ms));
                    let name = provider.name().to_owned();
                    let shared_breaker = SharedBreaker::new(store.clone(), &name, shared_config)
                        .map_err(|error| format!("[shared]: {error}"))?;
                    builder = builder.provider_with_breaker(provider, Arc::new(shared_breaker));
                } else {
                    builder = builder.provider(provider, breaker.clone());
                }
            }
            if shared.breakers {
                parts.push("breakers: shared (redis)".to_owned());
            }
            if shared.coalesce {
                let flights = RedisFlights::new(
                    store.clone(),
                    FlightsConfig::default()
                        .with_lock(Duration::from_millis(shared.coalesce_lock_ms))
                        .with_wait(Duration::from_millis(shared.coalesce_wait_ms)),
                )
                .map_err(|error| format!("[shared]: {error}"))?;
                builder = builder.shared_flights(Arc::new(flights));
                parts.push("coalescing: across replicas (redis)".to_owned());
            }
        }
    }
    match config.cache.backend {
        CacheBackend::None => parts.push("cache: none".to_owned()),
        CacheBackend::Memory => {
            builder = builder.cache(Arc::new(MemoryCache::new()));
            parts.push("cache: memory".to_owned());
        }
        CacheBackend::ElastiCache => {
            let cache = ElastiCacheCache::from_env()
                .map_err(|error| format!("cache (elasticache): {error}"))?;
            cache
                .ping()
                .await
                .map_err(|error| format!("cache (elasticache) does not answer: {error}"))?;
            builder = builder.cache(Arc::new(cache) as Arc<dyn Cache>);
            parts.push("cache: elasticache (ELASTICACHE_ENDPOINT)".to_owned());
        }
    }
    // A shared cache must not be keyed with the published default secret; the builder
    // refuses it, and FAILOVER_CACHE_KEY is where an operator sets one.
    if let Some(deriver) =
        KeyDeriver::from_env().map_err(|error| format!("FAILOVER_CACHE_KEY: {error}"))?
    {
        builder = builder.key_deriver(deriver);
    } else if config.cache.backend == CacheBackend::Memory {
        builder = builder.key_deriver(crate::secrets::random_key_deriver());
    }
    let adapter = builder
        .usage_sink(sink)
        .build()
        .map_err(|error| format!("engine: {error}"))?;
    Ok(Engine { adapter, parts })
}
