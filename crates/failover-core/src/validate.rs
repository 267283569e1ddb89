//! Request validation: every field checked before any cache or provider is touched.

use failover_provider::{CompletionRequest, PromptInput, ResponseFormat, Role};
use serde::{Deserialize, Serialize};

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
        }
    }
}

/// Temperatures outside this range are refused (every provider we route to accepts it).
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f32> = 0.0..=2.0;

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
        /// `tenant_id` or `agent_id`.
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
