//! Reading a chat completion stream: the body's bytes decoded as server-sent events by
//! [`SseDecoder`], each event read by [`SseMapper`] into [`ProviderEvent`]s, under the
//! first-token, stall and deadline limits.
//!
//! A clean end needs `data: [DONE]`. A body that ends (or breaks) without it is
//! [`ErrorKind::StreamCut`]; an `error` frame is classified like an HTTP error; the
//! [`ProviderEvent::Finished`] event carries the usage of the final usage chunk
//! (`stream_options.include_usage`, always requested).
//!
//! The decoder is this crate's own, not a library's, so that no line and no event can grow
//! without bound: one longer than `max_stream_event_bytes` is a
//! [`ErrorKind::MalformedResponse`]. [`SseReader`] is the pure part (bytes in, events out,
//! no I/O, no clock) that the provider's stream and the property tests both run.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use failover_provider::{
    CallDeadlines, ErrorKind, FinishReason, ProviderError, ProviderEvent, ProviderStream,
    TokenUsage, ToolCallAssembler,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::mapping::{
    ChunkEvent, JsonContract, ToolCallFragment, check_tool_arguments, finish_reason_with_calls,
    map_finish_reason, parse_chunk,
};

/// One server-sent event: its name (`message` when the stream gave none) and its data
/// (the `data:` lines joined by `\n`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` by default.
    pub event: String,
    /// The `data:` lines.
    pub data: String,
}

fn malformed(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::MalformedResponse, message)
}

/// An incremental decoder of `text/event-stream` bytes (WHATWG HTML, "server-sent
/// events"), bounded: a line or an event's data above `max_event_bytes` is an error.
///
/// Lines end with `\n`, `\r` or `\r\n` (a `\r\n` split across two chunks included); `:`
/// starts a comment; `id` and `retry` are ignored (a chat stream is never resumed).
#[derive(Debug, Clone)]
pub struct SseDecoder {
    line: Vec<u8>,
    after_cr: bool,
    first_line: bool,
    event: String,
    data: String,
    has_data: bool,
    max_event_bytes: usize,
}

