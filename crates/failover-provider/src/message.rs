//! Chat messages and the prompt-or-messages input of a request.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::content::{ContentPart, ImagePart};
use crate::tools::{ToolCall, ToolResult, ToolResultContent};

/// Who speaks a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The end user's turn.
    User,
    /// The model's earlier turn, with any tool calls it made.
    Assistant,
    /// The result of a tool call the model made.
    Tool,
}

impl Role {
    /// The lowercase wire name (`system`, `user`, `assistant`, `tool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message: text and image parts, the tool calls of an assistant turn, or the
/// result of a call on a tool turn. Its `Debug` shows shapes and sizes, never the text:
/// requests end up in logs and panic messages, and prompts are the tenant's data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The parts of the turn, in order (empty on a tool turn, and allowed to be empty on
    /// an assistant turn that only calls tools).
    #[serde(default)]
    pub content: Vec<ContentPart>,
    /// The tools an assistant turn called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The result a tool turn carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<ToolResult>,
}

impl Message {
    fn text_of(role: Role, content: impl Into<String>) -> Self {
        Self::parts(role, vec![ContentPart::text(content)])
    }

    /// A message of `role` with these parts.
    pub fn parts(role: Role, content: Vec<ContentPart>) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_result: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text_of(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text_of(Role::User, content)
    }

    /// A user message of text and image parts.
    pub fn user_parts(content: Vec<ContentPart>) -> Self {
        Self::parts(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text_of(Role::Assistant, content)
    }

    /// An assistant turn that called tools, with the text it said before (may be empty).
    pub fn assistant_with_calls(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        let content: String = content.into();
        let parts = if content.is_empty() {
            Vec::new()
        } else {
            vec![ContentPart::text(content)]
        };
        Self {
            tool_calls,
            ..Self::parts(Role::Assistant, parts)
        }
    }

    /// The result of the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: ToolResultContent) -> Self {
        Self {
            tool_result: Some(ToolResult {
                call_id: call_id.into(),
                content,
                is_error: false,
            }),
            ..Self::parts(Role::Tool, Vec::new())
        }
    }

    /// The failed result of the call `call_id`: the tool's error message.
    pub fn tool_error(call_id: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            tool_result: Some(ToolResult {
                call_id: call_id.into(),
                content: ToolResultContent::Text(message.into()),
                is_error: true,
            }),
            ..Self::parts(Role::Tool, Vec::new())
        }
    }

    /// The text parts joined (images left out).
    pub fn text(&self) -> String {
        let mut texts = self.content.iter().filter_map(ContentPart::as_text);
        match (texts.next(), texts.next()) {
            (None, _) => String::new(),
            (Some(only), None) => only.to_owned(),
            (Some(first), Some(second)) => {
                let mut joined = format!("{first}{second}");
                joined.extend(texts);
                joined
            }
        }
    }

    /// The images of the message.
    pub fn images(&self) -> impl Iterator<Item = &ImagePart> {
        self.content.iter().filter_map(|part| match part {
            ContentPart::Image(image) => Some(image),
            ContentPart::Text { .. } => None,
        })
    }

    /// Bytes of text: the text parts, the calls' names and arguments and the result.
    /// Images are counted by their own limits, not here.
    pub fn text_len(&self) -> usize {
        let parts: usize = self
            .content
            .iter()
            .filter_map(ContentPart::as_text)
            .map(str::len)
            .sum();
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|call| call.name.len() + call.arguments.len())
            .sum();
        let result = self
            .tool_result
            .as_ref()
            .map_or(0, |result| result.content.len());
        parts + calls + result
    }

    /// Whether the message carries nothing: no text (or only whitespace), no image, no
    /// call and no result.
    pub fn is_blank(&self) -> bool {
        self.tool_calls.is_empty()
            && self.tool_result.is_none()
            && self.content.iter().all(|part| match part {
                ContentPart::Text { text } => text.trim().is_empty(),
                ContentPart::Image(_) => false,
            })
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Message");
        debug
            .field("role", &self.role)
            .field("content_bytes", &self.text_len());
        let images = self.images().count();
        if images > 0 {
            debug.field("images", &images);
        }
        if !self.tool_calls.is_empty() {
            debug.field("tool_calls", &self.tool_calls);
        }
        if let Some(result) = &self.tool_result {
            debug.field("tool_result", result);
        }
        debug.finish()
    }
}

/// The input of a request: a plain prompt (the seed's `prompt=`) or a chat transcript.
/// `Debug` shows sizes only, like [`Message`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptInput {
    /// A single user prompt.
    Prompt(String),
    /// Chat messages in order.
    Messages(Vec<Message>),
}

impl fmt::Debug for PromptInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptInput::Prompt(text) => f
                .debug_struct("Prompt")
                .field("bytes", &text.len())
                .finish(),
            PromptInput::Messages(messages) => f.debug_tuple("Messages").field(messages).finish(),
        }
    }
}

impl PromptInput {
    /// The input as chat messages: a prompt becomes one user message.
    pub fn to_messages(&self) -> Vec<Message> {
        match self {
            PromptInput::Prompt(text) => vec![Message::user(text.clone())],
            PromptInput::Messages(messages) => messages.clone(),
        }
    }

    /// Total bytes of text, used for size limits.
    pub fn text_len(&self) -> usize {
        match self {
            PromptInput::Prompt(text) => text.len(),
            PromptInput::Messages(messages) => messages.iter().map(Message::text_len).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_prompt_text() {
        let secret = "my password is hunter2";
        let shown = format!(
            "{:?} {:?}",
            Message::user(secret),
            PromptInput::Prompt(secret.into())
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("content_bytes: 22"), "{shown}");
    }
}
