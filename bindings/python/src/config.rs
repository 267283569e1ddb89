//! Building the engine from the constructor's keyword arguments and the environment, with
//! the same constructors the CLI and the scenario harness use (`BedrockConfigBuilder::
//! from_env`, `OpenAiConfigBuilder::from_env`, `ElastiCacheConfig::from_lookup`,
//! `DynamoDbUsageSinkBuilder::from_env`, `KeyDeriver::from_env`). A keyword argument wins
//! over its variable.

use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::{BedrockConfigBuilder, BedrockProvider, StaticCredentials};
use failover_breaker::BreakerConfig;
use failover_cache::{Cache, KeyDeriver, MemoryCache};
use failover_core::layers::{ProviderLayer, RequestLayer};
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_dynamodb::{DynamoDbUsageSink, DynamoDbUsageSinkBuilder, TableOptions};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig, EncryptionKey};
use failover_openai::{OpenAiConfigBuilder, OpenAiProvider};
use failover_provider::Provider;
use failover_shared::{
    LimitsConfig, SharedBreaker, SharedBreakerConfig, SharedStore, StoreConfig, TenantLimits,
    UsageEstimator,
};
use failover_usage::{MemoryUsageSink, UsageSink};

/// The constructor's keyword arguments (each `None` when not given).
#[derive(Debug, Default)]
pub(crate) struct AdapterOptions {
    pub(crate) region_name: Option<String>,
    pub(crate) elasticache_endpoint: Option<String>,
    pub(crate) bedrock_endpoint_url: Option<String>,
    pub(crate) openai_api_key: Option<String>,
    pub(crate) openai_base_url: Option<String>,
    pub(crate) aws_access_key_id: Option<String>,
    pub(crate) aws_secret_access_key: Option<String>,
    pub(crate) aws_session_token: Option<String>,
    pub(crate) dynamodb_endpoint: Option<String>,
    pub(crate) dynamodb_table: Option<String>,
    pub(crate) create_dynamodb_table: bool,
    pub(crate) cache: bool,
    pub(crate) cache_ttl: Option<Duration>,
    pub(crate) failure_threshold: Option<u32>,
    pub(crate) recovery_timeout: Option<Duration>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    /// Redis/ElastiCache shared by every process of the application: the breakers (and the
    /// tenant limits) live there.
    pub(crate) shared_state_url: Option<String>,
    /// The prefix of the shared state's keys (one application, one prefix).
    pub(crate) shared_state_prefix: Option<String>,
    /// Budgets and rate limits per tenant (`failover_shared::LimitsConfig`'s shape).
    pub(crate) tenant_limits: Option<LimitsConfig>,
}

/// What the constructor built.
pub(crate) struct Built {
    pub(crate) adapter: FailoverAdapter,
    /// The DynamoDB sink, when the ledger is DynamoDB (to shut it down and name it).
    pub(crate) dynamodb: Option<Arc<DynamoDbUsageSink>>,
    /// One line per backend: what the adapter talks to (no secrets).
    pub(crate) description: Vec<String>,
}

/// A trimmed, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A per-process secret for cache keys (the CLI's way: two v4 UUIDs).
fn random_key_deriver() -> KeyDeriver {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    KeyDeriver::new(secret)
}

fn breaker_config(options: &AdapterOptions) -> BreakerConfig {
    let mut config = BreakerConfig::default();
    if let Some(threshold) = options.failure_threshold {
        config = config.with_consecutive_failures(threshold);
    }
    if let Some(recovery) = options.recovery_timeout {
        // A recovery time-out is exact, as the seed's breaker had it: no jitter, no backoff.
        config = config
            .with_open_duration(recovery)
            .with_jitter(0.0)
            .with_backoff_multiplier(1.0);
    }
    config
}

async fn bedrock(options: &AdapterOptions) -> BedrockProvider {
    let mut builder = BedrockConfigBuilder::from_env();
    if let Some(region) = &options.region_name {
        builder = builder.region(region.clone());
    }
    if let Some(url) = &options.bedrock_endpoint_url {
        builder = builder.endpoint_url(url.clone());
    }
    if let (Some(id), Some(secret)) = (&options.aws_access_key_id, &options.aws_secret_access_key) {
        let mut credentials = StaticCredentials::new(id.clone(), secret.clone());
        credentials.session_token = options.aws_session_token.clone();
        builder = builder.credentials(credentials);
    }
    if let Some(attempts) = options.max_attempts {
        builder = builder.max_attempts(attempts);
    }
    BedrockProvider::new(builder.build()).await
}

