//! Tool calling, images and the sampling parameters against wiremock and the chunked
//! stand-in, through the real client: every new request field on the wire, tool-call
//! answers plain and streamed, JSON mode beside tools, and malformed calls.

mod common;

use common::{config, provider, request};
use failover_openai::mapping::JSON_INSTRUCTION;
use failover_openai::stream::read_sse_body;
use failover_openai::{OPENAI_IMAGE_LIMITS, OPENAI_TOOL_LIMITS, OpenAiProvider};
use failover_provider::{
    ContentPart, ErrorKind, FinishReason, ImageMediaType, ImagePart, JsonContract, MediaTypeSet,
    Message, Provider, ProviderError, ProviderEvent, ProviderRequest, ResponseFormat, TokenUsage,
    ToolCall, ToolCallAssembler, ToolChoice, ToolConfig, ToolDefinition, ToolLimits,
    ToolResultContent,
};
use failover_standin::bedrock_server::{ChunkedServer, Part};
use failover_standin::openai_fixtures::{
    FixtureToolCall, base_url, chat_completion, json_response, mount_chat, sse_chunked, sse_done,
    sse_event, sse_finish_chunk, sse_response, sse_role_chunk, sse_text_chunk,
    sse_tool_call_arguments_chunk, sse_tool_call_events, sse_tool_call_start_chunk,
    sse_tool_calls_finish_chunk, sse_usage_chunk, tool_calls_response,
};
use futures::StreamExt;
use serde_json::{Value, json};
use wiremock::MockServer;

type Items = Vec<Result<ProviderEvent, ProviderError>>;

fn weather_tool() -> ToolDefinition {
    ToolDefinition::new(
        "get_weather",
        "The current weather in a city.",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

fn time_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_time".into(),
        description: None,
        input_schema: json!({"type": "object", "properties": {}}),
    }
}

fn with_tools(choice: ToolChoice, parallel: Option<bool>) -> ProviderRequest {
    ProviderRequest {
        tools: ToolConfig {
            tools: vec![weather_tool(), time_tool()],
            choice,
            parallel_tool_calls: parallel,
        },
        ..request()
    }
}

fn calls() -> Vec<ToolCall> {
    vec![
        ToolCall::new("call_Ab12", "get_weather", r#"{"city":"Paris"}"#),
        ToolCall::new(
            "call_Cd34",
            "get_time",
            r#"{"zone": "Europe/Paris", "h24": true}"#,
        ),
    ]
}

fn fixture_calls(calls: &[ToolCall]) -> Vec<FixtureToolCall<'_>> {
    calls
        .iter()
        .map(|call| FixtureToolCall::new(&call.id, &call.name, &call.arguments))
        .collect()
}

/// A server answering every call with `body`.
async fn answering(body: &Value) -> MockServer {
    let server = MockServer::start().await;
    mount_chat(&server, json_response(200, body), None).await;
    server
}

/// The body the provider sent for `request` (answered with a plain completion).
async fn sent_for(request: ProviderRequest) -> Value {
    let server = answering(&chat_completion("gpt-4o", "ok", 1, 1)).await;
    provider(&base_url(&server))
        .complete(request)
        .await
        .unwrap();
    let received = server.received_requests().await.unwrap();
    serde_json::from_slice(&received[0].body).unwrap()
}

async fn streamed(events: &[String], request: ProviderRequest) -> Items {
    let server = MockServer::start().await;
    mount_chat(&server, sse_response(events), None).await;
    provider(&base_url(&server))
        .stream(request)
        .await
        .unwrap()
        .collect()
        .await
}

fn ok_events(items: &[Result<ProviderEvent, ProviderError>]) -> Vec<ProviderEvent> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .collect()
}

fn last_error(items: &[Result<ProviderEvent, ProviderError>]) -> &ProviderError {
    items
        .last()
        .expect("the stream yielded nothing")
        .as_ref()
        .expect_err("the stream should end with an error")
}

