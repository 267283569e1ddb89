//! Bedrock fixtures: AWS event-stream frames for ConverseStream bodies, Converse JSON
//! answers, and error responses as Bedrock sends them, for wiremock or any local server.
//!
//! Frames are encoded with the SDK's own codec (`aws_smithy_eventstream`), so what a test
//! serves is byte-for-byte what the real client decodes.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use serde_json::{Value, json};

/// The content type of an event-stream body.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn encode(message: &Message) -> Vec<u8> {
    let mut buffer = Vec::new();
    write_message_to(message, &mut buffer).expect("an event-stream frame encodes");
    buffer
}

fn string_header(name: &'static str, value: &str) -> Header {
    Header::new(name, HeaderValue::String(value.to_owned().into()))
}

/// One `event` frame: `:event-type` = `event_type`, a JSON payload.
pub fn event_frame(event_type: &str, payload: &Value) -> Vec<u8> {
    encode(
        &Message::new(payload.to_string().into_bytes())
            .add_header(string_header(":message-type", "event"))
            .add_header(string_header(":event-type", event_type))
            .add_header(string_header(":content-type", "application/json")),
    )
}

/// One `exception` frame: `:exception-type` = `exception_type` (Bedrock spells them
/// `throttlingException`, `modelStreamErrorException`, …), payload `{"message": …}`.
pub fn exception_frame(exception_type: &str, message: &str) -> Vec<u8> {
    encode(
        &Message::new(json!({ "message": message }).to_string().into_bytes())
            .add_header(string_header(":message-type", "exception"))
            .add_header(string_header(":exception-type", exception_type))
            .add_header(string_header(":content-type", "application/json")),
    )
}

/// A ConverseStream body, one frame at a time.
///
/// ```
/// use failover_standin::eventstream::ConverseStreamBody;
/// let body = ConverseStreamBody::text_reply(&["Hel", "lo"], 12, 2);
/// // messageStart, 2 deltas, contentBlockStop, messageStop, metadata
/// assert_eq!(body.frames().len(), 6);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConverseStreamBody {
    frames: Vec<Vec<u8>>,
    block: u32,
}

impl ConverseStreamBody {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usual text answer: `messageStart`, a text block of `chunks`, `messageStop`
    /// (`end_turn`) and `metadata` with the usage. Like Bedrock, no `contentBlockStart` for
    /// a text block (Bedrock sends one only for tool use).
    pub fn text_reply(chunks: &[&str], input_tokens: u32, output_tokens: u32) -> Self {
        let mut body = Self::new().message_start();
        for chunk in chunks {
            body = body.text(chunk);
        }
        body.block_stop()
            .message_stop("end_turn")
            .metadata(input_tokens, output_tokens)
    }

    /// A tool-calling answer, as Bedrock streams one: `messageStart`, a text block of
    /// `text` (left out when `text` is empty), then for each call of `calls` (`(toolUseId,
    /// name, input fragments)`) a tool-use block ([`tool_call`](Self::tool_call)), then
    /// `messageStop` (`tool_use`) and `metadata`. The fragments of a call concatenate to its
    /// JSON input; Bedrock cuts them anywhere, mid-token included.
    ///
    /// ```
    /// use failover_standin::eventstream::ConverseStreamBody;
    /// let body = ConverseStreamBody::tool_calls_reply(
    ///     &["Let me check."],
    ///     &[
    ///         ("tooluse_1", "get_weather", &["{\"city\":", "\"Paris\"}"]),
    ///         ("tooluse_2", "get_time", &["{}"]),
    ///     ],
    ///     40,
    ///     25,
    /// );
    /// // messageStart; text delta, stop; 2 × (start, deltas, stop); messageStop, metadata
    /// assert_eq!(body.frames().len(), 1 + 2 + 4 + 3 + 2);
    /// ```
    pub fn tool_calls_reply(
        text: &[&str],
        calls: &[(&str, &str, &[&str])],
        input_tokens: u32,
        output_tokens: u32,
    ) -> Self {
        let mut body = Self::new().message_start();
        if !text.is_empty() {
            for chunk in text {
                body = body.text(chunk);
            }
            body = body.block_stop();
        }
        for (id, name, fragments) in calls {
            body = body.tool_call(id, name, fragments);
        }
        body.message_stop("tool_use")
            .metadata(input_tokens, output_tokens)
    }

