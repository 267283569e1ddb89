//! Pure mapping between [`ProviderRequest`]/[`ProviderResponse`] and the chat completions
//! wire format. No I/O here: every function is unit-tested on fixtures.
//!
//! # Messages, tools and images
//!
//! - A message of text parts only keeps OpenAI's plain form, `content` a string (several
//!   text parts are joined). A message with an image sends `content` as an array of
//!   `{"type": "text", "text"}` and `{"type": "image_url", "image_url": {"url":
//!   "data:<mime>;base64,…"}}` parts, in order; the base64 is written straight into the
//!   request body, never held as a second copy of the image.
//! - An assistant turn with tool calls carries `tool_calls: [{"id", "type": "function",
//!   "function": {"name", "arguments"}}]`, and `content: null` when it said nothing.
//!   Arguments are sent as the model wrote them (blank ones as `{}`).
//! - A [`Role::Tool`] message is `{"role": "tool", "tool_call_id", "content"}`; a JSON
//!   result is written compactly. **The result's `is_error` flag is dropped**: OpenAI's
//!   tool message has no field for it (the tool's error text is the whole signal there).
//! - `tools`, `tool_choice` and `parallel_tool_calls` are sent only when tools are offered:
//!   OpenAI refuses `tool_choice` and `parallel_tool_calls` without `tools`. `tool_choice`
//!   `auto` is left out, since it is OpenAI's default when tools are offered (and some
//!   compatible servers only accept it when enabled by a flag).
//! - `top_p`, `seed` and `user` are sent when set.
//!
//! # Tool calls in answers
//!
//! `message.tool_calls` become [`ProviderResponse::tool_calls`], their arguments kept as
//! the model's text. `finish_reason: "tool_calls"` reads [`FinishReason::ToolUse`], and so
//! does `"stop"` when the answer has calls (OpenAI says `stop` when a named tool was
//! forced). A call without an id or a name, of a type other than `function`, or whose
//! arguments are not a JSON object (blank arguments are allowed: a tool without input), is
//! [`ErrorKind::MalformedResponse`]; so is `tool_calls` as the reason with no call.
//!
//! # Usage convention
//!
//! OpenAI's `prompt_tokens` *includes* the prompt tokens served from its prompt cache
//! (`prompt_tokens_details.cached_tokens`). [`TokenUsage`] counts them apart, because
//! `failover-usage` prices each class on its own (`input_tokens × input price +
//! cache_read_tokens × cache-read price`). So:
//!
//! - `input_tokens` = `prompt_tokens − cached_tokens` (the tokens billed at the full price),
//! - `cache_read_tokens` = `cached_tokens`,
//! - `cache_write_tokens` = 0 (OpenAI bills no cache writes),
//! - `output_tokens` = `completion_tokens` (reasoning tokens included: they are billed as
//!   output).
//!
//! `input_tokens + cache_read_tokens` is therefore OpenAI's `prompt_tokens`.

use std::borrow::Cow;
use std::fmt;

pub use failover_provider::JsonContract;
use failover_provider::{
    ContentPart, ErrorKind, FinishReason, ImagePart, Message, ProviderError, ProviderRequest,
    ProviderResponse, ResponseFormat, Role, TokenUsage, ToolCall, ToolChoice, ToolDefinition,
    ToolResultContent,
};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::config::OpenAiConfig;

/// The instruction added in JSON object mode when no message mentions JSON: OpenAI refuses
/// `response_format: json_object` unless the word "JSON" appears in the messages.
pub const JSON_INSTRUCTION: &str =
    "Respond with a single valid JSON object and nothing else (no prose, no code fences).";

/// How a request is shaped on the wire; derived from the [`OpenAiConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireOptions {
    /// Send the limit as `max_completion_tokens` (else `max_tokens`).
    pub max_completion_tokens: bool,
    /// Send schemas as `json_schema` (else as `json_object`).
    pub structured_outputs: bool,
    /// The `strict` flag of `json_schema`.
    pub strict_json_schema: bool,
}

impl WireOptions {
    /// The options a configuration implies.
    pub fn from_config(config: &OpenAiConfig) -> Self {
        Self {
            max_completion_tokens: config.uses_max_completion_tokens(),
            structured_outputs: config.structured_outputs,
            strict_json_schema: config.strict_json_schema,
        }
    }
}