/// The calls a successful stream made, checked by the neutral order checker: every item
/// before `Finished` in order, no call left open.
fn assembled(items: &[Result<ProviderEvent, ProviderError>]) -> Vec<ToolCall> {
    let mut calls = ToolCallAssembler::new();
    let (last, rest) = items.split_last().expect("an empty stream");
    assert!(
        matches!(last, Ok(ProviderEvent::Finished { .. })),
        "{last:?}"
    );
    for item in rest {
        match item.as_ref().expect("an error before the end") {
            ProviderEvent::ToolCallStart { index, id, name } => {
                calls.start(*index, id, name).unwrap()
            }
            ProviderEvent::ToolCallDelta { index, arguments } => {
                calls.delta(*index, arguments).unwrap()
            }
            ProviderEvent::ToolCallEnd { index } => calls.end(*index).unwrap(),
            ProviderEvent::Delta(_) => {}
            ProviderEvent::Finished { .. } => panic!("Finished before the end"),
        }
    }
    calls.finish().unwrap()
}

fn finish_reason(items: &[Result<ProviderEvent, ProviderError>]) -> FinishReason {
    match items.last() {
        Some(Ok(ProviderEvent::Finished { finish_reason, .. })) => finish_reason.clone(),
        other => panic!("not finished: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The request on the wire
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tools_are_sent_as_functions_with_each_choice() {
    let expected_tools = json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }},
        {"type": "function", "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {}}
        }}
    ]);
    for (choice, wire) in [
        (ToolChoice::Auto, None),
        (ToolChoice::None, Some(json!("none"))),
        (ToolChoice::Required, Some(json!("required"))),
        (
            ToolChoice::Tool("get_weather".into()),
            Some(json!({"type": "function", "function": {"name": "get_weather"}})),
        ),
    ] {
        let body = sent_for(with_tools(choice.clone(), None)).await;
        assert_eq!(body["tools"], expected_tools, "{choice:?}");
        assert_eq!(body.get("tool_choice").cloned(), wire, "{choice:?}");
        assert!(body.get("parallel_tool_calls").is_none(), "{choice:?}");
    }
}

#[tokio::test]
async fn the_parallel_flag_and_the_choice_are_sent_only_with_tools() {
    for parallel in [true, false] {
        let body = sent_for(with_tools(ToolChoice::Required, Some(parallel))).await;
        assert_eq!(body["parallel_tool_calls"], parallel);
    }
    let mut bare = with_tools(ToolChoice::Required, Some(true));
    bare.tools.tools.clear();
    let body = sent_for(bare).await;
    for absent in ["tools", "tool_choice", "parallel_tool_calls"] {
        assert!(body.get(absent).is_none(), "{absent} in {body}");
    }
}

#[tokio::test]
async fn images_are_sent_as_data_url_parts_and_text_alone_stays_a_string() {
    let png = ImagePart::new(ImageMediaType::Png, vec![0x89, b'P', b'N', b'G', 0, 1, 2]);
    let jpeg = ImagePart::new(ImageMediaType::Jpeg, vec![0xff, 0xd8, 0xff, 0xe0]);
    let mut request = request();
    request.messages = vec![
        Message::system("Describe images."),
        Message::user_parts(vec![
            ContentPart::text("What is in "),
            ContentPart::Image(png.clone()),
            ContentPart::text("and in"),
            ContentPart::Image(jpeg.clone()),
        ]),
        Message::user_parts(vec![ContentPart::text("Two "), ContentPart::text("parts.")]),
    ];
    let body = sent_for(request).await;
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": [
            {"type": "text", "text": "What is in "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORwABAg=="}},
            {"type": "text", "text": "and in"},
            {"type": "image_url", "image_url": {"url": jpeg.to_data_url()}},
        ]})
    );
    assert_eq!(
        body["messages"][1]["content"][1]["image_url"]["url"],
        png.to_data_url()
    );
    let url = body["messages"][1]["content"][3]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert_eq!(ImagePart::from_data_url(url).unwrap(), jpeg);
    assert_eq!(
        body["messages"][2],
        json!({"role": "user", "content": "Two parts."})
    );
}

