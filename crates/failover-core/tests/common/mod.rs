//! An adapter over two scripted providers (`bedrock` first, `openai` second) with a memory
//! cache and a memory usage sink: the adapter's own behaviour, isolated from any wire.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use failover_breaker::BreakerConfig;
use failover_cache::MemoryCache;
use failover_core::FailoverAdapter;
use failover_provider::CompletionRequest;
use failover_testkit::ScriptedProvider;
use failover_usage::{MemoryUsageSink, UsageRecord};

/// The primary provider's name.
pub const BEDROCK: &str = "bedrock";
/// The fallback provider's name.
pub const OPENAI: &str = "openai";

/// An adapter and what is behind it.
pub struct World {
    pub adapter: FailoverAdapter,
    pub bedrock: Arc<ScriptedProvider>,
    pub openai: Arc<ScriptedProvider>,
    pub sink: Arc<MemoryUsageSink>,
}

impl World {
    /// An adapter over the two scripted providers with default breakers and settings.
    pub fn new(bedrock: ScriptedProvider, openai: ScriptedProvider) -> Self {
        let bedrock = Arc::new(bedrock);
        let openai = Arc::new(openai);
        let sink = Arc::new(MemoryUsageSink::default());
        let adapter = FailoverAdapter::builder()
            .provider(bedrock.clone(), BreakerConfig::default())
            .provider(openai.clone(), BreakerConfig::default())
            .cache(Arc::new(MemoryCache::new()))
            .usage_sink(sink.clone())
            .build()
            .expect("the scripted adapter builds");
        Self {
            adapter,
            bedrock,
            openai,
            sink,
        }
    }

    /// Every usage record written so far.
    pub fn usage_records(&self) -> Vec<UsageRecord> {
        self.sink.records()
    }
}

/// A request of tenant `t`.
pub fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt("t", "a", "gpt-4", prompt)
}
