//! Agents' requests in full: a two-turn tool loop (the model calls a tool, the caller sends
//! the result, the model answers) on each provider, plain and streamed, and across
//! failover — Bedrock fails at the second turn and OpenAI receives the whole conversation,
//! tool calls and results included, in its own format; tool-call answers cached and
//! replayed; JSON mode beside the caller's own tools on Bedrock; images on each provider,
//! and a typed error when no routed model takes images.

use failover_core::{FailoverAdapter, FailoverError, Route, Router, Unsupported, ValidationError};
use failover_provider::{
    AttemptOutcome, CompletionRequest, ContentPart, FinishReason, ImagePart, Message,
    ResponseFormat, StreamChunk, ToolCall, ToolCallAssembler, ToolDefinition, ToolResultContent,
};
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{BEDROCK, Harness, HarnessOptions, MODEL, OPENAI};
use failover_standin::{Fault, Reply, Vendor};
use futures::StreamExt;
use serde_json::{Value, json};

pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            an_image_request_with_no_vision_route_is_a_typed_error_and_calls_nobody,
        ],
        offline_only("scripts the stand-ins' tool calls"): [
            a_two_turn_tool_loop_on_bedrock,
            a_two_turn_tool_loop_on_bedrock_streamed,
            a_two_turn_tool_loop_on_openai,
            a_two_turn_tool_loop_on_openai_streamed,
            the_loop_fails_over_to_openai_at_the_second_turn_with_the_whole_conversation,
            the_streamed_loop_fails_over_to_openai_at_the_second_turn,
            a_tool_call_answer_is_cached_and_replayed_to_plain_calls_and_streams,
            json_mode_beside_user_tools_on_bedrock,
        ],
        offline_only("reads the stand-ins' request bodies"): [
            an_image_request_on_each_provider,
        ],
    }
}

const CALL_ID: &str = "call_weather_1";
const ANSWER: &str = "It is 21 degrees in Paris.";

fn weather_tool() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        "The current weather in a city",
        json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        }),
    )
}

