//! Live checks against real Bedrock: ignored by default (a visible skip), run with
//! `cargo test -p failover-bedrock --test live -- --ignored` and the standard AWS
//! environment (`AWS_REGION`, credentials from the SDK chain). `FAILOVER_BEDROCK_LIVE_MODEL`
//! picks the model (default: Claude 3 Haiku). Missing configuration fails the test: it never
//! passes without having talked to Bedrock.

use failover_bedrock::{BedrockConfigBuilder, BedrockProvider};
use failover_provider::{
    FinishReason, Message, Provider, ProviderEvent, ProviderRequest, RequestId, ResponseFormat,
};
use futures::StreamExt;

fn live_request(format: ResponseFormat) -> ProviderRequest {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .expect("live Bedrock tests need AWS_REGION and AWS credentials");
    assert!(!region.is_empty(), "AWS_REGION is empty");
    ProviderRequest {
        request_id: RequestId::random(),
        model: std::env::var("FAILOVER_BEDROCK_LIVE_MODEL")
            .unwrap_or_else(|_| "anthropic.claude-3-haiku-20240307-v1:0".to_owned()),
        messages: vec![Message::user("What is 2+2? Answer with just the number.")],
        temperature: Some(0.0),
        max_tokens: Some(20),
        stop: Vec::new(),
        response_format: format,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

#[tokio::test]
#[ignore = "live: needs AWS credentials and network; run with --ignored"]
async fn live_converse_text_and_json() {
    let provider = BedrockProvider::new(BedrockConfigBuilder::from_env().build()).await;
    let text = provider
        .complete(live_request(ResponseFormat::Text))
        .await
        .unwrap();
    assert!(text.content.contains('4'), "{text:?}");
    assert!(text.usage.input_tokens > 0 && text.usage.output_tokens > 0);
    let json = provider
        .complete(live_request(ResponseFormat::JsonObject))
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json.content).unwrap();
    assert!(value.is_object(), "{value}");
}

#[tokio::test]
#[ignore = "live: needs AWS credentials and network; run with --ignored"]
async fn live_converse_stream() {
    let provider = BedrockProvider::new(BedrockConfigBuilder::from_env().build()).await;
    let events: Vec<_> = provider
        .stream(live_request(ResponseFormat::Text))
        .await
        .unwrap()
        .collect()
        .await;
    let last = events.last().unwrap().as_ref().unwrap();
    let ProviderEvent::Finished {
        finish_reason,
        usage,
        ..
    } = last
    else {
        panic!("the stream did not finish: {events:?}")
    };
    assert_eq!(*finish_reason, FinishReason::Stop);
    assert!(usage.is_some_and(|u| u.output_tokens > 0), "{usage:?}");
}
