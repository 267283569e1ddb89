//! The scenario suite's [`Harness`]: the whole assembled system — the real Bedrock and
//! OpenAI clients, the ElastiCache (Redis) cache and the DynamoDB usage sink — configured
//! for the mode the suite runs in (feature `system`).
//!
//! - **Offline** (default): the provider clients talk to [`StandIns`] on loopback that
//!   speak the providers' wire formats and take scripted faults; Redis and the DynamoDB
//!   endpoint come from the testkit's service discovery (`REDIS_URL` / `DYNAMODB_ENDPOINT`,
//!   else a spawned `redis-server` / `moto_server`).
//! - **Live** (`FAILOVER_TEST_MODE=live`, set by `cargo xtask test-live`): real Bedrock,
//!   OpenAI, ElastiCache and DynamoDB from `AWS_REGION`, the AWS credential chain,
//!   `OPENAI_API_KEY`, `ELASTICACHE_ENDPOINT` and `FAILOVER_DYNAMODB_TABLE`.
//!
//! Both modes build the same clients, cache and sink through the same constructors; only
//! the endpoints differ. Failures that work in both modes are induced the way the seed
//! does it: a breaker forced open, failures recorded on a breaker, or a closed port as a
//! provider's endpoint ([`HarnessOptions`]). Scripted server faults ([`Harness::standins`])
//! exist offline only.
//!
//! Every harness has its own tenants (a random suffix), its own cache key prefix and — offline
//! — its own DynamoDB table, so tests share servers but never state, and what the stores
//! hold afterwards can be asserted exactly.

pub mod stores;
pub mod suite;

use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::{BedrockConfig, BedrockProvider, StaticCredentials};
use failover_breaker::{BreakerConfig, ManualClock};
use failover_cache::KeyDeriver;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_dynamodb::{DynamoDbUsageSink, DynamoDbUsageSinkBuilder, TableOptions};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig, EncryptionKey, Endpoint};
use failover_openai::{OpenAiConfig, OpenAiProvider};
use failover_provider::CompletionRequest;

use crate::live;
use crate::standin::StandIns;
use stores::{CacheStore, UsageTable};

/// The primary provider's name.
pub const BEDROCK: &str = "bedrock";
/// The fallback provider's name.
pub const OPENAI: &str = "openai";
/// The seed's agent.
pub const AGENT: &str = "test_agent";
/// The seed's model, routed to Claude on Bedrock and GPT-4 on OpenAI.
pub const MODEL: &str = "gpt-4";

/// The Bedrock model `gpt-4` routes to (`data/routes.toml`).
pub const BEDROCK_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

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

/// Breakers as the seed exercises them: open after 3 consecutive failures, for 30 s; one
/// probe closes them. No jitter, so the harness's manual clock decides exactly.
pub fn seed_breaker_config() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(3)
        .with_open_duration(Duration::from_secs(30))
        .with_jitter(0.0)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1)
}

/// The system under test for one test: providers, cache and sink for the suite's mode, and
/// views of what the stores hold.
pub struct Harness {
    mode: Mode,
    suffix: String,
    /// Held for the harness's life: the unreachable endpoints stay unreachable.
    _closed_ports: Vec<ClosedPort>,
    standins: Option<StandIns>,
    bedrock: Arc<BedrockProvider>,
    openai: Arc<OpenAiProvider>,
    cache: Arc<ElastiCacheCache>,
    cache_store: CacheStore,
    sink: Arc<DynamoDbUsageSink>,
    usage_table: UsageTable,
    key_deriver: KeyDeriver,
    clock: ManualClock,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("mode", &self.mode)
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

    /// A harness for the process's mode with `options`. Panics (failing the test) with
    /// the reason when a store cannot be reached: the suite's runner has already checked
    /// that the services exist.
    pub async fn start_with(options: HarnessOptions) -> Self {
        match Self::try_start(Mode::from_env(), options).await {
            Ok(harness) => harness,
            Err(error) => panic!("cannot assemble the system under test: {error}"),
        }
    }

    /// Assembles the system for `mode`.
    pub async fn try_start(mode: Mode, options: HarnessOptions) -> Result<Self, HarnessError> {
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
        let (cache, cache_store) = cache(mode, &suffix)?;
        let (sink, usage_table) = usage_sink(mode, &suffix).await?;
        let key_deriver = KeyDeriver::new(random_secret());
        Ok(Self {
            mode,
            suffix,
            _closed_ports: closed_ports,
            standins,
            bedrock,
            openai,
            cache: Arc::new(cache),
            cache_store,
            sink: Arc::new(sink),
            usage_table,
            key_deriver,
            clock: ManualClock::new(),
        })
    }

    /// The mode this harness runs in.
    pub fn mode(&self) -> Mode {
        self.mode
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
        FailoverAdapter::builder()
            .clock(Arc::new(self.clock.clone()))
            .provider(self.bedrock.clone(), seed_breaker_config())
            .provider(self.openai.clone(), seed_breaker_config())
            .cache(self.cache.clone())
            .key_deriver(self.key_deriver.clone())
            .usage_sink(self.sink.clone())
            .config(config)
            .build()
            .expect("the harness's adapter builds")
    }

