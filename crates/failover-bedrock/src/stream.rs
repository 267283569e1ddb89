//! ConverseStream events → [`ProviderEvent`]s.
//!
//! [`StreamMapper`] is the pure part: it turns decoded events into deltas, tool-call
//! items (start, argument fragments, end; see [`StreamMapper`]) and one terminal
//! event. Bedrock sends `messageStop` (with the stop reason) and then `metadata` (with the
//! usage), so the mapper holds the finish reason until the metadata arrives, and the
//! stream emits [`ProviderEvent::Finished`] carrying both. A stream that ends (or breaks)
//! after `messageStop` but before `metadata` still finishes, without usage; a stream that
//! ends before `messageStop` is [`ErrorKind::StreamCut`]: never a silent clean end.
//!
//! The reader around the SDK's receiver (crate-private) enforces the first-token and
//! stall time-outs and classifies in-stream exceptions.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput as StreamResponse;
use aws_sdk_bedrockruntime::types::{ContentBlockDelta, ContentBlockStart, ConverseStreamOutput};
use failover_provider::{
    CallDeadlines, ErrorKind, FinishReason, ProviderError, ProviderEvent, ProviderStream,
    TokenUsage,
};
use tokio::time::Instant;

use crate::error::from_stream_error;
use crate::mapping::{JsonPlan, map_stop_reason, map_usage, stop_error};

/// What one event meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Nothing for the caller (a start, a stop of a block, an event of no interest).
    Nothing,
    /// An event for the caller; after [`ProviderEvent::Finished`] the stream is over.
    Event(ProviderEvent),
}

/// What a content block of the stream is, by its `contentBlockIndex`. Text blocks get no
/// `contentBlockStart` from Bedrock, so a block not started as a tool is text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// The JSON tool's input: the content, in forced-tool JSON mode.
    JsonTool,
    /// A call of the caller's tools, numbered from 0 in start order.
    UserTool(u32),
}

/// Turns decoded ConverseStream events into provider events (pure; no I/O, no clock).
///
/// Tool use: a `contentBlockStart` of a caller's tool is a [`ProviderEvent::ToolCallStart`]
/// (calls numbered from 0 in start order), its `toolUse` input deltas are
/// [`ProviderEvent::ToolCallDelta`]s and its `contentBlockStop` the
/// [`ProviderEvent::ToolCallEnd`]. In forced-tool JSON mode the JSON tool's input deltas
/// are the content ([`ProviderEvent::Delta`]) and text blocks are not part of the answer.
/// An answer that calls the caller's tools finishes as [`FinishReason::ToolUse`] and is not
/// held to the JSON contract. A stream that ends or breaks inside a call ends with the
/// error: a call is never closed on the stream's behalf.
#[derive(Debug, Clone)]
pub struct StreamMapper {
    plan: JsonPlan,
    /// The JSON text so far, kept only in JSON mode to check it at the end.
    json: String,
    /// Bytes of tool-call arguments passed on so far.
    argument_bytes: usize,
    /// The tool blocks seen, by content block index.
    blocks: HashMap<i32, Block>,
    /// The caller's call now open: its content block index and number.
    open_call: Option<(i32, u32)>,
    /// Calls of the caller's tools started so far.
    calls: u32,
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

