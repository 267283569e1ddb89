//! `failover serve --config FILE`: one TOML file for the gateway and the engine behind it.
//!
//! Secrets never live in the file. Keys are hashes; provider credentials, the Redis
//! endpoint and encryption key, the cache key secret and DynamoDB's settings come from the
//! environment variables each backend documents (`OPENAI_API_KEY`, the AWS chain,
//! `ELASTICACHE_ENDPOINT`, `FAILOVER_CACHE_ENCRYPTION_KEY`, `FAILOVER_CACHE_KEY`,
//! `FAILOVER_DYNAMODB_TABLE`, …). `FAILOVER_LISTEN` and `FAILOVER_ADMIN_KEY_HASH` override
//! the file's listen address and admin key hash.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use std::time::Duration;

use failover_breaker::BreakerConfig;
use failover_core::Router;
use failover_server::{GatewayConfig, KeyGrant, KeyHash, Limits};
use failover_shared::{LimitsConfig, StoreConfig};
use failover_usage::PricingTable;
use serde::Deserialize;

/// Overrides the listen address.
pub(crate) const LISTEN_ENV: &str = "FAILOVER_LISTEN";
/// Overrides the admin key hash.
pub(crate) const ADMIN_KEY_HASH_ENV: &str = "FAILOVER_ADMIN_KEY_HASH";

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeConfig {
    #[serde(default)]
    pub(crate) server: ServerSection,
    #[serde(default)]
    pub(crate) keys: Vec<KeyGrant>,
    #[serde(default)]
    pub(crate) providers: ProvidersSection,
    /// Routes merged over the embedded table, in its format (`[routes.models."gpt-4"]`).
    #[serde(default)]
    routes: Option<toml::Table>,
    /// Prices merged over the embedded list, in its format (`[pricing.price.openai."m"]`).
    #[serde(default)]
    pricing: Option<toml::Table>,
    #[serde(default)]
    pub(crate) cache: CacheSection,
    #[serde(default)]
    pub(crate) ledger: LedgerSection,
    /// The breaker rules of every provider (the engine's defaults where unset).
    #[serde(default)]
    pub(crate) breaker: BreakerSection,
    /// State shared with the other replicas through Redis/ElastiCache.
    #[serde(default)]
    pub(crate) shared: Option<SharedSection>,
}

/// `[breaker]`: every provider's circuit breaker rules, each over the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakerSection {
    window_size: Option<u32>,
    minimum_calls: Option<u32>,
    failure_rate_threshold: Option<f64>,
    consecutive_failures: Option<u32>,
    open_ms: Option<u64>,
    max_open_ms: Option<u64>,
    jitter: Option<f64>,
    half_open_max_probes: Option<u32>,
    half_open_successes_to_close: Option<u32>,
}

impl BreakerSection {
    /// The rules: the engine's defaults with the file's settings over them.
    pub(crate) fn config(&self) -> Result<BreakerConfig, String> {
        let mut config = BreakerConfig::default();
        let ms = Duration::from_millis;
        if let Some(v) = self.window_size {
            config.window_size = v;
        }
        if let Some(v) = self.minimum_calls {
            config.minimum_calls = v;
        }
        if let Some(v) = self.failure_rate_threshold {
            config.failure_rate_threshold = v;
        }
        if let Some(v) = self.consecutive_failures {
            config.consecutive_failures = v;
        }
        if let Some(v) = self.open_ms {
            config.open_duration = ms(v);
        }
        if let Some(v) = self.max_open_ms {
            config.max_open_duration = ms(v);
        }
        if let Some(v) = self.jitter {
            config.jitter = v;
        }
        if let Some(v) = self.half_open_max_probes {
            config.half_open_max_probes = v;
        }
        if let Some(v) = self.half_open_successes_to_close {
            config.half_open_successes_to_close = v;
        }
        config
            .validate()
            .map_err(|error| format!("[breaker]: {error}"))?;
        Ok(config)
    }
}

