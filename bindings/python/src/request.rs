//! The keyword arguments of `generate_completion` / `stream_completion` as the engine's
//! [`CompletionRequest`]: the seed's parameters, and messages, tools, tool choice and images
//! in the OpenAI-style dict shapes Python users already write. Anything malformed is an
//! `InvalidRequest` naming the field; the engine validates the rest (ranges, sizes, ids).

use std::time::Duration;

use failover_provider::{
    CompletionRequest, ContentPart, ImagePart, Message, RequestId, ResponseFormat, Role, ToolCall,
    ToolChoice, ToolDefinition, ToolResultContent,
};
use pyo3::prelude::*;
use serde_json::Value;

use crate::errors::invalid;

/// The longest `timeout` a request may name.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The arguments as Python passed them.
pub(crate) struct RequestArgs<'py> {
    pub(crate) prompt: Option<String>,
    pub(crate) agent_id: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) temperature: Option<f64>,
    pub(crate) max_tokens: Option<i64>,
    pub(crate) response_format: Option<Bound<'py, PyAny>>,
    pub(crate) messages: Option<Bound<'py, PyAny>>,
    pub(crate) system: Option<String>,
    pub(crate) images: Option<Bound<'py, PyAny>>,
    pub(crate) tools: Option<Bound<'py, PyAny>>,
    pub(crate) tool_choice: Option<Bound<'py, PyAny>>,
    pub(crate) parallel_tool_calls: Option<bool>,
    pub(crate) stop: Option<Bound<'py, PyAny>>,
    pub(crate) top_p: Option<f64>,
    pub(crate) seed: Option<i64>,
    pub(crate) user: Option<String>,
    pub(crate) timeout: Option<f64>,
    pub(crate) request_id: Option<String>,
}

/// `obj` as JSON, or an `InvalidRequest` naming `field`.
fn json(py: Python<'_>, field: &str, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    pythonize::depythonize::<Value>(obj)
        .map_err(|error| invalid(py, format!("{field}: not JSON-like data: {error}")))
}

fn str_field<'a>(py: Python<'_>, field: &str, value: &'a Value, key: &str) -> PyResult<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(py, format!("{field}: `{key}` must be a string")))
}

/// A data URL (`data:image/png;base64,…`), or `{"type": "image_url", "image_url": {"url":
/// …}}`, or `{"url": …}`.
fn image_part(py: Python<'_>, field: &str, value: &Value) -> PyResult<ImagePart> {
    let url = match value {
        Value::String(url) => url.as_str(),
        Value::Object(map) => map
            .get("image_url")
            .and_then(|inner| match inner {
                Value::String(url) => Some(url.as_str()),
                other => other.get("url").and_then(Value::as_str),
            })
            .or_else(|| map.get("url").and_then(Value::as_str))
            .ok_or_else(|| invalid(py, format!("{field}: an image needs `image_url.url`")))?,
        _ => {
            return Err(invalid(
                py,
                format!("{field}: an image is a data URL or an `image_url` part"),
            ));
        }
    };
    ImagePart::from_data_url(url).map_err(|error| invalid(py, format!("{field}: {error}")))
}

/// OpenAI message content: a string, or a list of `text` / `image_url` parts.
fn content_parts(py: Python<'_>, field: &str, content: &Value) -> PyResult<Vec<ContentPart>> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![ContentPart::text(text.clone())]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(ContentPart::text(str_field(py, field, part, "text")?)),
                Some("image_url") => Ok(ContentPart::Image(image_part(py, field, part)?)),
                other => Err(invalid(
                    py,
                    format!(
                        "{field}: unsupported content part type {}",
                        other.map_or_else(|| "(none)".to_owned(), |t| format!("`{t}`"))
                    ),
                )),
            })
            .collect(),
        _ => Err(invalid(
            py,
            format!("{field}: content must be a string or a list of parts"),
        )),
    }
}

fn text_of(parts: &[ContentPart]) -> String {
    parts.iter().filter_map(ContentPart::as_text).collect()
}

