//! The scenario suite's [`Harness`]: the whole assembled system — the real Bedrock and
//! OpenAI clients, a response cache and a usage ledger — configured for the mode and the
//! tier the suite runs in.
//!
//! - **Offline** (default): the provider clients talk to [`StandIns`] on loopback that
//!   speak the providers' wire formats and take scripted faults.
//! - **Live** (`FAILOVER_TEST_MODE=live`, set by `cargo xtask test-live`): real Bedrock,
//!   OpenAI, ElastiCache and DynamoDB from `AWS_REGION`, the AWS credential chain,
//!   `OPENAI_API_KEY`, `ELASTICACHE_ENDPOINT` and `FAILOVER_DYNAMODB_TABLE`.
//!
//! The tier ([`Stores`]) decides where the cache and the ledger live: Redis through
//! `ElastiCacheCache` and DynamoDB through `DynamoDbUsageSink` (offline, Redis and the
//! DynamoDB endpoint come from failover-testenv's service discovery: `REDIS_URL` /
//! `DYNAMODB_ENDPOINT`, else a spawned `redis-server` / `moto_server`), or `MemoryCache`
//! and `MemoryUsageSink`, which need no server (offline only).
//!
//! Both modes build the same clients, cache and sink through the same constructors; only
//! the endpoints differ. Failures that work in both modes are induced the way the seed
//! does it: a breaker forced open, failures recorded on a breaker, or a closed port as a
//! provider's endpoint ([`HarnessOptions`]). Scripted server faults ([`Harness::standins`])
//! exist offline only.
//!
//! Every harness has its own tenants (a random suffix), its own cache key prefix and — with
//! services, offline — its own DynamoDB table, so tests share servers but never state, and
//! what the stores hold afterwards can be asserted exactly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::{BedrockConfigBuilder, BedrockProvider};
use failover_breaker::ManualClock;
use failover_cache::{Cache, KeyDeriver, MemoryCache};
use failover_core::{AdapterBuilder, AdapterConfig, FailoverAdapter, Router};
use failover_dynamodb::{DynamoDbUsageSink, DynamoDbUsageSinkBuilder, TableOptions};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig, EncryptionKey, Endpoint};
use failover_openai::{OpenAiConfigBuilder, OpenAiProvider};
use failover_provider::CompletionRequest;
use failover_standin::StandIns;
use failover_standin::seed::{AGENT, MODEL, seed_breaker_config};
use failover_testenv::live;
use failover_usage::{MemoryUsageSink, UsageQuery, UsageSink, UsageStats};

use crate::stores::{CacheStore, UsageTable};

/// Where the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Local stand-ins and local servers: `cargo test`.
    Offline,
    /// The real cloud services: `cargo xtask test-live`.
    Live,
}

impl Mode {
    /// `Live` when `FAILOVER_TEST_MODE=live`, else `Offline`.
    pub fn from_env() -> Self {
        if live::live_mode_requested() {
            Self::Live
        } else {
            Self::Offline
        }
    }
}

/// Where a harness keeps the response cache and the usage ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stores {
    /// `ElastiCacheCache` on Redis and `DynamoDbUsageSink` on DynamoDB (offline: a spawned
    /// `redis-server` and `moto_server`; live: ElastiCache and the usage table).
    Services,
    /// `MemoryCache` and `MemoryUsageSink`: no server needed, so every seed class runs on
    /// any machine (offline only).
    Memory,
}

impl Stores {
    /// The tier's name, the first part of its tests' names (`memory::caching::…`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::Memory => "memory",
        }
    }

    /// The backend name the cache reports in the health report.
    pub fn cache_backend(self) -> &'static str {
        match self {
            Self::Services => "elasticache",
            Self::Memory => "memory",
        }
    }

    /// The backend name the usage sink reports in the health report.
    pub fn usage_backend(self) -> &'static str {
        match self {
            Self::Services => "dynamodb",
            Self::Memory => "memory",
        }
    }
}

tokio::task_local! {
    /// The stores of the tier the current test runs in, set by the suite's runner.
    static STORES: Stores;
}

/// Runs `test` with harnesses it starts keeping their stores in `stores`.
pub async fn in_tier<F: Future>(stores: Stores, test: F) -> F::Output {
    STORES.scope(stores, test).await
}