/// `[shared]`: breakers and tenant limits shared by every replica through Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharedSection {
    /// `redis://` or `rediss://` URL(s); `FAILOVER_SHARED_REDIS_URL` overrides (one URL,
    /// or several separated by commas for cluster seeds).
    #[serde(default)]
    redis_urls: Vec<String>,
    /// Whether the URLs are nodes of a Redis Cluster.
    #[serde(default)]
    pub(crate) cluster: bool,
    #[serde(default = "default_shared_prefix")]
    pub(crate) key_prefix: String,
    /// One breaker record per provider for every replica.
    #[serde(default = "yes")]
    pub(crate) breakers: bool,
    #[serde(default = "default_probe_lease_ms")]
    pub(crate) probe_lease_ms: u64,
    #[serde(default = "default_refresh_ms")]
    pub(crate) refresh_ms: u64,
    #[serde(default = "default_operation_timeout_ms")]
    pub(crate) operation_timeout_ms: u64,
    /// Budgets and rate limits per tenant.
    #[serde(default)]
    pub(crate) limits: Option<LimitsConfig>,
    /// Identical requests of one tenant on different replicas share one provider call
    /// (needs `[cache] backend = "elasticache"`: the answer travels through the cache).
    #[serde(default)]
    pub(crate) coalesce: bool,
    /// How long a request waits for another replica's identical request.
    #[serde(default = "default_coalesce_wait_ms")]
    pub(crate) coalesce_wait_ms: u64,
    /// How long a replica's claim on a flight holds if it never releases it.
    #[serde(default = "default_coalesce_lock_ms")]
    pub(crate) coalesce_lock_ms: u64,
}

/// Overrides `[shared] redis_urls`.
pub(crate) const SHARED_REDIS_ENV: &str = "FAILOVER_SHARED_REDIS_URL";

fn default_shared_prefix() -> String {
    "lf".to_owned()
}
fn yes() -> bool {
    true
}
fn default_probe_lease_ms() -> u64 {
    30_000
}
fn default_refresh_ms() -> u64 {
    100
}
fn default_operation_timeout_ms() -> u64 {
    100
}
fn default_coalesce_wait_ms() -> u64 {
    10_000
}
fn default_coalesce_lock_ms() -> u64 {
    30_000
}

impl SharedSection {
    /// The store's settings, with the environment's override.
    pub(crate) fn store(&self) -> Result<StoreConfig, String> {
        let urls: Vec<String> = match env(SHARED_REDIS_ENV) {
            Some(urls) => urls.split(',').map(|u| u.trim().to_owned()).collect(),
            None => self.redis_urls.clone(),
        };
        if urls.is_empty() {
            return Err(format!(
                "[shared]: no redis_urls (or {SHARED_REDIS_ENV}): where is the shared state?"
            ));
        }
        let config = if self.cluster {
            StoreConfig::cluster(urls)
        } else if urls.len() == 1 {
            StoreConfig::single(urls[0].clone())
        } else {
            return Err("[shared]: several redis_urls need cluster = true".to_owned());
        };
        Ok(config
            .with_key_prefix(self.key_prefix.clone())
            .with_operation_timeout(Duration::from_millis(self.operation_timeout_ms)))
    }
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    listen: Option<SocketAddr>,
    admin_key_hash: Option<KeyHash>,
    #[serde(default)]
    limits: Limits,
}

/// A provider the gateway can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProviderKind {
    Bedrock,
    OpenAi,
}

impl ProviderKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::OpenAi => "openai",
        }
    }
}

/// `[providers]`: the chain, in order, and each provider's non-secret settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProvidersSection {
    #[serde(default = "default_order")]
    pub(crate) order: Vec<ProviderKind>,
    #[serde(default)]
    pub(crate) bedrock: BedrockSection,
    #[serde(default)]
    pub(crate) openai: OpenAiSection,
}

fn default_order() -> Vec<ProviderKind> {
    vec![ProviderKind::Bedrock, ProviderKind::OpenAi]
}

