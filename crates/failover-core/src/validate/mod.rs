//! Request validation: every field checked before any cache or provider is touched.
//! The conversation's structure (tool calls and their results, images) is checked in
//! [`conversation`], the tools offered in [`tools`].

mod conversation;
mod tools;

use failover_provider::{CompletionRequest, PromptInput, ResponseFormat, Role};
use serde::{Deserialize, Serialize};

use crate::needs::Unserved;

/// Size and range limits applied to every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Longest tenant or agent id, in bytes.
    pub max_id_len: usize,
    /// Most text across the prompt or all messages, in bytes.
    pub max_input_bytes: usize,
    /// Most chat messages.
    pub max_messages: usize,
    /// Highest `max_tokens` accepted.
    pub max_output_tokens: u32,
    /// Most stop sequences.
    pub max_stop_sequences: usize,
    /// Longest stop sequence, in bytes.
    pub max_stop_len: usize,
    /// Most tools offered (a provider may take fewer: its capabilities say).
    pub max_tools: usize,
    /// Most images across the messages.
    pub max_images: usize,
    /// Largest image, in bytes (a provider may take less).
    pub max_image_bytes: usize,
    /// Most bytes of all images together.
    pub max_total_image_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_len: 128,
            max_input_bytes: 1024 * 1024,
            max_messages: 1_000,
            max_output_tokens: 128_000,
            max_stop_sequences: 4,
            max_stop_len: 256,
            max_tools: 128,
            max_images: 100,
            max_image_bytes: 20 * 1024 * 1024,
            max_total_image_bytes: 50 * 1024 * 1024,
        }
    }
}

/// Temperatures outside this range are refused (every provider we route to accepts it).
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f32> = 0.0..=2.0;

/// Longest end-user id (`user`), in bytes.
pub const MAX_USER_LEN: usize = 256;

