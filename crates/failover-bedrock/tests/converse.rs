//! `Converse` through the real SDK client against wiremock: the seed's Bedrock class
//! (completion, JSON mode, routing, token counting) and every error class.

mod common;

use std::time::Duration;

use common::{GPT4_MODEL, GPT4O_MODEL, bedrock, local_config, trip_on_first_failure, world};
use failover_bedrock::BedrockProvider;
use failover_breaker::{BreakerConfig, BreakerState};
use failover_core::FailoverError;
use failover_provider::{
    AttemptOutcome, BreakerEffect, CompletionRequest, ErrorKind, FinishReason, Message, Provider,
    ProviderRequest, RequestId, ResponseFormat, TokenUsage, Usd,
};
use failover_standin::eventstream::{
    BEDROCK_ERRORS, bedrock_error, converse_path, converse_response, converse_text,
    converse_tool_use,
};
use failover_testkit::{ScriptedProvider, Step};
use rust_decimal::Decimal;
use serde_json::json;
use wiremock::matchers::{body_partial_json, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn provider_request(model: &str, format: ResponseFormat) -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("test"),
        model: model.to_owned(),
        messages: vec![Message::user("What is 2+2?")],
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: format,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

fn usd(units: i64, scale: u32) -> Usd {
    Usd::new(Decimal::new(units, scale))
}

#[tokio::test]
async fn completion_through_the_adapter_reports_content_usage_and_cost() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .and(header_exists("authorization"))
        .and(body_partial_json(json!({
            "messages": [{"role": "user", "content": [{"text": "What is 2+2? Answer with just the number."}]}],
            "system": [{"text": "You are terse."}],
            "inferenceConfig": {"maxTokens": 10}
        })))
        .respond_with(converse_response(converse_text("4", "end_turn", 18, 1)))
        .expect(1)
        .mount(&server)
        .await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let request = CompletionRequest::messages(
        "tenant",
        "agent",
        "gpt-4",
        vec![
            Message::system("You are terse."),
            Message::user("What is 2+2? Answer with just the number."),
        ],
    )
    .temperature(0.1)
    .max_tokens(10);
    let result = world.adapter.generate_completion(request).await.unwrap();
    assert_eq!(result.provider, "bedrock");
    assert_eq!(result.model, GPT4_MODEL);
    assert_eq!(result.content, "4");
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, TokenUsage::new(18, 1));
    // 18 × $3/M + 1 × $15/M
    assert_eq!(result.estimated_cost, usd(69, 6));
    assert_eq!(world.openai.call_count(), 0);
    world.adapter.flush_usage().await.unwrap();
    let records = world.sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].provider, "bedrock");
    assert_eq!(records[0].usage, TokenUsage::new(18, 1));
    assert_eq!(records[0].cost, usd(69, 6));
    assert_eq!(records[0].model, GPT4_MODEL);
    let authorization = server.received_requests().await.unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTESTTEST/"),
        "SigV4 signing ran: {authorization}"
    );
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    // The SDK models temperature as an f32: 0.1 goes on the wire as its f32 value.
    let sent: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    let temperature = sent["inferenceConfig"]["temperature"].as_f64().unwrap();
    assert!((temperature - 0.1).abs() < 1e-6, "{temperature}");
}

#[tokio::test]
async fn inference_profile_ids_are_percent_encoded_and_cache_tokens_are_priced() {
    let server = MockServer::start().await;
    let mut body = converse_text("hello", "end_turn", 100, 10);
    body["usage"]["cacheReadInputTokens"] = json!(1000);
    body["usage"]["cacheWriteInputTokens"] = json!(200);
    Mock::given(method("POST"))
        .and(path(
            "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse",
        ))
        .respond_with(converse_response(body))
        .expect(1)
        .mount(&server)
        .await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4o", "hi"))
        .await
        .unwrap();
    assert_eq!(result.model, GPT4O_MODEL);
    assert_eq!(
        result.usage,
        TokenUsage {
            input_tokens: 100,
            output_tokens: 10,
            cache_read_tokens: 1000,
            cache_write_tokens: 200
        }
    );
    // 100 × 3 + 10 × 15 + 1000 × 0.30 + 200 × 3.75 = 1500 $/M tokens
    assert_eq!(result.estimated_cost, usd(15, 4));
}