impl Default for ProvidersSection {
    fn default() -> Self {
        Self {
            order: default_order(),
            bedrock: BedrockSection::default(),
            openai: OpenAiSection::default(),
        }
    }
}

/// `[providers.bedrock]`: over `AWS_REGION`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, the AWS
/// credential chain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BedrockSection {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
}

/// `[providers.openai]`: over `OPENAI_API_KEY`, `OPENAI_BASE_URL`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenAiSection {
    pub(crate) base_url: Option<String>,
    /// Attempts per call, the first included (`1`: no retry on the same provider).
    pub(crate) max_attempts: Option<u32>,
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheSection {
    #[serde(default = "default_cache")]
    pub(crate) backend: CacheBackend,
    /// How long an answer is kept; the engine's default (1 h) when unset.
    pub(crate) ttl_secs: Option<u64>,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            backend: default_cache(),
            ttl_secs: None,
        }
    }
}

fn default_cache() -> CacheBackend {
    CacheBackend::Memory
}

/// Where answers are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CacheBackend {
    /// No cache (and so no coalescing).
    None,
    /// In this process (moka).
    Memory,
    /// Redis/ElastiCache, from `ELASTICACHE_ENDPOINT` and `FAILOVER_CACHE_ENCRYPTION_KEY`.
    ElastiCache,
}

/// `[ledger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LedgerSection {
    #[serde(default = "default_ledger")]
    pub(crate) backend: LedgerBackend,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            backend: default_ledger(),
        }
    }
}

fn default_ledger() -> LedgerBackend {
    LedgerBackend::Memory
}

/// Where usage records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LedgerBackend {
    /// In this process (lost at exit: for trials).
    Memory,
    /// DynamoDB, from `FAILOVER_DYNAMODB_TABLE` and the AWS settings.
    DynamoDb,
}

