//! A provider that plays a typed script: replies, errors, delays, stream chunks and cuts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use failover_provider::{
    Capabilities, ErrorKind, FinishReason, Provider, ProviderError, ProviderEvent, ProviderRequest,
    ProviderResponse, ProviderStream, TokenUsage, ToolCall, ToolCallAssembler,
};

/// An error to produce, buildable and cloneable (a [`ProviderError`] is neither).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSpec {
    /// The kind.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// The provider's code.
    pub provider_code: Option<String>,
    /// The HTTP status.
    pub http_status: Option<u16>,
    /// The retry hint.
    pub retry_after: Option<Duration>,
}

impl ErrorSpec {
    /// An error of `kind` with a message naming it.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            message: format!("scripted {kind}"),
            provider_code: None,
            http_status: None,
            retry_after: None,
        }
    }

    /// Sets the retry hint.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Sets the HTTP status.
    pub fn http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// Builds the error.
    pub fn to_error(&self) -> ProviderError {
        let mut error = ProviderError::new(self.kind, self.message.clone());
        if let Some(code) = &self.provider_code {
            error = error.with_provider_code(code.clone());
        }
        if let Some(status) = self.http_status {
            error = error.with_http_status(status);
        }
        if let Some(retry_after) = self.retry_after {
            error = error.with_retry_after(retry_after);
        }
        error
    }
}

/// One event of a scripted stream. A script that ends without [`StreamStep::Finish`] is a
/// cut stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamStep {
    /// Emit a text delta.
    Delta(String),
    /// Start a tool call.
    ToolCallStart {
        /// The call's number.
        index: u32,
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
    },
    /// A fragment of a call's arguments.
    ToolCallDelta {
        /// The call's number.
        index: u32,
        /// The fragment.
        arguments: String,
    },
    /// End a tool call.
    ToolCallEnd {
        /// The call's number.
        index: u32,
    },
    /// Wait before the next step.
    Pause(Duration),
    /// Emit the terminal event.
    Finish {
        /// Usage reported, if any.
        usage: Option<TokenUsage>,
        /// Why generation stopped.
        finish_reason: FinishReason,
    },
    /// Emit an error item (the stream ends after it).
    Fail(ErrorSpec),
}

/// One scripted answer to one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Answer with content and tool calls. Streamed as one delta per word, each call as a
    /// start, its arguments in two fragments and an end, then `Finish` with the usage.
    Reply {
        /// The content.
        content: String,
        /// The tool calls.
        tool_calls: Vec<ToolCall>,
        /// The usage reported.
        usage: TokenUsage,
        /// Why generation stopped.
        finish_reason: FinishReason,
        /// Time before answering.
        delay: Duration,
    },
    /// Fail the call (before any stream event).
    Fail {
        /// The error.
        error: ErrorSpec,
        /// Time before failing.
        delay: Duration,
    },
    /// Stream exactly these events (for `complete`, the deltas are joined and the call
    /// fails if the script has no `Finish` or has a `Fail`).
    Stream(Vec<StreamStep>),
}

impl Step {
    /// A reply with content and usage (10 input, 5 output tokens).
    pub fn reply(content: impl Into<String>) -> Self {
        Step::Reply {
            content: content.into(),
            tool_calls: Vec::new(),
            usage: TokenUsage::new(10, 5),
            finish_reason: FinishReason::Stop,
            delay: Duration::ZERO,
        }
    }

    /// A reply that calls tools (no text, finish reason `ToolUse`).
    pub fn call_tools(calls: Vec<ToolCall>) -> Self {
        Step::Reply {
            content: String::new(),
            tool_calls: calls,
            usage: TokenUsage::new(10, 5),
            finish_reason: FinishReason::ToolUse,
            delay: Duration::ZERO,
        }
    }

    /// A failure of `kind`.
    pub fn fail(kind: ErrorKind) -> Self {
        Step::Fail {
            error: ErrorSpec::new(kind),
            delay: Duration::ZERO,
        }
    }