#[tokio::test]
async fn json_object_mode_forces_the_json_tool_and_returns_its_input() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .and(body_partial_json(json!({
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "json_response", "inputSchema": {"json": {"type": "object"}}}}],
                "toolChoice": {"tool": {"name": "json_response"}}
            }
        })))
        .respond_with(converse_response(converse_tool_use(
            "json_response",
            json!({"answer": 4, "reasoning": "2+2"}),
            25,
            9,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let result = world
        .adapter
        .generate_completion(
            CompletionRequest::prompt("t", "a", "gpt-4", "2+2 as JSON")
                .response_format(ResponseFormat::JsonObject),
        )
        .await
        .unwrap();
    assert_eq!(result.provider, "bedrock");
    let parsed: serde_json::Value = serde_json::from_str(&result.content).unwrap();
    assert_eq!(parsed, json!({"answer": 4, "reasoning": "2+2"}));
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, TokenUsage::new(25, 9));
}

#[tokio::test]
async fn a_json_answer_breaking_the_schema_is_malformed_and_fails_over() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .and(body_partial_json(json!({
            "toolConfig": {"toolChoice": {"tool": {"name": "json_response"}}}
        })))
        .respond_with(converse_response(converse_tool_use(
            "json_response",
            json!({"answer": "four"}),
            25,
            9,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::new("openai").then(Step::reply(r#"{"answer": 4}"#)),
        BreakerConfig::default(),
    );
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"]
        }),
    };
    let result = world
        .adapter
        .generate_completion(
            CompletionRequest::prompt("t", "a", "gpt-4", "2+2").response_format(format),
        )
        .await
        .unwrap();
    assert_eq!(result.provider, "openai");
    let AttemptOutcome::Failed { kind, message } = &result.attempts[0].outcome else {
        panic!("bedrock should have failed: {:?}", result.attempts)
    };
    assert_eq!(*kind, ErrorKind::MalformedResponse);
    assert!(message.contains("schema"), "{message}");
}

#[tokio::test]
async fn a_text_answer_in_json_mode_is_malformed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(converse_response(converse_text(
            "Sure! Here is JSON: {\"answer\": 4}",
            "end_turn",
            5,
            5,
        )))
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let error = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::JsonObject))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse);
}

/// The kind each realistic Bedrock error response must classify as, in
/// `BEDROCK_ERRORS` order.
const EXPECTED_KINDS: [ErrorKind; 12] = [
    ErrorKind::Throttled,
    ErrorKind::Throttled,
    ErrorKind::Unavailable,
    ErrorKind::Unavailable,
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::ModelError,
    ErrorKind::InvalidRequest,
    ErrorKind::ContextTooLong,
    ErrorKind::AuthOrConfig,
    ErrorKind::AuthOrConfig,
    ErrorKind::AuthOrConfig,
];

#[tokio::test]
async fn every_error_response_classifies_with_its_code_and_status() {
    for ((status, error_type, message), expected) in BEDROCK_ERRORS.iter().zip(EXPECTED_KINDS) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(converse_path(GPT4_MODEL)))
            .respond_with(bedrock_error(*status, error_type, message))
            .expect(1)
            .mount(&server)
            .await;
        let provider = bedrock(&server.uri()).await;
        let error = provider
            .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), expected, "{error_type}: {message}: {error}");
        assert_eq!(error.http_status(), Some(*status), "{error_type}");
        assert_eq!(error.provider_code(), Some(*error_type));
        assert_eq!(error.message(), *message);
    }
}

