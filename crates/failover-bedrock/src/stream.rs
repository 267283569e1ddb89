//! ConverseStream events → [`ProviderEvent`]s.
//!
//! [`StreamMapper`] is the pure part: it turns decoded events into deltas and one terminal
//! event. Bedrock sends `messageStop` (with the stop reason) and then `metadata` (with the
//! usage), so the mapper holds the finish reason until the metadata arrives, and the
//! stream emits [`ProviderEvent::Finished`] carrying both. A stream that ends (or breaks)
//! after `messageStop` but before `metadata` still finishes, without usage; a stream that
//! ends before `messageStop` is [`ErrorKind::StreamCut`]: never a silent clean end.
//!
//! The reader around the SDK's receiver (crate-private) enforces the first-token and
//! stall time-outs and classifies in-stream exceptions.

use std::time::Duration;

use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput as StreamResponse;
use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ConverseStreamOutput};
use failover_provider::{
    CallDeadlines, ErrorKind, FinishReason, ProviderError, ProviderEvent, ProviderStream,
    TokenUsage,
};
use tokio::time::Instant;

use crate::error::from_stream_error;
use crate::mapping::{JsonPlan, map_stop_reason, map_usage, stop_reason_error};

/// What one event meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Nothing for the caller (a start, a stop of a block, an event of no interest).
    Nothing,
    /// An event for the caller; after [`ProviderEvent::Finished`] the stream is over.
    Event(ProviderEvent),
}

/// Turns decoded ConverseStream events into provider events (pure; no I/O, no clock).
#[derive(Debug, Clone)]
pub struct StreamMapper {
    plan: JsonPlan,
    /// The JSON text so far, kept only in JSON mode to check it at the end.
    json: String,
    stopped: Option<FinishReason>,
    usage: Option<TokenUsage>,
    finished: bool,
    max_json_bytes: usize,
}

impl StreamMapper {
    /// A mapper for a request read according to `plan`, keeping at most the default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`](crate::DEFAULT_MAX_RESPONSE_BYTES) of JSON text.
    pub fn new(plan: JsonPlan) -> Self {
        Self::with_limit(plan, crate::DEFAULT_MAX_RESPONSE_BYTES)
    }

    /// A mapper keeping at most `max_json_bytes` of a JSON-mode answer (a longer one is a
    /// [`ErrorKind::MalformedResponse`]; text-mode deltas are passed on, not kept).
    pub fn with_limit(plan: JsonPlan, max_json_bytes: usize) -> Self {
        Self {
            plan,
            json: String::new(),
            stopped: None,
            usage: None,
            finished: false,
            max_json_bytes,
        }
    }

    /// Whether `messageStop` has been seen: the content is complete.
    pub fn stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Whether the terminal event was emitted.
    pub fn finished(&self) -> bool {
        self.finished
    }

    fn delta(&mut self, text: String) -> Result<Mapped, ProviderError> {
        if self.plan.contract().is_some() {
            if text.len() > self.max_json_bytes.saturating_sub(self.json.len()) {
                return Err(ProviderError::new(
                    ErrorKind::MalformedResponse,
                    format!(
                        "the JSON answer is longer than {} bytes",
                        self.max_json_bytes
                    ),
                ));
            }
            self.json.push_str(&text);
        }
        Ok(Mapped::Event(ProviderEvent::Delta(text)))
    }

    fn finish(&mut self) -> Mapped {
        self.finished = true;
        // ConverseStream's events do not name a model: the routed model served it.
        Mapped::Event(ProviderEvent::Finished {
            finish_reason: self.stopped.clone().unwrap_or(FinishReason::Stop),
            usage: self.usage,
            model: None,
        })
    }

    /// Maps one event.
    pub fn on_event(&mut self, event: ConverseStreamOutput) -> Result<Mapped, ProviderError> {
        let forced_tool = matches!(self.plan, JsonPlan::ForcedTool { .. });
        match event {
            ConverseStreamOutput::ContentBlockDelta(event) => match event.delta {
                // In forced-tool JSON mode only the tool's input is the answer.
                Some(ContentBlockDelta::Text(text)) if !forced_tool => self.delta(text),
                Some(ContentBlockDelta::ToolUse(tool)) if forced_tool => self.delta(tool.input),
                _ => Ok(Mapped::Nothing),
            },
            ConverseStreamOutput::MessageStop(event) => {
                if let Some(error) = stop_reason_error(&event.stop_reason, &self.plan) {
                    return Err(error);
                }
                if let Some(contract) = self.plan.contract() {
                    contract.check_text(&self.json)?;
                }
                self.stopped = Some(map_stop_reason(&event.stop_reason, &self.plan));
                Ok(Mapped::Nothing)
            }
            ConverseStreamOutput::Metadata(event) => {
                self.usage = event.usage.as_ref().map(map_usage);
                if self.stopped() {
                    Ok(self.finish())
                } else {
                    Ok(Mapped::Nothing)
                }
            }
            _ => Ok(Mapped::Nothing),
        }
    }