fn weather_call() -> ToolCall {
    ToolCall::new(CALL_ID, "get_weather", r#"{"city":"Paris"}"#)
}

fn weather_result() -> Message {
    Message::tool_result(CALL_ID, ToolResultContent::Json(json!({"temp_c": 21})))
}

fn turn(harness: &Harness, messages: Vec<Message>) -> CompletionRequest {
    CompletionRequest::messages(harness.tenant(), failover_scenarios::AGENT, MODEL, messages)
        .tools(vec![weather_tool()])
        .max_tokens(50)
}

fn first_messages() -> Vec<Message> {
    vec![
        Message::system("You are a weather assistant."),
        Message::user("What is the weather in Paris?"),
    ]
}

/// What one turn answered, plain or streamed.
#[derive(Debug)]
struct Turn {
    provider: String,
    content: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: FinishReason,
    cached: bool,
    attempts: Vec<AttemptOutcome>,
}

async fn ask(adapter: &FailoverAdapter, request: CompletionRequest, streamed: bool) -> Turn {
    if !streamed {
        let done = adapter.generate_completion(request).await.unwrap();
        return Turn {
            provider: done.provider,
            content: done.content,
            tool_calls: done.tool_calls,
            finish_reason: done.finish_reason,
            cached: done.cached,
            attempts: done.attempts.into_iter().map(|a| a.outcome).collect(),
        };
    }
    let items: Vec<_> = adapter
        .stream_completion(request)
        .await
        .unwrap()
        .collect()
        .await;
    let mut content = String::new();
    let mut calls = ToolCallAssembler::new();
    for item in &items[..items.len() - 1] {
        match item.as_ref().unwrap() {
            StreamChunk::Delta { text } => content.push_str(text),
            StreamChunk::ToolCallStart { index, id, name } => {
                calls.start(*index, id, name).unwrap()
            }
            StreamChunk::ToolCallDelta { index, arguments } => {
                calls.delta(*index, arguments).unwrap()
            }
            StreamChunk::ToolCallEnd { index } => calls.end(*index).unwrap(),
            StreamChunk::Done(_) => panic!("a summary before the end: {items:?}"),
        }
    }
    let Some(Ok(StreamChunk::Done(summary))) = items.last() else {
        panic!("the stream did not end with its summary: {items:?}");
    };
    let tool_calls = calls.finish().unwrap();
    assert_eq!(
        summary.tool_calls, tool_calls,
        "the summary's calls are the items'"
    );
    Turn {
        provider: summary.provider.clone(),
        content,
        tool_calls,
        finish_reason: summary.finish_reason.clone(),
        cached: summary.cached,
        attempts: summary.attempts.iter().map(|a| a.outcome.clone()).collect(),
    }
}

/// The JSON bodies `vendor` received, the last one last.
async fn last_body(harness: &Harness, vendor: Vendor) -> Value {
    harness
        .offline()
        .bodies(vendor)
        .await
        .pop()
        .expect("the provider was called")
}

/// The second turn's messages as Bedrock's Converse received them: the toolUse block and
/// the toolResult block carry the call's id.
fn assert_bedrock_carries_the_loop(body: &Value) {
    let messages = body["messages"].as_array().unwrap();
    let tool_use = &messages[1]["content"][0]["toolUse"];
    assert_eq!(tool_use["toolUseId"], CALL_ID, "{body}");
    assert_eq!(tool_use["name"], "get_weather");
    assert_eq!(tool_use["input"], json!({"city": "Paris"}));
    let result = &messages[2]["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], CALL_ID, "{body}");
    assert_eq!(result["content"][0]["json"], json!({"temp_c": 21}));
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "get_weather"
    );
}

/// The second turn's messages as OpenAI received them: the assistant's `tool_calls` and the
/// `tool` message carry the call's id.
fn assert_openai_carries_the_loop(body: &Value) {
    let messages = body["messages"].as_array().unwrap();
    let assistant = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no assistant turn: {body}"));
    let call = &assistant["tool_calls"][0];
    assert_eq!(call["id"], CALL_ID, "{body}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    let tool = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap_or_else(|| panic!("no tool message: {body}"));
    assert_eq!(tool["tool_call_id"], CALL_ID);
    let result: Value = serde_json::from_str(tool["content"].as_str().unwrap()).unwrap();
    assert_eq!(result, json!({"temp_c": 21}));
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
}

/// Turn one: the model calls the weather tool. Turn two: the caller sends the result and
/// the model answers. Returns both turns.
async fn tool_loop(harness: &Harness, vendor: Vendor, streamed: bool) -> (Turn, Turn) {
    let adapter = harness.adapter();
    let standins = harness.offline();
    standins
        .reply(vendor, Reply::tool_calls(vec![weather_call()]), 1)
        .await;
    let first = ask(&adapter, turn(harness, first_messages()), streamed).await;
    assert_eq!(first.tool_calls, vec![weather_call()], "{first:?}");
    assert_eq!(first.finish_reason, FinishReason::ToolUse);
    assert!(!first.cached);

    let mut messages = first_messages();
    messages.push(Message::assistant_with_calls(
        first.content.clone(),
        first.tool_calls.clone(),
    ));
    messages.push(weather_result());
    standins.reply(vendor, Reply::text(ANSWER), 1).await;
    let second = ask(&adapter, turn(harness, messages), streamed).await;
    assert_eq!(second.content, ANSWER, "{second:?}");
    assert!(second.tool_calls.is_empty());
    assert_eq!(second.finish_reason, FinishReason::Stop);
    (first, second)
}

async fn a_two_turn_tool_loop_on_bedrock() {
    let harness = Harness::start().await;
    let (first, second) = tool_loop(&harness, Vendor::Bedrock, false).await;
    assert_eq!(
        (first.provider.as_str(), second.provider.as_str()),
        (BEDROCK, BEDROCK)
    );
    assert_bedrock_carries_the_loop(&last_body(&harness, Vendor::Bedrock).await);
    assert_eq!(harness.offline().calls(Vendor::OpenAi).await, 0);
}

async fn a_two_turn_tool_loop_on_bedrock_streamed() {
    let harness = Harness::start().await;
    let (first, second) = tool_loop(&harness, Vendor::Bedrock, true).await;
    assert_eq!(
        (first.provider.as_str(), second.provider.as_str()),
        (BEDROCK, BEDROCK)
    );
    assert_bedrock_carries_the_loop(&last_body(&harness, Vendor::Bedrock).await);
}

async fn a_two_turn_tool_loop_on_openai() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let (first, second) = tool_loop(&harness, Vendor::OpenAi, false).await;
    assert_eq!(
        (first.provider.as_str(), second.provider.as_str()),
        (OPENAI, OPENAI)
    );
    assert_openai_carries_the_loop(&last_body(&harness, Vendor::OpenAi).await);
}

async fn a_two_turn_tool_loop_on_openai_streamed() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let (first, second) = tool_loop(&harness, Vendor::OpenAi, true).await;
    assert_eq!(
        (first.provider.as_str(), second.provider.as_str()),
        (OPENAI, OPENAI)
    );
    assert_openai_carries_the_loop(&last_body(&harness, Vendor::OpenAi).await);
}

