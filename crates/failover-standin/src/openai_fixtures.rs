//! OpenAI chat completions fixtures: response bodies, SSE bodies and realistic error bodies
//! as the API sends them, and the wiremock templates and chunked responses that serve them.
//!
//! The error bodies copy OpenAI's shapes (`{"error": {"message", "type", "param", "code"}}`),
//! including the ones with a null `code` that must be classified by their message.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::bedrock_server::{ChunkedResponse, Ending, Part};

/// The path of the chat completions endpoint under a `/v1` base URL.
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// The base URL (`…/v1`) of a wiremock server, for `OpenAiConfig::base_url`.
pub fn base_url(server: &MockServer) -> String {
    format!("{}/v1", server.uri())
}

/// A `chat.completion` body.
pub fn chat_completion(
    model: &str,
    content: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Value {
    chat_completion_cached(model, content, prompt_tokens, 0, completion_tokens)
}

/// A `chat.completion` body whose prompt tokens include `cached_tokens` from the prompt
/// cache (`usage.prompt_tokens_details.cached_tokens`).
pub fn chat_completion_cached(
    model: &str,
    content: &str,
    prompt_tokens: u64,
    cached_tokens: u64,
    completion_tokens: u64,
) -> Value {
    json!({
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1_741_570_283,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": content,
                "refusal": null,
                "annotations": []
            },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    })
}

/// A tool call to script into a fixture: the fields OpenAI sends for one call.
/// (The stand-ins do not depend on `failover-provider`; build one from a
/// `failover_provider::ToolCall` with `FixtureToolCall::new(&call.id, &call.name,
/// &call.arguments)`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureToolCall<'a> {
    /// The call's id (`call_…` on OpenAI).
    pub id: &'a str,
    /// The function called.
    pub name: &'a str,
    /// The arguments: JSON text, sent as the string OpenAI sends.
    pub arguments: &'a str,
}

impl<'a> FixtureToolCall<'a> {
    /// A call.
    pub fn new(id: &'a str, name: &'a str, arguments: &'a str) -> Self {
        Self {
            id,
            name,
            arguments,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments}
        })
    }
}

/// A `chat.completion` body whose answer calls `calls`, as OpenAI sends it: `content` is
/// `text` or `null`, `message.tool_calls` lists the calls (`{"id", "type": "function",
/// "function": {"name", "arguments"}}`), and `finish_reason` is `tool_calls`.
pub fn tool_calls_response(
    model: &str,
    text: Option<&str>,
    calls: &[FixtureToolCall<'_>],
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Value {
    let mut body = chat_completion(model, "", prompt_tokens, completion_tokens);
    body["choices"][0]["message"]["content"] = text.map_or(Value::Null, |text| json!(text));
    body["choices"][0]["message"]["tool_calls"] =
        Value::Array(calls.iter().map(|call| call.to_json()).collect());
    body["choices"][0]["finish_reason"] = json!("tool_calls");
    body
}

/// An OpenAI error body.
pub fn error_body(
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({"error": {"message": message, "type": error_type, "param": param, "code": code}})
}

/// 429: a refilling rate limit.
pub fn rate_limit_error() -> Value {
    error_body(
        "Rate limit reached for gpt-4o in organization org-abc on requests per min (RPM): \
         Limit 500, Used 500, Requested 1. Please try again in 120ms.",
        "requests",
        None,
        Some("rate_limit_exceeded"),
    )
}

/// 429: the account has no credit left (never retried).
pub fn insufficient_quota_error() -> Value {
    error_body(
        "You exceeded your current quota, please check your plan and billing details. For \
         more information on this error, read the docs: \
         https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        None,
        Some("insufficient_quota"),
    )
}

/// 400: the prompt does not fit the context window.
pub fn context_length_error() -> Value {
    error_body(
        "This model's maximum context length is 8192 tokens. However, your messages resulted \
         in 9013 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        Some("messages"),
        Some("context_length_exceeded"),
    )
}

/// 400: the same, as servers that leave `code` null say it.
pub fn context_length_error_without_code() -> Value {
    error_body(
        "This model's maximum context length is 4096 tokens. However, you requested 5000 \
         tokens (4000 in the messages, 1000 in the completion).",
        "invalid_request_error",
        None,
        None,
    )
}

/// 400: any other invalid request.
pub fn invalid_request_error() -> Value {
    error_body(
        "Invalid value for 'temperature': must be between 0 and 2.",
        "invalid_request_error",
        Some("temperature"),
        Some("invalid_value"),
    )
}

/// 401: a wrong API key (OpenAI masks it in the message).
pub fn invalid_api_key_error() -> Value {
    error_body(
        "Incorrect API key provided: sk-test-************************abcd. You can find your \
         API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    )
}

/// 403: the region or account may not use the API.
pub fn permission_error() -> Value {
    error_body(
        "Country, region, or territory not supported",
        "request_forbidden",
        None,
        Some("unsupported_country_region_territory"),
    )
}

/// 404: an unknown model.
pub fn model_not_found_error(model: &str) -> Value {
    error_body(
        &format!("The model `{model}` does not exist or you do not have access to it."),
        "invalid_request_error",
        None,
        Some("model_not_found"),
    )
}

/// 5xx: the server failed.
pub fn server_error() -> Value {
    error_body(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    )
}

/// A wiremock JSON response.
pub fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json")
}

/// A wiremock error response with OpenAI's `retry-after-ms` hint.
pub fn error_response_with_hint(
    status: u16,
    body: &Value,
    retry_after: Duration,
) -> ResponseTemplate {
    json_response(status, body).insert_header(
        "retry-after-ms",
        retry_after.as_millis().to_string().as_str(),
    )
}

/// Mounts `response` on `POST /v1/chat/completions`, for at most `times` calls when given.
pub async fn mount_chat(server: &MockServer, response: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path(CHAT_PATH))
        .respond_with(response);
    let mock = match times {
        Some(times) => mock.up_to_n_times(times),
        None => mock,
    };
    mock.mount(server).await;
}

/// One SSE event carrying `data`.
pub fn sse_event(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// The `[DONE]` sentinel.
pub fn sse_done() -> String {
    sse_event("[DONE]")
}

fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-stream-1",
        "object": "chat.completion.chunk",
        "created": 1_741_570_283,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "usage": null
    })
}

