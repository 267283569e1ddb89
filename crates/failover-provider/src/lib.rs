#![doc = include_str!("../README.md")]

mod completion;
mod error;
mod json;
mod message;
mod provider;
mod redact;
mod request;
pub mod retry_hint;
mod timeouts;
mod usage;

pub use completion::{
    AttemptOutcome, AttemptRecord, Completion, FinishReason, StreamChunk, StreamSummary,
};
pub use error::{BreakerEffect, ErrorKind, ProviderError, RetryPolicy};
pub use json::JsonContract;
pub use message::{Message, PromptInput, Role};
pub use provider::{
    Capabilities, JsonModeSupport, Provider, ProviderEvent, ProviderResponse, ProviderStream,
};
pub use redact::redact_url;
pub use request::{CallDeadlines, CompletionRequest, ProviderRequest, RequestId, ResponseFormat};
pub use timeouts::CallTimeouts;
pub use usage::{TokenUsage, Usd};