/// Bedrock calls the tool at the first turn and fails at the second: OpenAI receives the
/// whole conversation in its own format, ids preserved, and answers.
async fn failover_at_the_second_turn(streamed: bool) {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let standins = harness.offline();
    standins
        .reply(Vendor::Bedrock, Reply::tool_calls(vec![weather_call()]), 1)
        .await;
    let first = ask(&adapter, turn(&harness, first_messages()), streamed).await;
    assert_eq!(first.provider, BEDROCK);
    assert_eq!(first.tool_calls, vec![weather_call()]);

    // Every Bedrock call from here on fails (the SDK's own retries included).
    standins
        .inject(Vendor::Bedrock, Fault::Unavailable, 100)
        .await;
    standins.reply(Vendor::OpenAi, Reply::text(ANSWER), 1).await;
    let mut messages = first_messages();
    messages.push(Message::assistant_with_calls("", first.tool_calls));
    messages.push(weather_result());
    let second = ask(&adapter, turn(&harness, messages), streamed).await;
    assert_eq!(second.provider, OPENAI, "{second:?}");
    assert_eq!(second.content, ANSWER);
    assert!(
        matches!(second.attempts[0], AttemptOutcome::Failed { .. }),
        "{:?}",
        second.attempts
    );
    let body = last_body(&harness, Vendor::OpenAi).await;
    assert_openai_carries_the_loop(&body);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(
        body["messages"][1]["content"],
        "What is the weather in Paris?"
    );
}

async fn the_loop_fails_over_to_openai_at_the_second_turn_with_the_whole_conversation() {
    failover_at_the_second_turn(false).await;
}

async fn the_streamed_loop_fails_over_to_openai_at_the_second_turn() {
    failover_at_the_second_turn(true).await;
}

async fn a_tool_call_answer_is_cached_and_replayed_to_plain_calls_and_streams() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    harness
        .offline()
        .reply(Vendor::Bedrock, Reply::tool_calls(vec![weather_call()]), 1)
        .await;
    let fresh = ask(&adapter, turn(&harness, first_messages()), false).await;
    assert!(!fresh.cached);
    let plain = ask(&adapter, turn(&harness, first_messages()), false).await;
    let streamed = ask(&adapter, turn(&harness, first_messages()), true).await;
    for replay in [&plain, &streamed] {
        assert!(replay.cached, "{replay:?}");
        assert_eq!(replay.tool_calls, vec![weather_call()]);
        assert_eq!(replay.finish_reason, FinishReason::ToolUse);
    }
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 1);
    // Another tool set is another question: a miss.
    let other = turn(&harness, first_messages()).tools(vec![ToolDefinition {
        name: "get_forecast".into(),
        ..weather_tool()
    }]);
    let missed = ask(&adapter, other, false).await;
    assert!(!missed.cached);
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 2);
}

