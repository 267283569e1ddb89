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

use std::collections::VecDeque;
use std::time::Duration;

use failover_provider::{
    CallDeadlines, ErrorKind, FinishReason, ProviderError, ProviderEvent, ProviderStream,
    TokenUsage,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::mapping::{ChunkEvent, JsonContract, map_finish_reason, parse_chunk};

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
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    let (content, tail) = rest.split_at(end);
                    self.extend_line(content)?;
                    self.after_cr = tail.first() == Some(&b'\r');
                    rest = tail.get(1..).unwrap_or_default();
                    self.end_line(out)?;
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

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        if bytes.len() > self.max_event_bytes.saturating_sub(self.line.len()) {
            return Err(malformed(format!(
                "a stream line is longer than {} bytes",
                self.max_event_bytes
            )));
        }
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

    fn end_line(&mut self, out: &mut VecDeque<SseEvent>) -> Result<(), ProviderError> {
        let bytes = std::mem::take(&mut self.line);
        let line =
            std::str::from_utf8(&bytes).map_err(|_| malformed("the stream is not valid UTF-8"))?;
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

/// Reads decoded events into provider events (pure; no I/O, no clock).
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
}

impl SseMapper {
    /// A mapper checking the whole text against `contract` at the end (JSON modes), whose
    /// kept text may not exceed `max_text_bytes`.
    pub fn new(contract: Option<JsonContract>, max_text_bytes: usize) -> Self {
        Self {
            got_token: false,
            finish_reason: None,
            usage: None,
            model: None,
            contract,
            text: String::new(),
            max_text_bytes,
        }
    }

    /// Whether a token (text, or a finish reason for an empty answer) has arrived.
    pub fn got_token(&self) -> bool {
        self.got_token
    }

    fn finish(&mut self) -> Result<ProviderEvent, ProviderError> {
        if let Some(contract) = &self.contract {
            contract.check_text(&self.text)?;
        }
        Ok(ProviderEvent::Finished {
            finish_reason: self
                .finish_reason
                .take()
                .unwrap_or_else(|| map_finish_reason(None)),
            usage: self.usage.take(),
            model: self.model.take(),
        })
    }

    /// Maps one event: a delta, the terminal [`ProviderEvent::Finished`] (on `[DONE]`),
    /// nothing for the caller (`None`), or the error that ends the stream.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<Option<ProviderEvent>, ProviderError> {
        if event.data.trim().is_empty() {
            return Ok(None);
        }
        match parse_chunk(&event.event, &event.data)? {
            ChunkEvent::Done => self.finish().map(Some),
            ChunkEvent::Chunk {
                text,
                finish_reason,
                usage,
                model,
            } => {
                if self.model.is_none() {
                    self.model = model;
                }
                if let Some(reason) = finish_reason {
                    self.finish_reason = Some(reason);
                    self.got_token = true;
                }
                if let Some(usage) = usage {
                    self.usage = Some(usage);
                }
                let Some(text) = text else {
                    return Ok(None);
                };
                self.got_token = true;
                if self.contract.is_some() {
                    if text.len() > self.max_text_bytes.saturating_sub(self.text.len()) {
                        return Err(malformed(format!(
                            "the JSON answer is longer than {} bytes",
                            self.max_text_bytes
                        )));
                    }
                    self.text.push_str(&text);
                }
                Ok(Some(ProviderEvent::Delta(text)))
            }
        }
    }
}

/// Bytes in, provider events out: the decoder and the mapper together, exactly as the
/// provider's stream runs them (pure; the stream adds the clock and the socket).
#[derive(Debug)]
pub struct SseReader {
    decoder: SseDecoder,
    mapper: SseMapper,
    pending: VecDeque<SseEvent>,
    failed: Option<ProviderError>,
    ended: bool,
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
            failed: None,
            ended: false,
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

    /// The next item the input so far yields: a delta, the terminal event, the error that
    /// ends the stream (a body that ended without `[DONE]` is a
    /// [`ErrorKind::StreamCut`]), or `None` when more input is needed. After a terminal
    /// item (`Finished` or an error) the stream is over.
    pub fn next_ready(&mut self) -> Option<Result<ProviderEvent, ProviderError>> {
        while let Some(event) = self.pending.pop_front() {
            match self.mapper.on_event(&event) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
        }
        if let Some(error) = self.failed.take() {
            return Some(Err(error));
        }
        self.ended.then(|| {
            Err(ProviderError::new(
                ErrorKind::StreamCut,
                "the stream ended without [DONE]",
            ))
        })
    }
}

/// Reads a whole body given as `chunks`, as the provider's stream would, up to and
/// including its terminal item. For the property tests; no clock.
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
                let terminal = !matches!(item, Ok(ProviderEvent::Delta(_)));
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
        if !matches!(result, Ok(ProviderEvent::Delta(_))) {
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
