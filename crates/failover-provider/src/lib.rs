#![doc = include_str!("../README.md")]

mod completion;
mod content;
mod error;
mod json;
mod message;
mod provider;
mod redact;
mod request;
pub mod retry_hint;
mod timeouts;
mod tools;
mod usage;

pub use completion::{
    AttemptOutcome, AttemptRecord, Completion, FinishReason, StreamChunk, StreamSummary,
};
pub use content::{ContentPart, ImageError, ImageLimits, ImageMediaType, ImagePart, MediaTypeSet};
pub use error::{BreakerEffect, ErrorKind, ProviderError, RetryPolicy};
pub use json::JsonContract;
pub use message::{Message, PromptInput, Role};
pub use provider::{
    Capabilities, JsonModeSupport, Provider, ProviderEvent, ProviderResponse, ProviderStream,
    ToolLimits,
};
pub use redact::redact_url;
pub use request::{
    CallDeadlines, CompletionRequest, ProviderRequest, RequestId, ResponseFormat, Sampling,
};
pub use timeouts::CallTimeouts;
pub use tools::{
    ToolCall, ToolCallAssembler, ToolCallOrderError, ToolChoice, ToolConfig, ToolDefinition,
    ToolResult, ToolResultContent,
};
pub use usage::{TokenUsage, Usd};
