//! Properties of the tool mapping: a random conversation with tools (random ids, names
//! `[a-zA-Z0-9_-]{1,64}`, argument objects, results, images) mapped to the Converse SDK
//! types and back (a test-side reverse mapping, SDK `Message`s → neutral messages) loses
//! no call id, name or argument (arguments compared as parsed JSON), no result and no
//! image; and a Converse answer with random `toolUse` blocks reads as the same calls.
//! 2 000 cases per property by default (`PROPTEST_ROUNDTRIP_CASES` overrides).

use std::sync::Arc;

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput as ConverseResponse;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, ImageSource, Message as BedrockMessage,
    StopReason, ToolResultContentBlock, ToolResultStatus, ToolUseBlock,
};
use failover_bedrock::JsonModeConfig;
use failover_bedrock::mapping::{
    JsonPlan, LEADING_USER_TURN, document_to_json, from_converse, json_to_document, to_converse,
};
use failover_provider::{
    ContentPart, FinishReason, ImageMediaType, ImagePart, Message, ProviderRequest, RequestId,
    ResponseFormat, Role, ToolCall, ToolDefinition, ToolResult, ToolResultContent,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_ROUNDTRIP_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,64}"
}

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:-]{1,64}"
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e12_f64..1.0e12).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,10}", value(), 0..5)
        .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>()))
}

/// One round of an agent loop: the user's turn (text, maybe an image), the assistant's
/// (maybe text, its calls) and a result for each call.
#[derive(Debug, Clone)]
struct Round {
    user: String,
    image: Option<(ImageMediaType, Vec<u8>)>,
    said: String,
    calls: Vec<(String, String, Value, bool)>,
    results: Vec<(ToolResultContent, bool)>,
}

fn result_content() -> impl Strategy<Value = ToolResultContent> {
    prop_oneof![
        ".{1,20}".prop_map(ToolResultContent::Text),
        value().prop_map(ToolResultContent::Json),
    ]
}

fn round() -> impl Strategy<Value = Round> {
    (
        "[a-z ]{0,10}[a-z]",
        prop::option::of((
            prop::sample::select(ImageMediaType::ALL.to_vec()),
            prop::collection::vec(any::<u8>(), 1..16),
        )),
        "[a-z ]{0,10}",
        // Arguments as an object, written compactly or with spaces, or left empty.
        prop::collection::vec((id(), name(), object(), any::<bool>()), 0..4),
        prop::collection::vec((result_content(), any::<bool>()), 4),
    )
        .prop_map(|(user, image, said, calls, results)| Round {
            user,
            image,
            said,
            results: results.into_iter().take(calls.len()).collect(),
            calls,
        })
}

fn conversation(rounds: &[Round], system: bool) -> Vec<Message> {
    let mut messages = Vec::new();
    if system {
        messages.push(Message::system("Use the tools."));
    }
    for round in rounds {
        let mut parts = vec![ContentPart::text(round.user.clone())];
        if let Some((media_type, data)) = &round.image {
            parts.push(ContentPart::Image(ImagePart::new(
                *media_type,
                data.clone(),
            )));
        }
        messages.push(Message::user_parts(parts));
        let calls: Vec<ToolCall> = round
            .calls
            .iter()
            .map(|(id, name, arguments, pretty)| {
                let text = if arguments.as_object().is_some_and(Map::is_empty) && *pretty {
                    String::new()
                } else if *pretty {
                    serde_json::to_string_pretty(arguments).unwrap()
                } else {
                    arguments.to_string()
                };
                ToolCall::new(id.clone(), name.clone(), text)
            })
            .collect();
        if calls.is_empty() {
            messages.push(Message::assistant(format!("{} done", round.said)));
            continue;
        }
        messages.push(Message::assistant_with_calls(round.said.clone(), calls));
        for ((id, _, _, _), (content, is_error)) in round.calls.iter().zip(&round.results) {
            messages.push(Message {
                tool_result: Some(ToolResult {
                    call_id: id.clone(),
                    content: content.clone(),
                    is_error: *is_error,
                }),
                ..Message::parts(Role::Tool, Vec::new())
            });
        }
    }
    messages
}

/// The test's reverse mapping: Converse messages back to neutral messages (a user turn's
/// results become tool messages, in order, before its other parts).
fn neutral(messages: &[BedrockMessage]) -> Vec<Message> {
    let mut out = Vec::new();
    for message in messages {
        match message.role {
            ConversationRole::Assistant => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for block in &message.content {
                    match block {
                        ContentBlock::Text(t) => text.push_str(t),
                        ContentBlock::ToolUse(tool) => calls.push(ToolCall::new(
                            tool.tool_use_id.clone(),
                            tool.name.clone(),
                            document_to_json(&tool.input).to_string(),
                        )),
                        other => panic!("unexpected assistant block {other:?}"),
                    }
                }
                out.push(Message::assistant_with_calls(text, calls));
            }
            _ => {
                let mut parts = Vec::new();
                for block in &message.content {
                    match block {
                        ContentBlock::ToolResult(result) => {
                            assert!(parts.is_empty(), "results come first in a user turn");
                            assert_eq!(result.content.len(), 1);
                            let content = match &result.content[0] {
                                ToolResultContentBlock::Text(t) => {
                                    ToolResultContent::Text(t.clone())
                                }
                                ToolResultContentBlock::Json(d) => {
                                    ToolResultContent::Json(document_to_json(d))
                                }
                                other => panic!("unexpected result block {other:?}"),
                            };
                            out.push(Message {
                                tool_result: Some(ToolResult {
                                    call_id: result.tool_use_id.clone(),
                                    content,
                                    is_error: result.status == Some(ToolResultStatus::Error),
                                }),
                                ..Message::parts(Role::Tool, Vec::new())
                            });
                        }
                        ContentBlock::Text(t) => parts.push(ContentPart::text(t.clone())),
                        ContentBlock::Image(image) => {
                            let Some(ImageSource::Bytes(bytes)) = &image.source else {
                                panic!("an image without bytes")
                            };
                            let media_type = ImageMediaType::from_mime(&format!(
                                "image/{}",
                                image.format.as_str()
                            ))
                            .expect("a known format");
                            parts.push(ContentPart::Image(ImagePart::new(
                                media_type,
                                Arc::<[u8]>::from(bytes.as_ref()),
                            )));
                        }
                        other => panic!("unexpected user block {other:?}"),
                    }
                }
                if !parts.is_empty() {
                    out.push(Message::user_parts(parts));
                }
            }
        }
    }
    out
}