#[tokio::test]
async fn every_error_class_has_its_breaker_outcome_and_failover_decision() {
    for ((status, error_type, message), kind) in BEDROCK_ERRORS.iter().zip(EXPECTED_KINDS) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(bedrock_error(*status, error_type, message))
            .mount(&server)
            .await;
        let world = world(
            bedrock(&server.uri()).await,
            ScriptedProvider::always("openai", "from openai"),
            trip_on_first_failure(),
        );
        let result = world
            .adapter
            .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "hi"))
            .await;
        let breaker = world.adapter.breaker("bedrock").unwrap().snapshot();
        match kind.breaker_effect() {
            BreakerEffect::Failure => {
                assert_eq!(breaker.state, BreakerState::Open, "{error_type}: {message}");
                assert_eq!(breaker.last_error_kind, Some(kind.as_str()));
            }
            BreakerEffect::Ignored => {
                assert_eq!(
                    breaker.state,
                    BreakerState::Closed,
                    "{error_type}: {message}"
                );
                assert_eq!(breaker.failures, 0, "{error_type}: {message}");
            }
        }
        if kind.fails_over() {
            let completion =
                result.unwrap_or_else(|e| panic!("{error_type} should fail over: {e}"));
            assert_eq!(completion.provider, "openai");
            assert!(matches!(
                &completion.attempts[0].outcome,
                AttemptOutcome::Failed { kind: k, .. } if *k == kind
            ));
        } else {
            match result {
                Err(FailoverError::Refused {
                    kind: k, provider, ..
                }) => {
                    assert_eq!((k, provider.as_str()), (kind, "bedrock"));
                }
                other => panic!("{error_type} should be refused: {other:?}"),
            }
            assert_eq!(world.openai.call_count(), 0, "{error_type}");
        }
    }
}

#[tokio::test]
async fn throttling_keeps_the_retry_after_and_the_breaker_honours_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            bedrock_error(429, "ThrottlingException", "Too many requests")
                .insert_header("Retry-After", "30"),
        )
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let error = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));

    // Through the adapter: the breaker (open for 1 s on its own) stays open for the 30 s
    // the service asked for, and the request fails over.
    let world = world(
        provider,
        ScriptedProvider::always("openai", "from openai"),
        trip_on_first_failure(),
    );
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "hi"))
        .await
        .unwrap();
    assert_eq!(result.provider, "openai");
    let breaker = world.adapter.breaker("bedrock").unwrap().snapshot();
    assert_eq!(breaker.state, BreakerState::Open);
    let open_for = breaker.next_probe_at.unwrap() - breaker.opened_at.unwrap();
    assert!(open_for >= Duration::from_secs(30), "{open_for:?}");
}

#[tokio::test]
async fn unknown_exceptions_and_bare_statuses_classify_by_status() {
    let cases = [
        (
            bedrock_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            ErrorKind::AuthOrConfig,
        ),
        (
            bedrock_error(
                400,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
            ErrorKind::AuthOrConfig,
        ),
        (
            bedrock_error(502, "SomeFutureException", "bad gateway"),
            ErrorKind::Unavailable,
        ),
        (
            ResponseTemplate::new(503).set_body_string("<html>Service Unavailable</html>"),
            ErrorKind::Unavailable,
        ),
        (
            ResponseTemplate::new(429).set_body_string(""),
            ErrorKind::Throttled,
        ),
    ];
    for (response, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&server)
            .await;
        let error = bedrock(&server.uri())
            .await
            .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), expected, "{error}");
    }
}

#[tokio::test]
async fn an_unparseable_answer_is_malformed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("{not json", "application/json"))
        .mount(&server)
        .await;
    let error = bedrock(&server.uri())
        .await
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{error}");
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error_that_fails_over() {
    // A port that was just free: nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let provider = bedrock(&endpoint).await;
    let error = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Network, "{error}");

    let world = world(
        provider,
        ScriptedProvider::always("openai", "from openai"),
        BreakerConfig::default(),
    );
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "hi"))
        .await
        .unwrap();
    assert_eq!(result.provider, "openai");
}