impl Default for WireOptions {
    fn default() -> Self {
        Self {
            max_completion_tokens: true,
            structured_outputs: true,
            strict_json_schema: false,
        }
    }
}

/// A message's `content` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireContent<'a> {
    /// `null`: an assistant turn that only called tools.
    Null,
    /// A string: a message of text only (its parts joined), or a tool's result.
    Text(Cow<'a, str>),
    /// An array of parts: a message with images.
    Parts(Vec<WirePart<'a>>),
}

impl Serialize for WireContent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WireContent::Null => serializer.serialize_none(),
            WireContent::Text(text) => serializer.serialize_str(text),
            WireContent::Parts(parts) => parts.serialize(serializer),
        }
    }
}

/// One part of an array `content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WirePart<'a> {
    /// `{"type": "text", "text"}`.
    Text {
        /// The text.
        text: &'a str,
    },
    /// `{"type": "image_url", "image_url": {"url": "data:…"}}`.
    ImageUrl {
        /// The image, as a data URL.
        image_url: WireImageUrl<'a>,
    },
}

/// The `image_url` member of an image part: the image as a `data:` URL, encoded while
/// the body is written (no base64 copy of the image is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireImageUrl<'a>(pub &'a ImagePart);

impl Serialize for WireImageUrl<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_struct("ImageUrl", 1)?;
        object.serialize_field("url", &DataUrl(self.0))?;
        object.end()
    }
}

/// Writes `data:<mime>;base64,<data>` through `Display`, so that `collect_str` streams
/// it into the body.
struct DataUrl<'a>(&'a ImagePart);

impl fmt::Display for DataUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = base64::display::Base64Display::new(
            &self.0.data,
            &base64::engine::general_purpose::STANDARD,
        );
        write!(f, "data:{};base64,{data}", self.0.media_type.mime())
    }
}

impl Serialize for DataUrl<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The `function` member of a tool call in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireFunctionCall<'a> {
    /// The tool called.
    pub name: &'a str,
    /// The arguments, as JSON text.
    pub arguments: &'a str,
}

/// A tool call of an assistant turn in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireToolCall<'a> {
    /// The call's id, which the tool message answering it names.
    pub id: &'a str,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The call.
    pub function: WireFunctionCall<'a>,
}

impl<'a> WireToolCall<'a> {
    fn of(call: &'a ToolCall) -> Self {
        // OpenAI parses a call's arguments as JSON; a blank one (a tool without input, as
        // some compatible servers write it) is sent as the empty object it means.
        let arguments = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            &call.arguments
        };
        Self {
            id: &call.id,
            kind: "function",
            function: WireFunctionCall {
                name: &call.name,
                arguments,
            },
        }
    }
}

/// One chat message on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireMessage<'a> {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// The content: a string, an array of parts, or `null`.
    pub content: WireContent<'a>,
    /// The calls of an assistant turn (omitted when there are none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tool_calls: Vec<WireToolCall<'a>>,
    /// The call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<&'a str>,
}

impl<'a> WireMessage<'a> {
    fn text(role: &'static str, text: &'a str) -> Self {
        Self {
            role,
            content: WireContent::Text(Cow::Borrowed(text)),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// The wire form of `message`. A tool message without its result cannot be sent
    /// (OpenAI requires `tool_call_id`): [`ErrorKind::InvalidRequest`].
    pub fn of(message: &'a Message) -> Result<Self, ProviderError> {
        if message.role == Role::Tool {
            let result = message.tool_result.as_ref().ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::InvalidRequest,
                    "a tool message carries no tool result (call id and content)",
                )
            })?;
            let content = match &result.content {
                ToolResultContent::Text(text) => Cow::Borrowed(text.as_str()),
                ToolResultContent::Json(value) => Cow::Owned(value.to_string()),
            };
            return Ok(Self {
                role: "tool",
                content: WireContent::Text(content),
                tool_calls: Vec::new(),
                tool_call_id: Some(&result.call_id),
            });
        }
        // Only an assistant turn has calls on this wire.
        let tool_calls: Vec<WireToolCall<'a>> = if message.role == Role::Assistant {
            message.tool_calls.iter().map(WireToolCall::of).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            role: message.role.as_str(),
            content: content_of(message, !tool_calls.is_empty()),
            tool_calls,
            tool_call_id: None,
        })
    }
}

