//! `adapter.stream_completion(...)`: an async (and sync) iterator over the engine's stream.
//! The stream opens on the first `__anext__`; dropping the iterator (or `aclose()`) drops
//! the engine's stream, which records the usage as cancelled with the tokens so far.

use std::sync::Arc;

use failover_core::FailoverAdapter;
use failover_provider::{CompletionRequest, StreamChunk};
use futures::StreamExt;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use tokio::sync::Mutex;

use crate::convert::ChunkResult;
use crate::errors;
use crate::runtime::block_on;

enum State {
    /// Not opened yet.
    Pending(FailoverAdapter, Box<CompletionRequest>),
    /// Open: chunks flow.
    Open(failover_core::CompletionStream),
    /// Ended (done, failed or closed).
    Finished,
}

/// The next chunk: `Ok(None)` at the end; an error ends the stream.
async fn next(state: &Mutex<State>) -> Result<Option<StreamChunk>, failover_core::FailoverError> {
    let mut state = state.lock().await;
    if matches!(&*state, State::Pending(..))
        && let State::Pending(adapter, request) = std::mem::replace(&mut *state, State::Finished)
    {
        *state = State::Open(adapter.stream_completion(*request).await?);
    }
    let State::Open(stream) = &mut *state else {
        return Ok(None);
    };
    match stream.next().await {
        Some(Ok(chunk)) => Ok(Some(chunk)),
        Some(Err(error)) => {
            *state = State::Finished;
            Err(error)
        }
        None => {
            *state = State::Finished;
            Ok(None)
        }
    }
}

/// A streamed completion: `async for chunk in stream` (or `for chunk in stream`).
#[pyclass(module = "llm_failover._native", frozen)]
pub(crate) struct CompletionStream {
    state: Arc<Mutex<State>>,
}

impl CompletionStream {
    pub(crate) fn new(adapter: FailoverAdapter, request: CompletionRequest) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::Pending(adapter, Box::new(request)))),
        }
    }
}

impl Drop for CompletionStream {
    fn drop(&mut self) {
        // The engine settles a dropped stream (usage recorded as cancelled): do it inside
        // the runtime, whichever Python thread collects the iterator.
        let _runtime = crate::runtime::runtime().enter();
        let state = std::mem::replace(&mut self.state, Arc::new(Mutex::new(State::Finished)));
        drop(state);
    }
}

#[pymethods]
impl CompletionStream {
    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        crate::bridge::into_awaitable(py, async move {
            match next(&state).await {
                Ok(Some(chunk)) => Ok(ChunkResult(chunk)),
                Ok(None) => Err(PyStopAsyncIteration::new_err(())),
                Err(error) => Err(Python::attach(|py| errors::failover(py, error))),
            }
        })
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<ChunkResult> {
        match block_on(py, next(&self.state))? {
            Ok(Some(chunk)) => Ok(ChunkResult(chunk)),
            Ok(None) => Err(PyStopIteration::new_err(())),
            Err(error) => Err(errors::failover(py, error)),
        }
    }

    /// `await stream.aclose()`: ends the stream now (the engine records it as cancelled
    /// when it had not finished).
    fn aclose<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        crate::bridge::into_awaitable(py, async move {
            *state.lock().await = State::Finished;
            Ok(())
        })
    }

    /// `stream.close()`: [`aclose`](Self::aclose), blocking.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let state = &self.state;
        block_on(py, async move {
            *state.lock().await = State::Finished;
        })
    }
}