impl SseDecoder {
    /// A decoder refusing lines and events above `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Decodes `bytes`, appending every event they complete to `out`. After an error the
    /// decoder must not be fed again.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut VecDeque<SseEvent>,
    ) -> Result<(), ProviderError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(tail) = rest.strip_prefix(b"\n") {
                    rest = tail;
                    continue;
                }
            }
            // memchr scans a word at a time: the line scan is a large share of a stream's
            // cost when fragments are small.
            match memchr::memchr2(b'\n', b'\r', rest) {
                Some(end) => {
                    let (content, tail) = rest.split_at(end);
                    self.after_cr = tail.first() == Some(&b'\r');
                    rest = tail.get(1..).unwrap_or_default();
                    if self.line.is_empty() {
                        // The whole line is in this chunk (the usual case): read it in place.
                        self.check_line(content.len())?;
                        self.end_line(content, out)?;
                    } else {
                        self.extend_line(content)?;
                        // The buffer goes back afterwards, emptied, so its capacity is kept.
                        let line = std::mem::take(&mut self.line);
                        let ended = self.end_line(&line, out);
                        self.line = line;
                        self.line.clear();
                        ended?;
                    }
                }
                None => {
                    self.extend_line(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// The body ended. As the SSE standard says, an event without its closing blank line
    /// is not dispatched: a body cut in the middle of an event is a cut stream, not an
    /// event that happens to be short.
    pub fn finish(&mut self, _out: &mut VecDeque<SseEvent>) -> Result<(), ProviderError> {
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        Ok(())
    }

    /// Refuses a line that would grow past `max_event_bytes` by `more` bytes.
    fn check_line(&self, more: usize) -> Result<(), ProviderError> {
        if more > self.max_event_bytes.saturating_sub(self.line.len()) {
            return Err(malformed(format!(
                "a stream line is longer than {} bytes",
                self.max_event_bytes
            )));
        }
        Ok(())
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        self.check_line(bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn dispatch(&mut self, out: &mut VecDeque<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.has_data) {
            out.push_back(SseEvent {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
            });
        }
    }

    fn end_line(
        &mut self,
        bytes: &[u8],
        out: &mut VecDeque<SseEvent>,
    ) -> Result<(), ProviderError> {
        let line =
            std::str::from_utf8(bytes).map_err(|_| malformed("the stream is not valid UTF-8"))?;
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                let added = value.len().saturating_add(usize::from(self.has_data));
                if added > self.max_event_bytes.saturating_sub(self.data.len()) {
                    return Err(malformed(format!(
                        "a stream event is longer than {} bytes",
                        self.max_event_bytes
                    )));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.event),
            _ => {}
        }
        Ok(())
    }
}

/// The tool call being streamed: its number in this answer and its wire `index`.
#[derive(Debug, Clone, Copy)]
struct OpenCall {
    index: u32,
    wire_index: Option<u32>,
}

/// Reads decoded events into provider events (pure; no I/O, no clock).
///
/// # Tool calls
///
/// OpenAI streams a call as fragments of `choices[0].delta.tool_calls` keyed by their
/// `index`: the first fragment of an index carries the id and the name, the next ones
/// pieces of the arguments. The mapper turns a new index into
/// [`ProviderEvent::ToolCallStart`] (ending the open call with
/// [`ProviderEvent::ToolCallEnd`] first), each argument piece into
/// [`ProviderEvent::ToolCallDelta`], and ends the open call on the finish reason or at
/// `[DONE]`, before [`ProviderEvent::Finished`]. Calls are numbered from 0 in the order
/// they start, whatever their wire index.
///
/// The neutral stream has one call open at a time. OpenAI sends parallel calls one after
/// another (index 0, then 1, …), so that holds; a fragment for a call after a later one
/// started is refused as [`ErrorKind::MalformedResponse`] rather than reordered. So is a
/// new call without an id or a name, a call whose arguments are not a JSON object when it
/// ends, and arguments that, with the kept JSON-mode text, pass `max_text_bytes`. A stream
/// cut inside a call ends with the cut's error: no end and no `Finished` are made up.
#[derive(Debug, Clone)]
pub struct SseMapper {
    got_token: bool,
    finish_reason: Option<FinishReason>,
    usage: Option<TokenUsage>,
    /// The served model, as the first chunk that named it said.
    model: Option<String>,
    contract: Option<JsonContract>,
    text: String,
    max_text_bytes: usize,
    /// The calls so far, assembled (their arguments are checked when they end).
    calls: ToolCallAssembler,
    open: Option<OpenCall>,
    /// The wire indexes of the calls started, to refuse a fragment for an earlier call.
    wire_indexes: Vec<u32>,
    /// Bytes of arguments so far; they count toward `max_text_bytes`.
    argument_bytes: usize,
}

impl SseMapper {
    /// A mapper checking the whole text against `contract` at the end (JSON modes, unless
    /// the answer is tool calls), whose kept text and tool-call arguments together may not
    /// exceed `max_text_bytes`.
    pub fn new(contract: Option<JsonContract>, max_text_bytes: usize) -> Self {
        Self {
            got_token: false,
            finish_reason: None,
            usage: None,
            model: None,
            contract,
            text: String::new(),
            max_text_bytes,
            calls: ToolCallAssembler::new(),
            open: None,
            wire_indexes: Vec::new(),
            argument_bytes: 0,
        }
    }

    /// Whether a token (text, a tool call, or a finish reason for an empty answer) has
    /// arrived.
    pub fn got_token(&self) -> bool {
        self.got_token
    }

    fn kept_bytes(&self) -> usize {
        self.text.len().saturating_add(self.argument_bytes)
    }

    fn finish(&mut self, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
        self.end_open_call(out)?;
        let has_calls = !self.calls.calls().is_empty();
        let finish_reason = finish_reason_with_calls(
            self.finish_reason
                .take()
                .unwrap_or_else(|| map_finish_reason(None)),
            has_calls,
        )?;
        // Text beside tool calls is a preamble, not the JSON answer.
        if let Some(contract) = &self.contract
            && !has_calls
        {
            contract.check_text(&self.text)?;
        }
        out.push_back(ProviderEvent::Finished {
            finish_reason,
            usage: self.usage.take(),
            model: self.model.take(),
        });
        Ok(())
    }

    /// Maps one event, appending what it yields to `out`: deltas and tool-call items, and
    /// the terminal [`ProviderEvent::Finished`] on `[DONE]`. An error ends the stream; the
    /// items appended before it still stand (they came first).
    pub fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        if event.data.trim().is_empty() {
            return Ok(());
        }
        match parse_chunk(&event.event, &event.data)? {
            ChunkEvent::Done => self.finish(out),
            ChunkEvent::Chunk {
                text,
                tool_calls,
                finish_reason,
                usage,
                model,
            } => {
                if self.model.is_none() {
                    self.model = model.map(Cow::into_owned);
                }
                if let Some(usage) = usage {
                    self.usage = Some(usage);
                }
                if let Some(text) = text {
                    self.on_text(text.into_owned(), out)?;
                }
                for fragment in tool_calls {
                    self.on_fragment(fragment, out)?;
                }
                if let Some(reason) = finish_reason {
                    self.finish_reason = Some(reason);
                    self.got_token = true;
                    // The answer is complete: no fragment may follow.
                    self.end_open_call(out)?;
                }
                Ok(())
            }
        }
    }

    fn on_text(
        &mut self,
        text: String,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        self.got_token = true;
        if self.contract.is_some() {
            if text.len() > self.max_text_bytes.saturating_sub(self.kept_bytes()) {
                return Err(malformed(format!(
                    "the JSON answer is longer than {} bytes",
                    self.max_text_bytes
                )));
            }
            self.text.push_str(&text);
        }
        out.push_back(ProviderEvent::Delta(text));
        Ok(())
    }

    fn on_fragment(
        &mut self,
        fragment: ToolCallFragment<'_>,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        self.got_token = true;
        let open = match (self.open, fragment.index) {
            (Some(open), Some(wire)) if open.wire_index == Some(wire) => Some(open),
            // Without a wire index, only an id not the open call's starts a new call.
            (Some(open), None)
                if fragment
                    .id
                    .as_deref()
                    .is_none_or(|id| id.is_empty() || Some(id) == self.open_id()) =>
            {
                Some(open)
            }
            _ => None,
        };
        let index = match open {
            Some(open) => {
                self.check_repeated(open.index, &fragment)?;
                open.index
            }
            None => self.start_call(&fragment, out)?,
        };
        let Some(arguments) = fragment.arguments.filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        if arguments.len() > self.max_text_bytes.saturating_sub(self.kept_bytes()) {
            return Err(malformed(format!(
                "the tool-call arguments are longer than {} bytes",
                self.max_text_bytes
            )));
        }
        self.argument_bytes += arguments.len();
        self.calls.delta(index, &arguments).map_err(order_error)?;
        out.push_back(ProviderEvent::ToolCallDelta {
            index,
            arguments: arguments.into_owned(),
        });
        Ok(())
    }

    fn open_id(&self) -> Option<&str> {
        let open = self.open?;
        self.calls
            .calls()
            .get(open.index as usize)
            .map(|call| call.id.as_str())
    }

    /// A later fragment may repeat the id and the name (some servers do), not change them.
    fn check_repeated(
        &self,
        index: u32,
        fragment: &ToolCallFragment<'_>,
    ) -> Result<(), ProviderError> {
        let Some(call) = self.calls.calls().get(index as usize) else {
            return Err(order_error(format!("call {index} is unknown")));
        };
        let changed = |new: &Option<Cow<'_, str>>, old: &str| {
            new.as_deref()
                .is_some_and(|new| !new.is_empty() && new != old)
        };
        if changed(&fragment.id, &call.id) || changed(&fragment.name, &call.name) {
            return Err(malformed(format!(
                "a fragment of tool call {index} changes its id or name"
            )));
        }
        Ok(())
    }

    fn start_call(
        &mut self,
        fragment: &ToolCallFragment<'_>,
        out: &mut VecDeque<ProviderEvent>,
    ) -> Result<u32, ProviderError> {
        if let Some(wire) = fragment.index
            && self.wire_indexes.contains(&wire)
        {
            return Err(malformed(format!(
                "a fragment of tool call index {wire} arrived after a later call started \
                 (calls are read one at a time)"
            )));
        }
        self.end_open_call(out)?;
        let wire = fragment
            .index
            .map_or_else(|| "without an index".to_owned(), |w| format!("index {w}"));
        let id = fragment
            .id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| malformed(format!("the tool call {wire} starts without an id")))?
            .to_owned();
        let name = fragment
            .name
            .as_deref()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| malformed(format!("the tool call {wire} starts without a name")))?
            .to_owned();
        let index = u32::try_from(self.calls.calls().len())
            .map_err(|_| malformed("the stream has too many tool calls"))?;
        self.calls.start(index, &id, &name).map_err(order_error)?;
        if let Some(wire) = fragment.index {
            self.wire_indexes.push(wire);
        }
        self.open = Some(OpenCall {
            index,
            wire_index: fragment.index,
        });
        out.push_back(ProviderEvent::ToolCallStart { index, id, name });
        Ok(index)
    }

    /// Ends the open call, if any, once its arguments are checked.
    fn end_open_call(&mut self, out: &mut VecDeque<ProviderEvent>) -> Result<(), ProviderError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let Some(call) = self.calls.calls().get(open.index as usize) else {
            return Err(order_error(format!("call {} is unknown", open.index)));
        };
        check_tool_arguments(open.index as usize, &call.name, &call.arguments)?;
        self.calls.end(open.index).map_err(order_error)?;
        out.push_back(ProviderEvent::ToolCallEnd { index: open.index });
        Ok(())
    }
}