fn content_of(message: &Message, has_calls: bool) -> WireContent<'_> {
    if message.images().next().is_some() {
        return WireContent::Parts(
            message
                .content
                .iter()
                .map(|part| match part {
                    ContentPart::Text { text } => WirePart::Text { text },
                    ContentPart::Image(image) => WirePart::ImageUrl {
                        image_url: WireImageUrl(image),
                    },
                })
                .collect(),
        );
    }
    let mut texts = message.content.iter().filter_map(ContentPart::as_text);
    match (texts.next(), texts.next()) {
        (None, _) if has_calls => WireContent::Null,
        (None, _) => WireContent::Text(Cow::Borrowed("")),
        (Some(only), None) => WireContent::Text(Cow::Borrowed(only)),
        (Some(_), Some(_)) => WireContent::Text(Cow::Owned(message.text())),
    }
}

/// The `function` member of an offered tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireFunction<'a> {
    /// The tool's name.
    pub name: &'a str,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    /// The JSON Schema of its input.
    pub parameters: &'a serde_json::Value,
}

/// An offered tool: `{"type": "function", "function": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireTool<'a> {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function.
    pub function: WireFunction<'a>,
}

impl<'a> WireTool<'a> {
    fn of(tool: &'a ToolDefinition) -> Self {
        Self {
            kind: "function",
            function: WireFunction {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters: &tool.input_schema,
            },
        }
    }
}

/// `tool_choice` on the wire: `"none"`, `"required"` (and `"auto"`), or
/// `{"type": "function", "function": {"name"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireToolChoice<'a> {
    /// A mode: `auto`, `none` or `required`.
    Mode(&'static str),
    /// This tool must be called.
    Function(&'a str),
}

impl<'a> WireToolChoice<'a> {
    /// The wire choice for `choice`; `None` for [`ToolChoice::Auto`], OpenAI's default
    /// when tools are offered.
    pub fn of(choice: &'a ToolChoice) -> Option<Self> {
        match choice {
            ToolChoice::Auto => None,
            ToolChoice::None => Some(WireToolChoice::Mode("none")),
            ToolChoice::Required => Some(WireToolChoice::Mode("required")),
            ToolChoice::Tool(name) => Some(WireToolChoice::Function(name)),
        }
    }
}

impl Serialize for WireToolChoice<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Name<'a> {
            name: &'a str,
        }
        match self {
            WireToolChoice::Mode(mode) => serializer.serialize_str(mode),
            WireToolChoice::Function(name) => {
                let mut object = serializer.serialize_struct("ToolChoice", 2)?;
                object.serialize_field("type", "function")?;
                object.serialize_field("function", &Name { name })?;
                object.end()
            }
        }
    }
}

/// The `json_schema` member of a `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireJsonSchema<'a> {
    /// The schema's name (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// The schema.
    pub schema: &'a serde_json::Value,
    /// Whether the output is constrained to the schema exactly.
    pub strict: bool,
}

/// `response_format` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireResponseFormat<'a> {
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema.
        json_schema: WireJsonSchema<'a>,
    },
}

/// `stream_options` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WireStreamOptions {
    /// Ask for a final chunk with the usage (always `true`).
    pub include_usage: bool,
}

/// A chat completions request body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest<'a> {
    /// The model.
    pub model: &'a str,
    /// The conversation.
    pub messages: Vec<WireMessage<'a>>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// The sampling seed (best-effort determinism).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// The end user's id, for OpenAI's abuse monitoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// The output limit, in the current field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// The output limit, in the legacy field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stop sequences (omitted when empty).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    /// JSON mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<WireResponseFormat<'a>>,
    /// The tools offered (omitted when none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tools: Vec<WireTool<'a>>,
    /// Which tool must be called (only with tools; omitted for `auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<WireToolChoice<'a>>,
    /// Whether several calls may come in one turn (only with tools).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Whether to stream.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Stream options (only when streaming).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<WireStreamOptions>,
}

/// A schema name OpenAI accepts: `[a-zA-Z0-9_-]`, 1 to 64 characters.
pub fn schema_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "response".to_owned()
    } else {
        cleaned
    }
}

/// Whether any text part says "json" in any case (OpenAI's condition for
/// `json_object`), without joining or lowering whole messages.
fn mentions_json(messages: &[Message]) -> bool {
    messages
        .iter()
        .flat_map(|message| message.content.iter().filter_map(ContentPart::as_text))
        .any(|text| {
            text.as_bytes()
                .windows(4)
                .any(|window| window.eq_ignore_ascii_case(b"json"))
        })
}