#[tokio::test]
async fn the_attempt_timeout_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            converse_response(converse_text("late", "end_turn", 1, 1))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let config = local_config(&server.uri())
        .attempt_timeout(Duration::from_millis(300))
        .build();
    let provider = BedrockProvider::new(config).await;
    let started = std::time::Instant::now();
    let error = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_sdk_owns_retries_within_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(bedrock_error(
            503,
            "ServiceUnavailableException",
            "try again",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(converse_response(converse_text(
            "recovered",
            "end_turn",
            3,
            1,
        )))
        .with_priority(2)
        .mount(&server)
        .await;
    let config = local_config(&server.uri())
        .max_attempts(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build();
    let provider = BedrockProvider::new(config).await;
    let response = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap();
    assert_eq!(response.content, "recovered");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    // Persistent throttling: exactly max_attempts requests, then the classified error.
    let throttled = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(bedrock_error(429, "ThrottlingException", "slow down"))
        .mount(&throttled)
        .await;
    let config = local_config(&throttled.uri())
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build();
    let error = BedrockProvider::new(config)
        .await
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(throttled.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_guardrail_stop_in_text_mode_is_a_content_filter_finish() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(converse_response(converse_text(
            "Sorry, the model cannot answer this question.",
            "guardrail_intervened",
            12,
            9,
        )))
        .mount(&server)
        .await;
    let response = bedrock(&server.uri())
        .await
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap();
    assert_eq!(response.finish_reason, FinishReason::ContentFilter);
    assert_eq!(response.usage, TokenUsage::new(12, 9));
}

#[tokio::test]
async fn no_secret_reaches_debug_output_or_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(bedrock_error(403, "AccessDeniedException", "denied"))
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let printed = format!("{provider:?}");
    assert!(!printed.contains("test-secret-key-not-real"), "{printed}");
    assert!(printed.contains("redacted"), "{printed}");
    let error = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("test-secret-key-not-real"), "{shown}");
}

#[tokio::test]
async fn models_configured_for_native_structured_output_get_an_output_config() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .and(body_partial_json(json!({
            "outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"name": "answer"}}}}
        })))
        .respond_with(converse_response(converse_text(r#"{"answer": 4}"#, "end_turn", 20, 6)))
        .expect(1)
        .mount(&server)
        .await;
    let config = local_config(&server.uri())
        .native_json_model(GPT4_MODEL)
        .build();
    let provider = BedrockProvider::new(config).await;
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}),
    };
    let response = provider
        .complete(provider_request(GPT4_MODEL, format))
        .await
        .unwrap();
    assert_eq!(response.content, r#"{"answer": 4}"#);
    let sent: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(sent.get("toolConfig").is_none(), "{sent}");
    let schema: serde_json::Value = serde_json::from_str(
        sent["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(schema["required"], json!(["answer"]));
}

#[tokio::test]
async fn configuration_faults_are_auth_or_config_through_the_client() {
    let faults = [
        (
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        (
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        (404, "ResourceNotFoundException", "Model not found."),
        (
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
        ),
        (
            400,
            "ValidationException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
    ];
    for (status, error_type, message) in faults {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(converse_path(GPT4_MODEL)))
            .respond_with(bedrock_error(status, error_type, message))
            .mount(&server)
            .await;
        let provider = bedrock(&server.uri()).await;
        let error = provider
            .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::AuthOrConfig,
            "{error_type}: {message}"
        );
    }
}

#[tokio::test]
async fn an_absurd_retry_hint_is_clamped_to_max_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .respond_with(
            bedrock_error(429, "ThrottlingException", "slow down")
                .insert_header("retry-after", "100000000000000000000"),
        )
        .mount(&server)
        .await;
    let provider = BedrockProvider::new(
        local_config(&server.uri())
            .max_retry_after(Duration::from_secs(90))
            .build(),
    )
    .await;
    let error = provider
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(90)));
}

#[tokio::test]
async fn a_converse_body_declared_above_the_cap_is_malformed() {
    let server = MockServer::start().await;
    let long = "x".repeat(8 * 1024);
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .respond_with(converse_response(converse_text(&long, "end_turn", 1, 1)))
        .mount(&server)
        .await;
    let capped = BedrockProvider::new(
        local_config(&server.uri())
            .max_response_bytes(4 * 1024)
            .build(),
    )
    .await;
    let error = capped
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{error}");
    let roomy = bedrock(&server.uri()).await;
    let answer = roomy
        .complete(provider_request(GPT4_MODEL, ResponseFormat::Text))
        .await
        .unwrap();
    assert_eq!(answer.content, long);
}