/// The assembler refusing an order the mapper made: a bug here, reported as a malformed
/// stream rather than a panic.
fn order_error(detail: impl fmt::Display) -> ProviderError {
    malformed(format!("tool-call items out of order ({detail})"))
}

/// Bytes in, provider events out: the decoder and the mapper together, exactly as the
/// provider's stream runs them (pure; the stream adds the clock and the socket).
#[derive(Debug)]
pub struct SseReader {
    decoder: SseDecoder,
    mapper: SseMapper,
    pending: VecDeque<SseEvent>,
    /// Provider events mapped, not yet taken.
    ready: VecDeque<ProviderEvent>,
    /// The mapper's error, returned once `ready` is drained.
    mapper_failed: Option<ProviderError>,
    failed: Option<ProviderError>,
    ended: bool,
    /// A terminal item was returned.
    over: bool,
    events_seen: u64,
}

impl SseReader {
    /// A reader with these limits (see [`SseDecoder::new`], [`SseMapper::new`]).
    pub fn new(
        contract: Option<JsonContract>,
        max_event_bytes: usize,
        max_text_bytes: usize,
    ) -> Self {
        Self {
            decoder: SseDecoder::new(max_event_bytes),
            mapper: SseMapper::new(contract, max_text_bytes),
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            mapper_failed: None,
            failed: None,
            ended: false,
            over: false,
            events_seen: 0,
        }
    }