    /// One whole tool-use block in the next content block: `contentBlockStart`
    /// (`start.toolUse{toolUseId, name}`), a `contentBlockDelta` (`delta.toolUse.input`)
    /// per fragment of the JSON input, and `contentBlockStop`.
    pub fn tool_call(self, tool_use_id: &str, name: &str, fragments: &[&str]) -> Self {
        let mut body = self.tool_use_start(tool_use_id, name);
        for fragment in fragments {
            body = body.tool_input(fragment);
        }
        body.block_stop()
    }

    /// Appends a raw frame.
    pub fn frame(mut self, frame: Vec<u8>) -> Self {
        self.frames.push(frame);
        self
    }

    /// Appends an event frame.
    pub fn event(self, event_type: &str, payload: Value) -> Self {
        self.frame(event_frame(event_type, &payload))
    }

    /// `messageStart` with the assistant role.
    pub fn message_start(self) -> Self {
        self.event("messageStart", json!({ "role": "assistant" }))
    }

    /// `contentBlockStart` of a tool-use block in the current block:
    /// `{"contentBlockIndex": n, "start": {"toolUse": {"toolUseId": …, "name": …}}}`.
    pub fn tool_use_start(self, tool_use_id: &str, name: &str) -> Self {
        let index = self.block;
        self.event(
            "contentBlockStart",
            json!({
                "contentBlockIndex": index,
                "start": { "toolUse": { "toolUseId": tool_use_id, "name": name } }
            }),
        )
    }

    /// A text `contentBlockDelta` in the current block.
    pub fn text(self, text: &str) -> Self {
        let index = self.block;
        self.event(
            "contentBlockDelta",
            json!({ "contentBlockIndex": index, "delta": { "text": text } }),
        )
    }

    /// A tool-input `contentBlockDelta` in the current block (a piece of the tool's JSON
    /// input): `{"contentBlockIndex": n, "delta": {"toolUse": {"input": "…"}}}`.
    pub fn tool_input(self, partial_json: &str) -> Self {
        let index = self.block;
        self.event(
            "contentBlockDelta",
            json!({ "contentBlockIndex": index, "delta": { "toolUse": { "input": partial_json } } }),
        )
    }

    /// `contentBlockStop`; the next block gets the next index.
    pub fn block_stop(mut self) -> Self {
        let index = self.block;
        self.block += 1;
        self.event("contentBlockStop", json!({ "contentBlockIndex": index }))
    }

    /// `messageStop` with a stop reason (`end_turn`, `max_tokens`, `tool_use`, …).
    pub fn message_stop(self, stop_reason: &str) -> Self {
        self.event("messageStop", json!({ "stopReason": stop_reason }))
    }

