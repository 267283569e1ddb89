//! Seed class 5, `TestOpenAIFallback`, with both real provider clients behind the adapter:
//! the AWS SDK's Bedrock client and the OpenAI client, each talking its own wire format to a
//! local server. Fallback completion, all providers failing, the same response structure
//! whichever provider answers, and streaming fallback.

use failover_core::FailoverError;
use failover_provider::{AttemptOutcome, CompletionRequest, ErrorKind, StreamChunk};
use failover_scenarios::wire::{OPENAI_TEST_KEY, WireWorld};
use failover_scenarios::{BEDROCK, OPENAI};
use failover_testkit::eventstream::{
    ConverseStreamBody, EVENT_STREAM_CONTENT_TYPE, bedrock_error, converse_path, converse_response,
    converse_stream_path, converse_text,
};
use failover_testkit::openai_fixtures::{
    CHAT_PATH, chat_completion, json_response, mount_chat, server_error, sse_events, sse_response,
};
use futures::StreamExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const BEDROCK_GPT4: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt("test_tenant", "test_agent", "gpt-4", prompt)
        .temperature(0.3)
        .max_tokens(20)
}

async fn bedrock_answers(world: &WireWorld, route: String, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(response)
        .mount(&world.bedrock_server)
        .await;
}

#[tokio::test]
async fn openai_answers_when_bedrock_is_unavailable() {
    let world = WireWorld::start().await;
    bedrock_answers(
        &world,
        converse_path(BEDROCK_GPT4),
        bedrock_error(503, "ServiceUnavailableException", "Bedrock is unavailable"),
    )
    .await;
    mount_chat(
        &world.openai_server,
        json_response(200, &chat_completion("gpt-4-0613", "Paris", 14, 2)),
        None,
    )
    .await;

    let result = world
        .adapter
        .generate_completion(request("Capital of France?"))
        .await
        .unwrap();
    assert_eq!(
        (result.provider.as_str(), result.content.as_str()),
        (OPENAI, "Paris")
    );
    assert_eq!(result.model, "gpt-4");
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (14, 2)
    );
    assert!(matches!(
        &result.attempts[0].outcome,
        AttemptOutcome::Failed { kind: ErrorKind::Unavailable, message } if message.contains("ServiceUnavailableException")
    ));
    assert_eq!(world.calls().await, (1, 1));

    // What the OpenAI server received: the routed model and the bearer key, over its API.
    let sent = &world.openai_server.received_requests().await.unwrap()[0];
    assert_eq!(sent.url.path(), CHAT_PATH);
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["model"], "gpt-4");
    assert_eq!(body["messages"][0]["content"], "Capital of France?");
    let authorization = sent.headers.get("authorization").unwrap().to_str().unwrap();
    assert_eq!(authorization, format!("Bearer {OPENAI_TEST_KEY}"));
    // And the Bedrock request was SigV4-signed by the real SDK.
    let bedrock_sent = &world.bedrock_server.received_requests().await.unwrap()[0];
    let signature = bedrock_sent
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(signature.starts_with("AWS4-HMAC-SHA256"), "{signature}");

    let records = world.usage_records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].provider, OPENAI);
    assert!(records[1].fallback_used);
    assert_eq!(records[1].cost, result.estimated_cost);
}

#[tokio::test]
async fn all_providers_failing_is_one_error_naming_each_attempt() {
    let world = WireWorld::start().await;
    bedrock_answers(
        &world,
        converse_path(BEDROCK_GPT4),
        bedrock_error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
    )
    .await;
    mount_chat(
        &world.openai_server,
        json_response(500, &server_error()),
        None,
    )
    .await;

    let error = world
        .adapter
        .generate_completion(request("anything"))
        .await
        .unwrap_err();
    let message = error.to_string();
    let FailoverError::AllProvidersFailed { attempts, .. } = &error else {
        panic!("{message}")
    };
    let kinds: Vec<_> = attempts
        .iter()
        .map(|attempt| match &attempt.outcome {
            AttemptOutcome::Failed { kind, .. } => (attempt.provider.as_str(), *kind),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (BEDROCK, ErrorKind::Throttled),
            (OPENAI, ErrorKind::Unavailable)
        ]
    );
    assert!(
        message.contains(&format!("bedrock ({BEDROCK_GPT4}): throttled")),
        "{message}"
    );
    assert!(message.contains("openai (gpt-4): unavailable"), "{message}");
    assert!(!message.contains(OPENAI_TEST_KEY));
}

#[tokio::test]
async fn the_response_structure_is_the_same_whichever_provider_answers() {
    let primary = WireWorld::start().await;
    bedrock_answers(
        &primary,
        converse_path(BEDROCK_GPT4),
        converse_response(converse_text("4", "end_turn", 18, 1)),
    )
    .await;
    let fallback = WireWorld::start().await;
    bedrock_answers(
        &fallback,
        converse_path(BEDROCK_GPT4),
        bedrock_error(500, "InternalServerException", "oops"),
    )
    .await;
    mount_chat(
        &fallback.openai_server,
        json_response(200, &chat_completion("gpt-4", "4", 16, 1)),
        None,
    )
    .await;

    let a = primary
        .adapter
        .generate_completion(request("What is 2+2?"))
        .await
        .unwrap();
    let b = fallback
        .adapter
        .generate_completion(request("What is 2+2?"))
        .await
        .unwrap();
    assert_eq!(
        (a.provider.as_str(), b.provider.as_str()),
        (BEDROCK, OPENAI)
    );
    for result in [&a, &b] {
        assert_eq!(result.content, "4");
        assert!(result.usage.input_tokens > 0 && result.usage.output_tokens == 1);
        assert!(result.estimated_cost.amount() > rust_decimal::Decimal::ZERO);
        assert!(!result.cached);
        assert_eq!(result.finish_reason, failover_provider::FinishReason::Stop);
        assert_eq!(
            result.attempts.last().unwrap().outcome,
            AttemptOutcome::Succeeded
        );
    }
}

#[tokio::test]
async fn streaming_falls_back_to_openai_before_the_first_chunk() {
    let world = WireWorld::start().await;
    let throttled_stream = ConverseStreamBody::new().message_start().frame(
        failover_testkit::eventstream::exception_frame("throttlingException", "slow down"),
    );
    bedrock_answers(
        &world,
        converse_stream_path(BEDROCK_GPT4),
        ResponseTemplate::new(200)
            .set_body_raw(throttled_stream.to_bytes(), EVENT_STREAM_CONTENT_TYPE),
    )
    .await;
    mount_chat(
        &world.openai_server,
        sse_response(&sse_events(&["Hello", " from", " OpenAI"], Some((9, 0, 3)))),
        None,
    )
    .await;

    let chunks: Vec<_> = world
        .adapter
        .stream_completion(request("Say hello"))
        .await
        .unwrap()
        .collect()
        .await;
    let text: String = chunks
        .iter()
        .filter_map(|chunk| match chunk {
            Ok(StreamChunk::Delta { text }) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello from OpenAI");
    let Some(Ok(StreamChunk::Done(summary))) = chunks.last() else {
        panic!("{chunks:?}")
    };
    assert_eq!(summary.provider, OPENAI);
    assert_eq!(
        (summary.usage.input_tokens, summary.usage.output_tokens),
        (9, 3)
    );
    assert!(matches!(
        summary.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Throttled,
            ..
        }
    ));
    let body: serde_json::Value =
        serde_json::from_slice(&world.openai_server.received_requests().await.unwrap()[0].body)
            .unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
}