/// The stores of the current test's tier: [`Stores::Services`] outside the suite's runner.
fn current_stores() -> Stores {
    STORES
        .try_with(|stores| *stores)
        .unwrap_or(Stores::Services)
}

/// How a harness wires its providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct HarnessOptions {
    bedrock_unreachable: bool,
    openai_unreachable: bool,
}

impl HarnessOptions {
    /// Bedrock's endpoint is a closed port on 127.0.0.1 (every call fails with a refused
    /// connection), in both modes.
    pub fn bedrock_unreachable(mut self) -> Self {
        self.bedrock_unreachable = true;
        self
    }

    /// OpenAI's endpoint is a closed port on 127.0.0.1, in both modes.
    pub fn openai_unreachable(mut self) -> Self {
        self.openai_unreachable = true;
        self
    }
}

/// The system under test for one test: providers, cache and sink for the suite's mode, and
/// views of what the stores hold.
pub struct Harness {
    mode: Mode,
    stores: Stores,
    suffix: String,
    /// Held for the harness's life: the unreachable endpoints stay unreachable.
    _closed_ports: Vec<ClosedPort>,
    standins: Option<StandIns>,
    bedrock: Arc<BedrockProvider>,
    openai: Arc<OpenAiProvider>,
    cache: Arc<dyn Cache>,
    cache_store: CacheStore,
    sink: Arc<dyn UsageSink>,
    /// The sink as itself, in the services tier: for what only it computes.
    dynamodb: Option<Arc<DynamoDbUsageSink>>,
    usage_table: UsageTable,
    key_deriver: KeyDeriver,
    clock: ManualClock,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("mode", &self.mode)
            .field("stores", &self.stores)
            .field("suffix", &self.suffix)
            .finish_non_exhaustive()
    }
}

/// Why a harness could not be assembled.
#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

impl HarnessError {
    fn of(what: &str, error: impl std::fmt::Display) -> Self {
        Self(format!("{what}: {error}"))
    }
}

/// A closed port on 127.0.0.1, kept closed: the socket stays bound (so no other server of
/// a parallel test can take the port) but never listens, so every connection is refused.
struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    url: String,
}

impl ClosedPort {
    fn reserve() -> Result<Self, HarnessError> {
        let socket =
            tokio::net::TcpSocket::new_v4().map_err(|e| HarnessError::of("a closed port", e))?;
        socket
            .bind((std::net::Ipv4Addr::LOCALHOST, 0).into())
            .map_err(|e| HarnessError::of("a closed port", e))?;
        let addr = socket
            .local_addr()
            .map_err(|e| HarnessError::of("a closed port", e))?;
        Ok(Self {
            _socket: socket,
            url: format!("http://{addr}"),
        })
    }
}

/// 12 random hex digits: the harness's tenant and key-prefix suffix.
fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A random secret for the harness's key deriver.
fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret
}

impl Harness {
    /// A harness for the process's mode with both providers reachable.
    pub async fn start() -> Self {
        Self::start_with(HarnessOptions::default()).await
    }

    /// A harness for the process's mode and the test's tier with `options`. Panics
    /// (failing the test) with the reason when a store cannot be reached: the suite's runner
    /// has already checked that the services exist.
    pub async fn start_with(options: HarnessOptions) -> Self {
        match Self::try_start(Mode::from_env(), current_stores(), options).await {
            Ok(harness) => harness,
            Err(error) => panic!("cannot assemble the system under test: {error}"),
        }
    }

