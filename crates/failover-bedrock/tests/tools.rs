//! Tool calling, images and `top_p` through the real SDK client against wiremock and the
//! chunked stand-in: the request bodies Bedrock receives, and plain and streamed answers
//! with tool calls, with and without JSON mode.

mod common;

use common::{GPT4_MODEL, bedrock, world};
use failover_bedrock::BedrockProvider;
use failover_bedrock::mapping::{JSON_TOOL_DESCRIPTION, JSON_TOOL_NAME, NO_TOOL_CALLS_INSTRUCTION};
use failover_breaker::BreakerConfig;
use failover_provider::{
    CompletionRequest, ContentPart, ErrorKind, FinishReason, ImageMediaType, ImagePart, Message,
    Provider, ProviderError, ProviderEvent, ProviderRequest, RequestId, ResponseFormat,
    StreamChunk, TokenUsage, ToolCall, ToolCallAssembler, ToolChoice, ToolDefinition,
    ToolResultContent,
};
use failover_standin::bedrock_server::{ChunkedResponse, ChunkedServer};
use failover_standin::eventstream::{
    ConverseStreamBody, converse_path, converse_response, converse_stream_path, converse_text,
    converse_tool_calls, converse_tool_use,
};
use failover_testkit::ScriptedProvider;
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn weather() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        "The weather in a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

fn clock() -> ToolDefinition {
    ToolDefinition {
        name: "get_time".into(),
        description: None,
        input_schema: json!({"type": "object"}),
    }
}

fn request(messages: Vec<Message>) -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("tools"),
        model: GPT4_MODEL.to_owned(),
        messages,
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: ResponseFormat::Text,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

/// A conversation that called two tools and got their results (one failed).
fn tool_history() -> Vec<Message> {
    vec![
        Message::user("Weather in Paris, and the time?"),
        Message::assistant_with_calls(
            "Checking both.",
            vec![
                ToolCall::new("tooluse_Wx1", "get_weather", r#"{"city":"Paris"}"#),
                ToolCall::new("tooluse_Tm2", "get_time", "{}"),
            ],
        ),
        Message::tool_result(
            "tooluse_Wx1",
            ToolResultContent::Json(json!({"sky": "clear", "c": 21})),
        ),
        Message::tool_error("tooluse_Tm2", "clock unavailable"),
    ]
}

/// A wiremock server answering every `Converse` with `body`.
async fn converse_server(body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_path(GPT4_MODEL)))
        .respond_with(converse_response(body))
        .mount(&server)
        .await;
    server
}

async fn stream_server(body: &ConverseStreamBody) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_stream_path(GPT4_MODEL)))
        .respond_with(body.response())
        .mount(&server)
        .await;
    server
}

/// The JSON body of the only request `server` received.
async fn sent(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    serde_json::from_slice(&requests[0].body).unwrap()
}

