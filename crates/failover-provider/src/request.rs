//! What a caller asks for, and what one provider call receives.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
use crate::message::{Message, PromptInput};
use crate::tools::{ToolChoice, ToolConfig, ToolDefinition};

/// A request's unique id, carried into usage records, logs and the result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random (UUID v4) id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Wraps a caller-chosen id (e.g. from an upstream trace).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shape the caller wants the content in (the seed's `response_format`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ResponseFormat {
    /// Free text.
    #[default]
    Text,
    /// Any single JSON object.
    JsonObject,
    /// JSON matching a JSON Schema.
    JsonSchema {
        /// A short name for the schema (OpenAI requires one).
        name: String,
        /// The JSON Schema document.
        schema: serde_json::Value,
    },
}

impl ResponseFormat {
    /// Whether the content must be JSON.
    pub fn is_json(&self) -> bool {
        !matches!(self, ResponseFormat::Text)
    }

    /// Parses the seed's string form: `"text"` or `"json"` / `"json_object"`.
    pub fn from_seed_name(name: &str) -> Option<Self> {
        match name {
            "text" => Some(ResponseFormat::Text),
            "json" | "json_object" => Some(ResponseFormat::JsonObject),
            _ => None,
        }
    }
}

/// Sampling parameters beyond temperature and the token limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Nucleus sampling, `0.0..=1.0`; the provider's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// A seed for best-effort deterministic sampling, where the provider has one
    /// ([`Capabilities::seed`](crate::Capabilities::seed)); a hint others go without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// The end user's id, for the provider's abuse monitoring, where it has the field
    /// ([`Capabilities::user`](crate::Capabilities::user)); a hint others go without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Sampling {
    /// No parameter set (the default), as a constant.
    pub const NONE: Sampling = Sampling {
        top_p: None,
        seed: None,
        user: None,
    };

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::NONE
    }
}

/// One completion request, as the application states it.
///
/// The seed's `generate_completion(prompt, agent_id, tenant_id, model, temperature,
/// max_tokens, response_format)` reads, in Rust:
///
/// ```
/// use failover_provider::{CompletionRequest, ResponseFormat};
/// let request = CompletionRequest::prompt("test_tenant", "test_agent", "gpt-4",
///         "What is 2+2? Answer with just the number.")
///     .temperature(0.1)
///     .max_tokens(10)
///     .response_format(ResponseFormat::Text);
/// assert_eq!(request.model, "gpt-4");
/// ```
///
/// Nothing is validated here: the adapter validates every field before it touches a cache
/// or a provider, and answers a typed error.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// The tenant the request is billed to and whose cache space it uses.
    pub tenant_id: String,
    /// The agent (application component) making the request.
    pub agent_id: String,
    /// The logical model name (`"gpt-4"`), mapped to a concrete model per provider.
    pub model: String,
    /// A plain prompt or chat messages.
    pub input: PromptInput,
    /// Sampling temperature, `0.0..=2.0`; the provider's default when `None`.
    pub temperature: Option<f32>,
    /// Upper bound of output tokens; the provider's default when `None`.
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Text, JSON object or JSON with a schema.
    pub response_format: ResponseFormat,
    /// The tools offered and how the model may use them.
    pub tools: ToolConfig,
    /// `top_p`, `seed`, `user`.
    pub sampling: Sampling,
    /// The instant by which the whole request (every attempt) must be answered.
    pub deadline: Option<Instant>,
    /// The request's id; the adapter draws a random one when `None`.
    pub request_id: Option<RequestId>,
}

impl CompletionRequest {
    /// A request with a single user prompt and default parameters.
    pub fn prompt(
        tenant_id: impl Into<String>,
        agent_id: impl Into<String>,
        model: impl Into<String>,
        prompt: impl Into<String>,
    ) -> Self {
        Self::with_input(
            tenant_id,
            agent_id,
            model,
            PromptInput::Prompt(prompt.into()),
        )
    }

    /// A request with chat messages and default parameters.
    pub fn messages(
        tenant_id: impl Into<String>,
        agent_id: impl Into<String>,
        model: impl Into<String>,
        messages: Vec<Message>,
    ) -> Self {
        Self::with_input(tenant_id, agent_id, model, PromptInput::Messages(messages))
    }