/// OpenAI's `tool_calls` of an assistant message.
fn tool_calls(py: Python<'_>, field: &str, calls: &Value) -> PyResult<Vec<ToolCall>> {
    let Value::Array(calls) = calls else {
        return Err(invalid(py, format!("{field}: `tool_calls` must be a list")));
    };
    calls
        .iter()
        .map(|call| {
            let id = str_field(py, field, call, "id")?;
            let function = call
                .get("function")
                .ok_or_else(|| invalid(py, format!("{field}: a tool call needs `function`")))?;
            let name = str_field(py, field, function, "name")?;
            let arguments = match function.get("arguments") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => "{}".to_owned(),
                Some(other) => other.to_string(),
            };
            Ok(ToolCall::new(id, name, arguments))
        })
        .collect()
}

/// One OpenAI-style message dict.
fn message(py: Python<'_>, index: usize, value: &Value) -> PyResult<Message> {
    let field = format!("messages[{index}]");
    let role = str_field(py, &field, value, "role")?;
    let content = value.get("content").unwrap_or(&Value::Null);
    match role {
        "system" | "developer" => Ok(Message::system(text_of(&content_parts(
            py, &field, content,
        )?))),
        "user" => Ok(Message::parts(
            Role::User,
            content_parts(py, &field, content)?,
        )),
        "assistant" => {
            let text = text_of(&content_parts(py, &field, content)?);
            match value.get("tool_calls") {
                Some(calls) if !calls.is_null() => Ok(Message::assistant_with_calls(
                    text,
                    tool_calls(py, &field, calls)?,
                )),
                _ => Ok(Message::assistant(text)),
            }
        }
        "tool" => {
            let call_id = str_field(py, &field, value, "tool_call_id")?;
            let result = match content {
                Value::String(text) => ToolResultContent::Text(text.clone()),
                Value::Array(parts) if parts.iter().all(|part| part.get("type").is_some()) => {
                    ToolResultContent::Text(text_of(&content_parts(py, &field, content)?))
                }
                other => ToolResultContent::Json(other.clone()),
            };
            Ok(Message::tool_result(call_id, result))
        }
        other => Err(invalid(
            py,
            format!("{field}: unknown role `{other}` (system, user, assistant, tool)"),
        )),
    }
}

/// OpenAI-style tools: `{"type": "function", "function": {"name", "description",
/// "parameters"}}` (or the inner function dict alone).
fn tools(py: Python<'_>, value: &Value) -> PyResult<Vec<ToolDefinition>> {
    let Value::Array(tools) = value else {
        return Err(invalid(py, "tools: must be a list"));
    };
    tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            let field = format!("tools[{index}]");
            if let Some(kind) = tool.get("type").and_then(Value::as_str)
                && kind != "function"
            {
                return Err(invalid(
                    py,
                    format!("{field}: only `function` tools are supported, not `{kind}`"),
                ));
            }
            let function = tool.get("function").unwrap_or(tool);
            let name = str_field(py, &field, function, "name")?;
            let description = function
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let parameters = function
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
            let mut definition = ToolDefinition::new(name, description, parameters);
            if description.is_empty() {
                definition.description = None;
            }
            Ok(definition)
        })
        .collect()
}

/// `"auto"`, `"none"`, `"required"`, or `{"type": "function", "function": {"name": …}}`.
fn tool_choice(py: Python<'_>, value: &Value) -> PyResult<ToolChoice> {
    match value {
        Value::String(word) => match word.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" | "any" => Ok(ToolChoice::Required),
            other => Err(invalid(
                py,
                format!("tool_choice: `{other}` is not auto, none or required"),
            )),
        },
        Value::Object(_) => {
            let function = value.get("function").unwrap_or(value);
            Ok(ToolChoice::Tool(
                str_field(py, "tool_choice", function, "name")?.to_owned(),
            ))
        }
        _ => Err(invalid(py, "tool_choice: a string or a function dict")),
    }
}

/// The seed's `"text"` / `"json"`, or OpenAI's `{"type": "json_object"}` /
/// `{"type": "json_schema", "json_schema": {"name", "schema"}}`.
fn response_format(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<ResponseFormat> {
    if let Ok(name) = value.extract::<String>() {
        return ResponseFormat::from_seed_name(&name).ok_or_else(|| {
            invalid(
                py,
                format!("response_format: `{name}` is not text, json or json_object"),
            )
        });
    }
    let value = json(py, "response_format", value)?;
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let inner = value.get("json_schema").unwrap_or(&value);
            let name = inner
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("response")
                .to_owned();
            let schema = inner
                .get("schema")
                .cloned()
                .ok_or_else(|| invalid(py, "response_format: json_schema needs `schema`"))?;
            Ok(ResponseFormat::JsonSchema { name, schema })
        }
        _ => Err(invalid(
            py,
            "response_format: a dict needs `type`: text, json_object or json_schema",
        )),
    }
}

