//! What a request needs of a provider beyond text — streaming, JSON mode, tools, images,
//! `top_p` — worked out once per request, and why a provider (or the model a route names)
//! cannot serve it.

use std::fmt;

use failover_provider::{
    Capabilities, CompletionRequest, ImageMediaType, JsonModeSupport, MediaTypeSet, Message,
    ResponseFormat,
};
use serde::{Deserialize, Serialize};

use crate::routing::Route;

/// What one request needs of the provider that serves it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestNeeds {
    streaming: bool,
    json: JsonNeed,
    /// Tools offered.
    tools: usize,
    /// Whether the conversation carries earlier tool calls or results: a provider must
    /// take tools to read it, even when this turn offers none.
    tool_history: bool,
    images: usize,
    largest_image: usize,
    media_types: MediaTypeSet,
    top_p: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonNeed {
    None,
    Object,
    Schema,
}

impl RequestNeeds {
    /// The needs of `request`, whose conversation is `messages`.
    pub(crate) fn of(request: &CompletionRequest, messages: &[Message], streaming: bool) -> Self {
        let mut largest_image = 0;
        let mut images = 0;
        let mut media_types = Vec::new();
        for image in messages.iter().flat_map(Message::images) {
            images += 1;
            largest_image = largest_image.max(image.len());
            media_types.push(image.media_type);
        }
        Self {
            streaming,
            json: match request.response_format {
                ResponseFormat::Text => JsonNeed::None,
                ResponseFormat::JsonObject => JsonNeed::Object,
                ResponseFormat::JsonSchema { .. } => JsonNeed::Schema,
            },
            tools: request.tools.tools.len(),
            tool_history: messages
                .iter()
                .any(|m| !m.tool_calls.is_empty() || m.tool_result.is_some()),
            images,
            largest_image,
            media_types: MediaTypeSet::of(&media_types),
            top_p: request.sampling.top_p.is_some(),
        }
    }

    /// Why a provider with `capabilities`, serving the request with `route`, cannot serve
    /// it; `None` when it can.
    pub(crate) fn unmet(&self, capabilities: &Capabilities, route: &Route) -> Option<Unsupported> {
        if self.streaming && !capabilities.streaming {
            return Some(Unsupported::Streaming);
        }
        let json = match self.json {
            JsonNeed::None => JsonModeSupport::Native,
            JsonNeed::Object => capabilities.json_object,
            JsonNeed::Schema => capabilities.json_schema,
        };
        if json == JsonModeSupport::Unsupported {
            return Some(Unsupported::JsonMode);
        }
        if self.tools > 0 || self.tool_history {
            let Some(limits) = capabilities.tools else {
                return Some(Unsupported::Tools);
            };
            if !route.tools {
                return Some(Unsupported::ModelTakesNoTools {
                    model: route.model.clone(),
                });
            }
            if self.tools > limits.max_tools {
                return Some(Unsupported::TooManyTools {
                    count: self.tools,
                    max: limits.max_tools,
                });
            }
        }
        if self.images > 0 {
            let Some(limits) = capabilities.images else {
                return Some(Unsupported::Images);
            };
            if !route.vision {
                return Some(Unsupported::ModelTakesNoImages {
                    model: route.model.clone(),
                });
            }
            if self.images > limits.max_images {
                return Some(Unsupported::TooManyImages {
                    count: self.images,
                    max: limits.max_images,
                });
            }
            if self.largest_image > limits.max_bytes {
                return Some(Unsupported::ImageTooLarge {
                    bytes: self.largest_image,
                    max: limits.max_bytes,
                });
            }
            if let Some(media_type) = self
                .media_types
                .iter()
                .find(|media_type| !limits.media_types.contains(*media_type))
            {
                return Some(Unsupported::ImageMediaType { media_type });
            }
        }
        if self.top_p && !capabilities.top_p {
            return Some(Unsupported::TopP);
        }
        None
    }
}

