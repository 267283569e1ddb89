//! `POST /v1/chat/completions` bodies, as OpenAI's SDKs send them, turned into the engine's
//! [`CompletionRequest`].
//!
//! Every field the engine supports is read; a field that would change the answer but that
//! the engine cannot honour (`n > 1`, `logprobs`, penalties, `logit_bias`) is refused with
//! a 400 naming it, never ignored; an unknown field is refused as OpenAI refuses it.

use failover_provider::{
    CompletionRequest, ContentPart, ImagePart, Message, ResponseFormat, Role, Sampling, ToolCall,
    ToolChoice, ToolConfig, ToolDefinition, ToolResultContent,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// A chat completion request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    pub(crate) stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Stop>,
    response_format: Option<WireResponseFormat>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<WireToolChoice>,
    parallel_tool_calls: Option<bool>,
    seed: Option<i64>,
    user: Option<String>,
    // Read only to refuse what the engine cannot honour.
    n: Option<u32>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: Option<serde_json::Map<String, Value>>,
    // Accepted and not acted on: they change nothing in the answer.
    #[serde(rename = "metadata")]
    _metadata: Option<Value>,
    #[serde(rename = "store")]
    _store: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireJsonSchema },
}

#[derive(Debug, Deserialize)]
struct WireJsonSchema {
    name: String,
    #[serde(default)]
    schema: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireTool {
    Function { function: WireFunction },
}

#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireToolChoice {
    Mode(String),
    Named(NamedToolChoice),
}

#[derive(Debug, Deserialize)]
struct NamedToolChoice {
    function: NamedFunction,
}

#[derive(Debug, Deserialize)]
struct NamedFunction {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum WireMessage {
    System {
        content: WireContent,
    },
    Developer {
        content: WireContent,
    },
    User {
        content: WireContent,
    },
    Assistant {
        #[serde(default)]
        content: Option<WireContent>,
        #[serde(default)]
        tool_calls: Vec<WireToolCall>,
    },
    Tool {
        content: WireContent,
        tool_call_id: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WirePart {
    Text { text: String },
    ImageUrl { image_url: WireImageUrl },
}

#[derive(Debug, Deserialize)]
struct WireImageUrl {
    url: String,
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    function: WireCalledFunction,
}

#[derive(Debug, Deserialize)]
struct WireCalledFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// Who the request is for, decided by the caller's key (never by the body).
pub(crate) struct Addressee<'a> {
    pub(crate) tenant_id: &'a str,
    pub(crate) agent_id: &'a str,
}

impl ChatRequest {
    /// Parses a body; a malformed one is a 400 with serde's words (field, line, column).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(body).map_err(|error| {
            ApiError::invalid_request(
                format!("the request body is not a valid chat completion request: {error}"),
                None,
            )
        })
    }

    /// Whether the caller asked for a usage chunk at the end of a stream.
    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|options| options.include_usage)
    }

    /// The engine's request, or a 400 naming the field it cannot honour.
    pub(crate) fn into_completion(
        self,
        addressee: Addressee<'_>,
    ) -> Result<CompletionRequest, ApiError> {
        self.refuse_unsupported()?;
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| message.into_engine(index))
            .collect::<Result<Vec<_>, _>>()?;
        let mut request = CompletionRequest::messages(
            addressee.tenant_id,
            addressee.agent_id,
            self.model,
            messages,
        );
        request.temperature = self.temperature;
        request.max_tokens = self.max_completion_tokens.or(self.max_tokens);
        request.stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop],
            Some(Stop::Many(stops)) => stops,
        };
        request.response_format = match self.response_format {
            None | Some(WireResponseFormat::Text) => ResponseFormat::Text,
            Some(WireResponseFormat::JsonObject) => ResponseFormat::JsonObject,
            Some(WireResponseFormat::JsonSchema { json_schema }) => ResponseFormat::JsonSchema {
                name: json_schema.name,
                schema: json_schema
                    .schema
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            },
        };
        request.tools = ToolConfig {
            tools: self
                .tools
                .unwrap_or_default()
                .into_iter()
                .map(|WireTool::Function { function }| ToolDefinition {
                    name: function.name,
                    description: function.description,
                    input_schema: function.parameters.unwrap_or_else(
                        // OpenAI's default for a function without parameters.
                        || serde_json::json!({"type": "object", "properties": {}}),
                    ),
                })
                .collect(),
            choice: match self.tool_choice {
                None => ToolChoice::Auto,
                Some(WireToolChoice::Mode(mode)) => match mode.as_str() {
                    "auto" => ToolChoice::Auto,
                    "none" => ToolChoice::None,
                    "required" => ToolChoice::Required,
                    other => {
                        return Err(ApiError::invalid_request(
                            format!(
                                "tool_choice \"{other}\" is not one of \"auto\", \"none\", \
                                 \"required\" or {{\"type\": \"function\", \"function\": \
                                 {{\"name\": ...}}}}"
                            ),
                            Some("tool_choice"),
                        ));
                    }
                },
                Some(WireToolChoice::Named(named)) => ToolChoice::Tool(named.function.name),
            },
            parallel_tool_calls: self.parallel_tool_calls,
        };
        request.sampling = Sampling {
            top_p: self.top_p,
            seed: self.seed,
            user: self.user,
        };
        Ok(request)
    }

    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let refuse = |param: &'static str, what: &str| {
            Err(ApiError::invalid_request(
                format!("{what} is not supported by this gateway"),
                Some(param),
            ))
        };
        if self.n.is_some_and(|n| n != 1) {
            return refuse("n", "more than one choice (n > 1)");
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some_and(|n| n > 0) {
            return refuse("logprobs", "logprobs");
        }
        if self.frequency_penalty.is_some_and(|p| p != 0.0) {
            return refuse("frequency_penalty", "frequency_penalty");
        }
        if self.presence_penalty.is_some_and(|p| p != 0.0) {
            return refuse("presence_penalty", "presence_penalty");
        }
        if self
            .logit_bias
            .as_ref()
            .is_some_and(|bias| !bias.is_empty())
        {
            return refuse("logit_bias", "logit_bias");
        }
        Ok(())
    }
}

