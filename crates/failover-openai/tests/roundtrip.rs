//! Round trips through the OpenAI wire format: random conversations with tools (random
//! ids, names `[a-zA-Z0-9_-]{1,64}`, argument objects, results, images) mapped to the
//! request JSON and parsed back by a small wire-to-neutral parser written here lose no id,
//! name, argument, result or image; random tool calls in a completion body, and streamed
//! in random fragments, come back as the same calls. Arguments of requests are compared as
//! parsed JSON (the wire carries the text, a blank one as `{}`); those of answers as text
//! (kept as the model wrote them). 1 000 cases a property unless `PROPTEST_CASES` says.

use failover_openai::mapping::{WireOptions, chat_request, parse_response};
use failover_openai::stream::read_sse_body;
use failover_provider::{
    ContentPart, FinishReason, ImageMediaType, ImagePart, Message, ProviderEvent, ProviderRequest,
    RequestId, ResponseFormat, Role, ToolCall, ToolCallAssembler, ToolChoice, ToolConfig,
    ToolDefinition, ToolResult, ToolResultContent,
};
use failover_standin::openai_fixtures::{
    FixtureToolCall, sse_tool_call_events, tool_calls_response,
};
use proptest::prelude::*;
use serde_json::Value;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Any JSON value without floats (whose text form need not round-trip bit for bit).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,10}|\\PC{1,6}", json_value(), 0..5)
        .prop_map(|map| map.into_iter().collect())
}

/// Argument text: an object written compactly, pretty, or (a tool without input) blank.
fn arguments() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (json_object(), any::<bool>()).prop_map(|(object, pretty)| {
            let value = Value::Object(object);
            if pretty {
                serde_json::to_string_pretty(&value).unwrap_or_default()
            } else {
                value.to_string()
            }
        }),
        1 => Just(String::new()),
    ]
}

fn call_id() -> impl Strategy<Value = String> {
    prop_oneof!["call_[a-zA-Z0-9]{24}", "\\PC{1,20}"]
}

fn tool_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,64}"
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    (call_id(), tool_name(), arguments())
        .prop_map(|(id, name, arguments)| ToolCall::new(id, name, arguments))
}

fn result_content() -> impl Strategy<Value = ToolResultContent> {
    prop_oneof![
        "\\PC{0,30}".prop_map(ToolResultContent::Text),
        json_value().prop_map(ToolResultContent::Json),
    ]
}

fn image() -> impl Strategy<Value = ImagePart> {
    (
        prop::sample::select(&ImageMediaType::ALL[..]),
        prop::collection::vec(any::<u8>(), 1..48),
    )
        .prop_map(|(media_type, data)| ImagePart::new(media_type, data))
}

fn part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        3 => "\\PC{0,20}".prop_map(ContentPart::text),
        1 => image().prop_map(ContentPart::Image),
    ]
}

/// One turn of a conversation: one message, or a turn of calls and their results.
fn turn() -> impl Strategy<Value = Vec<Message>> {
    prop_oneof![
        "\\PC{0,30}".prop_map(|text| vec![Message::system(text)]),
        prop::collection::vec(part(), 0..4).prop_map(|parts| vec![Message::user_parts(parts)]),
        prop::collection::vec("\\PC{0,12}".prop_map(ContentPart::text), 0..3)
            .prop_map(|parts| vec![Message::parts(Role::Assistant, parts)]),
        (
            "\\PC{0,20}",
            prop::collection::vec((tool_call(), result_content(), any::<bool>()), 1..4),
        )
            .prop_map(|(text, calls)| {
                let mut messages = vec![Message::assistant_with_calls(
                    text,
                    calls.iter().map(|(call, _, _)| call.clone()).collect(),
                )];
                messages.extend(calls.into_iter().map(|(call, content, failed)| Message {
                    tool_result: Some(ToolResult {
                        call_id: call.id,
                        content,
                        is_error: failed,
                    }),
                    ..Message::parts(Role::Tool, Vec::new())
                }));
                messages
            }),
    ]
}

fn tools() -> impl Strategy<Value = ToolConfig> {
    (
        prop::collection::vec(
            (tool_name(), prop::option::of("\\PC{0,20}"), json_object()),
            0..5,
        ),
        prop_oneof![
            Just(ToolChoice::Auto),
            Just(ToolChoice::None),
            Just(ToolChoice::Required),
            tool_name().prop_map(ToolChoice::Tool),
        ],
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(tools, choice, parallel_tool_calls)| ToolConfig {
            tools: tools
                .into_iter()
                .map(|(name, description, schema)| ToolDefinition {
                    name,
                    description,
                    input_schema: Value::Object(schema),
                })
                .collect(),
            choice,
            parallel_tool_calls,
        })
}

