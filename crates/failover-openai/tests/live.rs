//! Live checks against the real OpenAI API (or `OPENAI_BASE_URL`), from `OPENAI_API_KEY`.
//!
//! Ignored by default — they need credentials and the internet — so an offline `cargo test`
//! reports them as ignored, never as passed. Run them with
//! `cargo test -p failover-openai --test live -- --ignored`; without a key they fail,
//! saying so, rather than passing silently. Whether to run them at all (e.g.
//! `SKIP_AWS_INTEGRATION_TESTS`) is the runner's decision, not theirs.

use std::time::{Duration, Instant};

use failover_openai::{OpenAiConfigBuilder, OpenAiProvider};
use failover_provider::{
    Message, Provider, ProviderEvent, ProviderRequest, RequestId, ResponseFormat,
};
use futures::StreamExt;

/// The provider from the environment; panics without credentials.
fn live_provider() -> OpenAiProvider {
    let config = OpenAiConfigBuilder::from_env().build();
    assert!(
        config.api_key.is_some() || std::env::var_os("OPENAI_BASE_URL").is_some(),
        "live tests need OPENAI_API_KEY (or OPENAI_BASE_URL for a keyless local server)"
    );
    OpenAiProvider::new(config).expect("the live provider builds")
}

fn live_model() -> String {
    std::env::var("OPENAI_LIVE_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned())
}

fn request(format: ResponseFormat) -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::random(),
        model: live_model(),
        messages: vec![Message::user(
            "What is 2+2? Answer with just the number, or as JSON {\"answer\": n} if asked for JSON.",
        )],
        temperature: Some(0.0),
        max_tokens: Some(20),
        stop: Vec::new(),
        response_format: format,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: Some(Instant::now() + Duration::from_secs(60)),
        attempt_deadline: None,
    }
}

#[tokio::test]
#[ignore = "live: needs OPENAI_API_KEY and the internet"]
async fn live_completion_reports_usage() {
    let provider = live_provider();
    let response = provider
        .complete(request(ResponseFormat::Text))
        .await
        .unwrap();
    assert!(response.content.contains('4'), "{response:?}");
    assert!(response.usage.input_tokens + response.usage.cache_read_tokens > 0);
    assert!(response.usage.output_tokens > 0);
}

#[tokio::test]
#[ignore = "live: needs OPENAI_API_KEY and the internet"]
async fn live_json_schema_completion_validates() {
    let provider = live_provider();
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: serde_json::json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"],
            "additionalProperties": false
        }),
    };
    let response = provider.complete(request(format)).await.unwrap();
    let value: serde_json::Value = serde_json::from_str(&response.content).unwrap();
    assert_eq!(value["answer"], 4);
}

#[tokio::test]
#[ignore = "live: needs OPENAI_API_KEY and the internet"]
async fn live_stream_ends_with_usage() {
    let provider = live_provider();
    let events: Vec<_> = provider
        .stream(request(ResponseFormat::Text))
        .await
        .unwrap()
        .collect()
        .await;
    let Some(Ok(ProviderEvent::Finished { usage, .. })) = events.last() else {
        panic!("the stream did not finish: {events:?}")
    };
    assert!(
        usage.is_some(),
        "include_usage was sent; usage must come back"
    );
}