/// Calls as (id, name, parsed arguments), in order.
fn calls_of(messages: &[Message]) -> Vec<(String, String, Value)> {
    messages
        .iter()
        .flat_map(|message| &message.tool_calls)
        .map(|call| {
            (
                call.id.clone(),
                call.name.clone(),
                call.arguments_json().expect("arguments parse"),
            )
        })
        .collect()
}

fn results_of(messages: &[Message]) -> Vec<ToolResult> {
    messages
        .iter()
        .filter_map(|message| message.tool_result.clone())
        .collect()
}

fn images_of(messages: &[Message]) -> Vec<ImagePart> {
    messages
        .iter()
        .flat_map(|message| message.images().cloned())
        .collect()
}

fn request(messages: Vec<Message>, tools: Vec<ToolDefinition>) -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("roundtrip"),
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
        messages,
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: ResponseFormat::Text,
        tools: failover_provider::ToolConfig {
            tools,
            ..Default::default()
        },
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conversations_with_tools_lose_no_id_name_argument_result_or_image(
        rounds in prop::collection::vec(round(), 1..6),
        system in any::<bool>(),
        offer in any::<bool>(),
    ) {
        let messages = conversation(&rounds, system);
        let tools: Vec<ToolDefinition> = if offer {
            let mut names: Vec<String> = rounds
                .iter()
                .flat_map(|round| round.calls.iter().map(|call| call.1.clone()))
                .collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .map(|name| ToolDefinition::new(name, "a tool", serde_json::json!({"type": "object"})))
                .collect()
        } else {
            Vec::new()
        };
        let mapped = to_converse(&request(messages.clone(), tools), &JsonModeConfig::default())
            .expect("a valid conversation maps");
        // Roles alternate and the user speaks first.
        for (index, message) in mapped.messages.iter().enumerate() {
            let expected = if index % 2 == 0 { ConversationRole::User } else { ConversationRole::Assistant };
            prop_assert_eq!(&message.role, &expected);
        }
        prop_assert!(!mapped.messages.iter().any(|m| m.content.iter().any(
            |block| block.as_text().is_ok_and(|text| text == LEADING_USER_TURN)
        )));
        let back = neutral(&mapped.messages);
        prop_assert_eq!(calls_of(&back), calls_of(&messages));
        prop_assert_eq!(results_of(&back), results_of(&messages));
        prop_assert_eq!(images_of(&back), images_of(&messages));
        // Any tool use in the history comes with a tool configuration naming every tool
        // called.
        let called: Vec<String> = calls_of(&messages).into_iter().map(|call| call.1).collect();
        if !called.is_empty() {
            let config = mapped.tool_config.as_ref().expect("tool use needs a toolConfig");
            let specs: Vec<&str> = config
                .tools
                .iter()
                .map(|tool| tool.as_tool_spec().unwrap().name.as_str())
                .collect();
            for name in &called {
                prop_assert!(specs.contains(&name.as_str()), "{name} not in {specs:?}");
            }
        }
    }

    #[test]
    fn converse_answers_with_random_tool_use_blocks_read_as_the_same_calls(
        text in prop::option::of("[a-zA-Z ]{1,20}"),
        uses in prop::collection::vec((id(), name(), object()), 1..6),
    ) {
        let mut blocks: Vec<ContentBlock> = text.iter().cloned().map(ContentBlock::Text).collect();
        for (id, name, input) in &uses {
            blocks.push(ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id(id)
                    .name(name)
                    .input(json_to_document(input))
                    .build()
                    .unwrap(),
            ));
        }
        let response = ConverseResponse::builder()
            .output(ConverseOutput::Message(
                BedrockMessage::builder()
                    .role(ConversationRole::Assistant)
                    .set_content(Some(blocks))
                    .build()
                    .unwrap(),
            ))
            .stop_reason(StopReason::ToolUse)
            .build()
            .unwrap();
        let answer = from_converse(&response, &JsonPlan::Text).unwrap();
        prop_assert_eq!(answer.finish_reason, FinishReason::ToolUse);
        prop_assert_eq!(answer.content, text.unwrap_or_default());
        let calls: Vec<(String, String, Value)> = answer
            .tool_calls
            .iter()
            .map(|call| (call.id.clone(), call.name.clone(), call.arguments_json().unwrap()))
            .collect();
        prop_assert_eq!(calls, uses);
    }
}