    /// `metadata` with usage and a latency metric.
    pub fn metadata(self, input_tokens: u32, output_tokens: u32) -> Self {
        self.event(
            "metadata",
            json!({
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens
                },
                "metrics": { "latencyMs": 42 }
            }),
        )
    }

    /// `metadata` with prompt-cache usage as well.
    pub fn metadata_with_cache(
        self,
        input_tokens: u32,
        output_tokens: u32,
        cache_read: u32,
        cache_write: u32,
    ) -> Self {
        self.event(
            "metadata",
            json!({
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens + cache_read + cache_write,
                    "cacheReadInputTokens": cache_read,
                    "cacheWriteInputTokens": cache_write
                },
                "metrics": { "latencyMs": 42 }
            }),
        )
    }

    /// An exception frame (`throttlingException`, `modelStreamErrorException`, …).
    pub fn exception(self, exception_type: &str, message: &str) -> Self {
        self.frame(exception_frame(exception_type, message))
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Vec<u8>] {
        &self.frames
    }

    /// The whole body.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.frames.concat()
    }

    /// The whole body with the last `n` bytes cut off (a connection dropped inside a frame).
    pub fn to_bytes_truncated(&self, n: usize) -> Vec<u8> {
        let mut bytes = self.to_bytes();
        bytes.truncate(bytes.len().saturating_sub(n));
        bytes
    }

    /// A wiremock response serving this body at once.
    pub fn response(&self) -> wiremock::ResponseTemplate {
        wiremock::ResponseTemplate::new(200)
            .insert_header("content-type", EVENT_STREAM_CONTENT_TYPE)
            .set_body_raw(self.to_bytes(), EVENT_STREAM_CONTENT_TYPE)
    }
}

/// Percent-encodes a model id as the SDK does in the URL path (`:` → `%3A`, `/` → `%2F`).
pub fn encode_model_id(model_id: &str) -> String {
    let mut out = String::with_capacity(model_id.len());
    for byte in model_id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The path of `Converse` for a model: `/model/{percent-encoded id}/converse`.
pub fn converse_path(model_id: &str) -> String {
    format!("/model/{}/converse", encode_model_id(model_id))
}

/// The path of `ConverseStream` for a model.
pub fn converse_stream_path(model_id: &str) -> String {
    format!("/model/{}/converse-stream", encode_model_id(model_id))
}

fn usage_json(input_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens
    })
}

/// A `Converse` answer body with text content.
pub fn converse_text(
    text: &str,
    stop_reason: &str,
    input_tokens: u32,
    output_tokens: u32,
) -> Value {
    json!({
        "output": { "message": { "role": "assistant", "content": [{ "text": text }] } },
        "stopReason": stop_reason,
        "usage": usage_json(input_tokens, output_tokens),
        "metrics": { "latencyMs": 120 }
    })
}

/// A `Converse` answer body where the model called `tool_name` with `input`.
pub fn converse_tool_use(
    tool_name: &str,
    input: Value,
    input_tokens: u32,
    output_tokens: u32,
) -> Value {
    json!({
        "output": { "message": { "role": "assistant", "content": [
            { "toolUse": { "toolUseId": "tooluse_test", "name": tool_name, "input": input } }
        ] } },
        "stopReason": "tool_use",
        "usage": usage_json(input_tokens, output_tokens),
        "metrics": { "latencyMs": 120 }
    })
}

/// A `Converse` answer body where the model called tools: an optional text block, then a
/// `toolUse` block per call of `calls` (`(toolUseId, name, input)`), `stopReason`
/// `tool_use`. Unlike [`converse_tool_use`] every call has its own id.
///
/// ```
/// use failover_standin::eventstream::converse_tool_calls;
/// use serde_json::json;
/// let body = converse_tool_calls(
///     Some("Checking both."),
///     &[
///         ("tooluse_1", "get_weather", json!({"city": "Paris"})),
///         ("tooluse_2", "get_time", json!({"zone": "CET"})),
///     ],
///     40,
///     25,
/// );
/// let content = &body["output"]["message"]["content"];
/// assert_eq!(content[0]["text"], "Checking both.");
/// assert_eq!(content[2]["toolUse"]["toolUseId"], "tooluse_2");
/// assert_eq!(body["stopReason"], "tool_use");
/// ```
pub fn converse_tool_calls(
    text: Option<&str>,
    calls: &[(&str, &str, Value)],
    input_tokens: u32,
    output_tokens: u32,
) -> Value {
    let mut content: Vec<Value> = text
        .map(|text| json!({ "text": text }))
        .into_iter()
        .collect();
    content.extend(calls.iter().map(
        |(id, name, input)| json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } }),
    ));
    json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": "tool_use",
        "usage": usage_json(input_tokens, output_tokens),
        "metrics": { "latencyMs": 120 }
    })
}