    /// Assembles the system for `mode` with its cache and ledger in `stores`.
    pub async fn try_start(
        mode: Mode,
        stores: Stores,
        options: HarnessOptions,
    ) -> Result<Self, HarnessError> {
        let suffix = random_suffix();
        let standins = match mode {
            Mode::Offline => Some(StandIns::start().await),
            Mode::Live => None,
        };
        let bedrock_closed = (options.bedrock_unreachable)
            .then(ClosedPort::reserve)
            .transpose()?;
        let openai_closed = (options.openai_unreachable)
            .then(ClosedPort::reserve)
            .transpose()?;
        let bedrock_endpoint = bedrock_closed.as_ref().map(|port| port.url.clone());
        let openai_endpoint = openai_closed
            .as_ref()
            .map(|port| format!("{}/v1", port.url));
        let bedrock = Arc::new(bedrock_provider(mode, standins.as_ref(), bedrock_endpoint).await);
        let openai = Arc::new(openai_provider(mode, standins.as_ref(), openai_endpoint)?);
        let closed_ports = bedrock_closed.into_iter().chain(openai_closed).collect();
        let prefix = format!("lf-suite-{suffix}");
        let ((cache, cache_store), (sink, dynamodb, usage_table)) = match stores {
            Stores::Services => {
                let (sink, table) = dynamodb_sink(mode, &suffix).await?;
                (
                    redis_cache(mode, prefix)?,
                    (sink.clone() as Arc<dyn UsageSink>, Some(sink), table),
                )
            }
            Stores::Memory => {
                let cache = Arc::new(MemoryCache::new());
                let sink = Arc::new(MemoryUsageSink::new());
                (
                    (
                        cache.clone() as Arc<dyn Cache>,
                        CacheStore::memory(cache, prefix),
                    ),
                    (
                        sink.clone() as Arc<dyn UsageSink>,
                        None,
                        UsageTable::Memory(sink),
                    ),
                )
            }
        };
        let key_deriver = KeyDeriver::new(random_secret());
        Ok(Self {
            mode,
            stores,
            suffix,
            _closed_ports: closed_ports,
            standins,
            bedrock,
            openai,
            cache,
            cache_store,
            sink,
            dynamodb,
            usage_table,
            key_deriver,
            clock: ManualClock::new(),
        })
    }

    /// The mode this harness runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where this harness keeps its cache and ledger.
    pub fn stores(&self) -> Stores {
        self.stores
    }

    /// The local stand-ins (offline only): script faults, count and read requests.
    pub fn standins(&self) -> Option<&StandIns> {
        self.standins.as_ref()
    }

    /// The stand-ins, for a test that runs offline only; panics in live mode (the suite's
    /// runner never runs offline-only tests live).
    pub fn offline(&self) -> &StandIns {
        self.standins
            .as_ref()
            .expect("an offline-only test ran in live mode")
    }

    /// The seed's tenant for this harness (`test_tenant_<suffix>`).
    pub fn tenant(&self) -> String {
        self.tenant_named("test_tenant")
    }

    /// Another tenant of this harness (`<name>_<suffix>`).
    pub fn tenant_named(&self, name: &str) -> String {
        format!("{name}_{}", self.suffix)
    }

    /// The seed's request for this harness's tenant: `prompt` to `gpt-4` for `test_agent`,
    /// temperature 0.3, at most 20 tokens.
    pub fn request(&self, prompt: &str) -> CompletionRequest {
        CompletionRequest::prompt(self.tenant(), AGENT, MODEL, prompt)
            .temperature(0.3)
            .max_tokens(20)
    }

    /// The seed's manual-test request ("Test Bedrock Integration"): [`request`](Self::request)
    /// with temperature 0.1, at most 10 tokens, text.
    pub fn seed_request(&self, prompt: &str) -> CompletionRequest {
        self.request(prompt)
            .temperature(0.1)
            .max_tokens(10)
            .response_format(failover_provider::ResponseFormat::Text)
    }

    /// The adapter over this harness's providers (Bedrock first), cache, sink, key deriver
    /// and manual clock, with the seed's breakers and [`config`](Self::config).
    pub fn adapter(&self) -> FailoverAdapter {
        self.adapter_with(self.config())
    }

    /// The suite's adapter settings: the defaults, with cache budgets of a second instead of
    /// 50 ms — the suite's Redis shares two cores with parallel tests, and a lookup past its
    /// budget is (correctly) a miss that would make a cache-hit assertion flaky.
    pub fn config(&self) -> AdapterConfig {
        AdapterConfig::default()
            .with_cache_lookup_budget(Duration::from_secs(1))
            .with_cache_write_budget(Duration::from_secs(1))
    }

    /// [`adapter`](Self::adapter) with explicit settings.
    pub fn adapter_with(&self, config: AdapterConfig) -> FailoverAdapter {
        self.builder(config)
            .build()
            .expect("the harness's adapter builds")
    }

    /// [`adapter`](Self::adapter) with its own routing table.
    pub fn adapter_routed(&self, router: Router) -> FailoverAdapter {
        self.builder(self.config())
            .router(router)
            .build()
            .expect("the harness's adapter builds")
    }