    /// The breakers' clock: advance it to let an open breaker's wait pass.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The usage sink behind the adapter.
    pub fn sink(&self) -> &Arc<DynamoDbUsageSink> {
        &self.sink
    }

    /// What Redis holds under this harness's key prefix.
    pub fn cache_store(&self) -> &CacheStore {
        &self.cache_store
    }

    /// What the DynamoDB table holds.
    pub fn usage_table(&self) -> &UsageTable {
        &self.usage_table
    }

    /// The hex tenant tag the cache keys of `tenant_id` carry (`{prefix}:{<tag>}:…`).
    pub fn tenant_tag(&self, tenant_id: &str) -> String {
        self.key_deriver.tenant_tag(tenant_id).to_hex()
    }
}

/// The real Bedrock client pointed at `standins` the way the suite builds it offline (static
/// dummy credentials, us-east-1, one SDK attempt). `failover demo` uses it too.
pub async fn standin_bedrock(standins: &StandIns) -> BedrockProvider {
    bedrock_provider(Mode::Offline, Some(standins), None).await
}

/// The real OpenAI client pointed at `standins` the way the suite builds it offline (the
/// [`STANDIN_OPENAI_KEY`], one attempt). `failover demo` uses it too.
pub fn standin_openai(standins: &StandIns) -> Result<OpenAiProvider, HarnessError> {
    openai_provider(Mode::Offline, Some(standins), None)
}

/// SDK attempts per Bedrock call. Offline, one: the adapter fails over, and every request a
/// stand-in sees is one provider call in the ledger. Live, the SDK's standard three: real
/// Bedrock throttles bursts, and a retried call is still one call (and one usage item).
fn provider_attempts(mode: Mode) -> u32 {
    match mode {
        Mode::Offline => 1,
        Mode::Live => 3,
    }
}

async fn bedrock_provider(
    mode: Mode,
    standins: Option<&StandIns>,
    endpoint: Option<String>,
) -> BedrockProvider {
    let builder = match (mode, standins) {
        (Mode::Offline, Some(standins)) => BedrockConfig::builder()
            .region("us-east-1")
            .endpoint_url(standins.bedrock_endpoint())
            .credentials(StaticCredentials::new(
                "AKIDSTANDINTEST00000",
                "stand-in-secret-not-real",
            )),
        _ => failover_bedrock::BedrockConfigBuilder::from_env(),
    };
    let builder = match endpoint {
        Some(url) => builder.endpoint_url(url),
        None => builder,
    };
    BedrockProvider::new(
        builder
            .max_attempts(provider_attempts(mode))
            .connect_timeout(Duration::from_secs(2))
            .first_token_timeout(Duration::from_secs(20))
            .stall_timeout(Duration::from_secs(20))
            .build(),
    )
    .await
}

fn openai_provider(
    mode: Mode,
    standins: Option<&StandIns>,
    base_url: Option<String>,
) -> Result<OpenAiProvider, HarnessError> {
    let builder = match (mode, standins) {
        (Mode::Offline, Some(standins)) => OpenAiConfig::builder()
            .api_key(STANDIN_OPENAI_KEY)
            .base_url(standins.openai_base_url()),
        _ => failover_openai::OpenAiConfigBuilder::from_env(),
    };
    let builder = match base_url {
        Some(url) => builder.base_url(url),
        None => builder,
    };
    OpenAiProvider::new(
        builder
            .max_attempts(provider_attempts(mode))
            .connect_timeout(Duration::from_secs(2))
            .first_token_timeout(Duration::from_secs(20))
            .stall_timeout(Duration::from_secs(20))
            .build(),
    )
    .map_err(|error| HarnessError(format!("OpenAI client: {error}")))
}

/// The API key the OpenAI client sends to its stand-in; no output may contain it.
pub const STANDIN_OPENAI_KEY: &str = "sk-standin-3b7c9e1f5a2d4c6e8f0a";

fn cache(mode: Mode, suffix: &str) -> Result<(ElastiCacheCache, CacheStore), HarnessError> {
    let prefix = format!("lf-suite-{suffix}");
    let config = match mode {
        Mode::Offline => {
            let url = crate::services::redis::shared()
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
    Ok((cache, store))
}

async fn usage_sink(
    mode: Mode,
    suffix: &str,
) -> Result<(DynamoDbUsageSink, UsageTable), HarnessError> {
    let builder = match mode {
        Mode::Offline => {
            let endpoint = crate::moto::shared().map_err(|e| HarnessError(e.to_string()))?;
            DynamoDbUsageSinkBuilder::new()
                .table_name(crate::moto::unique_table_name("suite"))
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
    Ok((sink, UsageTable::new(client, table)))
}
