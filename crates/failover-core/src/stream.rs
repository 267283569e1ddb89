//! Streaming completions with failover up to the commit point.
//!
//! The commit point is the first non-empty text delta. Before it, a failing provider is
//! skipped exactly as in [`FailoverAdapter::generate_completion`]: nothing has reached the
//! caller yet. After it, a failure ends the stream with a
//! [`FailoverError::StreamInterrupted`] item: never a silent clean end, never a second
//! provider's text spliced onto the first's.

use std::pin::Pin;
use std::sync::Arc;

use failover_provider::{
    CompletionRequest, ErrorKind, FinishReason, ProviderError, ProviderEvent, ProviderStream,
    StreamChunk, StreamSummary, TokenUsage, Usd,
};
use futures::{Stream, StreamExt};

use crate::adapter::{ChainWalk, FailoverAdapter, Inner, Prepared, Shortcut};
use crate::call::{Call, before_deadline, check_json};
use crate::coalesce::Leader;
use crate::error::FailoverError;
use failover_cache::CachedCompletion;

/// A stream of chunks: text deltas, then one [`StreamChunk::Done`], or an error item.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, FailoverError>> + Send>>;

async fn next_event(stream: &mut ProviderStream) -> Result<Option<ProviderEvent>, ProviderError> {
    stream.next().await.transpose()
}

impl FailoverAdapter {
    /// Streams one request. Errors before the first chunk (validation, every provider
    /// failing) are returned here; errors after it are the stream's last item.
    ///
    /// A usage record is written on every terminal path: done, error, or the caller
    /// dropping the stream (with the tokens consumed so far, estimated when the provider
    /// did not report them). Only a stream that ended cleanly is cached; a cache hit is
    /// replayed as one delta and a `Done`.
    pub async fn stream_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionStream, FailoverError> {
        let inner = &self.inner;
        let mut prepared = inner.prepare(request, true)?;
        let leader = match inner.shortcut(&mut prepared).await {
            Shortcut::Answered(hit) => return Ok(replay(&prepared, hit)),
            Shortcut::Call(leader) => leader,
        };

        let mut walk = ChainWalk::new(true);
        while let Some((provider, call)) = walk.next_call(inner, &prepared) {
            let opened = before_deadline(
                prepared.deadline,
                provider.stream(prepared.provider_request(&call.model)),
            )
            .await;
            let first = match opened {
                Ok(mut stream) => first_event(&prepared, &mut stream)
                    .await
                    .map(|event| (stream, event)),
                Err(error) => Err(error),
            };
            match first {
                Ok((stream, event)) => {
                    let committed = Committed {
                        inner: Arc::clone(inner),
                        prepared,
                        call: Some(call),
                        stream,
                        pending: Some(event),
                        text: String::new(),
                        walk: Some(walk),
                        leader,
                        finished: false,
                    };
                    return Ok(Box::pin(futures::stream::unfold(
                        committed,
                        |mut state| async move { state.next_chunk().await.map(|item| (item, state)) },
                    )));
                }
                Err(error) => walk.failed(&prepared, call, &error, None)?,
            }
        }
        Err(walk.exhausted(&prepared))
    }
}

/// A stream served without a provider call of its own: the whole text as one delta, then
/// the summary.
fn replay(prepared: &Prepared, hit: CachedCompletion) -> CompletionStream {
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
    let mut chunks = Vec::with_capacity(2);
    if !hit.content.is_empty() {
        chunks.push(Ok(StreamChunk::Delta { text: hit.content }));
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
    inner: Arc<Inner>,
    prepared: Prepared,
    /// `Some` until the terminal event; dropping it unfinished records a cancellation.
    call: Option<Call>,
    stream: ProviderStream,
    pending: Option<ProviderEvent>,
    text: String,
    /// The attempts so far; consumed by the terminal event.
    walk: Option<ChainWalk>,
    /// Set when identical requests wait for this stream's answer.
    leader: Option<Leader>,
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
                    if let Some(call) = self.call.as_mut() {
                        call.received_bytes += text.len();
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
        let call = self
            .call
            .take()
            .expect("a committed stream holds its call until it finishes");
        let (usage, estimated) = self
            .prepared
            .context
            .partial_usage(reported, self.text.len());
        let (provider, model) = (call.provider.clone(), call.model.clone());
        let walk = self
            .walk
            .take()
            .expect("a committed stream holds its walk until it finishes");
        let (cost, attempts) = walk.succeeded(call, usage, estimated);
        if self.prepared.cache_key.is_some() {
            let answer = self.inner.cached_value(
                &provider,
                &model,
                std::mem::take(&mut self.text),
                finish_reason.clone(),
                usage,
                cost,
            );
            self.prepared
                .remember(&self.inner, answer, self.leader.take())
                .await;
        }
        Ok(StreamChunk::Done(StreamSummary {
            request_id: self.prepared.request_id().clone(),
            provider,
            model,
            finish_reason,
            usage,
            estimated_cost: cost,
            cached: false,
            latency: self.prepared.started.elapsed(),
            attempts,
        }))
    }

    /// Ends the stream with an error item; `reported` is the usage the provider reported
    /// with an answer we reject.
    fn interrupt(&mut self, error: ProviderError, reported: Option<TokenUsage>) -> FailoverError {
        self.finished = true;
        // Release identical requests waiting on this stream now, not when the caller
        // drops it: they go to the providers themselves.
        self.leader = None;
        let call = self
            .call
            .take()
            .expect("a committed stream holds its call until it finishes");
        let provider = call.provider.clone();
        tracing::warn!(
            request_id = %self.prepared.request_id(),
            provider = %provider,
            kind = %error.kind(),
            delivered_bytes = self.text.len(),
            %error,
            "stream interrupted after its first chunk"
        );
        call.failed(&error, reported);
        FailoverError::StreamInterrupted {
            request_id: self.prepared.request_id().clone(),
            provider,
            kind: error.kind(),
            message: error.detail(),
            delivered_bytes: self.text.len(),
        }
    }
}
