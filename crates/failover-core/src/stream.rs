//! Streaming completions with failover up to the commit point.
//!
//! The commit point is the first non-empty text delta or the start of a tool call. Before
//! it, a failing provider is skipped exactly as in a plain completion (the same chain walk,
//! the same layers): nothing has reached the caller yet. After it, a failure ends the stream with a
//! [`FailoverError::StreamInterrupted`] item: never a silent clean end, never a second
//! provider's text spliced onto the first's.
//!
//! At the commit point the breaker hears the provider answered (so a slow stream never pins
//! a probe slot). The rest of the stream is read by its own task ([`Driver`]), so the
//! deadline and the provider's stall limit hold whether or not the caller polls; the
//! attempt stays open until the terminal event, the interruption or the caller dropping
//! the stream: that is when the usage record and the provider layers hear how the call
//! ended, and then the request layers.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use failover_cache::CachedCompletion;
use failover_provider::{
    AttemptRecord, CompletionRequest, ErrorKind, FinishReason, ProviderError, ProviderEvent,
    ProviderStream, RequestId, StreamChunk, StreamSummary, TokenUsage, ToolCallAssembler, Usd,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::attempt::{Attempt, check_json};
use crate::chain::{self, Answered};
use crate::coalesce::Leader;
use crate::deadline::{self, before_deadline};
use crate::engine::Engine;
use crate::error::FailoverError;
use crate::layers::RequestOutcome;
use crate::prepare::{Prepared, prepare};
use crate::request_scope::RequestScope;
use crate::reuse::{self, Lookup};
use crate::telemetry::{RequestEnd, RequestFacts, RequestTrace};

/// A stream of chunks: text deltas and tool-call items, then one [`StreamChunk::Done`], or
/// an error item.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, FailoverError>> + Send>>;

async fn next_event(stream: &mut ProviderStream) -> Result<Option<ProviderEvent>, ProviderError> {
    stream.next().await.transpose()
}

/// A stream past its commit point, with what is known of it there: who answers, and how
/// many providers were tried or skipped to get there. A server in front sends these as
/// response headers before the first chunk.
pub struct OpenedStream {
    /// The request's id.
    pub request_id: RequestId,
    /// The provider streaming the answer (the one that answered, for a cache hit).
    pub provider: String,
    /// Whether the stream replays a cached answer.
    pub cached: bool,
    /// The attempts so far, the streaming provider's included (0 for a cache hit).
    pub attempts: usize,
    /// The chunks.
    pub chunks: CompletionStream,
}

impl std::fmt::Debug for OpenedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedStream")
            .field("request_id", &self.request_id)
            .field("provider", &self.provider)
            .field("cached", &self.cached)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Chunks a committed stream's driver may hold for a caller that is not reading yet.
const STREAM_BUFFER: usize = 32;

/// Streams one request (see
/// [`FailoverAdapter::stream_completion`](crate::FailoverAdapter::stream_completion)).
pub(crate) async fn stream(
    engine: &Arc<Engine>,
    request: CompletionRequest,
) -> Result<OpenedStream, FailoverError> {
    let id = request.request_id.clone().unwrap_or_else(RequestId::random);
    let trace = RequestTrace::start(&engine.metrics, &RequestFacts::of(&request, &id, true));
    let span = trace.span().clone();
    // The trace goes with the stream once it is open; until then an error ends it here.
    let mut pending = Some(trace);
    let opened = if span.is_disabled() {
        open(engine, request, id, &mut pending).await
    } else {
        open(engine, request, id, &mut pending)
            .instrument(span)
            .await
    };
    if let (Err(error), Some(mut trace)) = (&opened, pending) {
        trace.finish(RequestEnd::of_error(error), None);
    }
    opened
}

/// Opens the stream (its id is `id`) up to its commit point; takes `trace` once the stream
/// owns it.
async fn open(
    engine: &Arc<Engine>,
    request: CompletionRequest,
    id: RequestId,
    trace: &mut Option<RequestTrace>,
) -> Result<OpenedStream, FailoverError> {
    let mut prepared = prepare(engine, request, id, true)?;
    let mut scope = RequestScope::enter(engine, &prepared).await?;
    let leader = match reuse::lookup(engine, &mut prepared).await {
        Lookup::Answered(hit) => {
            let (content, summary) = replayed(&prepared, hit);
            // A replay cannot fail or be cut: its request ends here.
            scope.finish(&RequestOutcome::Streamed(&summary));
            if let Some(mut trace) = trace.take() {
                trace.finish(RequestEnd::Cached, Some((&summary.provider, 0)));
            }
            return Ok(OpenedStream {
                request_id: summary.request_id.clone(),
                provider: summary.provider.clone(),
                cached: true,
                attempts: 0,
                chunks: replay(content, summary),
            });
        }
        Lookup::Missed { leader } => leader,
    };
    let shared = &prepared;
    let walked = chain::walk(
        engine,
        shared,
        move |provider, request, limits| async move {
            let opened = limits.run(async move {
                let started = Instant::now();
                let mut stream = guarded(provider.name(), provider.stream(request).await?);
                let first = first_event(shared, &mut stream).await?;
                Ok((stream, first, started.elapsed()))
            });
            Ok(opened.await?)
        },
    )
    .await;
    let Answered {
        mut attempt,
        value: (stream, first, time_to_first),
        attempts,
    } = scope.finish_on_error(walked)?;
    attempt.commit();
    attempt.first_chunk(time_to_first);
    let provider = attempt.provider().to_owned();
    let attempts_so_far = attempts.len() + 1;
    let span = attempt.span().clone();
    let ending = Arc::new(Mutex::new(Ending {
        attempt: Some(attempt),
        scope: Some(scope),
        trace: trace.take(),
    }));
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    let prepared_id = prepared.request_id().clone();
    let driver = Driver {
        engine: Arc::clone(engine),
        prepared,
        stream,
        pending: Some(first),
        text: String::new(),
        calls: ToolCallAssembler::new(),
        argument_bytes: 0,
        attempts,
        leader,
        ending: Arc::clone(&ending),
        sender,
        last_chunk: Instant::now(),
        longest_gap: Duration::ZERO,
    };
    // The driver reads the provider within the attempt's span (itself in the request's).
    let driver = tokio::spawn(driver.run().instrument(span));
    Ok(OpenedStream {
        request_id: prepared_id,
        provider,
        cached: false,
        attempts: attempts_so_far,
        chunks: Box::pin(Delivered {
            receiver,
            ending,
            driver,
            ended: false,
        }),
    })
}

/// A provider stream whose panic is a failed item (after which it ends: `catch_unwind`
/// never polls a panicked stream again), not a crash of the task reading it.
fn guarded(provider: &str, stream: ProviderStream) -> ProviderStream {
    let provider = provider.to_owned();
    Box::pin(
        AssertUnwindSafe(stream)
            .catch_unwind()
            .map(move |item| item.unwrap_or_else(|panic| Err(chain::panicked(&provider, &*panic)))),
    )
}

/// A cached answer as a stream's content and summary.
fn replayed(prepared: &Prepared, hit: CachedCompletion) -> (String, StreamSummary) {
    let summary = StreamSummary {
        request_id: prepared.request_id().clone(),
        provider: hit.provider,
        model: hit.model,
        tool_calls: hit.tool_calls,
        finish_reason: hit.finish_reason,
        usage: hit.usage,
        estimated_cost: Usd::ZERO,
        cached: true,
        latency: prepared.started.elapsed(),
        attempts: Vec::new(),
    };
    (hit.content, summary)
}

/// A stream served without a provider call of its own: the whole text as one delta, each
/// tool call as a start, its whole arguments and an end, then the summary.
fn replay(content: String, summary: StreamSummary) -> CompletionStream {
    let mut chunks = Vec::with_capacity(2 + 3 * summary.tool_calls.len());
    if !content.is_empty() {
        chunks.push(Ok(StreamChunk::Delta { text: content }));
    }
    for (index, call) in (0u32..).zip(&summary.tool_calls) {
        chunks.push(Ok(StreamChunk::ToolCallStart {
            index,
            id: call.id.clone(),
            name: call.name.clone(),
        }));
        if !call.arguments.is_empty() {
            chunks.push(Ok(StreamChunk::ToolCallDelta {
                index,
                arguments: call.arguments.clone(),
            }));
        }
        chunks.push(Ok(StreamChunk::ToolCallEnd { index }));
    }
    chunks.push(Ok(StreamChunk::Done(summary)));
    Box::pin(futures::stream::iter(chunks))
}

/// Waits for the first event that commits the stream: a non-empty delta, the start of a
/// tool call (or any tool-call item: one out of order fails in the driver), or the
/// terminal event of an empty answer. Anything else before it is a failure that may fail over.
async fn first_event(
    prepared: &Prepared,
    stream: &mut ProviderStream,
) -> Result<ProviderEvent, ProviderError> {
    loop {
        match next_event(stream).await? {
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

/// What a committed stream still owes when it ends — the attempt (usage record, provider
/// layers) and the request layers — shared by the driver and the caller's end, so that
/// whichever ends the stream first settles it, at once: a caller dropping the stream
/// settles it as a cancellation in the drop itself.
struct Ending {
    /// Declared first so that, when dropped together, the call's layers hear of it before
    /// the request's (fields drop in order).
    attempt: Option<Attempt>,
    scope: Option<RequestScope>,
    /// Last: the request ends after its layers heard how.
    trace: Option<RequestTrace>,
}

fn lock(ending: &Mutex<Ending>) -> std::sync::MutexGuard<'_, Ending> {
    ending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the driver took from the [`Ending`] to settle the stream itself.
struct Settled {
    attempt: Attempt,
    scope: RequestScope,
    trace: Option<RequestTrace>,
}

/// The caller's end of a committed stream: the chunks the driver sent, then the terminal
/// item the driver left in its `Ending`.
struct Delivered {
    receiver: mpsc::Receiver<Result<StreamChunk, FailoverError>>,
    ending: Arc<Mutex<Ending>>,
    driver: JoinHandle<()>,
    ended: bool,
}

impl Stream for Delivered {
    type Item = Result<StreamChunk, FailoverError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.receiver.poll_recv(cx));
        // The driver sends its terminal item (done or error) last, then stops.
        self.ended = item
            .as_ref()
            .is_none_or(|item| matches!(item, Err(_) | Ok(StreamChunk::Done(_))));
        Poll::Ready(item)
    }
}

impl Drop for Delivered {
    fn drop(&mut self) {
        // Stop reading the provider (dropping the driver cancels the upstream call)...
        self.driver.abort();
        // ...and settle the call as cancelled now, not when the driver's task is reaped.
        let (attempt, scope, trace) = {
            let mut ending = lock(&self.ending);
            (
                ending.attempt.take(),
                ending.scope.take(),
                ending.trace.take(),
            )
        };
        drop(attempt);
        drop(scope);
        drop(trace);
    }
}

/// A stream past its commit point, read by its own task: the request's deadline, the
/// provider's first-token and stall limits and the accounting hold whether or not the
/// caller keeps polling. The caller's end holds up to [`STREAM_BUFFER`] chunks; a caller
/// that stops reading holds the driver only until the request's deadline.
struct Driver {
    engine: Arc<Engine>,
    prepared: Prepared,
    stream: ProviderStream,
    pending: Option<ProviderEvent>,
    /// The text delivered so far.
    text: String,
    /// The tool calls delivered so far, and the order their items must keep.
    calls: ToolCallAssembler,
    /// Bytes of tool-call arguments delivered so far.
    argument_bytes: usize,
    /// The attempts before this provider's.
    attempts: Vec<AttemptRecord>,
    /// Set when identical requests wait for this stream's answer.
    leader: Option<Leader>,
    ending: Arc<Mutex<Ending>>,
    sender: mpsc::Sender<Result<StreamChunk, FailoverError>>,
    /// When the last chunk of content arrived (the first one: at the commit point).
    last_chunk: Instant,
    longest_gap: Duration,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let event = match self.pending.take() {
                Some(event) => Ok(Some(event)),
                None => {
                    let next =
                        before_deadline(self.prepared.deadline, next_event(&mut self.stream));
                    tokio::select! {
                        event = next => event,
                        // The caller dropped its end: its drop settled the call.
                        () = self.sender.closed() => return,
                    }
                }
            };
            let chunk = match event {
                Ok(Some(ProviderEvent::Delta(text))) => {
                    if text.is_empty() {
                        continue;
                    }
                    Ok(StreamChunk::Delta { text })
                }
                Ok(Some(ProviderEvent::ToolCallStart { index, id, name })) => self
                    .calls
                    .start(index, &id, &name)
                    .map(|()| StreamChunk::ToolCallStart { index, id, name }),
                Ok(Some(ProviderEvent::ToolCallDelta { index, arguments })) => {
                    if arguments.is_empty() {
                        continue;
                    }
                    self.calls
                        .delta(index, &arguments)
                        .map(|()| StreamChunk::ToolCallDelta { index, arguments })
                }
                Ok(Some(ProviderEvent::ToolCallEnd { index })) => self
                    .calls
                    .end(index)
                    .map(|()| StreamChunk::ToolCallEnd { index }),
                Ok(Some(ProviderEvent::Finished {
                    finish_reason,
                    usage,
                    model,
                })) => {
                    let terminal = self.finish(finish_reason, usage, model).await;
                    self.send_terminal(terminal).await;
                    return;
                }
                Ok(None) => {
                    let terminal = self
                        .interrupt(
                            ProviderError::new(
                                ErrorKind::StreamCut,
                                "the stream ended without its terminal event",
                            ),
                            None,
                        )
                        .map(Err);
                    self.send_terminal(terminal).await;
                    return;
                }
                Err(error) => {
                    let terminal = self.interrupt(error, None).map(Err);
                    self.send_terminal(terminal).await;
                    return;
                }
            };
            let delivered = match chunk {
                Ok(chunk) => self.deliver(chunk).await,
                Err(disorder) => {
                    let error =
                        ProviderError::new(ErrorKind::MalformedResponse, disorder.to_string());
                    let terminal = self.interrupt(error, None).map(Err);
                    self.send_terminal(terminal).await;
                    return;
                }
            };
            if !delivered {
                return;
            }
        }
    }

    /// Sends the stream's last item, unless the caller left meanwhile (then there is
    /// nobody to tell).
    async fn send_terminal(&mut self, terminal: Option<Result<StreamChunk, FailoverError>>) {
        if let Some(terminal) = terminal {
            let _ = self.sender.send(terminal).await;
        }
    }

    /// Bytes of content in `chunk`: text, or tool-call arguments.
    fn content_bytes(chunk: &StreamChunk) -> usize {
        match chunk {
            StreamChunk::Delta { text } => text.len(),
            StreamChunk::ToolCallDelta { arguments, .. } => arguments.len(),
            _ => 0,
        }
    }

    /// Content delivered so far, in bytes: text and tool-call arguments.
    fn delivered_bytes(&self) -> usize {
        self.text.len() + self.argument_bytes
    }
    /// Hands one chunk to the caller, waiting while its buffer is full — until the
    /// request's deadline, which then interrupts the stream. `false` when the stream ended
    /// (the caller left, or the deadline passed).
    async fn deliver(&mut self, chunk: StreamChunk) -> bool {
        let now = Instant::now();
        self.longest_gap = self
            .longest_gap
            .max(now.saturating_duration_since(self.last_chunk));
        self.last_chunk = now;
        let bytes = Self::content_bytes(&chunk);
        // Received is what the provider generated (and bills), delivered or not.
        if let Some(attempt) = lock(&self.ending).attempt.as_mut() {
            attempt.received_bytes += bytes;
        }
        let text_bytes = match &chunk {
            StreamChunk::Delta { text } => {
                self.text.push_str(text);
                text.len()
            }
            _ => {
                self.argument_bytes += bytes;
                0
            }
        };
        let sent = deadline::within(self.prepared.deadline, self.sender.send(Ok(chunk))).await;
        match sent {
            Some(Ok(())) => true,
            // The caller dropped its end: its drop settled the call.
            Some(Err(_)) => false,
            None => {
                // What the caller got is what the error reports as delivered.
                self.text.truncate(self.text.len() - text_bytes);
                self.argument_bytes -= bytes - text_bytes;
                if let Some(error) = self.interrupt(ProviderError::request_deadline(), None) {
                    // The buffer is full; the caller reads the error after what it holds.
                    let _ = self.sender.send(Err(error)).await;
                }
                false
            }
        }
    }

    /// Takes what the stream owes, unless the caller's drop already settled it.
    fn take_ending(&self) -> Option<Settled> {
        let mut ending = lock(&self.ending);
        match (ending.attempt.take(), ending.scope.take()) {
            (Some(attempt), Some(scope)) => {
                attempt.longest_gap(self.longest_gap);
                Some(Settled {
                    attempt,
                    scope,
                    trace: ending.trace.take(),
                })
            }
            _ => None,
        }
    }

    /// Ends the stream with its summary; `served` is the model the provider says served it.
    async fn finish(
        &mut self,
        finish_reason: FinishReason,
        reported: Option<TokenUsage>,
        served: Option<String>,
    ) -> Option<Result<StreamChunk, FailoverError>> {
        let tool_calls = match std::mem::take(&mut self.calls).finish() {
            Ok(calls) => calls,
            Err(disorder) => {
                let error = ProviderError::new(ErrorKind::MalformedResponse, disorder.to_string());
                return self.interrupt(error, reported).map(Err);
            }
        };
        if let Err(error) = check_json(
            &self.prepared.request.response_format,
            &self.text,
            &tool_calls,
        ) {
            return self.interrupt(error, reported).map(Err);
        }
        let Settled {
            attempt,
            mut scope,
            trace,
        } = self.take_ending()?;
        let (usage, estimated) = self
            .prepared
            .context
            .partial_usage(reported, self.delivered_bytes());
        let served = served.filter(|model| !model.is_empty());
        if let Some(model) = &served {
            attempt.served_by(model);
        }
        let (cost, record) = attempt.succeeded(usage, estimated);
        // As for a plain completion: the model that served the answer when the provider
        // names it; the attempt (and its usage record) keep the routed model.
        let provider = record.provider.clone();
        let model = served.unwrap_or_else(|| record.model.clone());
        let mut attempts = std::mem::take(&mut self.attempts);
        attempts.push(record);
        if reuse::wanted(&self.prepared) {
            let answer = reuse::fresh_answer(
                &provider,
                &model,
                std::mem::take(&mut self.text),
                tool_calls.clone(),
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
            tool_calls,
            finish_reason,
            usage,
            estimated_cost: cost,
            cached: false,
            latency: self.prepared.started.elapsed(),
            attempts,
        };
        scope.finish(&RequestOutcome::Streamed(&summary));
        if let Some(mut trace) = trace {
            trace.finish(
                RequestEnd::Success,
                Some((&summary.provider, summary.attempts.len())),
            );
        }
        Some(Ok(StreamChunk::Done(summary)))
    }

    /// Ends the stream with an error; `reported` is the usage the provider reported with
    /// an answer we reject. `None` when the caller's drop already settled the stream.
    fn interrupt(
        &mut self,
        error: ProviderError,
        reported: Option<TokenUsage>,
    ) -> Option<FailoverError> {
        // Release identical requests waiting on this stream now, not when the caller
        // drops it: they go to the providers themselves.
        self.leader = None;
        let Settled {
            attempt,
            mut scope,
            trace,
        } = self.take_ending()?;
        let provider = attempt.provider().to_owned();
        tracing::warn!(
            request_id = %self.prepared.request_id(),
            provider = %provider,
            kind = %error.kind(),
            delivered_bytes = self.delivered_bytes(),
            %error,
            "stream interrupted after its first chunk"
        );
        attempt.failed(&error, reported);
        let interrupted = FailoverError::StreamInterrupted {
            request_id: self.prepared.request_id().clone(),
            provider,
            kind: error.kind(),
            message: error.detail(),
            delivered_bytes: self.delivered_bytes(),
        };
        scope.finish(&RequestOutcome::Failed(&interrupted));
        if let Some(mut trace) = trace {
            trace.finish(RequestEnd::Interrupted, None);
        }
        Some(interrupted)
    }
}
