//! The real clients' settings for the stand-ins (feature `clients`): what the demo and the
//! scenario suite's offline harness build their `BedrockProvider` and `OpenAiProvider`
//! from, so both talk to the stand-ins the same way.

use std::time::Duration;

use failover_bedrock::{BedrockConfig, BedrockConfigBuilder, StaticCredentials};
use failover_openai::{OpenAiConfig, OpenAiConfigBuilder};

use crate::StandIns;

/// The API key the OpenAI client sends to its stand-in; no output may contain it.
pub const STANDIN_OPENAI_KEY: &str = "sk-standin-3b7c9e1f5a2d4c6e8f0a";

/// Connect time-out to a stand-in on loopback.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// First-token and stall time-outs: generous, a loaded machine is slow; a test that wants a
/// slow answer scripts [`Fault::Slow`](crate::Fault::Slow) beyond them explicitly.
const STREAM_TIMEOUT: Duration = Duration::from_secs(20);

impl StandIns {
    /// The Bedrock client's settings for the Bedrock stand-in: region `us-east-1`, static
    /// dummy credentials (SigV4 signing still runs), and one SDK attempt per call — the
    /// adapter fails over instead of retrying, so every request the stand-in receives is
    /// one provider call in the ledger.
    pub fn bedrock_config(&self) -> BedrockConfigBuilder {
        BedrockConfig::builder()
            .region("us-east-1")
            .endpoint_url(self.bedrock_endpoint())
            .credentials(StaticCredentials::new(
                "AKIDSTANDINTEST00000",
                "stand-in-secret-not-real",
            ))
            .max_attempts(1)
            .connect_timeout(CONNECT_TIMEOUT)
            .first_token_timeout(STREAM_TIMEOUT)
            .stall_timeout(STREAM_TIMEOUT)
    }

    /// The OpenAI client's settings for the OpenAI stand-in: the [`STANDIN_OPENAI_KEY`] and
    /// one attempt per call (see [`StandIns::bedrock_config`]).
    pub fn openai_config(&self) -> OpenAiConfigBuilder {
        OpenAiConfig::builder()
            .api_key(STANDIN_OPENAI_KEY)
            .base_url(self.openai_base_url())
            .max_attempts(1)
            .connect_timeout(CONNECT_TIMEOUT)
            .first_token_timeout(STREAM_TIMEOUT)
            .stall_timeout(STREAM_TIMEOUT)
    }
}
