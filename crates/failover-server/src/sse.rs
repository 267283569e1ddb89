//! A stream's response body: the engine's chunks as OpenAI's server-sent events.
//!
//! `[DONE]` is sent only after the engine's `Done`: a failure after the first byte, a
//! drain deadline, or an engine stream that ends without `Done` sends one
//! `data: {"error":…}` frame and ends, so `[DONE]` always means complete. Dropping the body
//! (the client went away) drops the engine's stream, which cancels the upstream call and
//! still records its usage.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use failover_core::CompletionStream;
use failover_provider::StreamChunk;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::error::ApiError;
use crate::wire::chunk::ChunkEncoder;

/// The body of one streamed answer.
pub(crate) struct SseBody {
    chunks: CompletionStream,
    encoder: ChunkEncoder,
    /// Frames ready to send (the opening one before anything is read).
    ready: Option<Bytes>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
    /// The request's slot in the in-flight bound, held to the last byte.
    _permit: OwnedSemaphorePermit,
}

impl SseBody {
    pub(crate) fn new(
        chunks: CompletionStream,
        encoder: ChunkEncoder,
        cut: WaitForCancellationFutureOwned,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let mut opening = Vec::with_capacity(256);
        encoder.opening(&mut opening);
        Self {
            chunks,
            encoder,
            ready: Some(Bytes::from(opening)),
            cut: Box::pin(cut),
            ended: false,
            _permit: permit,
        }
    }

    fn fail(&mut self, error: &ApiError) -> Bytes {
        self.ended = true;
        Bytes::from(error.sse_frame())
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(ready) = this.ready.take() {
            return Poll::Ready(Some(Ok(ready)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if this.cut.poll_unpin(cx).is_ready() {
            let frame = this.fail(&ApiError::draining());
            return Poll::Ready(Some(Ok(frame)));
        }
        // Everything the engine has ready goes out in one frame write.
        let mut out = Vec::new();
        loop {
            match this.chunks.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let done = matches!(chunk, StreamChunk::Done(_));
                    this.encoder.chunk(&chunk, &mut out);
                    if done {
                        this.ended = true;
                        break;
                    }
                    if out.len() >= 16 * 1024 {
                        break;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    out.extend_from_slice(&this.fail(&ApiError::from_failover(&error)));
                    break;
                }
                // The engine always ends a stream with `Done` or an error; should it not,
                // the client must still not read a clean end.
                Poll::Ready(None) => {
                    let error =
                        ApiError::stream_interrupted("the stream ended without its completion");
                    out.extend_from_slice(&this.fail(&error));
                    break;
                }
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }
}