#[tokio::test]
async fn tool_history_keeps_ids_names_arguments_and_results() {
    let calls = calls();
    let mut request = with_tools(ToolChoice::Auto, None);
    request.messages = vec![
        Message::user("Weather and time in Paris?"),
        Message::assistant_with_calls("", calls.clone()),
        Message::tool_result(
            "call_Ab12",
            ToolResultContent::Json(json!({"temp_c": 21, "sky": "clear"})),
        ),
        Message::tool_error("call_Cd34", "clock unavailable"),
        Message::assistant_with_calls(
            "Retrying the clock.",
            vec![ToolCall::new("call_Ef56", "get_time", "")],
        ),
        Message::tool_result("call_Ef56", ToolResultContent::Text("12:00".into())),
    ];
    let body = sent_for(request).await;
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6);
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_Ab12", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_Cd34", "type": "function", "function": {"name": "get_time", "arguments": "{\"zone\": \"Europe/Paris\", \"h24\": true}"}},
        ]})
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "call_Ab12", "content": "{\"sky\":\"clear\",\"temp_c\":21}"}),
        "a JSON result is written compactly"
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "call_Cd34", "content": "clock unavailable"}),
        "the error flag has no field on this wire"
    );
    assert_eq!(
        messages[4],
        json!({"role": "assistant", "content": "Retrying the clock.", "tool_calls": [
            {"id": "call_Ef56", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]}),
        "text beside calls, and blank arguments sent as {{}}"
    );
    assert_eq!(messages[5]["tool_call_id"], "call_Ef56");
}

