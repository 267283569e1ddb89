//! The seed's world as the stand-ins serve it: the provider names, the agent and model its
//! scenarios send, the Bedrock model that model routes to, and the breaker settings its
//! circuit-breaker scenarios exercise. The demo and the scenario suite share them, so both
//! show the same numbers.

use std::time::Duration;

use failover_breaker::BreakerConfig;

/// The primary provider's name.
pub const BEDROCK: &str = "bedrock";
/// The fallback provider's name.
pub const OPENAI: &str = "openai";
/// The seed's agent.
pub const AGENT: &str = "test_agent";
/// The seed's model, routed to Claude on Bedrock and GPT-4 on OpenAI.
pub const MODEL: &str = "gpt-4";
/// The Bedrock model `gpt-4` routes to (`failover-core`'s `data/routes.toml`).
pub const BEDROCK_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

/// Breakers as the seed exercises them: open after 3 consecutive failures, for 30 s; one
/// probe closes them. No jitter, so a manual clock decides exactly.
pub fn seed_breaker_config() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(3)
        .with_open_duration(Duration::from_secs(30))
        .with_jitter(0.0)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1)
}