fn tool_names(body: &Value) -> Vec<String> {
    body["toolConfig"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["toolSpec"]["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn events(
    provider: &BedrockProvider,
    request: ProviderRequest,
) -> Vec<Result<ProviderEvent, ProviderError>> {
    provider
        .stream(request)
        .await
        .expect("the stream opens")
        .collect()
        .await
}

/// The calls of a stream's items, assembled (and their order checked) the way the adapter
/// does it.
fn assembled(items: &[Result<ProviderEvent, ProviderError>]) -> (String, Vec<ToolCall>) {
    let mut text = String::new();
    let mut calls = ToolCallAssembler::new();
    for item in items {
        match item.as_ref().unwrap() {
            ProviderEvent::Delta(delta) => text.push_str(delta),
            ProviderEvent::ToolCallStart { index, id, name } => {
                calls.start(*index, id, name).unwrap()
            }
            ProviderEvent::ToolCallDelta { index, arguments } => {
                calls.delta(*index, arguments).unwrap()
            }
            ProviderEvent::ToolCallEnd { index } => calls.end(*index).unwrap(),
            ProviderEvent::Finished { .. } => {}
        }
    }
    (text, calls.finish().unwrap())
}

fn finish_reason(items: &[Result<ProviderEvent, ProviderError>]) -> FinishReason {
    match items.last() {
        Some(Ok(ProviderEvent::Finished { finish_reason, .. })) => finish_reason.clone(),
        other => panic!("the stream did not finish: {other:?}"),
    }
}

fn two_calls_answer() -> Value {
    converse_tool_calls(
        Some("Checking both."),
        &[
            (
                "tooluse_A1",
                "get_weather",
                json!({"city": "Paris", "units": ["c", "f"]}),
            ),
            ("tooluse_B2", "get_time", json!({})),
        ],
        40,
        25,
    )
}

#[tokio::test]
async fn the_request_carries_tools_choice_images_tool_history_and_top_p() {
    let server = converse_server(two_calls_answer()).await;
    let provider = bedrock(&server.uri()).await;
    let image = ImagePart::new(ImageMediaType::Png, vec![0x89, b'P', b'N', b'G']);
    let mut messages = vec![Message::user_parts(vec![
        ContentPart::text("What is on this map?"),
        ContentPart::Image(image),
    ])];
    messages.extend(tool_history());
    messages.push(Message::user("Now both again."));
    let mut request = request(messages);
    request.tools.tools = vec![weather(), clock()];
    request.tools.choice = ToolChoice::Required;
    request.sampling.top_p = Some(0.5);
    request.sampling.seed = Some(42);
    request.sampling.user = Some("end-user-7".into());
    let response = provider.complete(request).await.unwrap();

    let body = sent(&server).await;
    assert_eq!(
        body["toolConfig"],
        json!({
            "tools": [
                {"toolSpec": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "inputSchema": {"json": weather().input_schema}
                }},
                {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}
            ],
            "toolChoice": {"any": {}}
        })
    );
    assert_eq!(body["inferenceConfig"], json!({"topP": 0.5}));
    // No seed on Converse; the end user's id is not passed on.
    assert!(body.get("requestMetadata").is_none(), "{body}");
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(
        messages[0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw=="}}})
    );
    assert_eq!(
        messages[1]["content"],
        json!([
            {"text": "Checking both."},
            {"toolUse": {"toolUseId": "tooluse_Wx1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_Tm2", "name": "get_time", "input": {}}}
        ])
    );
    // The two results and the next question merge into one user turn, results first.
    assert_eq!(
        messages[2]["content"],
        json!([
            {"toolResult": {"toolUseId": "tooluse_Wx1", "content": [{"json": {"sky": "clear", "c": 21}}]}},
            {"toolResult": {
                "toolUseId": "tooluse_Tm2",
                "content": [{"text": "clock unavailable"}],
                "status": "error"
            }},
            {"text": "Now both again."}
        ])
    );

    assert_eq!(response.content, "Checking both.");
    assert_eq!(response.finish_reason, FinishReason::ToolUse);
    assert_eq!(response.usage, TokenUsage::new(40, 25));
    assert_eq!(response.tool_calls.len(), 2);
    assert_eq!(response.tool_calls[0].id, "tooluse_A1");
    assert_eq!(response.tool_calls[0].name, "get_weather");
    assert_eq!(
        response.tool_calls[0].arguments_json().unwrap(),
        json!({"city": "Paris", "units": ["c", "f"]})
    );
    assert_eq!(
        response.tool_calls[1],
        ToolCall::new("tooluse_B2", "get_time", "{}")
    );
}

#[tokio::test]
async fn choices_map_to_auto_any_and_a_named_tool() {
    for (choice, expected) in [
        (ToolChoice::Auto, json!({"auto": {}})),
        (ToolChoice::Required, json!({"any": {}})),
        (
            ToolChoice::Tool("get_time".into()),
            json!({"tool": {"name": "get_time"}}),
        ),
    ] {
        let server = converse_server(converse_text("ok", "end_turn", 1, 1)).await;
        let provider = bedrock(&server.uri()).await;
        let mut request = request(vec![Message::user("q")]);
        request.tools.tools = vec![weather(), clock()];
        request.tools.choice = choice.clone();
        provider.complete(request).await.unwrap();
        let body = sent(&server).await;
        assert_eq!(body["toolConfig"]["toolChoice"], expected, "{choice:?}");
        assert_eq!(tool_names(&body), ["get_weather", "get_time"]);
    }
}

#[tokio::test]
async fn choice_none_withholds_the_tools_without_history_and_instructs_with_it() {
    let server = converse_server(converse_text("ok", "end_turn", 1, 1)).await;
    let provider = bedrock(&server.uri()).await;
    let mut plain = request(vec![Message::user("q")]);
    plain.tools.tools = vec![weather()];
    plain.tools.choice = ToolChoice::None;
    provider.complete(plain).await.unwrap();
    let body = sent(&server).await;
    assert!(body.get("toolConfig").is_none(), "{body}");
    assert!(body.get("system").is_none(), "{body}");

    let server = converse_server(converse_text("It is sunny.", "end_turn", 1, 1)).await;
    let provider = bedrock(&server.uri()).await;
    let mut with_history = request(tool_history());
    with_history.tools.tools = vec![weather(), clock()];
    with_history.tools.choice = ToolChoice::None;
    let response = provider.complete(with_history).await.unwrap();
    assert_eq!(response.content, "It is sunny.");
    assert!(response.tool_calls.is_empty());
    let body = sent(&server).await;
    assert_eq!(tool_names(&body), ["get_weather", "get_time"]);
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"auto": {}}));
    assert_eq!(body["system"], json!([{"text": NO_TOOL_CALLS_INSTRUCTION}]));
}

