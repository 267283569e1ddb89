//! What the adapter hands back: a completion, or a stream of chunks ending in a summary.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::request::RequestId;
use crate::tools::ToolCall;
use crate::usage::{TokenUsage, Usd};

/// Why a model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The output token limit was reached.
    Length,
    /// A stop sequence matched.
    StopSequence,
    /// The provider's content filter ended the answer.
    ContentFilter,
    /// The model asked to call a tool.
    ToolUse,
    /// A reason this crate does not know, as the provider spelled it.
    Other(String),
}

/// How one attempt on one provider ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AttemptOutcome {
    /// The provider answered.
    Succeeded,
    /// The provider failed with a classified error.
    Failed {
        /// The error's kind.
        kind: ErrorKind,
        /// The error's message.
        message: String,
    },
    /// The provider's breaker was open; it was not called.
    SkippedBreakerOpen {
        /// How long until the breaker admits its next probe, when it knows (from the
        /// moment the attempt was skipped). `None` for a breaker an operator forced open.
        retry_in: Option<Duration>,
        /// Whether an operator forced the breaker open (it stays open until reset).
        forced: bool,
    },
    /// The provider cannot serve this request (streaming or JSON mode unsupported).
    SkippedUnsupported {
        /// What is missing.
        reason: String,
    },
    /// A layer around the provider call refused it (a rate limit, a budget); it was not
    /// called.
    SkippedRejected {
        /// The layer's name.
        layer: String,
        /// Why it refused.
        reason: String,
    },
}

/// One provider the adapter tried (or skipped) for a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The provider's name.
    pub provider: String,
    /// The concrete model routed to.
    pub model: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Time spent on it.
    pub latency: Duration,
}

/// A finished completion: the seed's result dictionary, typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The request's id.
    pub request_id: RequestId,
    /// The provider that answered (`"bedrock"`, `"openai"`), or that answered originally
    /// when `cached`.
    pub provider: String,
    /// The concrete model that answered.
    pub model: String,
    /// The generated text (may be empty when the model only called tools).
    pub content: String,
    /// The tools the model called, in order; the caller runs them and sends the results
    /// back on [`Role::Tool`](crate::Role::Tool) messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens (the seed's `tokens`).
    pub usage: TokenUsage,
    /// Estimated cost of the call (the seed's `estimated_cost`); zero for a cache hit.
    pub estimated_cost: Usd,
    /// Whether the answer came from the cache.
    pub cached: bool,
    /// Time from receiving the request to returning it.
    pub latency: Duration,
    /// Every provider tried or skipped, in order; empty for a cache hit.
    pub attempts: Vec<AttemptRecord>,
}

/// The final item of a successful stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// The request's id.
    pub request_id: RequestId,
    /// The provider that streamed the answer.
    pub provider: String,
    /// The concrete model.
    pub model: String,
    /// The tool calls the stream's items made, assembled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens consumed.
    pub usage: TokenUsage,
    /// Estimated cost.
    pub estimated_cost: Usd,
    /// Whether the chunks were replayed from the cache.
    pub cached: bool,
    /// Time from receiving the request to the end of the stream.
    pub latency: Duration,
    /// Every provider tried or skipped, in order.
    pub attempts: Vec<AttemptRecord>,
}

/// One item of a completion stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum StreamChunk {
    /// More text.
    Delta {
        /// The text.
        text: String,
    },
    /// The model starts a tool call. Calls are numbered from 0 in the order they start.
    ToolCallStart {
        /// The call's number in this answer.
        index: u32,
        /// The call's id.
        id: String,
        /// The tool called.
        name: String,
    },
    /// A fragment of a started call's arguments (JSON text; the fragments of one call
    /// concatenate to its arguments).
    ToolCallDelta {
        /// The call's number.
        index: u32,
        /// The fragment.
        arguments: String,
    },
    /// A call's arguments are complete.
    ToolCallEnd {
        /// The call's number.
        index: u32,
    },
    /// The stream completed; always the last item of a successful stream.
    Done(StreamSummary),
}