impl ServeConfig {
    /// Reads and checks `path`; every error names the file and what is wrong.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let config: ServeConfig =
            toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
        config
            .check()
            .map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        self.server.limits.validate()?;
        if self.keys.is_empty() {
            return Err("no [[keys]]: nobody could call the gateway".to_owned());
        }
        if self.providers.order.is_empty() {
            return Err("providers.order is empty: nothing could answer".to_owned());
        }
        let mut seen = Vec::new();
        for kind in &self.providers.order {
            if seen.contains(kind) {
                return Err(format!("providers.order names {} twice", kind.name()));
            }
            seen.push(*kind);
        }
        self.router()?;
        self.pricing()?;
        self.breaker.config()?;
        if let Some(shared) = &self.shared {
            if let Some(limits) = &shared.limits {
                limits
                    .validate()
                    .map_err(|error| format!("[shared.limits]: {error}"))?;
            }
            if shared.probe_lease_ms == 0 || shared.refresh_ms == 0 || shared.coalesce_lock_ms == 0
            {
                return Err(
                    "[shared]: probe_lease_ms, refresh_ms and coalesce_lock_ms must be above zero"
                        .into(),
                );
            }
            if shared.coalesce && self.cache.backend != CacheBackend::ElastiCache {
                return Err(
                    "[shared] coalesce = true needs [cache] backend = \"elasticache\": \
                            the answer reaches the other replicas through the cache"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The embedded routing table with the file's routes merged over it.
    pub(crate) fn router(&self) -> Result<Router, String> {
        let embedded = Router::embedded();
        match &self.routes {
            None => Ok(embedded),
            Some(routes) => {
                let text = toml::to_string(routes).map_err(|error| format!("[routes]: {error}"))?;
                let overrides =
                    Router::from_toml_str(&text).map_err(|error| format!("[routes]: {error}"))?;
                Ok(embedded.merge(overrides))
            }
        }
    }

    /// The embedded price list with the file's prices merged over it.
    pub(crate) fn pricing(&self) -> Result<PricingTable, String> {
        let mut pricing = PricingTable::embedded();
        if let Some(table) = &self.pricing {
            let text = toml::to_string(table).map_err(|error| format!("[pricing]: {error}"))?;
            let overrides = PricingTable::from_toml_str(&text)
                .map_err(|error| format!("[pricing]: {error}"))?;
            pricing.merge(overrides);
        }
        Ok(pricing)
    }

    /// The gateway's part, with the environment's overrides.
    pub(crate) fn gateway(&self) -> Result<GatewayConfig, String> {
        let mut gateway = GatewayConfig {
            limits: self.server.limits.clone(),
            keys: self.keys.clone(),
            admin_key_hash: self.server.admin_key_hash,
            ..GatewayConfig::default()
        };
        if let Some(listen) = self.server.listen {
            gateway.listen = listen;
        }
        if let Some(listen) = env(LISTEN_ENV) {
            gateway.listen = listen
                .parse()
                .map_err(|error| format!("{LISTEN_ENV}={listen}: {error}"))?;
        }
        if let Some(hash) = env(ADMIN_KEY_HASH_ENV) {
            gateway.admin_key_hash = Some(
                KeyHash::parse(&hash).map_err(|error| format!("{ADMIN_KEY_HASH_ENV}: {error}"))?,
            );
        }
        Ok(gateway)
    }

    /// What `--check` prints: what this configuration would run.
    pub(crate) fn describe(&self) -> Result<String, String> {
        let gateway = self.gateway()?;
        let router = self.router()?;
        let mut out = String::new();
        let _ = writeln!(out, "listen: {}", gateway.listen);
        let order: Vec<&str> = self
            .providers
            .order
            .iter()
            .map(|kind| kind.name())
            .collect();
        let _ = writeln!(out, "providers, in failover order: {}", order.join(" → "));
        let models = router.logical_models();
        let _ = writeln!(out, "models: {} ({})", models.len(), models.join(", "));
        let _ = writeln!(out, "cache: {:?}", self.cache.backend);
        let _ = writeln!(out, "ledger: {:?}", self.ledger.backend);
        match &self.shared {
            None => {
                let _ = writeln!(out, "shared state: none (breakers per replica)");
            }
            Some(shared) => {
                let mode = if shared.cluster {
                    "cluster"
                } else {
                    "one node"
                };
                let breakers = if shared.breakers {
                    "shared"
                } else {
                    "per replica"
                };
                let limits = if shared.limits.is_some() { "on" } else { "off" };
                let coalescing = if shared.coalesce {
                    "across replicas"
                } else {
                    "per replica"
                };
                let _ = writeln!(
                    out,
                    "shared state: redis ({mode}), breakers {breakers}, tenant limits {limits}, \
                     coalescing {coalescing}"
                );
            }
        }
        let _ = writeln!(out, "keys:");
        for key in &gateway.keys {
            let models = if key.models.is_empty() {
                "every model".to_owned()
            } else {
                key.models.join(", ")
            };
            let _ = writeln!(
                out,
                "  {} → tenant {}{}; {models}",
                key.name,
                key.tenant,
                if key.assert_tenant {
                    " (may assert a tenant)"
                } else {
                    ""
                },
            );
        }
        let _ = writeln!(
            out,
            "admin routes: {}",
            if gateway.admin_key_hash.is_some() {
                "on"
            } else {
                "off (no admin_key_hash)"
            }
        );
        let limits = &gateway.limits;
        let _ = writeln!(
            out,
            "limits: body {} bytes, {} in flight, headers within {} ms, body within {} ms, \
             answer within {} ms, drain {} ms",
            limits.body_bytes,
            limits.max_in_flight,
            limits.header_timeout_ms,
            limits.body_timeout_ms,
            limits.request_timeout_ms,
            limits.drain_timeout_ms
        );
        Ok(out)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:9000"
admin_key_hash = "blake3:0000000000000000000000000000000000000000000000000000000000000000"

[server.limits]
max_in_flight = 64

[[keys]]
name = "acme-backend"
hash = "blake3:1111111111111111111111111111111111111111111111111111111111111111"
tenant = "acme"
models = ["gpt-4"]

[providers]
order = ["openai", "bedrock"]

[routes.models."house-model"]
openai = "gpt-4o-mini"

[cache]
backend = "none"
"#;

    #[test]
    fn a_full_file_parses_and_describes_itself() {
        let config: ServeConfig = toml::from_str(EXAMPLE).unwrap();
        config.check().unwrap();
        assert_eq!(
            config.providers.order,
            vec![ProviderKind::OpenAi, ProviderKind::Bedrock]
        );
        assert!(config.router().unwrap().knows("house-model"));
        assert!(
            config.router().unwrap().knows("gpt-4"),
            "merged over the embedded table"
        );
        let described = config.describe().unwrap();
        assert!(
            described.contains("acme-backend → tenant acme; gpt-4"),
            "{described}"
        );
        assert!(described.contains("openai → bedrock"), "{described}");
    }

    #[test]
    fn a_shared_section_parses_and_describes_itself() {
        let text = format!(
            "{EXAMPLE}\n[breaker]\nconsecutive_failures = 4\nopen_ms = 5000\n\n\
             [shared]\nredis_urls = [\"redis://127.0.0.1:6379\"]\n\n\
             [shared.limits.default]\nusd_per_day = \"25\"\nrequests_per_minute = 60\n\n\
             [shared.limits.tenants.acme]\nusd_per_day = \"100\"\n\n\
             [shared.limits.agents.\"acme/support-bot\"]\nrequests_per_minute = 5\n"
        );
        let config: ServeConfig = toml::from_str(&text).unwrap();
        config.check().unwrap();
        let breaker = config.breaker.config().unwrap();
        assert_eq!(breaker.consecutive_failures, 4);
        assert_eq!(breaker.open_duration, Duration::from_secs(5));
        let shared = config.shared.as_ref().unwrap();
        let limits = shared.limits.as_ref().unwrap();
        let acme = limits.for_tenant("acme");
        assert_eq!(
            acme.usd_per_day.map(|usd| usd.to_string()),
            Some("100".to_owned())
        );
        assert_eq!(
            acme.requests_per_minute,
            Some(60),
            "the default's, not overridden"
        );
        assert!(
            config
                .describe()
                .unwrap()
                .contains("shared state: redis (one node), breakers shared, tenant limits on, coalescing per replica")
        );
        let broken: ServeConfig =
            toml::from_str(&format!("{EXAMPLE}\n[breaker]\nwindow_size = 0\n")).unwrap();
        assert!(broken.check().unwrap_err().contains("[breaker]"));
        let negative: ServeConfig = toml::from_str(&format!(
            "{EXAMPLE}\n[shared]\nredis_urls = [\"redis://x\"]\n\
             [shared.limits.default]\nusd_per_day = \"-1\"\n"
        ))
        .unwrap();
        assert!(negative.check().unwrap_err().contains("negative"));
        let unkeyed: ServeConfig = toml::from_str(&format!(
            "{EXAMPLE}\n[shared]\nredis_urls = [\"redis://x\"]\n\
             [shared.limits.agents.bot]\nusd_per_day = \"1\"\n"
        ))
        .unwrap();
        assert!(unkeyed.check().unwrap_err().contains("tenant/agent"));
    }

    #[test]
    fn mistakes_are_named() {
        let unknown: Result<ServeConfig, _> = toml::from_str("[server]\nport = 1\n");
        assert!(unknown.unwrap_err().to_string().contains("port"));
        let clear_key: Result<ServeConfig, _> =
            toml::from_str("[[keys]]\nname = \"a\"\nhash = \"sk-in-clear\"\ntenant = \"t\"\n");
        assert!(clear_key.unwrap_err().to_string().contains("blake3:"));
        let no_keys: ServeConfig = toml::from_str("").unwrap();
        assert!(no_keys.check().unwrap_err().contains("[[keys]]"));
    }
}