    /// The body ended cleanly: [`ProviderEvent::Finished`] if `messageStop` was seen (usage
    /// as far as reported), else a [`ErrorKind::StreamCut`].
    pub fn on_end(&mut self) -> Result<Mapped, ProviderError> {
        if self.finished {
            return Ok(Mapped::Nothing);
        }
        if self.stopped() {
            return Ok(self.finish());
        }
        Err(ProviderError::new(
            ErrorKind::StreamCut,
            "the Bedrock event stream ended before messageStop",
        ))
    }

    /// The body failed with `error`: after `messageStop` the answer is complete and the
    /// stream still finishes (without usage if none came); before it, the error stands.
    pub fn on_error(&mut self, error: ProviderError) -> Result<Mapped, ProviderError> {
        if self.stopped() && !self.finished {
            tracing::warn!(%error, "Bedrock stream failed after messageStop; finishing without metadata");
            return Ok(self.finish());
        }
        Err(error)
    }
}

/// Time limits of a stream read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// When the first content delta must have arrived.
    pub(crate) first_token_by: Instant,
    /// The first-token limit, for messages.
    pub(crate) first_token: Duration,
    /// The longest gap between two events.
    pub(crate) stall: Duration,
    /// The call's deadline ([`CallDeadlines::call_deadline`]).
    pub(crate) deadline: Option<Instant>,
}

struct Reader {
    response: StreamResponse,
    mapper: StreamMapper,
    limits: StreamLimits,
    saw_token: bool,
    done: bool,
    /// The call's deadlines, to enforce them and to say which one ran out.
    deadlines: CallDeadlines,
}