    /// Feeds a chunk of the body. A decoding error is returned by
    /// [`next_ready`](Self::next_ready) after the events decoded before it.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || self.ended {
            return;
        }
        let before = self.pending.len();
        if let Err(error) = self.decoder.feed(bytes, &mut self.pending) {
            self.failed = Some(error);
        }
        self.count(before);
    }

    /// The body ended.
    pub fn end(&mut self) {
        if self.failed.is_none() && !self.ended {
            let before = self.pending.len();
            if let Err(error) = self.decoder.finish(&mut self.pending) {
                self.failed = Some(error);
            }
            self.count(before);
        }
        self.ended = true;
    }

    fn count(&mut self, before: usize) {
        let added = self.pending.len().saturating_sub(before);
        self.events_seen = self
            .events_seen
            .saturating_add(u64::try_from(added).unwrap_or(u64::MAX));
    }

    /// How many events have been decoded (a sign of life for the stall limit).
    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    /// Whether a token has arrived.
    pub fn got_token(&self) -> bool {
        self.mapper.got_token()
    }

    /// The next item the input so far yields: a delta or tool-call item, the terminal
    /// event, the error that ends the stream (a body that ended without `[DONE]` is a
    /// [`ErrorKind::StreamCut`]), or `None` when more input is needed. After a terminal
    /// item (`Finished` or an error) the stream is over and this is always `None`.
    pub fn next_ready(&mut self) -> Option<Result<ProviderEvent, ProviderError>> {
        if self.over {
            return None;
        }
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.over = matches!(event, ProviderEvent::Finished { .. });
                return Some(Ok(event));
            }
            if let Some(error) = self.mapper_failed.take() {
                self.over = true;
                return Some(Err(error));
            }
            let Some(event) = self.pending.pop_front() else {
                break;
            };
            if let Err(error) = self.mapper.on_event(&event, &mut self.ready) {
                self.mapper_failed = Some(error);
            }
        }
        if let Some(error) = self.failed.take() {
            self.over = true;
            return Some(Err(error));
        }
        self.ended.then(|| {
            self.over = true;
            Err(ProviderError::new(
                ErrorKind::StreamCut,
                "the stream ended without [DONE]",
            ))
        })
    }
}

