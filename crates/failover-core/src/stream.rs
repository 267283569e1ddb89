//! Streaming completions with failover up to the commit point.
//!
//! The commit point is the first non-empty text delta. Before it, a failing provider is
//! skipped exactly as in a plain completion (the same chain walk, the same layers): nothing
//! has reached the caller yet. After it, a failure ends the stream with a
//! [`FailoverError::StreamInterrupted`] item: never a silent clean end, never a second
//! provider's text spliced onto the first's.
//!
//! The provider's attempt stays open past the commit point, until the terminal event, the
//! interruption or the caller dropping the stream: that is when the breaker, the usage
//! record and the provider layers hear how the call ended, and then the request layers.

use std::pin::Pin;
use std::sync::Arc;

use failover_cache::CachedCompletion;
use failover_provider::{
    AttemptRecord, CompletionRequest, ErrorKind, FinishReason, ProviderError, ProviderEvent,
    ProviderStream, StreamChunk, StreamSummary, TokenUsage, Usd,
};
use futures::{Stream, StreamExt};

use crate::attempt::{Attempt, check_json};
use crate::chain::{self, Answered};
use crate::coalesce::Leader;
use crate::deadline::before_deadline;
use crate::engine::Engine;
use crate::error::FailoverError;
use crate::layers::RequestOutcome;
use crate::prepare::{Prepared, prepare};
use crate::request_scope::RequestScope;
use crate::reuse::{self, Lookup};

/// A stream of chunks: text deltas, then one [`StreamChunk::Done`], or an error item.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, FailoverError>> + Send>>;

async fn next_event(stream: &mut ProviderStream) -> Result<Option<ProviderEvent>, ProviderError> {
    stream.next().await.transpose()
}

/// Streams one request (see
/// [`FailoverAdapter::stream_completion`](crate::FailoverAdapter::stream_completion)).
pub(crate) async fn stream(
    engine: &Arc<Engine>,
    request: CompletionRequest,
) -> Result<CompletionStream, FailoverError> {
    let mut prepared = prepare(engine, request, true)?;
    let mut scope = RequestScope::enter(engine, &prepared).await?;
    let leader = match reuse::lookup(engine, &mut prepared).await {
        Lookup::Answered(hit) => {
            let (content, summary) = replayed(&prepared, hit);
            // A replay cannot fail or be cut: its request ends here.
            scope.finish(&RequestOutcome::Streamed(&summary));
            return Ok(replay(content, summary));
        }
        Lookup::Missed { leader } => leader,
    };
    let shared = &prepared;
    let walked = chain::walk(engine, shared, move |provider, request| async move {
        let mut stream = before_deadline(shared.deadline, provider.stream(request)).await?;
        let first = first_event(shared, &mut stream).await?;
        Ok((stream, first))
    })
    .await;
    let Answered {
        attempt,
        value: (stream, first),
        attempts,
    } = scope.finish_on_error(walked)?;
    let committed = Committed {
        attempt: Some(attempt),
        engine: Arc::clone(engine),
        prepared,
        stream,
        pending: Some(first),
        text: String::new(),
        attempts,
        leader,
        scope,
        finished: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        committed,
        |mut state| async move { state.next_chunk().await.map(|item| (item, state)) },
    )))
}

/// A cached answer as a stream's content and summary.
fn replayed(prepared: &Prepared, hit: CachedCompletion) -> (String, StreamSummary) {
    let summary = StreamSummary {
        request_id: prepared.request_id().clone(),
        provider: hit.provider,
        model: hit.model,
        finish_reason: hit.finish_reason,
        usage: hit.usage,
        estimated_cost: Usd::ZERO,
        cached: true,
        latency: prepared.started.elapsed(),
        attempts: Vec::new(),
    };
    (hit.content, summary)
}

/// A stream served without a provider call of its own: the whole text as one delta, then
/// the summary.
fn replay(content: String, summary: StreamSummary) -> CompletionStream {
    let mut chunks = Vec::with_capacity(2);
    if !content.is_empty() {
        chunks.push(Ok(StreamChunk::Delta { text: content }));
    }
    chunks.push(Ok(StreamChunk::Done(summary)));
    Box::pin(futures::stream::iter(chunks))
}

/// Waits for the first event that commits the stream: a non-empty delta, or the terminal
/// event of an empty answer. Anything else before it is a failure that may fail over.
async fn first_event(
    prepared: &Prepared,
    stream: &mut ProviderStream,
) -> Result<ProviderEvent, ProviderError> {
    loop {
        match before_deadline(prepared.deadline, next_event(stream)).await? {
            Some(ProviderEvent::Delta(text)) if text.is_empty() => continue,
            // An empty answer cannot be JSON; nothing has reached the caller, so this is a
            // failure that may still fail over.
            Some(ProviderEvent::Finished { .. }) if prepared.request.response_format.is_json() => {
                return Err(ProviderError::new(
                    ErrorKind::MalformedResponse,
                    "empty answer in JSON mode",
                ));
            }
            Some(event) => return Ok(event),
            None => {
                return Err(ProviderError::new(
                    ErrorKind::StreamCut,
                    "the stream ended before its first event",
                ));
            }
        }
    }
}