/// Why a provider cannot serve a request (it is skipped, and when no provider can, the
/// request is refused before any call with
/// [`ValidationError::NoCapableRoute`](crate::ValidationError::NoCapableRoute)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum Unsupported {
    /// The provider does not stream.
    Streaming,
    /// The provider has no JSON mode of the kind asked for.
    JsonMode,
    /// The provider takes no tools (the request offers tools or carries tool calls).
    Tools,
    /// The routed model takes no tools.
    ModelTakesNoTools {
        /// The model.
        model: String,
    },
    /// More tools than the provider takes.
    TooManyTools {
        /// Tools offered.
        count: usize,
        /// The provider's limit.
        max: usize,
    },
    /// The provider takes no images.
    Images,
    /// The routed model takes no images.
    ModelTakesNoImages {
        /// The model.
        model: String,
    },
    /// More images than the provider takes.
    TooManyImages {
        /// Images in the request.
        count: usize,
        /// The provider's limit.
        max: usize,
    },
    /// An image larger than the provider takes.
    ImageTooLarge {
        /// The largest image's size.
        bytes: usize,
        /// The provider's limit.
        max: usize,
    },
    /// An image of a media type the provider does not take.
    ImageMediaType {
        /// The media type.
        media_type: ImageMediaType,
    },
    /// The provider does not take `top_p`.
    TopP,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Streaming => f.write_str("streaming unsupported"),
            Unsupported::JsonMode => f.write_str("JSON mode unsupported"),
            Unsupported::Tools => f.write_str("tools unsupported"),
            Unsupported::ModelTakesNoTools { model } => {
                write!(f, "the routed model {model} takes no tools")
            }
            Unsupported::TooManyTools { count, max } => {
                write!(f, "{count} tools; at most {max} are taken")
            }
            Unsupported::Images => f.write_str("images unsupported"),
            Unsupported::ModelTakesNoImages { model } => {
                write!(f, "the routed model {model} takes no images")
            }
            Unsupported::TooManyImages { count, max } => {
                write!(f, "{count} images; at most {max} are taken")
            }
            Unsupported::ImageTooLarge { bytes, max } => {
                write!(f, "an image of {bytes} bytes; at most {max} are taken")
            }
            Unsupported::ImageMediaType { media_type } => {
                write!(f, "images of type {media_type} unsupported")
            }
            Unsupported::TopP => f.write_str("top_p unsupported"),
        }
    }
}

/// A provider passed over for a request, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unserved {
    /// The provider.
    pub provider: String,
    /// Why it cannot serve the request.
    pub reason: Unsupported,
}

impl fmt::Display for Unserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::{ContentPart, ImageLimits, ImagePart, ToolDefinition, ToolLimits};
    use serde_json::json;

    fn with_image(bytes: usize, media_type: ImageMediaType) -> (CompletionRequest, Vec<Message>) {
        let messages = vec![Message::user_parts(vec![
            ContentPart::text("what is this?"),
            ContentPart::Image(ImagePart::new(media_type, vec![0; bytes])),
        ])];
        let request = CompletionRequest::messages("t", "a", "m", messages.clone());
        (request, messages)
    }

    #[test]
    fn images_are_checked_against_the_provider_and_the_route() {
        let caps = Capabilities::FULL.with_images(Some(ImageLimits {
            max_bytes: 100,
            max_images: 1,
            media_types: MediaTypeSet::of(&[ImageMediaType::Png]),
        }));
        let route = Route::new("m");
        let (request, messages) = with_image(100, ImageMediaType::Png);
        let needs = RequestNeeds::of(&request, &messages, false);
        assert_eq!(needs.unmet(&caps, &route), None);
        assert_eq!(
            needs.unmet(&caps, &route.clone().vision(false)),
            Some(Unsupported::ModelTakesNoImages { model: "m".into() })
        );
        assert_eq!(
            needs.unmet(&caps.with_images(None), &route),
            Some(Unsupported::Images)
        );
        let (request, messages) = with_image(101, ImageMediaType::Png);
        assert_eq!(
            RequestNeeds::of(&request, &messages, false).unmet(&caps, &route),
            Some(Unsupported::ImageTooLarge {
                bytes: 101,
                max: 100
            })
        );
        let (request, messages) = with_image(10, ImageMediaType::Gif);
        let unmet = RequestNeeds::of(&request, &messages, false).unmet(&caps, &route);
        assert_eq!(
            unmet.unwrap().to_string(),
            "images of type image/gif unsupported"
        );
    }

    #[test]
    fn tools_and_tool_history_need_a_provider_and_model_with_tools() {
        let tool = ToolDefinition::new("t", "d", json!({"type": "object"}));
        let request = CompletionRequest::prompt("t", "a", "m", "hi").tools(vec![tool.clone(); 3]);
        let messages = request.input.to_messages();
        let needs = RequestNeeds::of(&request, &messages, true);
        let caps = Capabilities::FULL.with_tools(Some(ToolLimits {
            max_tools: 2,
            parallel_tool_calls: false,
        }));
        assert_eq!(
            needs.unmet(&caps, &Route::new("m")),
            Some(Unsupported::TooManyTools { count: 3, max: 2 })
        );
        assert_eq!(
            needs.unmet(&Capabilities::FULL, &Route::new("m").tools(false)),
            Some(Unsupported::ModelTakesNoTools { model: "m".into() })
        );
        assert_eq!(
            needs.unmet(&Capabilities::FULL.with_streaming(false), &Route::new("m")),
            Some(Unsupported::Streaming)
        );
        // No tools offered, but the history has a call: still a tools request.
        let history = vec![
            Message::user("weather?"),
            Message::assistant_with_calls(
                "",
                vec![failover_provider::ToolCall::new("c1", "t", "{}")],
            ),
            Message::tool_result(
                "c1",
                failover_provider::ToolResultContent::Text("sun".into()),
            ),
        ];
        let request = CompletionRequest::messages("t", "a", "m", history.clone());
        assert_eq!(
            RequestNeeds::of(&request, &history, false)
                .unmet(&Capabilities::FULL.with_tools(None), &Route::new("m")),
            Some(Unsupported::Tools)
        );
    }
}