#[tokio::test]
async fn a_history_with_tool_use_but_no_tools_gets_synthesised_specs() {
    let server = converse_server(converse_text("Sunny, 21 °C.", "end_turn", 1, 1)).await;
    let provider = bedrock(&server.uri()).await;
    let mut messages = vec![Message::system("Be brief.")];
    messages.extend(tool_history());
    provider.complete(request(messages)).await.unwrap();
    let body = sent(&server).await;
    assert_eq!(
        body["toolConfig"]["tools"],
        json!([
            {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}},
            {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}
        ])
    );
    assert_eq!(
        body["system"],
        json!([{"text": "Be brief."}, {"text": NO_TOOL_CALLS_INSTRUCTION}])
    );
    // The history's ids go out as they came.
    assert_eq!(
        body["messages"][1]["content"][1]["toolUse"]["toolUseId"],
        "tooluse_Wx1"
    );
    assert_eq!(
        body["messages"][2]["content"][1]["toolResult"]["toolUseId"],
        "tooluse_Tm2"
    );
}

#[tokio::test]
async fn json_mode_with_user_tools_offers_both_and_reads_either_answer() {
    let cases = [
        // The model answered with the JSON tool: its input is the content.
        (
            converse_tool_use(JSON_TOOL_NAME, json!({"answer": 4}), 10, 5),
            r#"{"answer":4}"#,
            Vec::new(),
            FinishReason::Stop,
        ),
        // The model called a user tool first: a call, and no JSON contract yet.
        (
            converse_tool_calls(
                None,
                &[("tooluse_W", "get_weather", json!({"city": "Oslo"}))],
                10,
                5,
            ),
            "",
            vec![ToolCall::new(
                "tooluse_W",
                "get_weather",
                r#"{"city":"Oslo"}"#,
            )],
            FinishReason::ToolUse,
        ),
    ];
    for (answer, content, calls, finish) in cases {
        let server = converse_server(answer).await;
        let provider = bedrock(&server.uri()).await;
        let mut request = request(vec![Message::user("2+2 as JSON, after the weather")]);
        request.response_format = ResponseFormat::JsonSchema {
            name: "sum".into(),
            schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}}}),
        };
        request.tools.tools = vec![weather()];
        let response = provider.complete(request).await.unwrap();
        assert_eq!(response.content, content);
        assert_eq!(response.tool_calls, calls);
        assert_eq!(response.finish_reason, finish);
        let body = sent(&server).await;
        assert_eq!(tool_names(&body), [JSON_TOOL_NAME, "get_weather"]);
        assert!(
            body["toolConfig"]["tools"][0]["toolSpec"]["description"]
                .as_str()
                .unwrap()
                .starts_with(JSON_TOOL_DESCRIPTION)
        );
        assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
    }
}