/// The request body for `request`; `stream` adds `stream: true` and
/// `stream_options.include_usage: true`. Borrows the request's text, schemas and images.
///
/// A tool message without its result is [`ErrorKind::InvalidRequest`] (the adapter's
/// validation refuses it first; this keeps the mapping total).
pub fn chat_request<'a>(
    request: &'a ProviderRequest,
    options: WireOptions,
    stream: bool,
) -> Result<ChatRequest<'a>, ProviderError> {
    let response_format = match &request.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(WireResponseFormat::JsonObject),
        ResponseFormat::JsonSchema { .. } if !options.structured_outputs => {
            Some(WireResponseFormat::JsonObject)
        }
        ResponseFormat::JsonSchema { name, schema } => Some(WireResponseFormat::JsonSchema {
            json_schema: WireJsonSchema {
                name: schema_name(name),
                schema,
                strict: options.strict_json_schema,
            },
        }),
    };
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if matches!(response_format, Some(WireResponseFormat::JsonObject))
        && !mentions_json(&request.messages)
    {
        messages.push(WireMessage::text("system", JSON_INSTRUCTION));
    }
    for message in &request.messages {
        messages.push(WireMessage::of(message)?);
    }
    let (max_completion_tokens, max_tokens) = if options.max_completion_tokens {
        (request.max_tokens, None)
    } else {
        (None, request.max_tokens)
    };
    // OpenAI refuses `tool_choice` and `parallel_tool_calls` without `tools`.
    let offers_tools = !request.tools.is_empty();
    Ok(ChatRequest {
        model: &request.model,
        messages,
        temperature: request.temperature,
        top_p: request.sampling.top_p,
        seed: request.sampling.seed,
        user: request.sampling.user.as_deref(),
        max_completion_tokens,
        max_tokens,
        stop: &request.stop,
        response_format,
        tools: request.tools.tools.iter().map(WireTool::of).collect(),
        tool_choice: offers_tools
            .then(|| WireToolChoice::of(&request.tools.choice))
            .flatten(),
        parallel_tool_calls: request.tools.parallel_tool_calls.filter(|_| offers_tools),
        stream,
        stream_options: stream.then_some(WireStreamOptions {
            include_usage: true,
        }),
    })
}

/// `usage.prompt_tokens_details` on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct WirePromptDetails {
    /// Prompt tokens read from the prompt cache.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// `usage` on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct WireUsage {
    /// Prompt tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Details of the prompt tokens.
    #[serde(default)]
    pub prompt_tokens_details: Option<WirePromptDetails>,
}

/// Maps wire usage to [`TokenUsage`] (see the module docs for the convention).
pub fn map_usage(usage: &WireUsage) -> TokenUsage {
    let cached = usage
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0)
        .min(usage.prompt_tokens);
    TokenUsage {
        input_tokens: usage.prompt_tokens - cached,
        output_tokens: usage.completion_tokens,
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    }
}

/// Maps a wire `finish_reason`.
pub fn map_finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls" | "function_call") => FinishReason::ToolUse,
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other("unspecified".to_owned()),
    }
}

/// The finish reason of an answer that did (`has_calls`) or did not call tools: `stop`
/// with calls is [`FinishReason::ToolUse`] (OpenAI says `stop` when a named tool was
/// forced), and [`FinishReason::ToolUse`] without any call is malformed (there is nothing
/// for the caller to run).
pub fn finish_reason_with_calls(
    reason: FinishReason,
    has_calls: bool,
) -> Result<FinishReason, ProviderError> {
    match (reason, has_calls) {
        (FinishReason::Stop, true) => Ok(FinishReason::ToolUse),
        (FinishReason::ToolUse, false) => Err(malformed(
            "the answer's finish reason is tool_calls, but it has no tool call",
        )),
        (reason, _) => Ok(reason),
    }
}

