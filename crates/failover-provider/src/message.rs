//! Chat messages and the prompt-or-messages input of a request.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who speaks a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The end user's turn.
    User,
    /// The model's earlier turn.
    Assistant,
}

impl Role {
    /// The lowercase wire name (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message. Its `Debug` shows the role and the length, never the text: requests
/// end up in logs and panic messages, and prompts are the tenant's data.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("role", &self.role)
            .field("content_bytes", &self.content.len())
            .finish()
    }
}

/// The input of a request: a plain prompt (the seed's `prompt=`) or a chat transcript.
/// `Debug` shows sizes only, like [`Message`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
            PromptInput::Messages(messages) => messages.iter().map(|m| m.content.len()).sum(),
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
