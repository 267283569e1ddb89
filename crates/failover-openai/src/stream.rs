//! Reading a chat completion stream: SSE events (via `eventsource-stream` over reqwest's
//! `bytes_stream()`) turned into [`ProviderEvent`]s, under the first-token, stall and
//! deadline limits.
//!
//! A clean end needs `data: [DONE]`. A body that ends (or breaks) without it is
//! [`ErrorKind::StreamCut`]; an `error` frame is classified like an HTTP error; the
//! [`ProviderEvent::Finished`] event carries the usage of the final usage chunk
//! (`stream_options.include_usage`, always requested).

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use failover_provider::{
    ErrorKind, FinishReason, ProviderError, ProviderEvent, ProviderStream, TokenUsage,
};
use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::mapping::{ChunkEvent, JsonContract, map_finish_reason, parse_chunk};

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// The limits of one stream, measured on tokio's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// When the first token must have arrived.
    pub(crate) first_token_at: Instant,
    /// The first-token limit, for messages.
    pub(crate) first_token: Duration,
    /// The longest gap between two events.
    pub(crate) stall: Duration,
    /// The request's deadline.
    pub(crate) deadline: Option<Instant>,
}

/// Which limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    FirstToken,
    Stall,
    Deadline,
}

struct SseState {
    events: Events,
    limits: StreamLimits,
    got_token: bool,
    finish_reason: Option<FinishReason>,
    usage: Option<TokenUsage>,
    contract: Option<JsonContract>,
    text: String,
    done: bool,
    provider: String,
    scrub: Option<SecretString>,
}

impl SseState {
    fn next_limit(&self) -> (Instant, Limit) {
        let stall_at = Instant::now() + self.limits.stall;
        let mut limit = if !self.got_token && self.limits.first_token_at <= stall_at {
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
        let message = match limit {
            Limit::FirstToken => format!(
                "no first token within {} ms",
                self.limits.first_token.as_millis()
            ),
            Limit::Stall => format!(
                "the stream stalled: no event for {} ms",
                self.limits.stall.as_millis()
            ),
            Limit::Deadline => "the request's deadline passed during the stream".to_owned(),
        };
        ProviderError::new(ErrorKind::Timeout, message)
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
        })
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
            let (at, limit) = self.next_limit();
            let item = match tokio::time::timeout_at(at, self.events.next()).await {
                Ok(item) => item,
                Err(_) => return Err(self.timeout_error(limit)),
            };
            let event = match item {
                None => {
                    return Err(ProviderError::new(
                        ErrorKind::StreamCut,
                        "the stream ended without [DONE]",
                    ));
                }
                Some(Err(EventStreamError::Transport(error))) => {
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
                Some(Err(error)) => {
                    return Err(ProviderError::new(
                        ErrorKind::MalformedResponse,
                        format!("the stream is not valid server-sent events: {error}"),
                    ));
                }
                Some(Ok(event)) => event,
            };
            if event.data.trim().is_empty() {
                continue;
            }
            match parse_chunk(&event.event, &event.data)? {
                ChunkEvent::Done => return self.finish(),
                ChunkEvent::Chunk {
                    text,
                    finish_reason,
                    usage,
                } => {
                    if let Some(reason) = finish_reason {
                        self.finish_reason = Some(reason);
                        self.got_token = true;
                    }
                    if let Some(usage) = usage {
                        self.usage = Some(usage);
                    }
                    if let Some(text) = text {
                        self.got_token = true;
                        if self.contract.is_some() {
                            self.text.push_str(&text);
                        }
                        return Ok(ProviderEvent::Delta(text));
                    }
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
) -> ProviderStream {
    let state = SseState {
        events: Box::pin(response.bytes_stream().eventsource()),
        limits,
        got_token: false,
        finish_reason: None,
        usage: None,
        contract,
        text: String::new(),
        done: false,
        provider,
        scrub,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        state.next_event().await.map(|item| (item, state))
    }))
}