fn openai(options: &AdapterOptions) -> Result<OpenAiProvider, String> {
    let mut builder = OpenAiConfigBuilder::from_env();
    if let Some(key) = &options.openai_api_key {
        builder = builder.api_key(key.clone());
    }
    if let Some(url) = &options.openai_base_url {
        builder = builder.base_url(url.clone());
    }
    if let Some(attempts) = options.max_attempts {
        builder = builder.max_attempts(attempts);
    }
    OpenAiProvider::new(builder.build()).map_err(|error| format!("OpenAI client: {error}"))
}

/// Redis/ElastiCache when an endpoint is given (keyword or `ELASTICACHE_ENDPOINT`), with
/// every other `ELASTICACHE_*` setting from the environment; the value key from
/// `FAILOVER_CACHE_ENCRYPTION_KEY`, else one drawn for this adapter.
fn elasticache(endpoint: &str) -> Result<(Arc<dyn Cache>, String), String> {
    let key_env = failover_elasticache::ENV_ENCRYPTION_KEY;
    let key_given = env(key_env).is_some();
    // A placeholder for the required key, replaced below by a fresh one.
    let placeholder = "0".repeat(64);
    let mut config = ElastiCacheConfig::from_lookup(|name| {
        if name == failover_elasticache::ENV_ENDPOINT {
            Some(endpoint.to_owned())
        } else if name == key_env && !key_given {
            Some(placeholder.clone())
        } else {
            env(name)
        }
    })
    .map_err(|error| format!("ElastiCache settings: {error}"))?;
    if !key_given {
        config.encryption_key =
            EncryptionKey::generate().map_err(|error| format!("cache value key: {error}"))?;
    }
    let label = format!(
        "cache: ElastiCache/Redis at {}",
        failover_provider::redact_url(endpoint)
    );
    let cache = ElastiCacheCache::new(config).map_err(|error| format!("ElastiCache: {error}"))?;
    Ok((Arc::new(cache), label))
}

async fn dynamodb(
    options: &AdapterOptions,
) -> Result<Option<(Arc<DynamoDbUsageSink>, String)>, String> {
    let endpoint = options
        .dynamodb_endpoint
        .clone()
        .or_else(|| env("DYNAMODB_ENDPOINT"));
    let table = options
        .dynamodb_table
        .clone()
        .or_else(|| env("FAILOVER_DYNAMODB_TABLE"));
    if endpoint.is_none() && table.is_none() {
        return Ok(None);
    }
    let mut builder = DynamoDbUsageSinkBuilder::from_env()
        .map_err(|error| format!("DynamoDB settings: {error}"))?;
    if let Some(endpoint) = &endpoint {
        builder = builder.endpoint_url(endpoint.clone());
    }
    if let Some(table) = &table {
        builder = builder.table_name(table.clone());
    }
    if let Some(region) = &options.region_name {
        builder = builder.region(region.clone());
    }
    if let (Some(id), Some(secret)) = (&options.aws_access_key_id, &options.aws_secret_access_key) {
        builder = builder.credentials(aws_sdk_dynamodb::config::Credentials::new(
            id.clone(),
            secret.clone(),
            options.aws_session_token.clone(),
            None,
            "llm-failover-python",
        ));
    }
    let table_name = builder.config().table_name.clone();
    if table_name.is_empty() {
        return Err(
            "DynamoDB usage ledger: no table (set FAILOVER_DYNAMODB_TABLE or dynamodb_table=)"
                .to_owned(),
        );
    }
    if options.create_dynamodb_table {
        let client = builder
            .build_client()
            .await
            .map_err(|error| format!("DynamoDB client: {error}"))?;
        failover_dynamodb::create_table_if_missing(&client, &table_name, &TableOptions::default())
            .await
            .map_err(|error| format!("DynamoDB table {table_name}: {error}"))?;
    }
    let sink = build_sink(builder, &table_name).await?;
    let label = format!(
        "usage: DynamoDB table {table_name}{}",
        endpoint
            .map(|e| format!(" at {}", failover_provider::redact_url(&e)))
            .unwrap_or_default()
    );
    Ok(Some((Arc::new(sink), label)))
}

/// Spill files a process may open per table: adapters of one process (or of several) on
/// one table each take the first free slot, so a restart finds and replays what an earlier
/// run spilled.
const SPILL_SLOTS: usize = 64;