fn request(messages: Vec<Message>, tools: ToolConfig) -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("roundtrip"),
        model: "gpt-4o".into(),
        messages,
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: ResponseFormat::Text,
        tools,
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

// ---------------------------------------------------------------------------------------
// The test's own parser: the wire JSON back to neutral messages
// ---------------------------------------------------------------------------------------

fn string(value: &Value, what: &str) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} is not a string: {value}"))
}

fn wire_part(part: &Value) -> Result<ContentPart, String> {
    match part["type"].as_str() {
        Some("text") => Ok(ContentPart::text(string(&part["text"], "a text part")?)),
        Some("image_url") => {
            let url = string(&part["image_url"]["url"], "an image URL")?;
            ImagePart::from_data_url(&url)
                .map(ContentPart::Image)
                .map_err(|error| error.to_string())
        }
        _ => Err(format!("an unknown part: {part}")),
    }
}

fn wire_call(call: &Value) -> Result<ToolCall, String> {
    if call["type"] != "function" {
        return Err(format!("a call that is not a function: {call}"));
    }
    Ok(ToolCall::new(
        string(&call["id"], "a call id")?,
        string(&call["function"]["name"], "a call name")?,
        string(&call["function"]["arguments"], "call arguments")?,
    ))
}

fn wire_message(message: &Value) -> Result<Message, String> {
    let role = match message["role"].as_str() {
        Some("system") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => {
            return Ok(Message {
                tool_result: Some(ToolResult {
                    call_id: string(&message["tool_call_id"], "a tool_call_id")?,
                    content: ToolResultContent::Text(string(&message["content"], "a result")?),
                    is_error: false,
                }),
                ..Message::parts(Role::Tool, Vec::new())
            });
        }
        _ => return Err(format!("an unknown role: {message}")),
    };
    let content = match &message["content"] {
        Value::Null => Vec::new(),
        Value::String(text) => vec![ContentPart::text(text.clone())],
        Value::Array(parts) => parts.iter().map(wire_part).collect::<Result<_, _>>()?,
        other => return Err(format!("content of another type: {other}")),
    };
    let tool_calls = match message.get("tool_calls") {
        None => Vec::new(),
        Some(Value::Array(calls)) => calls.iter().map(wire_call).collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("tool_calls not an array: {other}")),
    };
    Ok(Message {
        tool_calls,
        ..Message::parts(role, content)
    })
}

fn parsed_arguments(arguments: &str) -> Value {
    ToolCall::new("", "", arguments)
        .arguments_json()
        .unwrap_or_else(|error| panic!("arguments are not JSON ({error}): {arguments}"))
}

/// What must survive the wire of one message: its role; its text, and its parts in order
/// when it has images; its calls (arguments as JSON); its result (JSON as JSON).
fn check_message(sent: &Message, back: &Message) -> Result<(), TestCaseError> {
    prop_assert_eq!(sent.role, back.role);
    if sent.images().next().is_some() {
        prop_assert_eq!(&sent.content, &back.content);
    } else {
        prop_assert_eq!(sent.text(), back.text());
        prop_assert_eq!(back.images().count(), 0);
    }
    if sent.role == Role::Assistant {
        prop_assert_eq!(sent.tool_calls.len(), back.tool_calls.len());
        for (sent, back) in sent.tool_calls.iter().zip(&back.tool_calls) {
            prop_assert_eq!(&sent.id, &back.id);
            prop_assert_eq!(&sent.name, &back.name);
            prop_assert_eq!(
                parsed_arguments(&sent.arguments),
                parsed_arguments(&back.arguments)
            );
        }
    }
    match (&sent.tool_result, &back.tool_result) {
        (None, None) => {}
        (Some(sent), Some(back)) => {
            prop_assert_eq!(&sent.call_id, &back.call_id);
            let ToolResultContent::Text(wire) = &back.content else {
                return Err(TestCaseError::fail("the parser reads results as text"));
            };
            match &sent.content {
                ToolResultContent::Text(text) => prop_assert_eq!(text, wire),
                ToolResultContent::Json(value) => {
                    let back: Value = serde_json::from_str(wire)
                        .map_err(|e| TestCaseError::fail(format!("a JSON result: {e}")))?;
                    prop_assert_eq!(value, &back);
                }
            }
        }
        (sent, back) => {
            return Err(TestCaseError::fail(format!(
                "results differ: {sent:?} / {back:?}"
            )));
        }
    }
    Ok(())
}