/// JSON mode is a forced tool on Bedrock; with the caller's own tools beside it, a call of
/// the caller's tool comes back as a tool call and the JSON answer as content — never one
/// for the other.
async fn json_mode_beside_user_tools_on_bedrock() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let standins = harness.offline();
    standins
        .reply(Vendor::Bedrock, Reply::tool_calls(vec![weather_call()]), 1)
        .await;
    let json_turn = |messages| turn(&harness, messages).response_format(ResponseFormat::JsonObject);
    let first = ask(&adapter, json_turn(first_messages()), false).await;
    assert_eq!(first.tool_calls, vec![weather_call()], "{first:?}");
    assert!(first.content.is_empty());
    let body = last_body(&harness, Vendor::Bedrock).await;
    let names: Vec<&str> = body["toolConfig"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tool| tool["toolSpec"]["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "the JSON tool beside the caller's: {body}");
    assert!(names.contains(&"get_weather"));

    let mut messages = first_messages();
    messages.push(Message::assistant_with_calls("", first.tool_calls));
    messages.push(weather_result());
    standins
        .reply(
            Vendor::Bedrock,
            Reply::text(r#"{"temp_c":21,"city":"Paris"}"#),
            1,
        )
        .await;
    let second = ask(&adapter, json_turn(messages.clone()), false).await;
    assert!(second.tool_calls.is_empty(), "{second:?}");
    let answer: Value = serde_json::from_str(&second.content).unwrap();
    assert_eq!(answer, json!({"temp_c": 21, "city": "Paris"}));

    standins
        .reply(Vendor::Bedrock, Reply::text(r#"{"temp_c":21}"#), 1)
        .await;
    let streamed = ask(&adapter, json_turn(messages).temperature(0.5), true).await;
    assert!(streamed.tool_calls.is_empty(), "{streamed:?}");
    let answer: Value = serde_json::from_str(&streamed.content).unwrap();
    assert_eq!(answer, json!({"temp_c": 21}));
}

fn image() -> ImagePart {
    // A 1×1 PNG.
    ImagePart::from_data_url(
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==",
    )
    .unwrap()
}

fn image_request(harness: &Harness, model: &str) -> CompletionRequest {
    CompletionRequest::messages(
        harness.tenant(),
        failover_scenarios::AGENT,
        model,
        vec![Message::user_parts(vec![
            ContentPart::text("What is in this picture?"),
            ContentPart::Image(image()),
        ])],
    )
    .max_tokens(20)
}

async fn an_image_request_on_each_provider() {
    let harness = Harness::start().await;
    let done = harness
        .adapter()
        .generate_completion(image_request(&harness, "gpt-4o"))
        .await
        .unwrap();
    assert_eq!(done.provider, BEDROCK);
    let body = last_body(&harness, Vendor::Bedrock).await;
    let block = &body["messages"][0]["content"][1]["image"];
    assert_eq!(block["format"], "png", "{body}");
    assert_eq!(
        block["source"]["bytes"],
        image().to_data_url().split_once(',').unwrap().1
    );

    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let done = harness
        .adapter()
        .generate_completion(image_request(&harness, "gpt-4o"))
        .await
        .unwrap();
    assert_eq!(done.provider, OPENAI);
    let body = last_body(&harness, Vendor::OpenAi).await;
    let parts = &body["messages"][0]["content"];
    assert_eq!(
        parts[0],
        json!({"type": "text", "text": "What is in this picture?"})
    );
    assert_eq!(parts[1]["type"], "image_url", "{body}");
    assert_eq!(parts[1]["image_url"]["url"], image().to_data_url());
}

async fn an_image_request_with_no_vision_route_is_a_typed_error_and_calls_nobody() {
    let harness = Harness::start().await;
    let text_only = Router::embedded().merge(
        Router::empty()
            .route_to(
                MODEL,
                BEDROCK,
                Route::new("anthropic.claude-3-5-haiku-20241022-v1:0").vision(false),
            )
            .route_to(MODEL, OPENAI, Route::new("gpt-4").vision(false)),
    );
    let error = harness
        .adapter_routed(text_only)
        .generate_completion(image_request(&harness, MODEL))
        .await
        .unwrap_err();
    let FailoverError::Invalid(ValidationError::NoCapableRoute { model, unserved }) = &error else {
        panic!("expected NoCapableRoute, got {error:?}");
    };
    assert_eq!(model, MODEL);
    let reasons: Vec<_> = unserved
        .iter()
        .map(|u| (u.provider.as_str(), u.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                BEDROCK,
                Unsupported::ModelTakesNoImages {
                    model: "anthropic.claude-3-5-haiku-20241022-v1:0".into()
                }
            ),
            (
                OPENAI,
                Unsupported::ModelTakesNoImages {
                    model: "gpt-4".into()
                }
            ),
        ]
    );
    assert!(
        error.to_string().contains("takes no images"),
        "the message says why: {error}"
    );
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 0);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}