/// Which limit bounds the wait for the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    FirstToken,
    Stall,
    Deadline,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<ProviderEvent, ProviderError>> {
        while !self.done {
            let stall_by = Instant::now() + self.limits.stall;
            let mut limit = if !self.saw_token && self.limits.first_token_by <= stall_by {
                (self.limits.first_token_by, Limit::FirstToken)
            } else {
                (stall_by, Limit::Stall)
            };
            if let Some(deadline) = self.limits.deadline
                && deadline <= limit.0
            {
                limit = (deadline, Limit::Deadline);
            }
            let received = tokio::time::timeout_at(limit.0, self.response.stream.recv()).await;
            let mapped = match received {
                Err(_elapsed) => {
                    let error = if limit.1 == Limit::Deadline {
                        // The request's own deadline, or this provider's share of it.
                        self.deadlines.out_of_time()
                    } else if limit.1 == Limit::FirstToken {
                        ProviderError::new(
                            ErrorKind::Timeout,
                            format!(
                                "no token from Bedrock within the first-token time-out ({:?})",
                                self.limits.first_token
                            ),
                        )
                    } else {
                        ProviderError::new(
                            ErrorKind::Timeout,
                            format!(
                                "the Bedrock stream stalled: no event for {:?}",
                                self.limits.stall
                            ),
                        )
                    };
                    self.mapper.on_error(error)
                }
                Ok(Ok(Some(event))) => self.mapper.on_event(event),
                Ok(Ok(None)) => self.mapper.on_end(),
                Ok(Err(error)) => self.mapper.on_error(from_stream_error(error)),
            };
            match mapped {
                Ok(Mapped::Nothing) => {
                    if self.mapper.finished() {
                        self.done = true;
                    }
                }
                Ok(Mapped::Event(event)) => {
                    match &event {
                        ProviderEvent::Delta(text) => self.saw_token |= !text.is_empty(),
                        ProviderEvent::Finished { .. } => self.done = true,
                        _ => self.saw_token = true,
                    }
                    return Some(Ok(event));
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

/// The provider stream over an opened ConverseStream response.
pub(crate) fn event_stream(
    response: StreamResponse,
    mapper: StreamMapper,
    limits: StreamLimits,
    deadlines: CallDeadlines,
) -> ProviderStream {
    let reader = Reader {
        response,
        mapper,
        limits,
        saw_token: false,
        done: false,
        deadlines,
    };
    Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        reader.next().await.map(|item| (item, reader))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDeltaEvent, ConverseStreamMetadataEvent, MessageStopEvent, StopReason,
        ToolUseBlockDelta,
    };

    use crate::mapping::JSON_TOOL_NAME;
    use failover_provider::JsonContract;

    fn text(text: &str) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(0)
                .delta(ContentBlockDelta::Text(text.into()))
                .build()
                .unwrap(),
        )
    }

    fn tool_input(input: &str) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(0)
                .delta(ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder().input(input).build().unwrap(),
                ))
                .build()
                .unwrap(),
        )
    }

    fn stop(reason: StopReason) -> ConverseStreamOutput {
        ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(reason)
                .build()
                .unwrap(),
        )
    }

    fn metadata(input: i32, output: i32) -> ConverseStreamOutput {
        ConverseStreamOutput::Metadata(
            ConverseStreamMetadataEvent::builder()
                .usage(
                    aws_sdk_bedrockruntime::types::TokenUsage::builder()
                        .input_tokens(input)
                        .output_tokens(output)
                        .total_tokens(input + output)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
    }

    fn run(
        mapper: &mut StreamMapper,
        events: Vec<ConverseStreamOutput>,
    ) -> Vec<Result<Mapped, ProviderError>> {
        events.into_iter().map(|e| mapper.on_event(e)).collect()
    }

    #[test]
    fn finished_waits_for_metadata_and_carries_the_usage() {
        let mut mapper = StreamMapper::new(JsonPlan::Text);
        let out = run(
            &mut mapper,
            vec![
                text("Hel"),
                text("lo"),
                stop(StopReason::EndTurn),
                metadata(9, 2),
            ],
        );
        let out: Vec<Mapped> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            out,
            vec![
                Mapped::Event(ProviderEvent::Delta("Hel".into())),
                Mapped::Event(ProviderEvent::Delta("lo".into())),
                Mapped::Nothing,
                Mapped::Event(ProviderEvent::Finished {
                    finish_reason: FinishReason::Stop,
                    usage: Some(TokenUsage::new(9, 2)),
                    model: None,
                }),
            ]
        );
        assert!(mapper.finished());
    }

    #[test]
    fn an_end_after_message_stop_finishes_without_usage_and_before_it_is_a_cut() {
        let mut stopped = StreamMapper::new(JsonPlan::Text);
        run(&mut stopped, vec![text("a"), stop(StopReason::MaxTokens)]);
        assert_eq!(
            stopped.on_end().unwrap(),
            Mapped::Event(ProviderEvent::Finished {
                finish_reason: FinishReason::Length,
                usage: None,
                model: None
            })
        );
        let mut cut = StreamMapper::new(JsonPlan::Text);
        run(&mut cut, vec![text("a")]);
        assert_eq!(cut.on_end().unwrap_err().kind(), ErrorKind::StreamCut);
        let error = ProviderError::new(ErrorKind::Timeout, "stall");
        assert_eq!(cut.on_error(error).unwrap_err().kind(), ErrorKind::Timeout);
    }

    #[test]
    fn forced_tool_streams_the_tool_input_and_checks_it_at_message_stop() {
        let plan = JsonPlan::ForcedTool {
            tool_name: JSON_TOOL_NAME.into(),
            contract: JsonContract::object(),
        };
        let mut good = StreamMapper::new(plan.clone());
        let out = run(
            &mut good,
            vec![
                text("ignored preamble"),
                tool_input("{\"answer\""),
                tool_input(": 4}"),
                stop(StopReason::ToolUse),
                metadata(1, 1),
            ],
        );
        assert_eq!(out[0].as_ref().unwrap(), &Mapped::Nothing);
        assert_eq!(
            out[1].as_ref().unwrap(),
            &Mapped::Event(ProviderEvent::Delta("{\"answer\"".into()))
        );
        assert!(matches!(
            out[4].as_ref().unwrap(),
            Mapped::Event(ProviderEvent::Finished {
                finish_reason: FinishReason::Stop,
                ..
            })
        ));
        let mut bad = StreamMapper::new(plan);
        let out = run(
            &mut bad,
            vec![tool_input("{\"answer\": "), stop(StopReason::ToolUse)],
        );
        assert_eq!(
            out[1].as_ref().unwrap_err().kind(),
            ErrorKind::MalformedResponse
        );
    }
}
