//! The structure of a conversation: each message's shape fits its role, images only from
//! the user, and every tool call of the history answered by a result that names it.

use std::collections::HashSet;

use failover_provider::{Message, Role};

use super::tools::valid_tool_name;
use super::{Limits, ValidationError};

/// Checks `messages`' structure: roles and shapes, images (placement, count, sizes), and
/// the pairing of tool calls and results (ids unique; each result answers an earlier call;
/// each call answered before the next turn).
pub(super) fn validate_conversation(
    messages: &[Message],
    limits: &Limits,
) -> Result<(), ValidationError> {
    let mut images = 0;
    let mut image_bytes = 0;
    let mut call_ids = HashSet::new();
    // Calls of the latest assistant turn still waiting for their results.
    let mut awaiting: Vec<&str> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let role = message.role.as_str();
        check_shape(index, message)?;
        for image in message.images() {
            if message.role != Role::User {
                return Err(ValidationError::ImageNotInUserMessage { index, role });
            }
            if image.len() > limits.max_image_bytes {
                return Err(ValidationError::ImageTooLarge {
                    index,
                    bytes: image.len(),
                    max: limits.max_image_bytes,
                });
            }
            images += 1;
            image_bytes += image.len();
        }
        if message.role != Role::Tool
            && let Some(unanswered) = awaiting.first()
        {
            return Err(ValidationError::UnansweredToolCall {
                call_id: (*unanswered).to_owned(),
            });
        }
        for call in &message.tool_calls {
            if call.id.is_empty() {
                return Err(ValidationError::ToolCallArguments {
                    index,
                    call_id: String::new(),
                    reason: "the id is empty".into(),
                });
            }
            if !valid_tool_name(&call.name) {
                return Err(ValidationError::ToolName {
                    name: call.name.clone(),
                });
            }
            match call.arguments_json() {
                Ok(arguments) if arguments.is_object() => {}
                Ok(_) => {
                    return Err(ValidationError::ToolCallArguments {
                        index,
                        call_id: call.id.clone(),
                        reason: "the arguments are not a JSON object".into(),
                    });
                }
                Err(error) => {
                    return Err(ValidationError::ToolCallArguments {
                        index,
                        call_id: call.id.clone(),
                        reason: format!("the arguments are not valid JSON: {error}"),
                    });
                }
            }
            if !call_ids.insert(call.id.as_str()) {
                return Err(ValidationError::DuplicateToolCallId {
                    id: call.id.clone(),
                });
            }
            awaiting.push(&call.id);
        }
        if let Some(result) = &message.tool_result {
            let Some(position) = awaiting.iter().position(|id| *id == result.call_id) else {
                return Err(ValidationError::ToolResultWithoutCall {
                    index,
                    call_id: result.call_id.clone(),
                });
            };
            awaiting.remove(position);
        }
    }
    if let Some(unanswered) = awaiting.first() {
        return Err(ValidationError::UnansweredToolCall {
            call_id: (*unanswered).to_owned(),
        });
    }
    if images > limits.max_images {
        return Err(ValidationError::TooManyImages {
            count: images,
            max: limits.max_images,
        });
    }
    if image_bytes > limits.max_total_image_bytes {
        return Err(ValidationError::ImagesTooLarge {
            bytes: image_bytes,
            max: limits.max_total_image_bytes,
        });
    }
    Ok(())
}