impl WireMessage {
    fn into_engine(self, index: usize) -> Result<Message, ApiError> {
        Ok(match self {
            WireMessage::System { content } | WireMessage::Developer { content } => {
                Message::parts(Role::System, content.into_parts(index)?)
            }
            WireMessage::User { content } => Message::parts(Role::User, content.into_parts(index)?),
            WireMessage::Assistant {
                content,
                tool_calls,
            } => {
                let parts = match content {
                    Some(content) => content.into_parts(index)?,
                    None => Vec::new(),
                };
                let mut message = Message::parts(Role::Assistant, parts);
                message.tool_calls = tool_calls
                    .into_iter()
                    .map(|call| ToolCall::new(call.id, call.function.name, call.function.arguments))
                    .collect();
                message
            }
            WireMessage::Tool {
                content,
                tool_call_id,
            } => {
                let text = content
                    .into_parts(index)?
                    .iter()
                    .filter_map(ContentPart::as_text)
                    .collect::<String>();
                Message::tool_result(tool_call_id, ToolResultContent::Text(text))
            }
        })
    }
}

impl WireContent {
    fn into_parts(self, index: usize) -> Result<Vec<ContentPart>, ApiError> {
        match self {
            WireContent::Text(text) => Ok(vec![ContentPart::text(text)]),
            WireContent::Parts(parts) => parts
                .into_iter()
                .enumerate()
                .map(|(part, wire)| match wire {
                    WirePart::Text { text } => Ok(ContentPart::text(text)),
                    WirePart::ImageUrl { image_url } => ImagePart::from_data_url(&image_url.url)
                        .map(ContentPart::Image)
                        .map_err(|error| {
                            ApiError::invalid_request_owned(
                                format!(
                                    "messages[{index}].content[{part}].image_url: {error} (the \
                                     gateway takes images as data: URLs and fetches nothing)"
                                ),
                                Some(format!("messages[{index}].content[{part}].image_url")),
                            )
                        }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressee() -> Addressee<'static> {
        Addressee {
            tenant_id: "acme",
            agent_id: "support",
        }
    }

    #[test]
    fn an_sdk_request_with_tools_and_images_maps_field_by_field() {
        let body = serde_json::json!({
            "model": "gpt-4",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "found"}
            ],
            "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 64, "stop": "END",
            "seed": 7, "user": "u-1", "parallel_tool_calls": false,
            "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "stream": true, "stream_options": {"include_usage": true}
        });
        let chat = ChatRequest::parse(body.to_string().as_bytes()).unwrap();
        assert!(chat.stream && chat.include_usage());
        let request = chat.into_completion(addressee()).unwrap();
        assert_eq!(
            (request.tenant_id.as_str(), request.agent_id.as_str()),
            ("acme", "support")
        );
        assert_eq!(request.max_tokens, Some(64));
        assert_eq!(request.stop, vec!["END".to_owned()]);
        assert_eq!(request.sampling.seed, Some(7));
        assert_eq!(request.tools.choice, ToolChoice::Tool("lookup".into()));
        assert_eq!(request.tools.parallel_tool_calls, Some(false));
        assert_eq!(request.response_format, ResponseFormat::JsonObject);
        let messages = request.input.to_messages();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[1].images().count(), 1);
        assert_eq!(messages[2].tool_calls[0].id, "call_1");
        assert_eq!(messages[3].tool_result.as_ref().unwrap().call_id, "call_1");
    }

    #[test]
    fn unknown_and_unsupported_fields_are_refused_by_name() {
        let unknown =
            ChatRequest::parse(br#"{"model":"m","messages":[],"best_of":2}"#).unwrap_err();
        assert!(
            unknown.message().contains("best_of"),
            "{}",
            unknown.message()
        );
        let n = ChatRequest::parse(br#"{"model":"m","messages":[],"n":2}"#)
            .unwrap()
            .into_completion(addressee())
            .unwrap_err();
        assert_eq!(n.param(), Some("n"));
    }

    #[test]
    fn a_remote_image_url_is_refused_not_fetched() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}]}"#;
        let error = ChatRequest::parse(body)
            .unwrap()
            .into_completion(addressee())
            .unwrap_err();
        assert_eq!(error.param(), Some("messages[0].content[0].image_url"));
        assert!(
            error.message().contains("fetches nothing"),
            "{}",
            error.message()
        );
    }
}