#[tokio::test]
async fn a_tool_message_without_its_result_is_refused_before_sending() {
    let server = answering(&chat_completion("gpt-4o", "ok", 1, 1)).await;
    let mut request = request();
    request.messages.push(Message::parts(
        failover_provider::Role::Tool,
        vec![ContentPart::text("21C")],
    ));
    let error = provider(&base_url(&server))
        .complete(request)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    assert!(error.message().contains("tool result"), "{error}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn top_p_seed_and_user_are_sent_when_set() {
    let mut request = request();
    request.sampling.top_p = Some(0.25);
    request.sampling.seed = Some(-42);
    request.sampling.user = Some("user-7f3a".into());
    let body = sent_for(request).await;
    assert_eq!(body["top_p"], 0.25);
    assert_eq!(body["seed"], -42);
    assert_eq!(body["user"], "user-7f3a");
    let body = sent_for(common::request()).await;
    for absent in ["top_p", "seed", "user"] {
        assert!(body.get(absent).is_none(), "{absent} in {body}");
    }
}

#[test]
fn capabilities_declare_openai_limits_and_the_switches_turn_them_off() {
    let full = provider("http://127.0.0.1:9/v1").capabilities();
    assert_eq!(full.tools, Some(OPENAI_TOOL_LIMITS));
    assert_eq!(
        full.tools,
        Some(ToolLimits {
            max_tools: 128,
            parallel_tool_calls: true
        })
    );
    let images = full.images.unwrap();
    assert_eq!(images, OPENAI_IMAGE_LIMITS);
    assert_eq!(
        (images.max_bytes, images.max_images),
        (20 * 1024 * 1024, 500)
    );
    assert_eq!(images.media_types, MediaTypeSet::ALL);
    assert!(full.top_p && full.seed && full.user);
    let plain = OpenAiProvider::new(
        config("http://127.0.0.1:9/v1")
            .tools(false)
            .vision(false)
            .build(),
    )
    .unwrap()
    .capabilities();
    assert_eq!((plain.tools, plain.images), (None, None));
    let deserialized: failover_openai::OpenAiConfig =
        serde_json::from_str(r#"{"vision": false}"#).unwrap();
    assert!(deserialized.tools && !deserialized.vision);
}

// ---------------------------------------------------------------------------------------
// Plain answers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tool_call_answers_map_to_tool_calls() {
    let calls = calls();
    for text in [None, Some("Let me check.")] {
        let body = tool_calls_response("gpt-4o-2024-08-06", text, &fixture_calls(&calls), 80, 30);
        let server = answering(&body).await;
        let response = provider(&base_url(&server))
            .complete(with_tools(ToolChoice::Auto, None))
            .await
            .unwrap();
        assert_eq!(response.tool_calls, calls);
        assert_eq!(response.content, text.unwrap_or(""));
        assert_eq!(response.finish_reason, FinishReason::ToolUse);
        assert_eq!(response.usage, TokenUsage::new(80, 30));
    }
}

#[tokio::test]
async fn stop_with_tool_calls_reads_tool_use() {
    // OpenAI answers a forced (named) tool choice with `finish_reason: "stop"`.
    let calls = calls();
    let mut body = tool_calls_response("gpt-4o", None, &fixture_calls(&calls[..1]), 10, 5);
    body["choices"][0]["finish_reason"] = json!("stop");
    let server = answering(&body).await;
    let response = provider(&base_url(&server))
        .complete(with_tools(ToolChoice::Tool("get_weather".into()), None))
        .await
        .unwrap();
    assert_eq!(response.finish_reason, FinishReason::ToolUse);
    assert_eq!(response.tool_calls, calls[..1]);
}

#[tokio::test]
async fn json_mode_works_beside_tools_and_is_not_checked_on_tool_answers() {
    let calls = calls();
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(
            200,
            &tool_calls_response("gpt-4o", Some("Checking."), &fixture_calls(&calls), 9, 9),
        ),
        Some(1),
    )
    .await;
    mount_chat(
        &server,
        json_response(
            200,
            &chat_completion("gpt-4o", r#"{"answer": "sunny"}"#, 9, 9),
        ),
        Some(1),
    )
    .await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", "It is sunny.", 9, 9)),
        None,
    )
    .await;
    let provider = provider(&base_url(&server));
    let json_request = || ProviderRequest {
        response_format: ResponseFormat::JsonObject,
        ..with_tools(ToolChoice::Auto, Some(true))
    };

    let tool_answer = provider.complete(json_request()).await.unwrap();
    assert_eq!(
        tool_answer.tool_calls, calls,
        "prose beside calls is no JSON answer"
    );
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert_eq!(body["messages"][0]["content"], JSON_INSTRUCTION);
    assert_eq!(body["tools"].as_array().unwrap().len(), 2);
    assert_eq!(body["parallel_tool_calls"], true);

    let json_answer = provider.complete(json_request()).await.unwrap();
    assert!(json_answer.tool_calls.is_empty());
    assert_eq!(json_answer.content, r#"{"answer": "sunny"}"#);

    let prose = provider.complete(json_request()).await.unwrap_err();
    assert_eq!(prose.kind(), ErrorKind::MalformedResponse, "{prose}");
}

#[tokio::test]
async fn malformed_tool_calls_are_malformed_responses() {
    let call = |id: &str, kind: &str, name: &str, arguments: &str| json!({"id": id, "type": kind, "function": {"name": name, "arguments": arguments}});
    let cases = [
        ("an array", call("c1", "function", "f", "[1, 2]")),
        ("not JSON", call("c1", "function", "f", "city=Paris")),
        ("truncated", call("c1", "function", "f", r#"{"city": "Par"#)),
        (
            "trailing",
            call("c1", "function", "f", r#"{"a": 1} {"b": 2}"#),
        ),
        ("no id", call("", "function", "f", "{}")),
        ("no name", call("c1", "function", "", "{}")),
        ("not a function", call("c1", "custom", "f", "{}")),
        ("no function", json!({"id": "c1", "type": "function"})),
    ];
    for (case, wire_call) in cases {
        let mut body = tool_calls_response("gpt-4o", None, &[], 1, 1);
        body["choices"][0]["message"]["tool_calls"] = json!([wire_call]);
        let server = answering(&body).await;
        let error = provider(&base_url(&server))
            .complete(with_tools(ToolChoice::Auto, None))
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::MalformedResponse,
            "{case}: {error}"
        );
        assert!(
            !error.message().contains("Par"),
            "{case}: arguments never in messages"
        );
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "{case}: not retried"
        );
    }
    let no_calls = tool_calls_response("gpt-4o", Some("hm"), &[], 1, 1);
    let server = answering(&no_calls).await;
    let error = provider(&base_url(&server))
        .complete(with_tools(ToolChoice::Auto, None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{error}");

    // Blank arguments are a call without input, as `ToolCall::arguments_json` reads them.
    let blank = tool_calls_response(
        "gpt-4o",
        None,
        &[FixtureToolCall::new("c1", "get_time", "")],
        1,
        1,
    );
    let server = answering(&blank).await;
    let response = provider(&base_url(&server))
        .complete(with_tools(ToolChoice::Auto, None))
        .await
        .unwrap();
    assert_eq!(
        response.tool_calls,
        vec![ToolCall::new("c1", "get_time", "")]
    );
}

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn streamed_tool_calls_start_fragment_and_end_before_finished() {
    let calls = calls();
    let events = sse_tool_call_events(&fixture_calls(&calls), 5, Some((40, 0, 12)));
    let items = streamed(&events, with_tools(ToolChoice::Auto, None)).await;
    let events = ok_events(&items);
    assert_eq!(
        events[..4],
        [
            ProviderEvent::ToolCallStart {
                index: 0,
                id: "call_Ab12".into(),
                name: "get_weather".into()
            },
            ProviderEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"cit".into()
            },
            ProviderEvent::ToolCallDelta {
                index: 0,
                arguments: "y\":\"P".into()
            },
            ProviderEvent::ToolCallDelta {
                index: 0,
                arguments: "aris\"".into()
            },
        ]
    );
    let end_0 = events
        .iter()
        .position(|e| *e == ProviderEvent::ToolCallEnd { index: 0 })
        .unwrap();
    assert!(matches!(
        &events[end_0 + 1],
        ProviderEvent::ToolCallStart { index: 1, id, name } if id == "call_Cd34" && name == "get_time"
    ));
    assert_eq!(
        events[events.len() - 2],
        ProviderEvent::ToolCallEnd { index: 1 }
    );
    assert_eq!(
        events.last().unwrap(),
        &ProviderEvent::Finished {
            finish_reason: FinishReason::ToolUse,
            usage: Some(TokenUsage::new(40, 12)),
            model: Some("gpt-4o-2024-08-06".into()),
        }
    );
    assert_eq!(assembled(&items), calls);
}

#[tokio::test]
async fn text_and_calls_in_one_chunk_yield_every_item_in_order() {
    // Some compatible servers send whole calls, several in one chunk, after the text.
    let chunk = json!({"model": "llama3", "choices": [{"index": 0, "delta": {
        "content": "Checking both.",
        "tool_calls": [
            {"index": 0, "id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"index": 1, "id": "b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
        ]}, "finish_reason": "tool_calls"}]});
    let events = vec![sse_event(&chunk.to_string()), sse_done()];
    let items = streamed(&events, with_tools(ToolChoice::Auto, None)).await;
    assert_eq!(
        ok_events(&items),
        vec![
            ProviderEvent::Delta("Checking both.".into()),
            ProviderEvent::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "get_weather".into()
            },
            ProviderEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":\"Oslo\"}".into()
            },
            ProviderEvent::ToolCallEnd { index: 0 },
            ProviderEvent::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "get_time".into()
            },
            ProviderEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into()
            },
            ProviderEvent::ToolCallEnd { index: 1 },
            ProviderEvent::Finished {
                finish_reason: FinishReason::ToolUse,
                usage: None,
                model: Some("llama3".into()),
            },
        ]
    );
}