    /// A failure built from `error`.
    pub fn fail_with(error: ErrorSpec) -> Self {
        Step::Fail {
            error,
            delay: Duration::ZERO,
        }
    }

    /// Sets the usage of a reply.
    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        if let Step::Reply { usage, .. } = &mut self {
            *usage = TokenUsage::new(input_tokens, output_tokens);
        }
        self
    }

    /// Sets why a reply stopped (a content filter, the token limit, …).
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        if let Step::Reply { finish_reason, .. } = &mut self {
            *finish_reason = reason;
        }
        self
    }

    /// Delays a reply or failure.
    pub fn after(mut self, wait: Duration) -> Self {
        if let Step::Reply { delay, .. } | Step::Fail { delay, .. } = &mut self {
            *delay = wait;
        }
        self
    }
}

/// A [`Provider`] that answers each call with the next [`Step`] of its script, then with
/// its `otherwise` step. It records every request it receives.
#[derive(Debug)]
pub struct ScriptedProvider {
    name: String,
    capabilities: Capabilities,
    script: Mutex<VecDeque<Step>>,
    otherwise: Step,
    requests: Mutex<Vec<ProviderRequest>>,
}

impl ScriptedProvider {
    /// A provider named `name` with full capabilities and an empty script; once the script
    /// is exhausted it fails every call with an `AuthOrConfig` error saying so.
    pub fn new(name: impl Into<String>) -> Self {
        let mut exhausted = ErrorSpec::new(ErrorKind::AuthOrConfig);
        exhausted.message = "the scripted provider has no step left".into();
        Self {
            name: name.into(),
            capabilities: Capabilities::FULL,
            script: Mutex::new(VecDeque::new()),
            otherwise: Step::fail_with(exhausted),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// A provider that always answers `content`.
    pub fn always(name: impl Into<String>, content: impl Into<String>) -> Self {
        Self::new(name).otherwise(Step::reply(content))
    }

    /// Declares capabilities.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Appends a step to the script.
    pub fn then(self, step: Step) -> Self {
        self.script.lock().unwrap().push_back(step);
        self
    }

    /// Appends `step` `times` times.
    pub fn then_repeat(self, step: Step, times: usize) -> Self {
        self.script
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(step, times));
        self
    }

    /// The step used once the script is exhausted.
    pub fn otherwise(mut self, step: Step) -> Self {
        self.otherwise = step;
        self
    }

    /// Appends a step to a provider already in use.
    pub fn push(&self, step: Step) {
        self.script.lock().unwrap().push_back(step);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ProviderRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// How many calls were made.
    pub fn call_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn next_step(&self, request: ProviderRequest) -> Step {
        self.requests.lock().unwrap().push(request);
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.otherwise.clone())
    }
}

fn malformed(error: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::MalformedResponse, error.to_string())
}

/// Waits `wait`; a zero wait does not touch the timer (a zero-length tokio sleep still waits
/// for the next timer tick, about a millisecond, which would swamp any measurement).
async fn pause(wait: Duration) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

fn stream_steps_of_reply(
    content: &str,
    tool_calls: &[ToolCall],
    usage: TokenUsage,
    finish_reason: FinishReason,
    delay: Duration,
) -> Vec<StreamStep> {
    let mut steps = Vec::new();
    if !delay.is_zero() {
        steps.push(StreamStep::Pause(delay));
    }
    steps.extend(
        content
            .split_inclusive(' ')
            .map(|word| StreamStep::Delta(word.to_owned())),
    );
    for (index, call) in (0u32..).zip(tool_calls) {
        steps.push(StreamStep::ToolCallStart {
            index,
            id: call.id.clone(),
            name: call.name.clone(),
        });
        let middle = (0..=call.arguments.len() / 2)
            .rev()
            .find(|at| call.arguments.is_char_boundary(*at))
            .unwrap_or(0);
        let (head, tail) = call.arguments.split_at(middle);
        for fragment in [head, tail].into_iter().filter(|f| !f.is_empty()) {
            steps.push(StreamStep::ToolCallDelta {
                index,
                arguments: fragment.to_owned(),
            });
        }
        steps.push(StreamStep::ToolCallEnd { index });
    }
    steps.push(StreamStep::Finish {
        usage: Some(usage),
        finish_reason,
    });
    steps
}