    fn builder(&self, config: AdapterConfig) -> AdapterBuilder {
        FailoverAdapter::builder()
            .clock(Arc::new(self.clock.clone()))
            .provider(self.bedrock.clone(), seed_breaker_config())
            .provider(self.openai.clone(), seed_breaker_config())
            .cache(self.cache.clone())
            .key_deriver(self.key_deriver.clone())
            .usage_sink(self.sink.clone())
            .config(config)
    }

    /// The breakers' clock: advance it to let an open breaker's wait pass.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// What the cache holds under this harness's key prefix.
    pub fn cache_store(&self) -> &CacheStore {
        &self.cache_store
    }

    /// The usage statistics of `query` computed from the ledger's raw records, not its
    /// per-day aggregates: `DynamoDbUsageSink::stats_from_records` in the services tier; in
    /// memory, the statistics of the records held.
    pub async fn stats_from_records(&self, query: &UsageQuery) -> UsageStats {
        match &self.dynamodb {
            Some(sink) => sink
                .stats_from_records(query)
                .await
                .expect("statistics from the usage table's raw items"),
            None => match &self.usage_table {
                UsageTable::Memory(sink) => UsageStats::from_records(&sink.records(), query),
                UsageTable::DynamoDb { .. } => unreachable!("a DynamoDB table has its sink"),
            },
        }
    }

    /// What the usage ledger holds.
    pub fn usage_table(&self) -> &UsageTable {
        &self.usage_table
    }

    /// The hex tenant tag the cache keys of `tenant_id` carry (`{prefix}:{<tag>}:…`).
    pub fn tenant_tag(&self, tenant_id: &str) -> String {
        self.key_deriver.tenant_tag(tenant_id).to_hex()
    }
}

/// SDK attempts per Bedrock call live: the SDK's standard three, as real Bedrock throttles
/// bursts, and a retried call is still one call (and one usage item). Offline, the
/// stand-ins' settings make one: every request a stand-in sees is one call in the ledger.
const LIVE_PROVIDER_ATTEMPTS: u32 = 3;

/// Provider time-outs live (the stand-ins' settings have the same ones offline).
const LIVE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const LIVE_STREAM_TIMEOUT: Duration = Duration::from_secs(20);

async fn bedrock_provider(
    mode: Mode,
    standins: Option<&StandIns>,
    endpoint: Option<String>,
) -> BedrockProvider {
    let builder = match (mode, standins) {
        (Mode::Offline, Some(standins)) => standins.bedrock_config(),
        _ => BedrockConfigBuilder::from_env()
            .max_attempts(LIVE_PROVIDER_ATTEMPTS)
            .connect_timeout(LIVE_CONNECT_TIMEOUT)
            .first_token_timeout(LIVE_STREAM_TIMEOUT)
            .stall_timeout(LIVE_STREAM_TIMEOUT),
    };
    let builder = match endpoint {
        Some(url) => builder.endpoint_url(url),
        None => builder,
    };
    BedrockProvider::new(builder.build()).await
}

fn openai_provider(
    mode: Mode,
    standins: Option<&StandIns>,
    base_url: Option<String>,
) -> Result<OpenAiProvider, HarnessError> {
    let builder = match (mode, standins) {
        (Mode::Offline, Some(standins)) => standins.openai_config(),
        _ => OpenAiConfigBuilder::from_env()
            .max_attempts(LIVE_PROVIDER_ATTEMPTS)
            .connect_timeout(LIVE_CONNECT_TIMEOUT)
            .first_token_timeout(LIVE_STREAM_TIMEOUT)
            .stall_timeout(LIVE_STREAM_TIMEOUT),
    };
    let builder = match base_url {
        Some(url) => builder.base_url(url),
        None => builder,
    };
    OpenAiProvider::new(builder.build())
        .map_err(|error| HarnessError(format!("OpenAI client: {error}")))
}