#[tokio::test]
async fn a_stream_of_calls_split_at_every_byte_reassembles() {
    let calls = vec![
        ToolCall::new(
            "call_1",
            "get_weather",
            r#"{"city":"Zürich","note":"😀 ok"}"#,
        ),
        ToolCall::new("call_2", "get_time", "{}"),
    ];
    let mut events = vec![sse_text_chunk("Sure — ")];
    events.extend(sse_tool_call_events(
        &fixture_calls(&calls),
        4,
        Some((5, 0, 5)),
    ));
    let body = events.concat().into_bytes();
    let whole = read_sse_body(&[&body], None, 1024, 1024);
    assert_eq!(assembled(&whole), calls);
    // Two chunks, cut at every byte (inside characters too), through the stream's reader.
    for cut in 0..=body.len() {
        let (head, tail) = body.split_at(cut);
        let items = read_sse_body(&[head, tail], None, 1024, 1024);
        assert!(items.iter().all(Result::is_ok), "cut at {cut}: {items:?}");
        assert_eq!(ok_events(&items), ok_events(&whole), "cut at {cut}");
    }
    // And through the real client, in HTTP chunks of a few sizes.
    for size in [1, 3, 7, 64] {
        let mut response = sse_chunked(&[]);
        response.parts = body
            .chunks(size)
            .map(|part| Part::Bytes(part.to_vec()))
            .collect();
        let server = ChunkedServer::start(response).await.unwrap();
        let items: Items = provider(&format!("{}/v1", server.uri()))
            .stream(with_tools(ToolChoice::Auto, None))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(assembled(&items), calls, "chunks of {size}");
        assert_eq!(finish_reason(&items), FinishReason::ToolUse);
    }
}