/// A stream past its commit point.
struct Committed {
    /// `Some` until the terminal event; dropping it unfinished records a cancellation.
    /// Declared first so that, on a drop, the call's layers hear of it before the
    /// request's (fields drop in order).
    attempt: Option<Attempt>,
    engine: Arc<Engine>,
    prepared: Prepared,
    stream: ProviderStream,
    pending: Option<ProviderEvent>,
    text: String,
    /// The attempts before this provider's.
    attempts: Vec<AttemptRecord>,
    /// Set when identical requests wait for this stream's answer.
    leader: Option<Leader>,
    /// The request layers, told when the stream ends (or is dropped).
    scope: RequestScope,
    finished: bool,
}

impl Committed {
    async fn next_chunk(&mut self) -> Option<Result<StreamChunk, FailoverError>> {
        if self.finished {
            return None;
        }
        loop {
            let event = match self.pending.take() {
                Some(event) => Ok(Some(event)),
                None => before_deadline(self.prepared.deadline, next_event(&mut self.stream)).await,
            };
            return Some(match event {
                Ok(Some(ProviderEvent::Delta(text))) => {
                    if text.is_empty() {
                        continue;
                    }
                    self.text.push_str(&text);
                    if let Some(attempt) = self.attempt.as_mut() {
                        attempt.received_bytes += text.len();
                    }
                    Ok(StreamChunk::Delta { text })
                }
                Ok(Some(ProviderEvent::Finished {
                    finish_reason,
                    usage,
                })) => self.finish(finish_reason, usage).await,
                Ok(None) => Err(self.interrupt(
                    ProviderError::new(
                        ErrorKind::StreamCut,
                        "the stream ended without its terminal event",
                    ),
                    None,
                )),
                Err(error) => Err(self.interrupt(error, None)),
            });
        }
    }

    async fn finish(
        &mut self,
        finish_reason: FinishReason,
        reported: Option<TokenUsage>,
    ) -> Result<StreamChunk, FailoverError> {
        if let Err(error) = check_json(&self.prepared.request.response_format, &self.text) {
            return Err(self.interrupt(error, reported));
        }
        self.finished = true;
        let attempt = self
            .attempt
            .take()
            .expect("a committed stream holds its attempt until it finishes");
        let (usage, estimated) = self
            .prepared
            .context
            .partial_usage(reported, self.text.len());
        let (cost, record) = attempt.succeeded(usage, estimated);
        let (provider, model) = (record.provider.clone(), record.model.clone());
        let mut attempts = std::mem::take(&mut self.attempts);
        attempts.push(record);
        if reuse::wanted(&self.prepared) {
            let answer = reuse::fresh_answer(
                &provider,
                &model,
                std::mem::take(&mut self.text),
                finish_reason.clone(),
                usage,
                cost,
            );
            reuse::remember(&self.engine, &self.prepared, answer, self.leader.take()).await;
        }
        let summary = StreamSummary {
            request_id: self.prepared.request_id().clone(),
            provider,
            model,
            finish_reason,
            usage,
            estimated_cost: cost,
            cached: false,
            latency: self.prepared.started.elapsed(),
            attempts,
        };
        self.scope.finish(&RequestOutcome::Streamed(&summary));
        Ok(StreamChunk::Done(summary))
    }

    /// Ends the stream with an error item; `reported` is the usage the provider reported
    /// with an answer we reject.
    fn interrupt(&mut self, error: ProviderError, reported: Option<TokenUsage>) -> FailoverError {
        self.finished = true;
        // Release identical requests waiting on this stream now, not when the caller
        // drops it: they go to the providers themselves.
        self.leader = None;
        let attempt = self
            .attempt
            .take()
            .expect("a committed stream holds its attempt until it finishes");
        let provider = attempt.provider().to_owned();
        tracing::warn!(
            request_id = %self.prepared.request_id(),
            provider = %provider,
            kind = %error.kind(),
            delivered_bytes = self.text.len(),
            %error,
            "stream interrupted after its first chunk"
        );
        attempt.failed(&error, reported);
        let interrupted = FailoverError::StreamInterrupted {
            request_id: self.prepared.request_id().clone(),
            provider,
            kind: error.kind(),
            message: error.detail(),
            delivered_bytes: self.text.len(),
        };
        self.scope.finish(&RequestOutcome::Failed(&interrupted));
        interrupted
    }
}