fn fixture_calls(calls: &[ToolCall]) -> Vec<FixtureToolCall<'_>> {
    calls
        .iter()
        .map(|call| FixtureToolCall::new(&call.id, &call.name, &call.arguments))
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conversations_with_tools_survive_the_request_wire(
        turns in prop::collection::vec(turn(), 1..8),
        tools in tools(),
        stream in any::<bool>(),
    ) {
        let messages: Vec<Message> = turns.into_iter().flatten().collect();
        let request = request(messages, tools);
        let body = serde_json::to_vec(&chat_request(&request, WireOptions::default(), stream)
            .map_err(|e| TestCaseError::fail(e.to_string()))?)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let wire: Value = serde_json::from_slice(&body)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;

        let back = wire["messages"]
            .as_array()
            .ok_or_else(|| TestCaseError::fail("no messages"))?
            .iter()
            .map(wire_message)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(back.len(), request.messages.len());
        for (sent, back) in request.messages.iter().zip(&back) {
            check_message(sent, back)?;
        }

        let offered = &request.tools.tools;
        let wire_tools = wire.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
        prop_assert_eq!(wire_tools.len(), offered.len());
        for (tool, wire) in offered.iter().zip(&wire_tools) {
            prop_assert_eq!(&wire["type"], "function");
            prop_assert_eq!(&wire["function"]["name"], tool.name.as_str());
            prop_assert_eq!(&wire["function"]["parameters"], &tool.input_schema);
            prop_assert_eq!(
                wire["function"].get("description").and_then(Value::as_str),
                tool.description.as_deref()
            );
        }
        if offered.is_empty() {
            prop_assert!(wire.get("tool_choice").is_none());
            prop_assert!(wire.get("parallel_tool_calls").is_none());
        } else {
            let choice = match &request.tools.choice {
                ToolChoice::Auto => None,
                ToolChoice::None => Some(serde_json::json!("none")),
                ToolChoice::Required => Some(serde_json::json!("required")),
                ToolChoice::Tool(name) => Some(serde_json::json!({"type": "function", "function": {"name": name}})),
            };
            prop_assert_eq!(wire.get("tool_choice").cloned(), choice);
            prop_assert_eq!(
                wire.get("parallel_tool_calls").and_then(Value::as_bool),
                request.tools.parallel_tool_calls
            );
        }
    }

    #[test]
    fn tool_calls_of_a_completion_come_back_as_sent(
        calls in prop::collection::vec(tool_call(), 1..6),
        text in prop::option::of("\\PC{0,20}"),
    ) {
        let body = tool_calls_response("gpt-4o", text.as_deref(), &fixture_calls(&calls), 10, 5)
            .to_string();
        let response = parse_response(body.as_bytes(), "gpt-4o")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&response.tool_calls, &calls);
        prop_assert_eq!(response.content, text.unwrap_or_default());
        prop_assert_eq!(response.finish_reason, FinishReason::ToolUse);
    }

    #[test]
    fn streamed_tool_calls_come_back_as_sent(
        calls in prop::collection::vec(tool_call(), 1..6),
        fragment in 1_usize..16,
        cut in any::<prop::sample::Index>(),
    ) {
        let body = sse_tool_call_events(&fixture_calls(&calls), fragment, Some((3, 0, 3))).concat();
        let (head, tail) = body.as_bytes().split_at(cut.index(body.len() + 1));
        let items = read_sse_body(&[head, tail], None, 64 * 1024, 64 * 1024);
        let mut assembler = ToolCallAssembler::new();
        let (last, rest) = items.split_last().ok_or_else(|| TestCaseError::fail("no items"))?;
        for item in rest {
            match item {
                Ok(ProviderEvent::ToolCallStart { index, id, name }) => assembler.start(*index, id, name),
                Ok(ProviderEvent::ToolCallDelta { index, arguments }) => assembler.delta(*index, arguments),
                Ok(ProviderEvent::ToolCallEnd { index }) => assembler.end(*index),
                other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let is_tool_use_finish = matches!(
            last,
            Ok(ProviderEvent::Finished { finish_reason: FinishReason::ToolUse, .. })
        );
        prop_assert!(is_tool_use_finish, "{:?}", last);
        prop_assert_eq!(assembler.finish().map_err(|e| TestCaseError::fail(e.to_string()))?, calls);
    }
}