#[tokio::test]
async fn json_mode_choices_with_user_tools() {
    for (choice, names, expected) in [
        (
            ToolChoice::None,
            vec![JSON_TOOL_NAME],
            json!({"tool": {"name": JSON_TOOL_NAME}}),
        ),
        (
            ToolChoice::Required,
            vec![JSON_TOOL_NAME, "get_weather"],
            json!({"any": {}}),
        ),
        (
            ToolChoice::Tool("get_weather".into()),
            vec![JSON_TOOL_NAME, "get_weather"],
            json!({"tool": {"name": "get_weather"}}),
        ),
    ] {
        let server = converse_server(converse_tool_use(JSON_TOOL_NAME, json!({}), 1, 1)).await;
        let provider = bedrock(&server.uri()).await;
        let mut request = request(vec![Message::user("q")]);
        request.response_format = ResponseFormat::JsonObject;
        request.tools.tools = vec![weather()];
        request.tools.choice = choice.clone();
        provider.complete(request).await.unwrap();
        let body = sent(&server).await;
        assert_eq!(tool_names(&body), names, "{choice:?}");
        assert_eq!(body["toolConfig"]["toolChoice"], expected, "{choice:?}");
    }
}

#[tokio::test]
async fn a_user_tool_with_the_reserved_name_is_refused_in_json_mode_before_any_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let mut request = request(vec![Message::user("q")]);
    request.response_format = ResponseFormat::JsonObject;
    request.tools.tools = vec![ToolDefinition::new(
        JSON_TOOL_NAME,
        "mine",
        json!({"type": "object"}),
    )];
    let error = provider.complete(request.clone()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.message().contains(JSON_TOOL_NAME), "{error}");
    let error = provider.stream(request).await.err().unwrap();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test]
async fn invalid_history_arguments_are_refused_before_any_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let error = provider
        .complete(request(vec![
            Message::user("q"),
            Message::assistant_with_calls("", vec![ToolCall::new("t1", "f", "{not json")]),
            Message::tool_result("t1", ToolResultContent::Text("x".into())),
        ]))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.message().contains("not valid JSON"), "{error}");
}

fn two_calls_stream() -> ConverseStreamBody {
    ConverseStreamBody::tool_calls_reply(
        &["Checking ", "both."],
        &[
            (
                "tooluse_A1",
                "get_weather",
                &["", "{\"ci", "ty\": \"Par", "is\"}"],
            ),
            ("tooluse_B2", "get_time", &["{", "}"]),
        ],
        40,
        25,
    )
}

#[tokio::test]
async fn a_streamed_answer_with_two_fragmented_calls() {
    let server = stream_server(&two_calls_stream()).await;
    let provider = bedrock(&server.uri()).await;
    let mut request = request(vec![Message::user("q")]);
    request.tools.tools = vec![weather(), clock()];
    let items = events(&provider, request).await;
    let (text, calls) = assembled(&items);
    assert_eq!(text, "Checking both.");
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("tooluse_A1", "get_weather")
    );
    assert_eq!(calls[0].arguments_json().unwrap(), json!({"city": "Paris"}));
    assert_eq!(calls[1], ToolCall::new("tooluse_B2", "get_time", "{}"));
    // The empty first fragment is not passed on.
    assert!(!items.iter().any(|item| matches!(
        item,
        Ok(ProviderEvent::ToolCallDelta { arguments, .. }) if arguments.is_empty()
    )));
    assert_eq!(finish_reason(&items), FinishReason::ToolUse);
}