    /// A mapper keeping at most `max_json_bytes` of a JSON-mode answer and passing on at
    /// most as many bytes of tool-call arguments (more of either is a
    /// [`ErrorKind::MalformedResponse`]: the caller assembles the arguments, so they are
    /// bounded like the JSON text; text-mode deltas are passed on, not kept).
    pub fn with_limit(plan: JsonPlan, max_json_bytes: usize) -> Self {
        Self {
            plan,
            json: String::new(),
            argument_bytes: 0,
            blocks: HashMap::new(),
            open_call: None,
            calls: 0,
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

    /// Whether a call of the caller's tools is open (started, not stopped).
    pub fn in_tool_call(&self) -> bool {
        self.open_call.is_some()
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

    fn malformed(message: String) -> ProviderError {
        ProviderError::new(ErrorKind::MalformedResponse, message)
    }

    fn tool_start(
        &mut self,
        block: i32,
        id: String,
        name: String,
    ) -> Result<Mapped, ProviderError> {
        // The answer is complete at messageStop: a call after it could never be answered.
        if self.stopped() {
            return Err(Self::malformed(format!(
                "Bedrock started a tool block ({block}) after messageStop"
            )));
        }
        if let Some((open, index)) = self.open_call {
            return Err(Self::malformed(format!(
                "Bedrock started a tool block ({block}) inside tool call {index} (block {open})"
            )));
        }
        if self.blocks.contains_key(&block) {
            return Err(Self::malformed(format!(
                "Bedrock started content block {block} twice"
            )));
        }
        if self.plan.json_tool() == Some(name.as_str()) {
            self.blocks.insert(block, Block::JsonTool);
            return Ok(Mapped::Nothing);
        }
        let index = self.calls;
        self.calls += 1;
        self.blocks.insert(block, Block::UserTool(index));
        self.open_call = Some((block, index));
        Ok(Mapped::Event(ProviderEvent::ToolCallStart {
            index,
            id,
            name,
        }))
    }

    fn tool_input(&mut self, block: i32, input: String) -> Result<Mapped, ProviderError> {
        match self.blocks.get(&block) {
            Some(Block::JsonTool) => self.delta(input),
            Some(Block::UserTool(index)) => {
                let index = *index;
                if self.open_call != Some((block, index)) {
                    return Err(Self::malformed(format!(
                        "Bedrock sent tool input for call {index} after its block stopped"
                    )));
                }
                if input.is_empty() {
                    return Ok(Mapped::Nothing);
                }
                if input.len() > self.max_json_bytes.saturating_sub(self.argument_bytes) {
                    return Err(Self::malformed(format!(
                        "the tool-call arguments are longer than {} bytes",
                        self.max_json_bytes
                    )));
                }
                self.argument_bytes += input.len();
                Ok(Mapped::Event(ProviderEvent::ToolCallDelta {
                    index,
                    arguments: input,
                }))
            }
            // No start for this block: in forced-tool mode the only tool is the JSON tool
            // (a start is how Bedrock names a tool, but the input is still the answer).
            None if self.plan.json_tool().is_some() => self.delta(input),
            None => Err(Self::malformed(format!(
                "Bedrock sent tool input for content block {block}, which started no tool call"
            ))),
        }
    }

    fn block_stop(&mut self, block: i32) -> Mapped {
        match self.open_call {
            Some((open, index)) if open == block => {
                self.open_call = None;
                Mapped::Event(ProviderEvent::ToolCallEnd { index })
            }
            _ => Mapped::Nothing,
        }
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
        let forced_tool = self.plan.json_tool().is_some();
        match event {
            ConverseStreamOutput::ContentBlockStart(event) => match event.start {
                Some(ContentBlockStart::ToolUse(start)) => {
                    self.tool_start(event.content_block_index, start.tool_use_id, start.name)
                }
                _ => Ok(Mapped::Nothing),
            },
            ConverseStreamOutput::ContentBlockDelta(event) => match event.delta {
                // In forced-tool JSON mode only the tool's input is the answer.
                Some(ContentBlockDelta::Text(text)) if !forced_tool => self.delta(text),
                Some(ContentBlockDelta::ToolUse(tool)) => {
                    self.tool_input(event.content_block_index, tool.input)
                }
                _ => Ok(Mapped::Nothing),
            },
            ConverseStreamOutput::ContentBlockStop(event) => {
                Ok(self.block_stop(event.content_block_index))
            }
            ConverseStreamOutput::MessageStop(event) => {
                if let Some((_, index)) = self.open_call {
                    return Err(Self::malformed(format!(
                        "Bedrock stopped the message inside tool call {index}"
                    )));
                }
                // An answer calling the caller's tools asks for their results first: the
                // JSON contract is for the answer after them.
                let json_checked = self.plan.contract().is_some() && self.calls == 0;
                if let Some(error) = stop_error(&event.stop_reason, json_checked) {
                    return Err(error);
                }
                if json_checked && let Some(contract) = self.plan.contract() {
                    contract.check_text(&self.json)?;
                }
                self.stopped = Some(if self.calls > 0 {
                    FinishReason::ToolUse
                } else {
                    map_stop_reason(&event.stop_reason, &self.plan)
                });
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
    /// as far as reported), else a [`ErrorKind::StreamCut`] (also inside a tool call: the
    /// call is never ended on the stream's behalf).
    pub fn on_end(&mut self) -> Result<Mapped, ProviderError> {
        if self.finished {
            return Ok(Mapped::Nothing);
        }
        if self.stopped() {
            return Ok(self.finish());
        }
        let message = match self.open_call {
            Some((_, index)) => {
                format!("the Bedrock event stream ended inside tool call {index}")
            }
            None => "the Bedrock event stream ended before messageStop".to_owned(),
        };
        Err(ProviderError::new(ErrorKind::StreamCut, message))
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
        ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent,
        ConverseStreamMetadataEvent, MessageStopEvent, StopReason, ToolUseBlockDelta,
        ToolUseBlockStart,
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
        input_at(0, input)
    }

    fn input_at(block: i32, input: &str) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(block)
                .delta(ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder().input(input).build().unwrap(),
                ))
                .build()
                .unwrap(),
        )
    }

    fn start(block: i32, id: &str, name: &str) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockStart(
            ContentBlockStartEvent::builder()
                .content_block_index(block)
                .start(ContentBlockStart::ToolUse(
                    ToolUseBlockStart::builder()
                        .tool_use_id(id)
                        .name(name)
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        )
    }

    fn block_stop(block: i32) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockStop(
            ContentBlockStopEvent::builder()
                .content_block_index(block)
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

    fn events(out: Vec<Result<Mapped, ProviderError>>) -> Vec<ProviderEvent> {
        out.into_iter()
            .filter_map(|item| match item.unwrap() {
                Mapped::Event(event) => Some(event),
                Mapped::Nothing => None,
            })
            .collect()
    }

    #[test]
    fn user_tool_calls_stream_as_numbered_starts_fragments_and_ends() {
        let json = JsonPlan::ForcedTool {
            tool_name: JSON_TOOL_NAME.into(),
            contract: JsonContract::object(),
        };
        for plan in [JsonPlan::Text, json] {
            let mut mapper = StreamMapper::new(plan.clone());
            let out = run(
                &mut mapper,
                vec![
                    start(1, "tooluse_a", "get_weather"),
                    input_at(1, ""),
                    input_at(1, "{\"city\":"),
                    input_at(1, "\"Paris\"}"),
                    block_stop(1),
                    start(2, "tooluse_b", "get_time"),
                    input_at(2, "{}"),
                    block_stop(2),
                    stop(StopReason::ToolUse),
                    metadata(5, 6),
                ],
            );
            assert_eq!(
                events(out),
                vec![
                    ProviderEvent::ToolCallStart {
                        index: 0,
                        id: "tooluse_a".into(),
                        name: "get_weather".into()
                    },
                    ProviderEvent::ToolCallDelta {
                        index: 0,
                        arguments: "{\"city\":".into()
                    },
                    ProviderEvent::ToolCallDelta {
                        index: 0,
                        arguments: "\"Paris\"}".into()
                    },
                    ProviderEvent::ToolCallEnd { index: 0 },
                    ProviderEvent::ToolCallStart {
                        index: 1,
                        id: "tooluse_b".into(),
                        name: "get_time".into()
                    },
                    ProviderEvent::ToolCallDelta {
                        index: 1,
                        arguments: "{}".into()
                    },
                    ProviderEvent::ToolCallEnd { index: 1 },
                    ProviderEvent::Finished {
                        finish_reason: FinishReason::ToolUse,
                        usage: Some(TokenUsage::new(5, 6)),
                        model: None,
                    },
                ],
                "{plan:?}"
            );
        }
    }

    #[test]
    fn the_json_tool_is_content_and_a_user_tool_beside_it_is_a_call() {
        let plan = JsonPlan::ForcedTool {
            tool_name: JSON_TOOL_NAME.into(),
            contract: JsonContract::object(),
        };
        let mut json = StreamMapper::new(plan.clone());
        let out = run(
            &mut json,
            vec![
                start(0, "tooluse_j", JSON_TOOL_NAME),
                input_at(0, "{\"a\":"),
                input_at(0, "1}"),
                block_stop(0),
                stop(StopReason::ToolUse),
                metadata(1, 1),
            ],
        );
        assert_eq!(
            events(out),
            vec![
                ProviderEvent::Delta("{\"a\":".into()),
                ProviderEvent::Delta("1}".into()),
                ProviderEvent::Finished {
                    finish_reason: FinishReason::Stop,
                    usage: Some(TokenUsage::new(1, 1)),
                    model: None
                },
            ]
        );
        // A user call: the (empty) JSON text is not checked.
        let mut call = StreamMapper::new(plan);
        let out = run(
            &mut call,
            vec![
                start(0, "t", "lookup"),
                input_at(0, "{}"),
                block_stop(0),
                stop(StopReason::ToolUse),
            ],
        );
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert!(matches!(
            call.on_end().unwrap(),
            Mapped::Event(ProviderEvent::Finished {
                finish_reason: FinishReason::ToolUse,
                ..
            })
        ));
    }

    #[test]
    fn a_stream_cut_inside_a_call_is_an_error_never_an_end() {
        let mut cut = StreamMapper::new(JsonPlan::Text);
        run(&mut cut, vec![start(0, "t", "f"), input_at(0, "{\"x\"")]);
        assert!(cut.in_tool_call());
        let error = cut.on_end().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::StreamCut);
        assert!(error.message().contains("tool call 0"), "{error}");
        let broken = ProviderError::new(ErrorKind::Timeout, "stall");
        assert_eq!(cut.on_error(broken).unwrap_err().kind(), ErrorKind::Timeout);

        let mut stopped = StreamMapper::new(JsonPlan::Text);
        let out = run(
            &mut stopped,
            vec![start(0, "t", "f"), stop(StopReason::ToolUse)],
        );
        assert_eq!(
            out[1].as_ref().unwrap_err().kind(),
            ErrorKind::MalformedResponse
        );
    }

    #[test]
    fn disordered_tool_blocks_are_malformed() {
        let cases = [
            vec![start(0, "a", "f"), start(1, "b", "g")],
            vec![start(0, "a", "f"), block_stop(0), start(0, "b", "g")],
            vec![start(0, "a", "f"), block_stop(0), input_at(0, "{}")],
            vec![input_at(3, "{}")],
        ];
        for events in cases {
            let mut mapper = StreamMapper::new(JsonPlan::Text);
            let out = run(&mut mapper, events);
            let last = out.last().unwrap();
            assert_eq!(
                last.as_ref().unwrap_err().kind(),
                ErrorKind::MalformedResponse,
                "{out:?}"
            );
        }
    }

    #[test]
    fn argument_bytes_count_toward_the_limit() {
        let mut mapper = StreamMapper::with_limit(JsonPlan::Text, 8);
        let out = run(
            &mut mapper,
            vec![
                start(0, "a", "f"),
                input_at(0, "{\"k\":"),
                input_at(0, "12345}"),
            ],
        );
        assert!(out[1].is_ok());
        let error = out[2].as_ref().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MalformedResponse);
        assert!(error.message().contains("8 bytes"), "{error}");
    }
}