/// Checks a call's arguments: the text of a JSON object, or blank (a tool without input).
/// Checked without building the value. The message names the call, never its arguments
/// (they are the tenant's data).
pub fn check_tool_arguments(
    index: usize,
    name: &str,
    arguments: &str,
) -> Result<(), ProviderError> {
    let trimmed = arguments.trim_start();
    if trimmed.is_empty() {
        return Ok(());
    }
    if !trimmed.starts_with('{') {
        return Err(malformed(format!(
            "tool call {index} (`{name}`) has arguments that are not a JSON object"
        )));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(arguments)
        .map(|_| ())
        .map_err(|error| {
            malformed(format!(
                "tool call {index} (`{name}`) has arguments that are not valid JSON: {error}"
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
struct WireResponseFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireResponseToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    function: Option<WireResponseFunction>,
}

/// One call of an answer as [`ToolCall`], checked (see the module docs).
fn tool_call_of(index: usize, call: WireResponseToolCall) -> Result<ToolCall, ProviderError> {
    if let Some(kind) = call.kind.as_deref()
        && kind != "function"
    {
        return Err(malformed(format!(
            "tool call {index} is of type `{}`, not `function`",
            crate::error::truncate(kind)
        )));
    }
    let id = call
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed(format!("tool call {index} has no id")))?;
    let function = call.function.unwrap_or_default();
    let name = function
        .name
        .filter(|name| !name.is_empty())
        .ok_or_else(|| malformed(format!("tool call {index} names no function")))?;
    let arguments = function.arguments.unwrap_or_default();
    check_tool_arguments(index, &name, &arguments)?;
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

#[derive(Debug, Deserialize)]
struct WireResponseMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireResponseToolCall>>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    message: WireResponseMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

fn malformed(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::MalformedResponse, message)
}

/// Parses a successful (2xx) chat completion body.
///
/// An unparseable body, no choice, or no usage is [`ErrorKind::MalformedResponse`] (a
/// call without usage cannot be billed), and so is a malformed tool call (see the module
/// docs); an OpenAI error body sent with a 2xx is classified like a stream's error frame.
/// A refusal, or an answer the content filter cut to nothing, is
/// [`ErrorKind::ContentFiltered`].
pub fn parse_response(
    body: &[u8],
    requested_model: &str,
) -> Result<ProviderResponse, ProviderError> {
    let response: ChatResponse = serde_json::from_slice(body).map_err(|e| {
        // Some compatible servers answer errors with a 200 and an OpenAI error body.
        match crate::error::ApiError::from_body(body) {
            Some(api_error) => {
                crate::error::from_error_object(&api_error, "an error body with a success status")
            }
            None => malformed(format!("the completion body is not a chat completion: {e}")),
        }
    })?;
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| malformed("the completion has no choices"))?;
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
        return Err(ProviderError::new(
            ErrorKind::ContentFiltered,
            format!("the model refused: {}", crate::error::truncate(&refusal)),
        )
        .with_provider_code("refusal"));
    }
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, call)| tool_call_of(index, call))
        .collect::<Result<Vec<_>, _>>()?;
    let content = choice.message.content.unwrap_or_default();
    let finish_reason = finish_reason_with_calls(
        map_finish_reason(choice.finish_reason.as_deref()),
        !tool_calls.is_empty(),
    )?;
    if finish_reason == FinishReason::ContentFilter && content.is_empty() && tool_calls.is_empty() {
        return Err(ProviderError::new(
            ErrorKind::ContentFiltered,
            "the content filter withheld the answer",
        )
        .with_provider_code("content_filter"));
    }
    let usage = response
        .usage
        .ok_or_else(|| malformed("the completion reports no usage"))?;
    Ok(ProviderResponse {
        model: response
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        content,
        tool_calls,
        finish_reason,
        usage: map_usage(&usage),
    })
}

#[derive(Debug, Default, Deserialize)]
struct WireDeltaFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct WireDeltaToolCall<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<WireDeltaFunction<'a>>,
}

/// One streamed fragment of a tool call (`choices[0].delta.tool_calls[i]`), borrowing the
/// chunk's text where it has no escapes. OpenAI sends the id and the name in the first
/// fragment of an `index`, and the arguments in pieces (the first often empty); the stream
/// mapper assembles them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallFragment<'a> {
    /// The wire `index` of the call. OpenAI always sends it; a compatible server that
    /// leaves it out is read as "a fragment with an id starts a call, one without
    /// continues the open call".
    pub index: Option<u32>,
    /// The call's id (first fragment).
    pub id: Option<Cow<'a, str>>,
    /// The tool called (first fragment).
    pub name: Option<Cow<'a, str>>,
    /// A piece of the arguments.
    pub arguments: Option<Cow<'a, str>>,
}