#[tokio::test]
async fn a_stream_cut_inside_a_call_ends_with_an_error_and_no_end() {
    let events = vec![
        sse_tool_call_start_chunk(0, "call_1", "get_weather"),
        sse_tool_call_arguments_chunk(0, "{\"city\":"),
    ];
    // The body ends without [DONE] …
    let items = streamed(&events, with_tools(ToolChoice::Auto, None)).await;
    assert_eq!(last_error(&items).kind(), ErrorKind::StreamCut);
    // … or the connection drops.
    let server = ChunkedServer::start(sse_chunked(&events).abort())
        .await
        .unwrap();
    let dropped: Items = provider(&format!("{}/v1", server.uri()))
        .stream(with_tools(ToolChoice::Auto, None))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(last_error(&dropped).kind(), ErrorKind::StreamCut);
    for items in [&items, &dropped] {
        assert_eq!(
            ok_events(items),
            vec![
                ProviderEvent::ToolCallStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "get_weather".into()
                },
                ProviderEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\":".into()
                },
            ],
            "no end and no Finished are made up"
        );
    }
}

#[test]
fn the_finish_reason_ends_the_open_call_even_if_the_stream_is_cut_after_it() {
    let body = [
        sse_tool_call_start_chunk(0, "a", "f"),
        sse_tool_call_arguments_chunk(0, "{}"),
        sse_tool_calls_finish_chunk(),
    ]
    .concat();
    let items = read_sse_body(&[body.as_bytes()], None, 1024, 1024);
    assert_eq!(
        ok_events(&items).last(),
        Some(&ProviderEvent::ToolCallEnd { index: 0 }),
        "{items:?}"
    );
    assert_eq!(last_error(&items).kind(), ErrorKind::StreamCut);
}

#[tokio::test]
async fn malformed_streamed_calls_end_the_stream_with_an_error() {
    let finish = || vec![sse_tool_calls_finish_chunk(), sse_done()];
    let no_id = json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
    let no_name = json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"arguments": "{}"}}]}}]});
    let renamed = json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "g", "arguments": "{}"}}]}}]});
    let custom = json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "type": "custom", "function": {"name": "f"}}]}}]});
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "after a later call started",
            vec![
                sse_tool_call_start_chunk(0, "a", "get_weather"),
                sse_tool_call_start_chunk(1, "b", "get_time"),
                // The earlier call again, even with its id and name, is out of order.
                sse_tool_call_start_chunk(0, "a", "get_weather"),
            ],
        ),
        ("starts without an id", vec![sse_event(&no_id.to_string())]),
        (
            "starts without a name",
            vec![sse_event(&no_name.to_string())],
        ),
        (
            "changes its id or name",
            vec![
                sse_tool_call_start_chunk(0, "a", "f"),
                sse_event(&renamed.to_string()),
            ],
        ),
        ("not `function`", vec![sse_event(&custom.to_string())]),
        (
            "not a JSON object",
            vec![
                sse_tool_call_start_chunk(0, "a", "f"),
                sse_tool_call_arguments_chunk(0, "[1]"),
            ],
        ),
        (
            "not valid JSON",
            vec![
                sse_tool_call_start_chunk(0, "a", "f"),
                sse_tool_call_arguments_chunk(0, "{\"x\":"),
            ],
        ),
        ("has no tool call", vec![sse_text_chunk("hm")]),
    ];
    for (case, mut events) in cases {
        events.extend(finish());
        let items = streamed(&events, with_tools(ToolChoice::Auto, None)).await;
        let error = last_error(&items);
        assert_eq!(
            error.kind(),
            ErrorKind::MalformedResponse,
            "{case}: {error}"
        );
        assert!(
            !items
                .iter()
                .any(|item| matches!(item, Ok(ProviderEvent::Finished { .. }))),
            "{case}"
        );
    }
}