/// A request the adapter refuses before doing anything. Never counts against a breaker.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// An id is empty.
    #[error("{field} must not be empty")]
    EmptyId {
        /// `tenant_id`, `agent_id` or `request_id`.
        field: &'static str,
    },
    /// An id is too long.
    #[error("{field} is {len} bytes; the limit is {max}")]
    IdTooLong {
        /// `tenant_id`, `agent_id`, `request_id` or `user`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An id contains a character outside `[A-Za-z0-9_.@-]`.
    #[error("{field} contains {found:?} at byte {position}; ids may only use A-Z a-z 0-9 _ . @ -")]
    IdCharacter {
        /// `tenant_id` or `agent_id`.
        field: &'static str,
        /// The offending character.
        found: char,
        /// Its byte offset.
        position: usize,
    },
    /// The prompt is empty or only whitespace, or there are no messages.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A message has no content.
    #[error("message {index} ({role}) is empty")]
    EmptyMessage {
        /// Its index.
        index: usize,
        /// Its role.
        role: &'static str,
    },
    /// Messages without any user turn.
    #[error("the messages contain no user message")]
    NoUserMessage,
    /// Too many messages.
    #[error("{count} messages; the limit is {max}")]
    TooManyMessages {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The input text is too large.
    #[error("the input is {bytes} bytes; the limit is {max}")]
    InputTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The temperature is out of range or not a number.
    #[error("temperature {value} is outside 0.0..=2.0")]
    Temperature {
        /// The value given.
        value: f32,
    },
    /// `max_tokens` is zero or above the limit.
    #[error("max_tokens {value} is outside 1..={max}")]
    MaxTokens {
        /// The value given.
        value: u32,
        /// The limit.
        max: u32,
    },
    /// A stop sequence is empty or too long, or there are too many.
    #[error("stop sequences: {reason}")]
    Stop {
        /// What is wrong.
        reason: String,
    },
    /// The JSON schema is not a JSON object or its name is empty.
    #[error("response_format: {reason}")]
    ResponseFormat {
        /// What is wrong.
        reason: String,
    },
    /// No provider serves this logical model.
    #[error("unknown model `{model}`: no route to any configured provider")]
    UnknownModel {
        /// The model asked for.
        model: String,
    },
    /// The deadline has already passed.
    #[error("the request's deadline has already passed")]
    DeadlinePassed,
    /// `top_p` is outside `0.0..=1.0` or not a number.
    #[error("top_p {value} is outside 0.0..=1.0")]
    TopP {
        /// The value given.
        value: f32,
    },
    /// A message's shape does not fit its role (a tool message without a result, tool
    /// calls on a user message, …).
    #[error("message {index} ({role}): {reason}")]
    MalformedMessage {
        /// Its index.
        index: usize,
        /// Its role.
        role: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// An image outside a user message.
    #[error("message {index} ({role}) has an image; only user messages may")]
    ImageNotInUserMessage {
        /// Its index.
        index: usize,
        /// Its role.
        role: &'static str,
    },
    /// More images than the limit.
    #[error("{count} images; the limit is {max}")]
    TooManyImages {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An image larger than the limit.
    #[error("the image in message {index} is {bytes} bytes; the limit is {max}")]
    ImageTooLarge {
        /// The message's index.
        index: usize,
        /// The image's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The images together are larger than the limit.
    #[error("the images are {bytes} bytes together; the limit is {max}")]
    ImagesTooLarge {
        /// Their size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A tool call of the history with an empty id, or arguments that are not a JSON
    /// object.
    #[error("tool call `{call_id}` in message {index}: {reason}")]
    ToolCallArguments {
        /// The message's index.
        index: usize,
        /// The call's id.
        call_id: String,
        /// What is wrong.
        reason: String,
    },
    /// Two tool calls of the history share an id.
    #[error("two tool calls have the id `{id}`")]
    DuplicateToolCallId {
        /// The id.
        id: String,
    },
    /// A tool result whose id matches no earlier tool call.
    #[error(
        "the tool result in message {index} answers `{call_id}`, which no earlier tool call has as its id"
    )]
    ToolResultWithoutCall {
        /// The message's index.
        index: usize,
        /// The id it names.
        call_id: String,
    },
    /// A tool call whose result does not follow it (every call of an assistant turn must be
    /// answered by tool messages before the next turn).
    #[error("tool call `{call_id}` has no result before the next turn")]
    UnansweredToolCall {
        /// The call's id.
        call_id: String,
    },
    /// Two tools offered share a name.
    #[error("two tools are named `{name}`")]
    DuplicateToolName {
        /// The name.
        name: String,
    },
    /// A tool (or a call's tool) name outside `^[a-zA-Z0-9_-]{1,64}$`.
    #[error("tool name {name:?} is invalid: names are 1 to 64 of a-z A-Z 0-9 _ -")]
    ToolName {
        /// The name.
        name: String,
    },
    /// A tool's input schema is not a JSON object schema.
    #[error("the input schema of tool `{name}` {reason}")]
    ToolSchema {
        /// The tool.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tool choice names a tool that is not offered.
    #[error("tool_choice names `{name}`, which is not among the tools")]
    ToolChoiceUnknown {
        /// The name.
        name: String,
    },
    /// A tool choice that requires a call, with no tools offered.
    #[error("tool_choice `{choice}` needs tools, and none are offered")]
    ToolChoiceWithoutTools {
        /// The choice (`required` or `tool`).
        choice: &'static str,
    },
    /// More tools than the limit.
    #[error("{count} tools; the limit is {max}")]
    TooManyTools {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Every provider that routes the model lacks something the request needs (tools,
    /// images, a media type, …): refused before any call, each provider's reason named.
    #[error(
        "no provider can serve model `{model}` for this request ({})",
        list(unserved)
    )]
    NoCapableRoute {
        /// The model asked for.
        model: String,
        /// Each routed provider and why it cannot serve the request.
        unserved: Vec<Unserved>,
    },
}

fn list(unserved: &[Unserved]) -> String {
    unserved
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks every field of `request` against `limits`.
pub fn validate(request: &CompletionRequest, limits: &Limits) -> Result<(), ValidationError> {
    validate_id("tenant_id", &request.tenant_id, limits)?;
    validate_id("agent_id", &request.agent_id, limits)?;
    if let Some(request_id) = &request.request_id {
        validate_id("request_id", request_id.as_str(), limits)?;
    }
    validate_input(&request.input, limits)?;
    if let Some(value) = request.temperature
        && !(value.is_finite() && TEMPERATURE_RANGE.contains(&value))
    {
        return Err(ValidationError::Temperature { value });
    }
    if let Some(value) = request.max_tokens
        && (value == 0 || value > limits.max_output_tokens)
    {
        return Err(ValidationError::MaxTokens {
            value,
            max: limits.max_output_tokens,
        });
    }
    validate_stop(&request.stop, limits)?;
    validate_format(&request.response_format)?;
    if let Some(value) = request.sampling.top_p
        && !(value.is_finite() && (0.0..=1.0).contains(&value))
    {
        return Err(ValidationError::TopP { value });
    }
    if let Some(user) = &request.sampling.user
        && user.len() > MAX_USER_LEN
    {
        return Err(ValidationError::IdTooLong {
            field: "user",
            len: user.len(),
            max: MAX_USER_LEN,
        });
    }
    tools::validate_tools(&request.tools, limits)?;
    if let PromptInput::Messages(messages) = &request.input {
        conversation::validate_conversation(messages, limits)?;
    }
    if request
        .deadline
        .is_some_and(|d| d <= std::time::Instant::now())
    {
        return Err(ValidationError::DeadlinePassed);
    }
    Ok(())
}

fn validate_id(field: &'static str, id: &str, limits: &Limits) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::EmptyId { field });
    }
    if id.len() > limits.max_id_len {
        return Err(ValidationError::IdTooLong {
            field,
            len: id.len(),
            max: limits.max_id_len,
        });
    }
    // Ids end up in log lines, metrics labels and storage keys: a closed alphabet keeps
    // them from ever acting as separators or control characters there.
    if let Some((position, found)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')))
    {
        return Err(ValidationError::IdCharacter {
            field,
            found,
            position,
        });
    }
    Ok(())
}

fn validate_input(input: &PromptInput, limits: &Limits) -> Result<(), ValidationError> {
    match input {
        PromptInput::Prompt(text) => {
            if text.trim().is_empty() {
                return Err(ValidationError::EmptyPrompt);
            }
        }
        PromptInput::Messages(messages) => {
            if messages.is_empty() {
                return Err(ValidationError::EmptyPrompt);
            }
            if messages.len() > limits.max_messages {
                return Err(ValidationError::TooManyMessages {
                    count: messages.len(),
                    max: limits.max_messages,
                });
            }
            if let Some((index, message)) = messages.iter().enumerate().find(|(_, m)| m.is_blank())
            {
                return Err(ValidationError::EmptyMessage {
                    index,
                    role: message.role.as_str(),
                });
            }
            if !messages.iter().any(|m| m.role == Role::User) {
                return Err(ValidationError::NoUserMessage);
            }
        }
    }
    let bytes = input.text_len();
    if bytes > limits.max_input_bytes {
        return Err(ValidationError::InputTooLarge {
            bytes,
            max: limits.max_input_bytes,
        });
    }
    Ok(())
}

fn validate_stop(stop: &[String], limits: &Limits) -> Result<(), ValidationError> {
    if stop.len() > limits.max_stop_sequences {
        return Err(ValidationError::Stop {
            reason: format!(
                "{} given; the limit is {}",
                stop.len(),
                limits.max_stop_sequences
            ),
        });
    }
    for (index, sequence) in stop.iter().enumerate() {
        if sequence.is_empty() {
            return Err(ValidationError::Stop {
                reason: format!("sequence {index} is empty"),
            });
        }
        if sequence.len() > limits.max_stop_len {
            return Err(ValidationError::Stop {
                reason: format!(
                    "sequence {index} is {} bytes; the limit is {}",
                    sequence.len(),
                    limits.max_stop_len
                ),
            });
        }
    }
    Ok(())
}

fn validate_format(format: &ResponseFormat) -> Result<(), ValidationError> {
    if let ResponseFormat::JsonSchema { name, schema } = format {
        if name.trim().is_empty() {
            return Err(ValidationError::ResponseFormat {
                reason: "the schema name is empty".into(),
            });
        }
        if !schema.is_object() {
            return Err(ValidationError::ResponseFormat {
                reason: "the schema must be a JSON object".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::Message;

    fn ok_request() -> CompletionRequest {
        CompletionRequest::prompt("tenant-1", "agent_1", "gpt-4", "Hello")
    }

    #[test]
    fn a_plain_request_passes() {
        assert_eq!(validate(&ok_request(), &Limits::default()), Ok(()));
    }

    #[test]
    fn ids_with_separators_or_nul_are_refused_with_the_position() {
        let mut request = ok_request();
        request.tenant_id = "a:b".into();
        assert_eq!(
            validate(&request, &Limits::default()),
            Err(ValidationError::IdCharacter {
                field: "tenant_id",
                found: ':',
                position: 1
            })
        );
        request.tenant_id = "ab".into();
        request.agent_id = "x\0".into();
        assert!(matches!(
            validate(&request, &Limits::default()),
            Err(ValidationError::IdCharacter {
                field: "agent_id",
                found: '\0',
                position: 1
            })
        ));
    }

    #[test]
    fn ranges_are_enforced() {
        let limits = Limits::default();
        assert!(matches!(
            validate(&ok_request().temperature(2.5), &limits),
            Err(ValidationError::Temperature { .. })
        ));
        assert!(matches!(
            validate(&ok_request().temperature(f32::NAN), &limits),
            Err(ValidationError::Temperature { .. })
        ));
        assert!(matches!(
            validate(&ok_request().max_tokens(0), &limits),
            Err(ValidationError::MaxTokens { .. })
        ));
        assert!(matches!(
            validate(&ok_request().max_tokens(200_000), &limits),
            Err(ValidationError::MaxTokens { .. })
        ));
        assert_eq!(
            validate(&ok_request().temperature(0.0).max_tokens(1), &limits),
            Ok(())
        );
    }

    #[test]
    fn messages_need_a_user_turn_and_content() {
        let limits = Limits::default();
        let only_system =
            CompletionRequest::messages("t", "a", "gpt-4", vec![Message::system("be brief")]);
        assert_eq!(
            validate(&only_system, &limits),
            Err(ValidationError::NoUserMessage)
        );
        let empty = CompletionRequest::messages(
            "t",
            "a",
            "gpt-4",
            vec![Message::user("hi"), Message::assistant(" ")],
        );
        assert_eq!(
            validate(&empty, &limits),
            Err(ValidationError::EmptyMessage {
                index: 1,
                role: "assistant"
            })
        );
    }

    #[test]
    fn oversized_input_is_refused() {
        let limits = Limits {
            max_input_bytes: 10,
            ..Limits::default()
        };
        let request = CompletionRequest::prompt("t", "a", "gpt-4", "x".repeat(11));
        assert_eq!(
            validate(&request, &limits),
            Err(ValidationError::InputTooLarge { bytes: 11, max: 10 })
        );
    }
}