    fn with_input(
        tenant_id: impl Into<String>,
        agent_id: impl Into<String>,
        model: impl Into<String>,
        input: PromptInput,
    ) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            agent_id: agent_id.into(),
            model: model.into(),
            input,
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
            response_format: ResponseFormat::Text,
            tools: ToolConfig::default(),
            sampling: Sampling::default(),
            deadline: None,
            request_id: None,
        }
    }

    /// Sets the temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the output token limit.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// Adds a stop sequence.
    pub fn stop(mut self, sequence: impl Into<String>) -> Self {
        self.stop.push(sequence.into());
        self
    }

    /// Sets the response format.
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }

    /// Offers these tools (replacing any offered before).
    pub fn tools(mut self, tools: Vec<ToolDefinition>) -> Self {
        self.tools.tools = tools;
        self
    }

    /// Sets whether and which tool the model must call.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tools.choice = choice;
        self
    }

    /// Sets whether the model may call several tools in one turn.
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.tools.parallel_tool_calls = Some(parallel);
        self
    }

    /// Sets `top_p`.
    pub fn top_p(mut self, top_p: f32) -> Self {
        self.sampling.top_p = Some(top_p);
        self
    }

    /// Sets the sampling seed.
    pub fn seed(mut self, seed: i64) -> Self {
        self.sampling.seed = Some(seed);
        self
    }

    /// Sets the end user's id.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.sampling.user = Some(user.into());
        self
    }

    /// Sets the deadline to `timeout` from now.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// Sets an absolute deadline.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }
}

/// What one provider call receives: the request after validation and routing.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRequest {
    /// The request's id (the same for every attempt).
    pub request_id: RequestId,
    /// The concrete model id for this provider.
    pub model: String,
    /// The conversation; a plain prompt arrives as one user message.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Output token limit.
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Requested content shape.
    pub response_format: ResponseFormat,
    /// The tools offered and how the model may use them.
    pub tools: ToolConfig,
    /// `top_p`, `seed`, `user` (the provider leaves out what it lacks).
    pub sampling: Sampling,
    /// The request's own deadline: the caller's budget for the whole request. Running out
    /// of it is never the provider's fault ([`ProviderError::request_deadline`]).
    pub deadline: Option<Instant>,
    /// This provider's share of the time left: when a later provider could still answer,
    /// the adapter gives this one only part of the remaining budget, so a hung provider
    /// leaves time to fail over. Running past it is the provider's own time-out (it counts
    /// against its breaker). Never later than [`deadline`](Self::deadline); `None` means
    /// the call may use all of it.
    pub attempt_deadline: Option<Instant>,
}

impl ProviderRequest {
    /// The call's two deadlines, without the request's content: what a stream keeps to
    /// enforce them and to say which one ran out.
    pub fn deadlines(&self) -> CallDeadlines {
        CallDeadlines {
            deadline: self.deadline,
            attempt_deadline: self.attempt_deadline,
        }
    }

    /// When this call must end (see [`CallDeadlines::call_deadline`]).
    pub fn call_deadline(&self) -> Option<Instant> {
        self.deadlines().call_deadline()
    }

    /// Time left before [`call_deadline`](Self::call_deadline) (`None` when there is no
    /// deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.call_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The error for a call that ran out of time at its call deadline (see
    /// [`CallDeadlines::out_of_time`]).
    pub fn out_of_time(&self) -> ProviderError {
        self.deadlines().out_of_time()
    }
}

/// The deadlines of one provider call: the request's own
/// ([`ProviderRequest::deadline`]) and the call's share of it
/// ([`ProviderRequest::attempt_deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadlines {
    /// The request's own deadline: the caller's budget.
    pub deadline: Option<Instant>,
    /// This call's share of the time left, never later than `deadline`.
    pub attempt_deadline: Option<Instant>,
}

impl CallDeadlines {
    /// When this call must end: the earlier of its share and the request's deadline;
    /// `None` when neither is set.
    pub fn call_deadline(&self) -> Option<Instant> {
        match (self.attempt_deadline, self.deadline) {
            (Some(share), Some(deadline)) => Some(share.min(deadline)),
            (share, deadline) => share.or(deadline),
        }
    }

    /// The error for a call that ran out of time at its
    /// [`call_deadline`](Self::call_deadline): the request's own deadline when that has
    /// passed (the caller's budget, never the provider's fault), else the provider's
    /// time-out for using up its share ([`ProviderError::attempt_deadline`]).
    pub fn out_of_time(&self) -> ProviderError {
        self.out_of_time_at(Instant::now())
    }

    /// [`out_of_time`](Self::out_of_time) judged at `now`, for a caller that keeps time
    /// on another clock (the adapter uses tokio's, which a test may pause).
    pub fn out_of_time_at(&self, now: Instant) -> ProviderError {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            ProviderError::request_deadline()
        } else {
            ProviderError::attempt_deadline()
        }
    }
}