/// A tool message carries a result and nothing else; only assistant messages carry calls.
fn check_shape(index: usize, message: &Message) -> Result<(), ValidationError> {
    let role = message.role.as_str();
    let malformed = |reason| {
        Err(ValidationError::MalformedMessage {
            index,
            role,
            reason,
        })
    };
    match message.role {
        Role::Tool if message.tool_result.is_none() => malformed("a tool message needs a result"),
        Role::Tool if !message.content.is_empty() || !message.tool_calls.is_empty() => {
            malformed("a tool message carries only its result")
        }
        Role::Tool => Ok(()),
        _ if message.tool_result.is_some() => malformed("only tool messages carry a tool result"),
        Role::System | Role::User if !message.tool_calls.is_empty() => {
            malformed("only assistant messages carry tool calls")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::{ContentPart, ImageMediaType, ImagePart, ToolCall, ToolResultContent};

    fn check(messages: Vec<Message>) -> Result<(), ValidationError> {
        validate_conversation(&messages, &Limits::default())
    }

    fn call(id: &str) -> ToolCall {
        ToolCall::new(id, "get_weather", r#"{"city":"Paris"}"#)
    }

    fn result(id: &str) -> Message {
        Message::tool_result(id, ToolResultContent::Text("sunny".into()))
    }

    #[test]
    fn a_two_turn_tool_loop_passes() {
        assert_eq!(
            check(vec![
                Message::user("weather in Paris and Rome?"),
                Message::assistant_with_calls("", vec![call("c1"), call("c2")]),
                result("c2"),
                result("c1"),
                Message::assistant("Sunny in both."),
                Message::user("thanks"),
            ]),
            Ok(())
        );
    }

    #[test]
    fn results_must_answer_earlier_calls_and_calls_need_results() {
        assert_eq!(
            check(vec![Message::user("hi"), result("c9")]),
            Err(ValidationError::ToolResultWithoutCall {
                index: 1,
                call_id: "c9".into()
            })
        );
        assert_eq!(
            check(vec![
                Message::user("hi"),
                Message::assistant_with_calls("", vec![call("c1"), call("c2")]),
                result("c1"),
                Message::user("and?"),
            ]),
            Err(ValidationError::UnansweredToolCall {
                call_id: "c2".into()
            })
        );
        assert_eq!(
            check(vec![
                Message::user("hi"),
                Message::assistant_with_calls("", vec![call("c1")]),
            ]),
            Err(ValidationError::UnansweredToolCall {
                call_id: "c1".into()
            })
        );
        assert_eq!(
            check(vec![
                Message::user("hi"),
                Message::assistant_with_calls("", vec![call("c1")]),
                result("c1"),
                result("c1"),
            ]),
            Err(ValidationError::ToolResultWithoutCall {
                index: 3,
                call_id: "c1".into()
            })
        );
        assert_eq!(
            check(vec![
                Message::user("hi"),
                Message::assistant_with_calls("", vec![call("c1")]),
                result("c1"),
                Message::assistant_with_calls("", vec![call("c1")]),
                result("c1"),
            ]),
            Err(ValidationError::DuplicateToolCallId { id: "c1".into() })
        );
    }

    #[test]
    fn call_arguments_must_be_a_json_object() {
        for (arguments, reason) in [("[1]", "not a JSON object"), ("{\"a\":", "not valid JSON")] {
            let error = check(vec![
                Message::user("hi"),
                Message::assistant_with_calls("", vec![ToolCall::new("c1", "t", arguments)]),
                result("c1"),
            ])
            .unwrap_err();
            assert!(
                matches!(&error, ValidationError::ToolCallArguments { call_id, .. } if call_id == "c1")
                    && error.to_string().contains(reason),
                "{error}"
            );
        }
        // Empty arguments are a call without input.
        assert_eq!(
            check(vec![
                Message::user("hi"),
                Message::assistant_with_calls("", vec![ToolCall::new("c1", "t", "")]),
                result("c1"),
            ]),
            Ok(())
        );
    }

    #[test]
    fn shapes_fit_roles_and_images_come_from_the_user() {
        let mut tool_without_result = result("c1");
        tool_without_result.tool_result = None;
        assert!(matches!(
            check(vec![Message::user("hi"), tool_without_result]),
            Err(ValidationError::MalformedMessage { index: 1, .. })
        ));
        let mut user_with_calls = Message::user("hi");
        user_with_calls.tool_calls.push(call("c1"));
        assert!(matches!(
            check(vec![user_with_calls]),
            Err(ValidationError::MalformedMessage { index: 0, .. })
        ));
        let image = ContentPart::Image(ImagePart::new(ImageMediaType::Png, vec![1; 10]));
        assert_eq!(
            check(vec![
                Message::user("hi"),
                Message::parts(Role::Assistant, vec![image.clone()])
            ]),
            Err(ValidationError::ImageNotInUserMessage {
                index: 1,
                role: "assistant"
            })
        );
        let limits = Limits {
            max_image_bytes: 9,
            ..Limits::default()
        };
        assert_eq!(
            validate_conversation(&[Message::user_parts(vec![image.clone()])], &limits),
            Err(ValidationError::ImageTooLarge {
                index: 0,
                bytes: 10,
                max: 9
            })
        );
        let limits = Limits {
            max_images: 1,
            ..Limits::default()
        };
        assert_eq!(
            validate_conversation(&[Message::user_parts(vec![image.clone(), image])], &limits),
            Err(ValidationError::TooManyImages { count: 2, max: 1 })
        );
    }
}