impl RequestArgs<'_> {
    /// The engine's request, or an `InvalidRequest`.
    pub(crate) fn into_request(self, py: Python<'_>) -> PyResult<CompletionRequest> {
        let tenant = self.tenant_id.unwrap_or_default();
        let agent = self.agent_id.unwrap_or_default();
        let model = self.model.unwrap_or_default();
        let images = match &self.images {
            Some(images) => {
                let Value::Array(list) = json(py, "images", images)? else {
                    return Err(invalid(py, "images: must be a list"));
                };
                list.iter()
                    .map(|image| image_part(py, "images", image).map(ContentPart::Image))
                    .collect::<PyResult<Vec<_>>>()?
            }
            None => Vec::new(),
        };
        let mut request = match (self.prompt, &self.messages) {
            (Some(_), Some(_)) => {
                return Err(invalid(py, "give either prompt or messages, not both"));
            }
            (Some(prompt), None) if images.is_empty() && self.system.is_none() => {
                CompletionRequest::prompt(tenant, agent, model, prompt)
            }
            (prompt, messages) => {
                let mut list = Vec::new();
                if let Some(system) = self.system {
                    list.push(Message::system(system));
                }
                if let Some(messages) = messages {
                    let Value::Array(values) = json(py, "messages", messages)? else {
                        return Err(invalid(py, "messages: must be a list of dicts"));
                    };
                    for (index, value) in values.iter().enumerate() {
                        list.push(message(py, index, value)?);
                    }
                }
                let mut parts = Vec::new();
                if let Some(prompt) = prompt {
                    parts.push(ContentPart::text(prompt));
                }
                parts.extend(images);
                if !parts.is_empty() {
                    list.push(Message::user_parts(parts));
                }
                CompletionRequest::messages(tenant, agent, model, list)
            }
        };
        if let Some(temperature) = self.temperature {
            request = request.temperature(temperature as f32);
        }
        if let Some(max_tokens) = self.max_tokens {
            let max_tokens = u32::try_from(max_tokens).map_err(|_| {
                invalid(
                    py,
                    format!("max_tokens must be a positive integer, got {max_tokens}"),
                )
            })?;
            request = request.max_tokens(max_tokens);
        }
        if let Some(format) = &self.response_format {
            request = request.response_format(response_format(py, format)?);
        }
        if let Some(tools_value) = &self.tools {
            request = request.tools(tools(py, &json(py, "tools", tools_value)?)?);
        }
        if let Some(choice) = &self.tool_choice {
            request = request.tool_choice(tool_choice(py, &json(py, "tool_choice", choice)?)?);
        }
        if let Some(parallel) = self.parallel_tool_calls {
            request = request.parallel_tool_calls(parallel);
        }
        if let Some(stop) = &self.stop {
            match json(py, "stop", stop)? {
                Value::String(sequence) => request = request.stop(sequence),
                Value::Array(sequences) => {
                    for sequence in sequences {
                        let Value::String(sequence) = sequence else {
                            return Err(invalid(py, "stop: a string or a list of strings"));
                        };
                        request = request.stop(sequence);
                    }
                }
                _ => return Err(invalid(py, "stop: a string or a list of strings")),
            }
        }
        if let Some(top_p) = self.top_p {
            request = request.top_p(top_p as f32);
        }
        if let Some(seed) = self.seed {
            request = request.seed(seed);
        }
        if let Some(user) = self.user {
            request = request.user(user);
        }
        if let Some(timeout) = self.timeout {
            // At most a year: a deadline is `now + timeout`, which must not overflow.
            let timeout = Duration::try_from_secs_f64(timeout)
                .ok()
                .filter(|t| !t.is_zero() && *t <= MAX_TIMEOUT)
                .ok_or_else(|| {
                invalid(
                    py,
                    format!("timeout must be a positive number of seconds (at most a year), got {timeout}"),
                )
            })?;
            request = request.timeout(timeout);
        }
        if let Some(id) = self.request_id {
            request = request.request_id(RequestId::new(id));
        }
        Ok(request)
    }
}
