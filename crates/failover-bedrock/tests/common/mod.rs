//! Shared set-up: the real SDK client pointed at a local server with static test
//! credentials and a fixed region, and an adapter over it with a scripted "openai" behind.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::{BedrockConfig, BedrockConfigBuilder, BedrockProvider, StaticCredentials};
use failover_breaker::BreakerConfig;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_testkit::ScriptedProvider;
use failover_usage::MemoryUsageSink;

/// `gpt-4` routes here on Bedrock (embedded routing table).
pub const GPT4_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// `gpt-4o` routes to this cross-region inference profile.
pub const GPT4O_MODEL: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";

/// A config for a local server: fixed region, static test keys, no SDK retries, short
/// time-outs.
pub fn local_config(endpoint: &str) -> BedrockConfigBuilder {
    BedrockConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(StaticCredentials::new(
            "AKIDTESTTESTTESTTEST",
            "test-secret-key-not-real",
        ))
        .max_attempts(1)
        .connect_timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(5))
        .first_token_timeout(Duration::from_secs(5))
        .stall_timeout(Duration::from_secs(5))
}

/// The provider over a local server.
pub async fn bedrock(endpoint: &str) -> Arc<BedrockProvider> {
    Arc::new(BedrockProvider::new(local_config(endpoint).build()).await)
}

/// Breakers that open on the first failure, so a test can see the breaker outcome.
pub fn trip_on_first_failure() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(1)
        .with_open_duration(Duration::from_secs(1))
        .with_jitter(0.0)
}

/// Everything one test needs.
pub struct World {
    pub adapter: FailoverAdapter,
    pub openai: Arc<ScriptedProvider>,
    pub sink: Arc<MemoryUsageSink>,
}

/// An adapter: the Bedrock provider first, a scripted "openai" second.
pub fn world(
    bedrock: Arc<BedrockProvider>,
    openai: ScriptedProvider,
    breaker: BreakerConfig,
) -> World {
    let openai = Arc::new(openai);
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = FailoverAdapter::builder()
        .provider(bedrock, breaker.clone())
        .provider(openai.clone(), breaker)
        .usage_sink(sink.clone())
        .config(AdapterConfig::default().with_default_timeout(Some(Duration::from_secs(20))))
        .build()
        .unwrap();
    World {
        adapter,
        openai,
        sink,
    }
}