/// The first chunk: the role, empty content.
pub fn sse_role_chunk() -> String {
    sse_event(
        &chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        )
        .to_string(),
    )
}

/// A content delta chunk.
pub fn sse_text_chunk(text: &str) -> String {
    sse_event(&chunk(json!({"content": text}), None).to_string())
}

/// The chunk with the finish reason (empty delta).
pub fn sse_finish_chunk(finish_reason: &str) -> String {
    sse_event(&chunk(json!({}), Some(finish_reason)).to_string())
}

/// The chunk that starts the tool call `index`: the first fragment of an index carries
/// the id, `type: "function"`, the name and empty arguments. The first call's (index 0)
/// also carries `role: "assistant"` and `content: null`, as OpenAI's first chunk of a
/// tool-calling answer does.
pub fn sse_tool_call_start_chunk(index: u32, id: &str, name: &str) -> String {
    let call = json!({
        "index": index,
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": ""}
    });
    let delta = if index == 0 {
        json!({"role": "assistant", "content": null, "tool_calls": [call], "refusal": null})
    } else {
        json!({"tool_calls": [call]})
    };
    sse_event(&chunk(delta, None).to_string())
}

/// A chunk with a piece of the arguments of the tool call `index` (no id, no name).
pub fn sse_tool_call_arguments_chunk(index: u32, fragment: &str) -> String {
    sse_event(
        &chunk(
            json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
            None,
        )
        .to_string(),
    )
}

/// The chunk that ends a tool-calling answer: an empty delta, `finish_reason:
/// "tool_calls"`.
pub fn sse_tool_calls_finish_chunk() -> String {
    sse_finish_chunk("tool_calls")
}

/// The events of a complete stream that calls `calls` one after another (index 0, 1, …):
/// each call's start chunk and its arguments in pieces of at most `fragment_bytes` bytes
/// (cut on character boundaries; at least one character a piece), the `tool_calls` finish
/// chunk, the usage chunk when `usage` is `(prompt, cached, completion)`, and `[DONE]`.
pub fn sse_tool_call_events(
    calls: &[FixtureToolCall<'_>],
    fragment_bytes: usize,
    usage: Option<(u64, u64, u64)>,
) -> Vec<String> {
    let mut events = Vec::new();
    for (index, call) in (0_u32..).zip(calls) {
        events.push(sse_tool_call_start_chunk(index, call.id, call.name));
        events.extend(
            fragments(call.arguments, fragment_bytes)
                .map(|piece| sse_tool_call_arguments_chunk(index, piece)),
        );
    }
    events.push(sse_tool_calls_finish_chunk());
    if let Some((prompt, cached, completion)) = usage {
        events.push(sse_usage_chunk(prompt, cached, completion));
    }
    events.push(sse_done());
    events
}

/// `text` in pieces of at most `max_bytes` bytes, cut on character boundaries (a piece
/// holds at least one character, so a wider character than `max_bytes` is a piece alone).
fn fragments(text: &str, max_bytes: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = max_bytes.max(1).min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// The final usage chunk (`stream_options.include_usage`): no choices.
pub fn sse_usage_chunk(prompt_tokens: u64, cached_tokens: u64, completion_tokens: u64) -> String {
    sse_event(
        &json!({
            "id": "chatcmpl-stream-1",
            "object": "chat.completion.chunk",
            "created": 1_741_570_283,
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
            }
        })
        .to_string(),
    )
}

/// An error frame as OpenAI sends it mid-stream (a `data:` payload with an `error`).
pub fn sse_error_frame() -> String {
    sse_event(&server_error().to_string())
}

/// The events of a complete stream of `deltas`: role chunk, one chunk per delta, finish
/// chunk, usage chunk when `usage` is `(prompt, cached, completion)`, and `[DONE]`.
pub fn sse_events(deltas: &[&str], usage: Option<(u64, u64, u64)>) -> Vec<String> {
    let mut events = vec![sse_role_chunk()];
    events.extend(deltas.iter().map(|d| sse_text_chunk(d)));
    events.push(sse_finish_chunk("stop"));
    if let Some((prompt, cached, completion)) = usage {
        events.push(sse_usage_chunk(prompt, cached, completion));
    }
    events.push(sse_done());
    events
}

/// A wiremock `text/event-stream` response with these events (sent at once).
pub fn sse_response(events: &[String]) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("cache-control", "no-cache")
        .set_body_raw(events.concat(), "text/event-stream")
}

/// A chunked `text/event-stream` response for the
/// [`ChunkedServer`](crate::bedrock_server::ChunkedServer): one HTTP chunk per event, so pauses
/// between parts are pauses between events.
pub fn sse_chunked(events: &[String]) -> ChunkedResponse {
    ChunkedResponse {
        status: 200,
        content_type: "text/event-stream".to_owned(),
        head_delay: Duration::ZERO,
        head_gate: None,
        parts: events
            .iter()
            .map(|event| Part::Bytes(event.as_bytes().to_vec()))
            .collect(),
        ending: Ending::Complete,
    }
}
