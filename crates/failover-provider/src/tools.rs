//! Tool calling: the tools a request offers, the calls a model makes and their results.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// The tool's name (`^[a-zA-Z0-9_-]{1,64}$`), unique within a request.
    pub name: String,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the tool's input: an object schema.
    pub input_schema: serde_json::Value,
}

impl ToolDefinition {
    /// A tool with a name, a description and an input schema.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: serde_json::Value,
    ) -> Self {
        Self {
            name: name.into(),
            description: Some(description.into()),
            input_schema,
        }
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "name")]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// The model must not call a tool.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool(String),
}

impl ToolChoice {
    /// The wire name (`auto`, `none`, `required`, `tool`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ToolChoice::Auto => "auto",
            ToolChoice::None => "none",
            ToolChoice::Required => "required",
            ToolChoice::Tool(_) => "tool",
        }
    }
}

/// The tools of a request and how the model may use them. The default offers none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolConfig {
    /// The tools offered.
    #[serde(default)]
    pub tools: Vec<ToolDefinition>,
    /// Whether and which tool must be called.
    #[serde(default)]
    pub choice: ToolChoice,
    /// Whether the model may call several tools in one turn; the provider's default when
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

impl ToolConfig {
    /// No tools (the default), as a constant.
    pub const NONE: ToolConfig = ToolConfig {
        tools: Vec::new(),
        choice: ToolChoice::Auto,
        parallel_tool_calls: None,
    };

    /// Whether any tool is offered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tool named `name`.
    pub fn find(&self, name: &str) -> Option<&ToolDefinition> {
        self.tools.iter().find(|tool| tool.name == name)
    }
}

/// A call the model made: on an assistant message of the history, in a completion, or
/// assembled from a stream's tool-call items. `Debug` shows the id, the name and the size
/// of the arguments, never the arguments (they carry the tenant's data).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, which its result names.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// The arguments: the text of a JSON object, as the model wrote it.
    pub arguments: String,
}

impl ToolCall {
    /// A call.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// The arguments parsed; `{}` for empty arguments (a call to a tool without input).
    pub fn arguments_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(serde_json::Value::Object(Default::default()));
        }
        serde_json::from_str(&self.arguments)
    }
}

impl fmt::Debug for ToolCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolCall")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("arguments_bytes", &self.arguments.len())
            .finish()
    }
}

/// The content of a tool's result.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum ToolResultContent {
    /// Text.
    Text(String),
    /// A JSON value.
    Json(serde_json::Value),
}

impl ToolResultContent {
    /// The content as text: JSON is written compactly.
    pub fn to_text(&self) -> String {
        match self {
            ToolResultContent::Text(text) => text.clone(),
            ToolResultContent::Json(value) => value.to_string(),
        }
    }

    /// The size of the content as text, in bytes.
    pub fn len(&self) -> usize {
        match self {
            ToolResultContent::Text(text) => text.len(),
            ToolResultContent::Json(value) => value.to_string().len(),
        }
    }

    /// Whether the content is empty text.
    pub fn is_empty(&self) -> bool {
        matches!(self, ToolResultContent::Text(text) if text.is_empty())
    }
}

impl fmt::Debug for ToolResultContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            ToolResultContent::Text(_) => "Text",
            ToolResultContent::Json(_) => "Json",
        };
        f.debug_struct(kind).field("bytes", &self.len()).finish()
    }
}

/// The result of a tool call, sent back on a [`Role::Tool`](crate::Role::Tool) message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub call_id: String,
    /// What the tool returned.
    pub content: ToolResultContent,
    /// Whether the tool failed (Bedrock carries it; OpenAI's wire has no field for it).
    #[serde(default)]
    pub is_error: bool,
}

/// A stream's tool-call items out of order: a delta or end for a call not started, a start
/// that reuses or skips a number, or the stream finishing with a call still open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool-call stream out of order: {0}")]
pub struct ToolCallOrderError(String);

/// Assembles the tool calls of a stream from its start / delta / end items and checks
/// their order, so a provider's stream, the adapter's commit point and a cache replay all
/// agree on what a well-formed stream of calls is.
#[derive(Debug, Default, Clone)]
pub struct ToolCallAssembler {
    calls: Vec<ToolCall>,
    open: Option<u32>,
}

impl ToolCallAssembler {
    /// An assembler with no calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// A call starts: `index` must be the next number, and no other call may be open
    /// (providers stream calls one after another).
    pub fn start(&mut self, index: u32, id: &str, name: &str) -> Result<(), ToolCallOrderError> {
        if let Some(open) = self.open {
            return Err(ToolCallOrderError(format!(
                "call {index} starts while call {open} is open"
            )));
        }
        if index as usize != self.calls.len() {
            return Err(ToolCallOrderError(format!(
                "call {index} starts after {} calls",
                self.calls.len()
            )));
        }
        self.calls.push(ToolCall::new(id, name, String::new()));
        self.open = Some(index);
        Ok(())
    }

    /// A fragment of the open call's arguments.
    pub fn delta(&mut self, index: u32, arguments: &str) -> Result<(), ToolCallOrderError> {
        self.open_call(index, "an argument fragment")?
            .arguments
            .push_str(arguments);
        Ok(())
    }

    /// The open call ends.
    pub fn end(&mut self, index: u32) -> Result<(), ToolCallOrderError> {
        self.open_call(index, "an end")?;
        self.open = None;
        Ok(())
    }

    /// Whether a call is open (started, not ended).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The calls so far.
    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// The calls of a finished stream; an error when one is still open.
    pub fn finish(self) -> Result<Vec<ToolCall>, ToolCallOrderError> {
        match self.open {
            Some(open) => Err(ToolCallOrderError(format!(
                "the stream finished with call {open} open"
            ))),
            None => Ok(self.calls),
        }
    }

    fn open_call(&mut self, index: u32, what: &str) -> Result<&mut ToolCall, ToolCallOrderError> {
        if self.open != Some(index) {
            return Err(ToolCallOrderError(format!(
                "{what} for call {index}, which is not open"
            )));
        }
        Ok(&mut self.calls[index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_builds_calls_and_refuses_disorder() {
        let mut calls = ToolCallAssembler::new();
        calls.start(0, "call_1", "get_weather").unwrap();
        calls.delta(0, "{\"city\":").unwrap();
        calls.delta(0, "\"Paris\"}").unwrap();
        calls.end(0).unwrap();
        calls.start(1, "call_2", "get_time").unwrap();
        assert!(calls.is_open());
        assert!(calls.clone().finish().is_err());
        assert!(calls.start(2, "x", "y").is_err());
        assert!(calls.delta(0, "{}").is_err());
        calls.end(1).unwrap();
        assert!(calls.delta(1, "{}").is_err());
        assert!(calls.start(3, "x", "y").is_err());
        let calls = calls.finish().unwrap();
        assert_eq!(calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(calls[1], ToolCall::new("call_2", "get_time", ""));
        assert_eq!(calls[1].arguments_json().unwrap(), serde_json::json!({}));
    }

    #[test]
    fn debug_hides_arguments_and_results() {
        let call = ToolCall::new("c", "t", "{\"secret\":\"hunter2\"}");
        let result = ToolResult {
            call_id: "c".into(),
            content: ToolResultContent::Text("hunter2".into()),
            is_error: false,
        };
        let shown = format!("{call:?} {result:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
