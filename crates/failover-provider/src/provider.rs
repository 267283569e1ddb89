//! The `Provider` trait and what a provider declares about itself.

use std::fmt::Debug;
use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::completion::FinishReason;
use crate::error::ProviderError;
use crate::request::ProviderRequest;
use crate::usage::TokenUsage;

/// How a provider honours [`ResponseFormat`](crate::ResponseFormat) JSON modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonModeSupport {
    /// The API constrains output to JSON (and to a schema when given).
    Native,
    /// JSON is obtained by instruction or a forced tool; the adapter still validates it.
    Emulated,
    /// JSON mode is not available; JSON requests skip this provider.
    Unsupported,
}

/// What a provider can do, declared rather than discovered; the adapter routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whether [`Provider::stream`] is implemented.
    pub streaming: bool,
    /// How JSON object mode is honoured.
    pub json_object: JsonModeSupport,
    /// How JSON-with-schema mode is honoured.
    pub json_schema: JsonModeSupport,
    /// Whether a stream's final event carries token usage.
    pub usage_in_stream: bool,
}

impl Capabilities {
    /// Everything supported natively.
    pub const FULL: Capabilities = Capabilities {
        streaming: true,
        json_object: JsonModeSupport::Native,
        json_schema: JsonModeSupport::Native,
        usage_in_stream: true,
    };

    /// Sets streaming support.
    pub const fn with_streaming(mut self, streaming: bool) -> Self {
        self.streaming = streaming;
        self
    }

    /// Sets JSON object support.
    pub const fn with_json_object(mut self, support: JsonModeSupport) -> Self {
        self.json_object = support;
        self
    }

    /// Sets JSON schema support.
    pub const fn with_json_schema(mut self, support: JsonModeSupport) -> Self {
        self.json_schema = support;
        self
    }

    /// Sets whether streams report usage.
    pub const fn with_usage_in_stream(mut self, usage_in_stream: bool) -> Self {
        self.usage_in_stream = usage_in_stream;
        self
    }
}

/// The answer of one non-streaming provider call.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderResponse {
    /// The concrete model that answered (as the provider reports it, else as requested).
    pub model: String,
    /// The generated text.
    pub content: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens consumed.
    pub usage: TokenUsage,
}

/// One event of a provider's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// More generated text.
    Delta(String),
    /// The terminal event: the stream is complete. A stream that ends without it was cut.
    Finished {
        /// Why generation stopped.
        finish_reason: FinishReason,
        /// Tokens consumed, when the provider reports them in streams.
        usage: Option<TokenUsage>,
        /// The model that served the stream, as the provider reports it
        /// (`gpt-4o-2024-08-06` for a request to `gpt-4o`), when its stream says.
        model: Option<String>,
    },
}

/// A provider's stream of events; an `Err` item ends it.
pub type ProviderStream = Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send>>;

/// One LLM backend.
///
/// # Contract
/// - Every error is a classified [`ProviderError`]; the adapter acts on its kind only.
/// - `complete` and `stream` own their retries (at most one owner per call); the adapter
///   does not retry the same provider, it fails over.
/// - A stream yields zero or more [`ProviderEvent::Delta`] and then exactly one
///   [`ProviderEvent::Finished`]; a stream that ends without `Finished` is treated as cut.
///   Errors are items, after which the stream ends.
/// - Dropping a future or stream cancels the call.
/// - Nothing a provider returns, logs or prints (including `Debug`) contains a secret.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + Debug {
    /// A short, stable name (`"bedrock"`, `"openai"`), used in routing, health and usage.
    fn name(&self) -> &str;

    /// What this provider supports.
    fn capabilities(&self) -> Capabilities;

    /// The provider's `gen_ai.provider.name` in the OpenTelemetry GenAI conventions
    /// (`aws.bedrock`, `openai`, …), for metrics and spans. `_OTHER`, the conventions'
    /// value for a provider they do not list, unless the provider says otherwise.
    fn gen_ai_provider_name(&self) -> &'static str {
        "_OTHER"
    }

    /// One non-streaming completion.
    async fn complete(&self, request: ProviderRequest) -> Result<ProviderResponse, ProviderError>;

    /// A streaming completion. The returned error covers failures before the first event
    /// (connection, HTTP status); later failures are stream items.
    async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ProviderError>;
}