/// Whether `item` ends a stream: an error, or [`ProviderEvent::Finished`].
pub fn is_terminal(item: &Result<ProviderEvent, ProviderError>) -> bool {
    matches!(item, Err(_) | Ok(ProviderEvent::Finished { .. }))
}

/// Reads a whole body given as `chunks`, as the provider's stream would, up to and
/// including its terminal item. For the property tests and benches; no clock.
#[doc(hidden)]
pub fn read_sse_body(
    chunks: &[&[u8]],
    contract: Option<JsonContract>,
    max_event_bytes: usize,
    max_text_bytes: usize,
) -> Vec<Result<ProviderEvent, ProviderError>> {
    let mut reader = SseReader::new(contract, max_event_bytes, max_text_bytes);
    let mut items = Vec::new();
    let mut chunks = chunks.iter();
    loop {
        match reader.next_ready() {
            Some(item) => {
                let terminal = is_terminal(&item);
                items.push(item);
                if terminal {
                    return items;
                }
            }
            None => match chunks.next() {
                Some(chunk) => reader.push(chunk),
                None => reader.end(),
            },
        }
    }
}

/// The limits of one stream, measured on tokio's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// When the first token must have arrived.
    pub(crate) first_token_at: Instant,
    /// The first-token limit, for messages.
    pub(crate) first_token: Duration,
    /// The longest gap between two events.
    pub(crate) stall: Duration,
    /// The call's deadline ([`CallDeadlines::call_deadline`]).
    pub(crate) deadline: Option<Instant>,
    /// The largest line or event.
    pub(crate) max_event_bytes: usize,
    /// The largest JSON-mode text kept.
    pub(crate) max_text_bytes: usize,
}

/// Which limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    FirstToken,
    Stall,
    Deadline,
}

struct SseState {
    response: reqwest::Response,
    reader: SseReader,
    limits: StreamLimits,
    /// When the last event arrived (the stall limit runs from it).
    last_event_at: Instant,
    done: bool,
    provider: String,
    scrub: Option<SecretString>,
    /// The call's deadlines, to enforce them and to say which one ran out.
    deadlines: CallDeadlines,
}

impl SseState {
    fn next_limit(&self) -> (Instant, Limit) {
        let stall_at = self.last_event_at + self.limits.stall;
        let mut limit = if !self.reader.got_token() && self.limits.first_token_at <= stall_at {
            (self.limits.first_token_at, Limit::FirstToken)
        } else {
            (stall_at, Limit::Stall)
        };
        if let Some(deadline) = self.limits.deadline
            && deadline <= limit.0
        {
            limit = (deadline, Limit::Deadline);
        }
        limit
    }

    fn timeout_error(&self, limit: Limit) -> ProviderError {
        match limit {
            Limit::FirstToken => ProviderError::new(
                ErrorKind::Timeout,
                format!(
                    "no first token within {} ms",
                    self.limits.first_token.as_millis()
                ),
            ),
            Limit::Stall => ProviderError::new(
                ErrorKind::Timeout,
                format!(
                    "the stream stalled: no event for {} ms",
                    self.limits.stall.as_millis()
                ),
            ),
            // The request's own deadline, or this provider's share of it.
            Limit::Deadline => self.deadlines.out_of_time(),
        }
    }

    async fn next_event(&mut self) -> Option<Result<ProviderEvent, ProviderError>> {
        if self.done {
            return None;
        }
        let result = self.read().await.map_err(|error| {
            crate::error::scrub(error, self.scrub.as_ref().map(|k| k.expose_secret()))
        });
        if is_terminal(&result) {
            self.done = true;
        }
        if let Err(error) = &result {
            tracing::debug!(provider = %self.provider, kind = %error.kind(), %error, "stream ended with an error");
        }
        Some(result)
    }