/// The DynamoDB sink, with `FAILOVER_DYNAMODB_SPILL_PATH` when set, else the first spill
/// slot in the temporary directory whose lock is free.
async fn build_sink(
    builder: DynamoDbUsageSinkBuilder,
    table: &str,
) -> Result<DynamoDbUsageSink, String> {
    if builder.config().spill_path.is_some() {
        return builder
            .build()
            .await
            .map_err(|error| format!("DynamoDB usage sink: {error}"));
    }
    let safe: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    for slot in 0..SPILL_SLOTS {
        let name = match slot {
            0 => format!("llm-failover-python-{safe}.spill"),
            n => format!("llm-failover-python-{safe}-{n}.spill"),
        };
        let attempt = builder
            .clone()
            .spill_path(std::env::temp_dir().join(name))
            .build()
            .await;
        match attempt {
            Ok(sink) => return Ok(sink),
            Err(failover_dynamodb::DynamoDbError::SpillLocked { .. }) => continue,
            Err(error) => return Err(format!("DynamoDB usage sink: {error}")),
        }
    }
    Err(format!(
        "DynamoDB usage sink: all {SPILL_SLOTS} spill files of table {table} are in use; set \
         FAILOVER_DYNAMODB_SPILL_PATH"
    ))
}

/// Builds the adapter: Bedrock first, OpenAI as the fallback, each with its own breaker; the
/// cache and the usage ledger as configured. Runs on the binding's runtime.
pub(crate) async fn build(options: AdapterOptions) -> Result<Built, String> {
    let bedrock = bedrock(&options).await;
    let openai = openai(&options)?;
    let breaker = breaker_config(&options);
    let mut config = AdapterConfig::default();
    if let Some(ttl) = options.cache_ttl {
        config = config.with_cache_ttl(ttl);
    }
    if let Some(timeout) = options.timeout {
        config = config.with_default_timeout(Some(timeout));
    }
    let mut builder = FailoverAdapter::builder().config(config);
    let mut description = Vec::new();
    let providers: [Arc<dyn Provider>; 2] = [Arc::new(bedrock), Arc::new(openai)];
    let store = match &options.shared_state_url {
        Some(url) => {
            let mut store_config = StoreConfig::single(url.clone());
            if let Some(prefix) = &options.shared_state_prefix {
                store_config = store_config.with_key_prefix(prefix.clone());
            }
            Some(
                SharedStore::new(&store_config)
                    .map_err(|error| format!("shared_state_url: {error}"))?,
            )
        }
        None if options.tenant_limits.is_some() => {
            return Err("tenant_limits need shared_state_url (the limits live in Redis)".into());
        }
        None => None,
    };
    for provider in providers {
        builder = match &store {
            Some(store) => {
                let name = provider.name().to_owned();
                let shared = SharedBreaker::new(
                    store.clone(),
                    &name,
                    SharedBreakerConfig::new(breaker.clone()),
                )
                .map_err(|error| error.to_string())?;
                builder.provider_with_breaker(provider, Arc::new(shared))
            }
            None => builder.provider(provider, breaker.clone()),
        };
    }
    if store.is_some() {
        description.push("breakers: shared (shared_state_url)".to_owned());
    }
    let endpoint = options
        .elasticache_endpoint
        .clone()
        .or_else(|| env(failover_elasticache::ENV_ENDPOINT));
    if options.cache {
        let (cache, label) = match &endpoint {
            Some(endpoint) => elasticache(endpoint)?,
            None => (
                Arc::new(MemoryCache::new()) as Arc<dyn Cache>,
                "cache: memory".to_owned(),
            ),
        };
        let key_deriver = KeyDeriver::from_env()
            .map_err(|error| format!("FAILOVER_CACHE_KEY: {error}"))?
            .unwrap_or_else(random_key_deriver);
        builder = builder.cache(cache).key_deriver(key_deriver);
        description.push(label);
    } else {
        description.push("cache: none".to_owned());
    }
    let dynamodb = dynamodb(&options).await?;
    let ledger: Arc<dyn UsageSink> = match &dynamodb {
        Some((sink, label)) => {
            description.push(label.clone());
            Arc::clone(sink) as Arc<dyn UsageSink>
        }
        None => {
            description.push("usage: memory".to_owned());
            Arc::new(MemoryUsageSink::default())
        }
    };
    builder = builder.usage_sink(Arc::clone(&ledger));
    if let (Some(store), Some(limits)) = (store, options.tenant_limits) {
        let estimator = UsageEstimator::new(
            failover_core::Router::embedded(),
            failover_usage::PricingTable::embedded(),
            vec!["bedrock".to_owned(), "openai".to_owned()],
        );
        let layer = TenantLimits::with_ledger(store, limits, estimator, ledger)
            .map_err(|error| format!("tenant_limits: {error}"))?;
        builder = builder
            .request_layer(Arc::clone(&layer) as Arc<dyn RequestLayer>)
            .provider_layer(layer as Arc<dyn ProviderLayer>);
        description.push("tenant limits: shared (shared_state_url)".to_owned());
    }
    let adapter = builder.build().map_err(|error| error.to_string())?;
    Ok(Built {
        adapter,
        dynamodb: dynamodb.map(|(sink, _)| sink),
        description,
    })
}