fn redis_cache(mode: Mode, prefix: String) -> Result<(Arc<dyn Cache>, CacheStore), HarnessError> {
    let config = match mode {
        Mode::Offline => {
            let url = failover_testenv::services::redis::shared()
                .map_err(|e| HarnessError(e.to_string()))?
                .url()
                .to_owned();
            let key = EncryptionKey::generate().map_err(|e| HarnessError::of("cache key", e))?;
            ElastiCacheConfig::new(url, key)
        }
        // Everything `ElastiCacheCache::from_env` reads (endpoint, AUTH, TLS CA), with a
        // value key made for the run when FAILOVER_CACHE_ENCRYPTION_KEY is unset.
        Mode::Live => {
            let key_env = failover_elasticache::ENV_ENCRYPTION_KEY;
            let key_is_set = std::env::var(key_env).is_ok_and(|v| !v.trim().is_empty());
            // A placeholder for the required variable, replaced below by a fresh key.
            let placeholder = "0".repeat(64);
            let mut config = ElastiCacheConfig::from_lookup(|name| {
                let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty());
                if name == key_env && !key_is_set {
                    Some(placeholder.clone())
                } else {
                    value
                }
            })
            .map_err(|e| HarnessError::of("ElastiCache settings", e))?;
            if !key_is_set {
                config.encryption_key =
                    EncryptionKey::generate().map_err(|e| HarnessError::of("cache key", e))?;
            }
            config
        }
    };
    // Operations get the adapter's whole cache budget (see `Harness::config`); live, the
    // first connection may cross a TLS tunnel.
    let (connect_timeout, operation_timeout) = match mode {
        Mode::Offline => (Duration::from_secs(1), Duration::from_secs(1)),
        Mode::Live => (Duration::from_secs(5), Duration::from_secs(2)),
    };
    let config = config
        .with_key_prefix(prefix.clone())
        .with_connect_timeout(connect_timeout)
        .with_operation_timeout(operation_timeout);
    let store = match &config.endpoint {
        Endpoint::Single(url) => CacheStore::new(
            url.clone(),
            config.username.clone(),
            config.password.clone(),
            config.tls_root_cert_pem.clone(),
            prefix,
        ),
        _ => {
            return Err(HarnessError(
                "the suite reads Redis back on one node: point ELASTICACHE_ENDPOINT at a \
                 cluster-mode-disabled primary endpoint (cluster mode has its own tests in \
                 failover-elasticache)"
                    .into(),
            ));
        }
    };
    let cache = ElastiCacheCache::new(config).map_err(|e| HarnessError::of("ElastiCache", e))?;
    Ok((Arc::new(cache), store))
}

async fn dynamodb_sink(
    mode: Mode,
    suffix: &str,
) -> Result<(Arc<DynamoDbUsageSink>, UsageTable), HarnessError> {
    let builder = match mode {
        Mode::Offline => {
            let endpoint =
                failover_testenv::moto::shared().map_err(|e| HarnessError(e.to_string()))?;
            DynamoDbUsageSinkBuilder::new()
                .table_name(failover_testenv::moto::unique_table_name("suite"))
                .endpoint_url(endpoint.url())
                .region("us-east-1")
                .credentials(aws_sdk_dynamodb::config::Credentials::new(
                    "AKIDSTANDINTEST00000",
                    "stand-in-secret-not-real",
                    None,
                    None,
                    "failover-suite",
                ))
                // moto does not isolate concurrent transactions; DynamoDB does.
                .max_in_flight(1)
        }
        // Live items expire a day after the run (when the table has TTL enabled on
        // `expires_at`); the per-day aggregates of the run's tenants stay.
        Mode::Live => DynamoDbUsageSinkBuilder::from_env()
            .map_err(|e| HarnessError::of("DynamoDB settings", e))?
            .ttl_days(1),
    };
    let builder = builder
        .spill_path(std::env::temp_dir().join(format!("failover-suite-{suffix}.spill")))
        .linger(Duration::from_millis(5))
        .attempt_timeout(Duration::from_secs(30));
    let table = builder.config().table_name.clone();
    let client = builder
        .build_client()
        .await
        .map_err(|e| HarnessError::of("DynamoDB client", e))?;
    if mode == Mode::Offline {
        failover_dynamodb::create_table(&client, &table, &TableOptions::default())
            .await
            .map_err(|e| HarnessError::of("DynamoDB table", e))?;
    }
    let sink = builder
        .build()
        .await
        .map_err(|e| HarnessError::of("DynamoDB usage sink", e))?;
    Ok((Arc::new(sink), UsageTable::new(client, table)))
}
