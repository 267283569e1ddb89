//! The real provider clients against local servers: `aws-sdk-bedrockruntime` (SigV4 with
//! static test credentials) against one wiremock server, the OpenAI client (bearer key)
//! against another. Each test scripts the servers' answers with the testkit's fixtures.

use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::{BedrockConfig, BedrockProvider, StaticCredentials};
use failover_cache::MemoryCache;
use failover_core::FailoverAdapter;
use failover_openai::{OpenAiConfig, OpenAiProvider};
use failover_testkit::openai_fixtures;
use failover_usage::{MemoryUsageSink, UsageRecord};
use wiremock::MockServer;

use crate::seed_breaker_config;

/// The test key of the OpenAI client; no output may contain it.
pub const OPENAI_TEST_KEY: &str = "sk-test-scenario-4f9e2a7c1d3b5e6f";

/// An adapter over the real clients, and the local servers they talk to.
pub struct WireWorld {
    /// The adapter under test: Bedrock first, OpenAI second.
    pub adapter: FailoverAdapter,
    /// The server the Bedrock client talks to.
    pub bedrock_server: MockServer,
    /// The server the OpenAI client talks to.
    pub openai_server: MockServer,
    /// The usage sink behind the adapter.
    pub sink: Arc<MemoryUsageSink>,
}

impl WireWorld {
    /// Starts both servers (nothing mounted yet: unscripted calls get 404) and the adapter.
    pub async fn start() -> Self {
        let bedrock_server = MockServer::start().await;
        let openai_server = MockServer::start().await;
        let bedrock = BedrockProvider::new(
            BedrockConfig::builder()
                .region("us-east-1")
                .endpoint_url(bedrock_server.uri())
                .credentials(StaticCredentials::new(
                    "AKIDSCENARIOTEST0000",
                    "scenario-secret-not-real",
                ))
                // The adapter fails over; one SDK attempt keeps the scripted call counts exact.
                .max_attempts(1)
                .first_token_timeout(Duration::from_secs(5))
                .stall_timeout(Duration::from_secs(5))
                .build(),
        )
        .await;
        let openai = OpenAiProvider::new(
            OpenAiConfig::builder()
                .api_key(OPENAI_TEST_KEY)
                .base_url(openai_fixtures::base_url(&openai_server))
                .max_attempts(1)
                .first_token_timeout(Duration::from_secs(5))
                .stall_timeout(Duration::from_secs(5))
                .build(),
        )
        .expect("the OpenAI client builds");
        let sink = Arc::new(MemoryUsageSink::default());
        let adapter = FailoverAdapter::builder()
            .provider(Arc::new(bedrock), seed_breaker_config())
            .provider(Arc::new(openai), seed_breaker_config())
            .cache(Arc::new(MemoryCache::new()))
            .usage_sink(sink.clone())
            .build()
            .expect("the wire adapter builds");
        Self {
            adapter,
            bedrock_server,
            openai_server,
            sink,
        }
    }

    /// Every usage record written so far.
    pub fn usage_records(&self) -> Vec<UsageRecord> {
        self.sink.records()
    }

    /// How many requests each server received: (bedrock, openai).
    pub async fn calls(&self) -> (usize, usize) {
        (
            received(&self.bedrock_server).await,
            received(&self.openai_server).await,
        )
    }
}

async fn received(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .map_or(0, |requests| requests.len())
}