#[tokio::test]
async fn a_streamed_json_answer_with_user_tools_is_content_and_a_user_call_is_a_call() {
    let json_answer = ConverseStreamBody::tool_calls_reply(
        &[],
        &[("tooluse_J", JSON_TOOL_NAME, &["{\"ans", "wer\": 4}"])],
        5,
        5,
    );
    let call_answer = ConverseStreamBody::tool_calls_reply(
        &["I will check first."],
        &[("tooluse_W", "get_weather", &["{\"city\":", "\"Oslo\"}"])],
        5,
        5,
    );
    for (body, content, calls, finish) in [
        (
            json_answer,
            r#"{"answer": 4}"#,
            Vec::new(),
            FinishReason::Stop,
        ),
        (
            call_answer,
            "",
            vec![ToolCall::new(
                "tooluse_W",
                "get_weather",
                r#"{"city":"Oslo"}"#,
            )],
            FinishReason::ToolUse,
        ),
    ] {
        let server = stream_server(&body).await;
        let provider = bedrock(&server.uri()).await;
        let mut request = request(vec![Message::user("q")]);
        request.response_format = ResponseFormat::JsonObject;
        request.tools.tools = vec![weather()];
        let items = events(&provider, request).await;
        let (text, got) = assembled(&items);
        assert_eq!(text, content);
        assert_eq!(got, calls);
        assert_eq!(finish_reason(&items), finish);
        let body = sent(&server).await;
        assert_eq!(tool_names(&body), [JSON_TOOL_NAME, "get_weather"]);
        assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
    }
}

#[tokio::test]
async fn a_stream_cut_inside_a_call_ends_with_an_error_item() {
    let frames = two_calls_stream();
    // messageStart, text × 2, stop, start, "" and one more fragment of the first call.
    let inside_call: Vec<Vec<u8>> = frames.frames()[..7].to_vec();
    // A clean end of the body inside the call, and a connection dropped inside it.
    for response in [
        ChunkedResponse::event_stream(&inside_call),
        ChunkedResponse::event_stream(&inside_call).abort(),
    ] {
        let server = ChunkedServer::start(response.clone()).await.unwrap();
        let provider = bedrock(server.uri()).await;
        let mut request = request(vec![Message::user("q")]);
        request.tools.tools = vec![weather()];
        let items = events(&provider, request).await;
        let (last, before) = items.split_last().unwrap();
        let error = last.as_ref().unwrap_err();
        assert!(
            error.kind() == ErrorKind::StreamCut,
            "{response:?}: {error}"
        );
        assert!(matches!(
            before.last(),
            Some(Ok(ProviderEvent::ToolCallDelta { index: 0, .. }))
        ));
        assert!(
            !before
                .iter()
                .any(|item| matches!(item, Ok(ProviderEvent::ToolCallEnd { .. })))
        );
    }
}

#[tokio::test]
async fn tool_calls_through_the_adapter_plain_and_streamed() {
    let server = converse_server(two_calls_answer()).await;
    Mock::given(method("POST"))
        .and(path(converse_stream_path(GPT4_MODEL)))
        .respond_with(two_calls_stream().response())
        .mount(&server)
        .await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let ask = || {
        CompletionRequest::messages("t", "a", "gpt-4", vec![Message::user("Weather and time?")])
            .tools(vec![weather(), clock()])
    };
    let completion = world.adapter.generate_completion(ask()).await.unwrap();
    assert_eq!(completion.provider, "bedrock");
    assert_eq!(completion.finish_reason, FinishReason::ToolUse);
    let names: Vec<&str> = completion
        .tool_calls
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);

    let stream = world.adapter.stream_completion(ask()).await.unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let starts = chunks
        .iter()
        .filter(|chunk| matches!(chunk, Ok(StreamChunk::ToolCallStart { .. })))
        .count();
    assert_eq!(starts, 2);
    let Some(Ok(StreamChunk::Done(summary))) = chunks.last() else {
        panic!("the stream did not finish: {:?}", chunks.last());
    };
    assert_eq!(summary.finish_reason, FinishReason::ToolUse);
    assert_eq!(summary.tool_calls.len(), 2);
    assert_eq!(
        summary.tool_calls[0].arguments_json().unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(world.openai.call_count(), 0);
}

#[test]
fn the_stand_in_knows_the_json_tool_by_its_reserved_name() {
    // The stand-ins answer a JSON-mode request through the tool of this name; they do not
    // depend on this crate, so the two names are pinned together here.
    assert_eq!(failover_standin::BEDROCK_JSON_TOOL, JSON_TOOL_NAME);
}
