//! Non-streaming completions against wiremock: the request on the wire, text, JSON object
//! and JSON schema answers, and usage.

mod common;

use common::{TEST_KEY, config, provider, request, request_as};
use failover_openai::OpenAiProvider;
use failover_provider::{ErrorKind, FinishReason, Provider, ResponseFormat, TokenUsage};
use failover_standin::openai_fixtures::{
    base_url, chat_completion, chat_completion_cached, json_response, mount_chat,
};
use serde_json::{Value, json};
use wiremock::MockServer;

async fn sent_body(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    serde_json::from_slice(&requests.last().unwrap().body).unwrap()
}

#[tokio::test]
async fn text_completion_sends_the_request_and_maps_the_answer() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o-2024-08-06", "4", 25, 1)),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(
        config(&base_url(&server))
            .organization("org-test")
            .project("proj_test")
            .build(),
    )
    .unwrap();

    let response = provider.complete(request()).await.unwrap();
    assert_eq!(response.content, "4");
    assert_eq!(response.model, "gpt-4o-2024-08-06");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage, TokenUsage::new(25, 1));

    let received = &server.received_requests().await.unwrap()[0];
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("authorization"), Some(format!("Bearer {TEST_KEY}")));
    assert_eq!(header("openai-organization").as_deref(), Some("org-test"));
    assert_eq!(header("openai-project").as_deref(), Some("proj_test"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let body = sent_body(&server).await;
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["messages"][1]["content"],
        "What is 2+2? Answer with just the number."
    );
    assert_eq!(
        body["max_tokens"], 10,
        "a compatible server gets `max_tokens`"
    );
    assert!(body.get("stream").is_none());
    assert!((body["temperature"].as_f64().unwrap() - 0.1).abs() < 1e-6);
}

#[tokio::test]
async fn no_key_sends_no_authorization_header() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("llama3", "hi", 3, 1)),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(
        failover_openai::OpenAiConfig::builder()
            .base_url(base_url(&server))
            .name("ollama")
            .build(),
    )
    .unwrap();
    assert_eq!(provider.name(), "ollama");
    provider.complete(request()).await.unwrap();
    let received = &server.received_requests().await.unwrap()[0];
    assert!(received.headers.get("authorization").is_none());
}

#[tokio::test]
async fn cached_prompt_tokens_are_split_out() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(
            200,
            &chat_completion_cached("gpt-4o", "ok", 2_000, 1_536, 40),
        ),
        None,
    )
    .await;
    let usage = provider(&base_url(&server))
        .complete(request())
        .await
        .unwrap()
        .usage;
    assert_eq!(
        usage,
        TokenUsage {
            input_tokens: 464,
            output_tokens: 40,
            cache_read_tokens: 1_536,
            cache_write_tokens: 0
        }
    );
}

#[tokio::test]
async fn json_object_mode_returns_validated_json() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", r#"{"answer": 4}"#, 30, 6)),
        Some(1),
    )
    .await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", "The answer is 4.", 30, 6)),
        None,
    )
    .await;
    let provider = provider(&base_url(&server));

    let ok = provider
        .complete(request_as(ResponseFormat::JsonObject))
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&ok.content).unwrap();
    assert_eq!(parsed["answer"], 4);
    let body = sent_body(&server).await;
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("JSON"),
        "OpenAI requires the word JSON in the messages"
    );

    let error = provider
        .complete(request_as(ResponseFormat::JsonObject))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "malformed content is not retried"
    );
}

#[tokio::test]
async fn json_schema_mode_sends_the_schema_and_validates_against_it() {
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "unit": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": false
    });
    let format = ResponseFormat::JsonSchema {
        name: "math_answer".into(),
        schema: schema.clone(),
    };
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", r#"{"answer": 4}"#, 30, 6)),
        Some(1),
    )
    .await;
    mount_chat(
        &server,
        json_response(
            200,
            &chat_completion("gpt-4o", r#"{"answer": "four"}"#, 30, 6),
        ),
        None,
    )
    .await;
    let provider = provider(&base_url(&server));

    let ok = provider.complete(request_as(format.clone())).await.unwrap();
    assert_eq!(ok.content, r#"{"answer": 4}"#);
    let body = sent_body(&server).await;
    assert_eq!(
        body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "math_answer", "schema": schema, "strict": false}})
    );

    let error = provider.complete(request_as(format)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse);
    assert!(error.message().contains("schema"), "{error}");
}

#[tokio::test]
async fn an_invalid_schema_is_refused_before_sending() {
    let server = MockServer::start().await;
    let format = ResponseFormat::JsonSchema {
        name: "bad".into(),
        schema: json!({"type": "no-such-type"}),
    };
    let error = provider(&base_url(&server))
        .complete(request_as(format))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn openai_itself_gets_max_completion_tokens() {
    let config = failover_openai::OpenAiConfig::default();
    assert!(config.uses_max_completion_tokens());
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", "4", 1, 1)),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(
        common::config(&base_url(&server))
            .max_tokens_field(failover_openai::MaxTokensField::MaxCompletionTokens)
            .build(),
    )
    .unwrap();
    provider.complete(request()).await.unwrap();
    let body = sent_body(&server).await;
    assert_eq!(body["max_completion_tokens"], 10);
    assert!(body.get("max_tokens").is_none());
}
