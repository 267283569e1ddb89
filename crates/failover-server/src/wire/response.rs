//! The engine's answers in OpenAI's shapes: a `chat.completion` object for a plain request,
//! `chat.completion.chunk` events for a stream.

use failover_provider::{Completion, FinishReason, TokenUsage, ToolCall};
use serde::Serialize;

/// OpenAI's `finish_reason` for the engine's.
pub(crate) fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolUse => "tool_calls",
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::Other(_) => "stop",
    }
}

/// The response id OpenAI's clients see: `chatcmpl-` and the request id.
pub(crate) fn completion_id(request_id: &str) -> String {
    format!("chatcmpl-{request_id}")
}

/// `usage` in OpenAI's names.
#[derive(Debug, Serialize)]
pub(crate) struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl From<TokenUsage> for WireUsage {
    fn from(usage: TokenUsage) -> Self {
        // OpenAI's prompt tokens include the cached ones; the engine bills them apart.
        let prompt_tokens = usage
            .input_tokens
            .saturating_add(usage.cache_read_tokens)
            .saturating_add(usage.cache_write_tokens);
        Self {
            prompt_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: prompt_tokens.saturating_add(usage.output_tokens),
        }
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: WireUsage,
    system_fingerprint: Option<()>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    refusal: Option<()>,
}

#[derive(Serialize)]
pub(crate) struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

impl<'a> From<&'a ToolCall> for WireToolCall<'a> {
    fn from(call: &'a ToolCall) -> Self {
        Self {
            id: &call.id,
            kind: "function",
            function: WireFunction {
                name: &call.name,
                arguments: &call.arguments,
            },
        }
    }
}

/// A plain answer as a `chat.completion` body.
pub(crate) fn completion_body(completion: &Completion, created: u64) -> Vec<u8> {
    let content = if completion.content.is_empty() && !completion.tool_calls.is_empty() {
        None
    } else {
        Some(completion.content.as_str())
    };
    let body = ChatCompletion {
        id: completion_id(completion.request_id.as_str()),
        object: "chat.completion",
        created,
        model: &completion.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                tool_calls: completion
                    .tool_calls
                    .iter()
                    .map(WireToolCall::from)
                    .collect(),
                refusal: None,
            },
            logprobs: None,
            finish_reason: finish_reason(&completion.finish_reason),
        }],
        usage: completion.usage.into(),
        system_fingerprint: None,
    };
    // Strings and numbers always serialise.
    serde_json::to_vec(&body).unwrap_or_default()
}