/// One streamed chunk's choice delta.
#[derive(Debug, Default, Deserialize)]
struct WireDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<WireDeltaToolCall<'a>>>,
}

#[derive(Debug, Deserialize)]
struct WireChunkChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

/// The first of a chunk's `choices` (one is asked for; any other is skipped unread),
/// without a vector per chunk.
#[derive(Debug, Default)]
struct FirstChoice<'a>(Option<WireChunkChoice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct First<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for First<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<WireChunkChoice<'a>>()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }
        deserializer.deserialize_seq(First(std::marker::PhantomData))
    }
}

#[derive(Debug, Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: FirstChoice<'a>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Only whether it is there (and not null) matters; the body is parsed again to
    /// classify it.
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// What one SSE `data:` payload says, borrowing its text where it has no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkEvent<'a> {
    /// The `[DONE]` sentinel: the stream is complete.
    Done,
    /// A chunk: text, tool-call fragments, a finish reason, usage — any of them may be
    /// absent.
    Chunk {
        /// Generated text.
        text: Option<Cow<'a, str>>,
        /// Fragments of tool calls, in wire order.
        tool_calls: Vec<ToolCallFragment<'a>>,
        /// The finish reason, on the last content chunk.
        finish_reason: Option<FinishReason>,
        /// The usage, on the final usage chunk (`stream_options.include_usage`).
        usage: Option<TokenUsage>,
        /// The model that served the stream, as every chunk names it.
        model: Option<Cow<'a, str>>,
    },
}