    async fn read(&mut self) -> Result<ProviderEvent, ProviderError> {
        loop {
            if let Some(item) = self.reader.next_ready() {
                return item;
            }
            let (at, limit) = self.next_limit();
            let chunk = match tokio::time::timeout_at(at, self.response.chunk()).await {
                Ok(chunk) => chunk,
                Err(_) => return Err(self.timeout_error(limit)),
            };
            match chunk {
                Ok(Some(bytes)) => {
                    let seen = self.reader.events_seen();
                    self.reader.push(&bytes);
                    if self.reader.events_seen() != seen {
                        self.last_event_at = Instant::now();
                    }
                }
                Ok(None) => self.reader.end(),
                Err(error) => {
                    let error = error.without_url();
                    let detail = std::error::Error::source(&error)
                        .map(|source| format!(": {source}"))
                        .unwrap_or_default();
                    return Err(ProviderError::new(
                        ErrorKind::StreamCut,
                        format!("the stream broke before [DONE]{detail}"),
                    )
                    .with_source(error));
                }
            }
        }
    }
}

/// Turns a 200 streaming response into a [`ProviderStream`].
pub(crate) fn provider_stream(
    response: reqwest::Response,
    limits: StreamLimits,
    contract: Option<JsonContract>,
    provider: String,
    scrub: Option<SecretString>,
    deadlines: CallDeadlines,
) -> ProviderStream {
    let state = SseState {
        response,
        reader: SseReader::new(contract, limits.max_event_bytes, limits.max_text_bytes),
        limits,
        last_event_at: Instant::now(),
        done: false,
        provider,
        scrub,
        deadlines,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        state.next_event().await.map(|item| (item, state))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of a body, and the kind of the error that stopped it.
    fn events(chunks: &[&[u8]], max: usize) -> (Vec<SseEvent>, Option<ErrorKind>) {
        let mut decoder = SseDecoder::new(max);
        let mut out = VecDeque::new();
        for chunk in chunks {
            if let Err(error) = decoder.feed(chunk, &mut out) {
                return (out.into(), Some(error.kind()));
            }
        }
        let end = decoder.finish(&mut out).err().map(|e| e.kind());
        (out.into(), end)
    }

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn every_line_ending_and_split_decodes_the_same() {
        let body = "data: a\n\nevent: error\ndata: b\ndata: c\n\n: comment\ndata:d\n\n";
        let expected = vec![
            event("message", "a"),
            event("error", "b\nc"),
            event("message", "d"),
        ];
        for ending in ["\n", "\r\n", "\r"] {
            let body = body.replace('\n', ending);
            let bytes = body.as_bytes();
            assert_eq!(events(&[bytes], 64), (expected.clone(), None), "{ending:?}");
            for split in 0..bytes.len() {
                let (head, tail) = bytes.split_at(split);
                assert_eq!(
                    events(&[head, tail], 64),
                    (expected.clone(), None),
                    "{ending:?} split at {split}"
                );
            }
        }
    }

    #[test]
    fn a_leading_bom_is_skipped_and_an_unfinished_event_is_dropped() {
        assert_eq!(
            events(&[b"\xef\xbb\xbfdata: [DONE]\n\ndata: cut"], 64),
            (vec![event("message", "[DONE]")], None)
        );
    }

    #[test]
    fn lines_and_events_are_bounded() {
        let malformed = Some(ErrorKind::MalformedResponse);
        let (_, error) = events(&[b"data: 0123456789", b"0123456789"], 16);
        assert_eq!(error, malformed, "a line");
        let (_, error) = events(&[b"data: 01234567\ndata: 01234567\n"], 16);
        assert_eq!(error, malformed, "an event of several lines");
        let (_, error) = events(&[b"data: \xff\n\n"], 16);
        assert_eq!(error, malformed, "not UTF-8");
    }

    #[test]
    fn a_body_reads_to_its_terminal_item() {
        let body = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let items = read_sse_body(&[body], None, 1024, 1024);
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].as_ref().unwrap(),
            &ProviderEvent::Delta("Hi".into())
        );
        assert!(matches!(items[1], Ok(ProviderEvent::Finished { .. })));
        let cut = read_sse_body(&[&body[..60]], None, 1024, 1024);
        assert_eq!(
            cut.last().unwrap().as_ref().unwrap_err().kind(),
            ErrorKind::StreamCut
        );
    }
}
