//! Shared helpers of the integration tests: a provider pointed at a local server and a
//! request.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use failover_openai::{OpenAiConfig, OpenAiConfigBuilder, OpenAiProvider};
use failover_provider::{Message, ProviderRequest, RequestId, ResponseFormat};

/// The key every test uses; no test output may contain it.
pub const TEST_KEY: &str = "sk-test-SECRET-7f3a9c1e5b2d4a6f8e0c";

/// A config for a local server: fast timeouts, quick retries.
pub fn config(base_url: &str) -> OpenAiConfigBuilder {
    OpenAiConfig::builder()
        .api_key(TEST_KEY)
        .base_url(base_url)
        .connect_timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(5))
        .first_token_timeout(Duration::from_secs(5))
        .stall_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
}

/// A provider for a local server with [`config`]'s settings.
pub fn provider(base_url: &str) -> OpenAiProvider {
    OpenAiProvider::new(config(base_url).build()).unwrap()
}

/// A text request for `gpt-4o`.
pub fn request() -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("req-1"),
        model: "gpt-4o".into(),
        messages: vec![
            Message::system("You answer with numbers."),
            Message::user("What is 2+2? Answer with just the number."),
        ],
        temperature: Some(0.1),
        max_tokens: Some(10),
        stop: Vec::new(),
        response_format: ResponseFormat::Text,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: Some(Instant::now() + Duration::from_secs(20)),
        attempt_deadline: None,
    }
}

/// The request with another response format.
pub fn request_as(format: ResponseFormat) -> ProviderRequest {
    ProviderRequest {
        response_format: format,
        tools: Default::default(),
        sampling: Default::default(),
        ..request()
    }
}