#[async_trait::async_trait]
impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn complete(&self, request: ProviderRequest) -> Result<ProviderResponse, ProviderError> {
        let model = request.model.clone();
        match self.next_step(request) {
            Step::Reply {
                content,
                tool_calls,
                usage,
                finish_reason,
                delay,
            } => {
                pause(delay).await;
                Ok(ProviderResponse {
                    model,
                    content,
                    tool_calls,
                    finish_reason,
                    usage,
                })
            }
            Step::Fail { error, delay } => {
                pause(delay).await;
                Err(error.to_error())
            }
            Step::Stream(steps) => {
                let mut content = String::new();
                let mut calls = ToolCallAssembler::new();
                for step in steps {
                    let order = match step {
                        StreamStep::Delta(text) => {
                            content.push_str(&text);
                            Ok(())
                        }
                        StreamStep::ToolCallStart { index, id, name } => {
                            calls.start(index, &id, &name)
                        }
                        StreamStep::ToolCallDelta { index, arguments } => {
                            calls.delta(index, &arguments)
                        }
                        StreamStep::ToolCallEnd { index } => calls.end(index),
                        StreamStep::Pause(wait) => {
                            pause(wait).await;
                            Ok(())
                        }
                        StreamStep::Fail(error) => return Err(error.to_error()),
                        StreamStep::Finish {
                            usage,
                            finish_reason,
                        } => {
                            let tool_calls = calls.finish().map_err(malformed)?;
                            return Ok(ProviderResponse {
                                model,
                                content,
                                tool_calls,
                                finish_reason,
                                usage: usage.unwrap_or_default(),
                            });
                        }
                    };
                    order.map_err(malformed)?;
                }
                Err(ProviderError::new(
                    ErrorKind::StreamCut,
                    "scripted response ended without finishing",
                ))
            }
        }
    }

    async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ProviderError> {
        let steps = match self.next_step(request) {
            Step::Reply {
                content,
                tool_calls,
                usage,
                finish_reason,
                delay,
            } => stream_steps_of_reply(&content, &tool_calls, usage, finish_reason, delay),
            Step::Fail { error, delay } => {
                pause(delay).await;
                return Err(error.to_error());
            }
            Step::Stream(steps) => steps,
        };
        let stream = futures::stream::unfold(VecDeque::from(steps), |mut steps| async move {
            loop {
                let event = match steps.pop_front()? {
                    StreamStep::Pause(wait) => {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    StreamStep::Delta(text) => Ok(ProviderEvent::Delta(text)),
                    StreamStep::ToolCallStart { index, id, name } => {
                        Ok(ProviderEvent::ToolCallStart { index, id, name })
                    }
                    StreamStep::ToolCallDelta { index, arguments } => {
                        Ok(ProviderEvent::ToolCallDelta { index, arguments })
                    }
                    StreamStep::ToolCallEnd { index } => Ok(ProviderEvent::ToolCallEnd { index }),
                    StreamStep::Finish {
                        usage,
                        finish_reason,
                    } => {
                        steps.clear();
                        // A scripted stream names no served model (as Bedrock's).
                        Ok(ProviderEvent::Finished {
                            finish_reason,
                            usage,
                            model: None,
                        })
                    }
                    StreamStep::Fail(error) => {
                        steps.clear();
                        Err(error.to_error())
                    }
                };
                return Some((event, steps));
            }
        });
        Ok(Box::pin(stream))
    }
}