/// A wiremock response for a `Converse` answer body.
pub fn converse_response(body: Value) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(200).set_body_json(body)
}

/// An error response as Bedrock sends it: the HTTP status, `x-amzn-ErrorType` naming the
/// exception, a request id, and a JSON body `{"message": …}`.
pub fn bedrock_error(status: u16, error_type: &str, message: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status)
        .insert_header(
            "x-amzn-ErrorType",
            format!("{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/").as_str(),
        )
        .insert_header("x-amzn-RequestId", "5d4c2f5e-test-request-id")
        .set_body_raw(
            json!({ "message": message }).to_string().into_bytes(),
            "application/json",
        )
}

/// The error responses of every Bedrock exception, with realistic statuses and messages:
/// `(status, x-amzn-ErrorType, message)`.
pub const BEDROCK_ERRORS: [(u16, &str, &str); 12] = [
    (
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    ),
    (
        400,
        "ServiceQuotaExceededException",
        "Your request exceeds the service quota for your account.",
    ),
    (
        429,
        "ModelNotReadyException",
        "Model is not ready to serve inference requests.",
    ),
    (
        503,
        "ServiceUnavailableException",
        "Bedrock is unable to process your request.",
    ),
    (
        500,
        "InternalServerException",
        "The server encountered an internal error.",
    ),
    (
        408,
        "ModelTimeoutException",
        "Model has timed out in processing the request.",
    ),
    (
        424,
        "ModelErrorException",
        "The model produced an invalid response.",
    ),
    (
        400,
        "ValidationException",
        "A conversation must start with a user message.",
    ),
    (
        400,
        "ValidationException",
        "Input is too long for requested model.",
    ),
    (
        400,
        "ValidationException",
        "The provided model identifier is invalid.",
    ),
    (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    (404, "ResourceNotFoundException", "Model not found."),
];

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    #[test]
    fn frames_decode_with_the_sdk_codec() {
        let body = ConverseStreamBody::new()
            .text("hi")
            .exception("throttlingException", "slow down");
        let first = read_message_from(&body.frames()[0][..]).unwrap();
        let header = |message: &Message, name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_owned()))
        };
        assert_eq!(
            header(&first, ":event-type").as_deref(),
            Some("contentBlockDelta")
        );
        let payload: Value = serde_json::from_slice(first.payload()).unwrap();
        assert_eq!(payload["delta"]["text"], "hi");
        let second = read_message_from(&body.frames()[1][..]).unwrap();
        assert_eq!(
            header(&second, ":message-type").as_deref(),
            Some("exception")
        );
        assert_eq!(
            header(&second, ":exception-type").as_deref(),
            Some("throttlingException")
        );
    }

    #[test]
    fn tool_call_frames_have_bedrocks_wire_shapes() {
        let body = ConverseStreamBody::tool_calls_reply(
            &[],
            &[("tooluse_a", "lookup", &["{\"q\":", "1}"])],
            3,
            4,
        );
        let payloads: Vec<Value> = body
            .frames()
            .iter()
            .map(|frame| {
                let message = read_message_from(&frame[..]).unwrap();
                serde_json::from_slice(message.payload()).unwrap()
            })
            .collect();
        assert_eq!(payloads.len(), 7);
        assert_eq!(
            payloads[1],
            json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "lookup"}}})
        );
        assert_eq!(
            payloads[3],
            json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}})
        );
        assert_eq!(payloads[4], json!({"contentBlockIndex": 0}));
        assert_eq!(payloads[5], json!({"stopReason": "tool_use"}));
    }

    #[test]
    fn model_ids_are_percent_encoded_in_paths() {
        assert_eq!(
            converse_stream_path("us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
            "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
        );
        assert_eq!(encode_model_id("arn:aws:x/y"), "arn%3Aaws%3Ax%2Fy");
    }
}
