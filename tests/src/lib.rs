//! The scenario suite's worlds, each owned by one test: [`World`], an adapter over a
//! scripted Bedrock and a scripted OpenAI; [`wire::WireWorld`], the same over the real
//! Bedrock and OpenAI clients talking to local servers that speak their wire formats.
//! Both use a memory cache, a memory usage sink and a manual clock.

pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use failover_breaker::{BreakerConfig, ManualClock};
use failover_cache::MemoryCache;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_testkit::ScriptedProvider;
use failover_usage::{MemoryUsageSink, UsageRecord};

/// The primary provider's name.
pub const BEDROCK: &str = "bedrock";
/// The fallback provider's name.
pub const OPENAI: &str = "openai";

/// Breakers as the seed exercises them: open after 3 consecutive failures, for 30 s, one
/// probe closes them. No jitter, so the clock decides exactly.
pub fn seed_breaker_config() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(3)
        .with_open_duration(Duration::from_secs(30))
        .with_jitter(0.0)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1)
}

/// Everything one test needs, owned by that test.
pub struct World {
    /// The adapter under test.
    pub adapter: FailoverAdapter,
    /// The scripted primary.
    pub bedrock: Arc<ScriptedProvider>,
    /// The scripted fallback.
    pub openai: Arc<ScriptedProvider>,
    /// The cache behind the adapter.
    pub cache: Arc<MemoryCache>,
    /// The usage sink behind the adapter.
    pub sink: Arc<MemoryUsageSink>,
    /// The breakers' clock.
    pub clock: ManualClock,
}

impl World {
    /// A world over the two scripted providers with default adapter settings.
    pub fn new(bedrock: ScriptedProvider, openai: ScriptedProvider) -> Self {
        Self::with_config(bedrock, openai, AdapterConfig::default())
    }

    /// A world with explicit adapter settings.
    pub fn with_config(
        bedrock: ScriptedProvider,
        openai: ScriptedProvider,
        config: AdapterConfig,
    ) -> Self {
        let bedrock = Arc::new(bedrock);
        let openai = Arc::new(openai);
        let cache = Arc::new(MemoryCache::new());
        let sink = Arc::new(MemoryUsageSink::default());
        let clock = ManualClock::new();
        let adapter = FailoverAdapter::builder()
            .clock(Arc::new(clock.clone()))
            .provider(bedrock.clone(), seed_breaker_config())
            .provider(openai.clone(), seed_breaker_config())
            .cache(cache.clone())
            .usage_sink(sink.clone())
            .config(config)
            .build()
            .expect("the scenario adapter builds");
        Self {
            adapter,
            bedrock,
            openai,
            cache,
            sink,
            clock,
        }
    }

    /// Both providers always answer.
    pub fn healthy() -> Self {
        Self::new(
            ScriptedProvider::always(BEDROCK, "Bedrock says 4"),
            ScriptedProvider::always(OPENAI, "OpenAI says 4"),
        )
    }

    /// Every usage record written so far.
    pub fn usage_records(&self) -> Vec<UsageRecord> {
        self.sink.records()
    }
}
