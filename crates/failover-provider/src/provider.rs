//! The `Provider` trait and what a provider declares about itself.

use std::fmt::Debug;
use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::completion::FinishReason;
use crate::content::{ImageLimits, MediaTypeSet};
use crate::error::ProviderError;
use crate::request::ProviderRequest;
use crate::tools::ToolCall;
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
    /// What the provider takes of tool calling; `None` when it takes no tools.
    pub tools: Option<ToolLimits>,
    /// What the provider takes of images; `None` when it takes none.
    pub images: Option<ImageLimits>,
    /// Whether `top_p` is honoured (a request with it skips a provider without).
    pub top_p: bool,
    /// Whether a sampling `seed` is honoured (a hint: left out where it is not).
    pub seed: bool,
    /// Whether the end user's id is passed on (a hint: left out where it is not).
    pub user: bool,
}

/// What a provider takes of tool calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolLimits {
    /// Most tools in one request.
    pub max_tools: usize,
    /// Whether `parallel_tool_calls` can be set.
    pub parallel_tool_calls: bool,
}

impl Capabilities {
    /// Everything supported natively.
    pub const FULL: Capabilities = Capabilities {
        streaming: true,
        json_object: JsonModeSupport::Native,
        json_schema: JsonModeSupport::Native,
        usage_in_stream: true,
        tools: Some(ToolLimits {
            max_tools: 128,
            parallel_tool_calls: true,
        }),
        images: Some(ImageLimits {
            max_bytes: 20 * 1024 * 1024,
            max_images: 500,
            media_types: MediaTypeSet::ALL,
        }),
        top_p: true,
        seed: true,
        user: true,
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

    /// Sets tool support (`None`: no tools).
    pub const fn with_tools(mut self, tools: Option<ToolLimits>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets image support (`None`: no images).
    pub const fn with_images(mut self, images: Option<ImageLimits>) -> Self {
        self.images = images;
        self
    }

    /// Sets which of `top_p`, `seed` and `user` are honoured.
    pub const fn with_sampling(mut self, top_p: bool, seed: bool, user: bool) -> Self {
        self.top_p = top_p;
        self.seed = seed;
        self.user = user;
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
    /// The tools the model called, in order.
    pub tool_calls: Vec<ToolCall>,
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
    /// The model starts a tool call; `index` numbers the calls of this answer from 0 in
    /// the order they start.
    ToolCallStart {
        /// The call's number.
        index: u32,
        /// The call's id.
        id: String,
        /// The tool called.
        name: String,
    },
    /// A fragment of a started call's arguments.
    ToolCallDelta {
        /// The call's number.
        index: u32,
        /// The fragment (JSON text).
        arguments: String,
    },
    /// A call's arguments are complete.
    ToolCallEnd {
        /// The call's number.
        index: u32,
    },
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
/// - A stream yields zero or more [`ProviderEvent::Delta`] and tool-call events (each call
///   a `ToolCallStart`, its `ToolCallDelta`s and a `ToolCallEnd`, calls numbered from 0)
///   and then exactly one [`ProviderEvent::Finished`]; a stream that ends without
///   `Finished` is treated as cut, and one that finishes with a call still open is
///   malformed.
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