#[test]
fn streamed_arguments_count_toward_the_text_limit() {
    let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(300));
    let events = sse_tool_call_events(&[FixtureToolCall::new("c", "f", &big)], 100, None);
    let body = events.concat();
    let within = read_sse_body(&[body.as_bytes()], None, 4096, 1024);
    assert!(matches!(
        within.last(),
        Some(Ok(ProviderEvent::Finished { .. }))
    ));
    let over = read_sse_body(&[body.as_bytes()], None, 4096, 256);
    let error = last_error(&over);
    assert_eq!(error.kind(), ErrorKind::MalformedResponse);
    assert!(error.message().contains("256 bytes"), "{error}");
}

#[tokio::test]
async fn json_mode_streams_skip_the_contract_for_tool_calls_only() {
    let schema = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "required": ["answer"]}),
    };
    let json_request = || ProviderRequest {
        response_format: schema.clone(),
        ..with_tools(ToolChoice::Auto, None)
    };
    let calls = calls();
    let mut events = vec![sse_role_chunk(), sse_text_chunk("Let me look.")];
    events.extend(sse_tool_call_events(&fixture_calls(&calls), 8, None));
    let items = streamed(&events, json_request()).await;
    assert_eq!(assembled(&items), calls);
    let prose = vec![
        sse_text_chunk("It is sunny."),
        sse_finish_chunk("stop"),
        sse_done(),
    ];
    let items = streamed(&prose, json_request()).await;
    assert_eq!(last_error(&items).kind(), ErrorKind::MalformedResponse);
}

#[tokio::test]
async fn stop_after_streamed_calls_reads_tool_use_and_missing_indexes_are_read_in_order() {
    // A compatible server without `index`: a fragment with an id starts a call.
    let fragment = |id: Option<&str>, name: Option<&str>, arguments: &str| {
        let mut call = json!({"function": {"arguments": arguments}});
        if let Some(id) = id {
            call["id"] = json!(id);
        }
        if let Some(name) = name {
            call["function"]["name"] = json!(name);
        }
        sse_event(&json!({"choices": [{"delta": {"tool_calls": [call]}}]}).to_string())
    };
    let events = vec![
        fragment(Some("a"), Some("get_weather"), "{\"city\""),
        fragment(None, None, ":\"Rome\"}"),
        fragment(Some("b"), Some("get_time"), ""),
        fragment(Some("b"), None, "{}"),
        sse_finish_chunk("stop"),
        sse_usage_chunk(3, 0, 3),
        sse_done(),
    ];
    let items = streamed(&events, with_tools(ToolChoice::Auto, None)).await;
    assert_eq!(
        assembled(&items),
        vec![
            ToolCall::new("a", "get_weather", "{\"city\":\"Rome\"}"),
            ToolCall::new("b", "get_time", "{}"),
        ]
    );
    assert_eq!(finish_reason(&items), FinishReason::ToolUse);
}

#[test]
fn a_chunk_after_the_terminal_item_is_never_read() {
    // Items stop at `Finished`: the reader yields nothing after a terminal item.
    let body = [
        sse_tool_call_start_chunk(0, "a", "f"),
        sse_tool_calls_finish_chunk(),
        sse_done(),
        sse_tool_call_start_chunk(1, "b", "g"),
    ]
    .concat();
    let items = read_sse_body(&[body.as_bytes()], Some(JsonContract::object()), 1024, 1024);
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(assembled(&items), vec![ToolCall::new("a", "f", "")]);
}