/// Parses one SSE event of a chat completion stream. `event` is the SSE event name
/// (`message` when absent); an `error` event or an `{"error": …}` payload is an error, and
/// so is a tool-call fragment of a type other than `function`.
pub fn parse_chunk<'a>(event: &str, data: &'a str) -> Result<ChunkEvent<'a>, ProviderError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(ChunkEvent::Done);
    }
    if event == "error" {
        let api_error = crate::error::ApiError::from_body(data.as_bytes()).unwrap_or_else(|| {
            crate::error::ApiError {
                message: Some(crate::error::truncate(data)),
                ..Default::default()
            }
        });
        return Err(crate::error::from_error_object(&api_error, "stream error"));
    }
    let chunk: WireChunk<'a> = serde_json::from_str(data).map_err(|e| {
        malformed(format!(
            "a stream chunk is not a chat completion chunk: {e}"
        ))
    })?;
    if chunk.error.is_some() {
        let api_error = crate::error::ApiError::from_body(data.as_bytes()).unwrap_or_default();
        return Err(crate::error::from_error_object(&api_error, "stream error"));
    }
    let model = chunk.model.filter(|model| !model.is_empty());
    let (delta, finish_reason) = match chunk.choices.0 {
        Some(choice) => (choice.delta.unwrap_or_default(), choice.finish_reason),
        None => (WireDelta::default(), None),
    };
    if let Some(refusal) = delta.refusal.filter(|r| !r.is_empty()) {
        return Err(ProviderError::new(
            ErrorKind::ContentFiltered,
            format!("the model refused: {}", crate::error::truncate(&refusal)),
        )
        .with_provider_code("refusal"));
    }
    let tool_calls = delta
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|call| {
            if let Some(kind) = call.kind.as_deref()
                && kind != "function"
            {
                return Err(malformed(format!(
                    "a streamed tool call is of type `{}`, not `function`",
                    crate::error::truncate(kind)
                )));
            }
            let function = call.function.unwrap_or_default();
            Ok(ToolCallFragment {
                index: call.index,
                id: call.id,
                name: function.name,
                arguments: function.arguments,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChunkEvent::Chunk {
        text: delta.content.filter(|t| !t.is_empty()),
        tool_calls,
        finish_reason: finish_reason.map(|r| map_finish_reason(Some(&r))),
        usage: chunk.usage.as_ref().map(map_usage),
        model,
    })
}

#[cfg(test)]
mod tests {
    use failover_provider::RequestId;
    use serde_json::json;

    use super::*;

    fn request(format: ResponseFormat) -> ProviderRequest {
        ProviderRequest {
            request_id: RequestId::new("r"),
            model: "gpt-4o".into(),
            messages: vec![Message::system("be brief"), Message::user("2+2?")],
            temperature: Some(0.1),
            max_tokens: Some(10),
            stop: vec!["\n\n".into()],
            response_format: format,
            tools: Default::default(),
            sampling: Default::default(),
            deadline: None,
            attempt_deadline: None,
        }
    }

    fn body(request: &ProviderRequest, options: WireOptions, stream: bool) -> serde_json::Value {
        serde_json::to_value(chat_request(request, options, stream).unwrap()).unwrap()
    }

    #[test]
    fn text_request_maps_every_field() {
        let value = body(
            &request(ResponseFormat::Text),
            WireOptions::default(),
            false,
        );
        assert_eq!(
            value,
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "2+2?"}
                ],
                "temperature": 0.1_f32,
                "max_completion_tokens": 10,
                "stop": ["\n\n"],
            })
        );
    }

    #[test]
    fn legacy_max_tokens_and_defaults_are_omitted() {
        let mut bare = request(ResponseFormat::Text);
        bare.temperature = None;
        bare.stop.clear();
        let options = WireOptions {
            max_completion_tokens: false,
            ..WireOptions::default()
        };
        let value = body(&bare, options, false);
        assert_eq!(value["max_tokens"], 10);
        for absent in ["max_completion_tokens", "temperature", "stop", "stream"] {
            assert!(value.get(absent).is_none(), "{absent} in {value}");
        }
    }

    #[test]
    fn streaming_always_asks_for_usage() {
        let value = body(&request(ResponseFormat::Text), WireOptions::default(), true);
        assert_eq!(value["stream"], true);
        assert_eq!(value["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn json_object_mode_adds_the_instruction_only_when_json_is_not_mentioned() {
        let value = body(
            &request(ResponseFormat::JsonObject),
            WireOptions::default(),
            false,
        );
        assert_eq!(value["response_format"], json!({"type": "json_object"}));
        assert_eq!(value["messages"][0]["content"], JSON_INSTRUCTION);
        assert_eq!(value["messages"].as_array().unwrap().len(), 3);

        let mut mentions = request(ResponseFormat::JsonObject);
        mentions.messages[1] = Message::user("Answer in json: 2+2?");
        let value = body(&mentions, WireOptions::default(), false);
        assert_eq!(value["messages"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn json_schema_mode_sends_name_schema_and_strict() {
        let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}});
        let format = ResponseFormat::JsonSchema {
            name: "math answer!".into(),
            schema: schema.clone(),
        };
        let value = body(&request(format.clone()), WireOptions::default(), false);
        assert_eq!(
            value["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "math_answer_", "schema": schema, "strict": false}})
        );
        assert_eq!(
            value["messages"].as_array().unwrap().len(),
            2,
            "no instruction needed"
        );
        let strict = WireOptions {
            strict_json_schema: true,
            ..WireOptions::default()
        };
        assert_eq!(
            body(&request(format.clone()), strict, false)["response_format"]["json_schema"]["strict"],
            true
        );
        let emulated = WireOptions {
            structured_outputs: false,
            ..WireOptions::default()
        };
        let value = body(&request(format), emulated, false);
        assert_eq!(value["response_format"], json!({"type": "json_object"}));
        assert_eq!(value["messages"][0]["content"], JSON_INSTRUCTION);
    }

    #[test]
    fn schema_names_are_sanitised() {
        assert_eq!(schema_name(""), "response");
        assert_eq!(schema_name("ok_name-1"), "ok_name-1");
        assert_eq!(schema_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn usage_splits_cached_prompt_tokens() {
        let usage: WireUsage = serde_json::from_value(json!({
            "prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
            "prompt_tokens_details": {"cached_tokens": 400, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        }))
        .unwrap();
        assert_eq!(
            map_usage(&usage),
            TokenUsage {
                input_tokens: 600,
                output_tokens: 100,
                cache_read_tokens: 400,
                cache_write_tokens: 0
            }
        );
        let plain: WireUsage =
            serde_json::from_value(json!({"prompt_tokens": 7, "completion_tokens": 3})).unwrap();
        assert_eq!(map_usage(&plain), TokenUsage::new(7, 3));
        let odd: WireUsage = serde_json::from_value(json!({
            "prompt_tokens": 5, "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 9}
        }))
        .unwrap();
        assert_eq!(
            map_usage(&odd).input_tokens,
            0,
            "never underflows on a server's nonsense"
        );
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(map_finish_reason(Some("stop")), FinishReason::Stop);
        assert_eq!(map_finish_reason(Some("length")), FinishReason::Length);
        assert_eq!(
            map_finish_reason(Some("content_filter")),
            FinishReason::ContentFilter
        );
        assert_eq!(map_finish_reason(Some("tool_calls")), FinishReason::ToolUse);
        assert_eq!(
            map_finish_reason(Some("eos")),
            FinishReason::Other("eos".into())
        );
    }

    #[test]
    fn responses_parse_content_finish_reason_and_usage() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "4", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 0}}
        });
        let response = parse_response(body.to_string().as_bytes(), "gpt-4o").unwrap();
        assert_eq!(response.model, "gpt-4o-2024-08-06");
        assert_eq!(response.content, "4");
        assert_eq!(response.finish_reason, FinishReason::Stop);
        assert_eq!(response.usage, TokenUsage::new(20, 1));
    }

    #[test]
    fn broken_responses_are_malformed_and_refusals_are_filtered() {
        for body in [
            "not json".to_owned(),
            json!({"choices": []}).to_string(),
            json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]})
                .to_string(),
        ] {
            let error = parse_response(body.as_bytes(), "m").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{body}");
        }
        let error_with_200 = json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
        let error = parse_response(error_with_200.to_string().as_bytes(), "m").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Throttled);
        let refusal = json!({"choices": [{"message": {"content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        let error = parse_response(refusal.to_string().as_bytes(), "m").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ContentFiltered);
        let filtered = json!({"choices": [{"message": {"content": null}, "finish_reason": "content_filter"}], "usage": {"prompt_tokens": 1, "completion_tokens": 0}});
        let error = parse_response(filtered.to_string().as_bytes(), "m").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ContentFiltered);
    }

    #[test]
    fn json_contracts_check_syntax_shape_and_schema() {
        assert!(
            JsonContract::for_format(&ResponseFormat::Text)
                .unwrap()
                .is_none()
        );
        let object = JsonContract::for_format(&ResponseFormat::JsonObject)
            .unwrap()
            .unwrap();
        object.check_text(r#"{"a": 1}"#).unwrap();
        for bad in ["Sure! {\"a\": 1}", "[1, 2]", "```json\n{}\n```"] {
            assert_eq!(
                object.check_text(bad).unwrap_err().kind(),
                ErrorKind::MalformedResponse,
                "{bad}"
            );
        }
        let schema = ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}),
        };
        let contract = JsonContract::for_format(&schema).unwrap().unwrap();
        contract.check_text(r#"{"answer": 4}"#).unwrap();
        let error = contract.check_text(r#"{"answer": "four"}"#).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MalformedResponse);
        assert!(error.message().contains("/answer"), "{}", error.message());
        assert!(contract.check_text(r#"{}"#).is_err());

        let invalid = ResponseFormat::JsonSchema {
            name: "bad".into(),
            schema: json!({"type": 12}),
        };
        assert_eq!(
            JsonContract::for_format(&invalid).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }

    #[test]
    fn stream_chunks_parse() {
        assert_eq!(parse_chunk("message", " [DONE]").unwrap(), ChunkEvent::Done);
        let role = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk("message", role).unwrap(),
            ChunkEvent::Chunk {
                text: None,
                tool_calls: Vec::new(),
                finish_reason: None,
                usage: None,
                model: None
            }
        );
        let text = r#"{"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
        assert_eq!(
            parse_chunk("message", text).unwrap(),
            ChunkEvent::Chunk {
                text: Some("Hel".into()),
                tool_calls: Vec::new(),
                finish_reason: None,
                usage: None,
                model: Some("gpt-4o-2024-08-06".into())
            }
        );
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let ChunkEvent::Chunk {
            usage: Some(usage), ..
        } = parse_chunk("message", usage).unwrap()
        else {
            panic!("usage expected")
        };
        assert_eq!((usage.input_tokens, usage.cache_read_tokens), (5, 4));
    }

    #[test]
    fn stream_error_frames_and_garbage_are_errors() {
        let frame = r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;
        let error = parse_chunk("message", frame).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        let named = parse_chunk("error", r#"{"error":{"message":"slow","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}"#).unwrap_err();
        assert_eq!(named.kind(), ErrorKind::Throttled);
        let bare = parse_chunk("error", "overloaded").unwrap_err();
        assert_eq!(bare.kind(), ErrorKind::Unavailable);
        assert_eq!(
            parse_chunk("message", "{not json").unwrap_err().kind(),
            ErrorKind::MalformedResponse
        );
    }
}
