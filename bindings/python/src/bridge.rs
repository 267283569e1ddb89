//! Engine futures as asyncio awaitables.
//!
//! `into_awaitable` polls the engine's future once on the calling thread, with the GIL
//! released and inside the binding's runtime. An answer that is ready at once (a memory
//! cache hit, a chunk already buffered) comes back as an already-resolved asyncio future:
//! no thread hop, no loop wake-up. Otherwise the future (already polled once; the task
//! polls it again, so no wake-up is lost) is spawned on the runtime, and its result is
//! handed to the asyncio loop with `call_soon_threadsafe`.
//!
//! Cancelling the asyncio future (task cancellation, a timeout, the loop's shutdown)
//! aborts the tokio task: the engine's future is dropped and settles the call as
//! cancelled. A result that arrives for a cancelled future, or after its loop closed, is
//! dropped quietly — never an "Event loop is closed" error.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;
use tokio::task::AbortHandle;

use crate::runtime::runtime;

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COMPLETE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `asyncio.get_running_loop()`, or Python's own `RuntimeError` outside a running loop.
fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let get = GET_RUNNING_LOOP.get_or_try_init(py, || {
        py.import("asyncio")?
            .getattr("get_running_loop")
            .map(Bound::unbind)
    })?;
    get.bind(py).call0()
}

/// Sets the future's result or exception unless it is already done (cancelled meanwhile).
/// Runs on the loop's thread, scheduled by `call_soon_threadsafe`.
fn complete(future: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, failed: bool) -> PyResult<()> {
    let py = future.py();
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    if failed {
        future.call_method1(intern!(py, "set_exception"), (value,))?;
    } else {
        future.call_method1(intern!(py, "set_result"), (value,))?;
    }
    Ok(())
}

fn completer(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    COMPLETE
        .get_or_try_init(py, || {
            PyCFunction::new_closure(
                py,
                None,
                None,
                |args: &Bound<'_, pyo3::types::PyTuple>, _kwargs| -> PyResult<()> {
                    let future = args.get_item(0)?;
                    let value = args.get_item(1)?;
                    let failed = args.get_item(2)?.is_truthy()?;
                    complete(&future, &value, failed)
                },
            )
            .map(|f| f.into_any().unbind())
        })
        .map(|f| f.bind(py))
}

/// The asyncio future's done-callback: aborts the engine's task when it was cancelled.
#[pyclass(frozen)]
struct AbortOnCancel {
    handle: AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future
            .call_method0(intern!(future.py(), "cancelled"))?
            .is_truthy()?
        {
            self.handle.abort();
        }
        Ok(())
    }
}

/// The value (or exception instance) and whether it is an exception.
fn outcome<T>(py: Python<'_>, result: PyResult<T>) -> (Py<PyAny>, bool)
where
    T: for<'py> IntoPyObject<'py>,
{
    match result.and_then(|value| value.into_py_any(py)) {
        Ok(value) => (value, false),
        Err(error) => (error.into_value(py).into_any(), true),
    }
}

/// `future` as an awaitable of the running asyncio loop (see the module's docs).
pub(crate) fn into_awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = running_loop(py)?;
    let py_future = event_loop.call_method0(intern!(py, "create_future"))?;
    let mut future = Box::pin(future);
    let first = py.detach(|| {
        let _runtime = runtime().enter();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        pin!(&mut future).poll(&mut cx)
    });
    if let Poll::Ready(result) = first {
        let (value, failed) = outcome(py, result);
        complete(&py_future, value.bind(py), failed)?;
        return Ok(py_future);
    }
    let loop_ref = event_loop.clone().unbind();
    let future_ref = py_future.clone().unbind();
    let task = runtime().spawn(async move {
        // A panic must not leave the awaiting coroutine waiting forever: it becomes the
        // future's exception.
        let result = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(PyRuntimeError::new_err(format!(
                "llm_failover internal error: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned())
            ))),
        };
        Python::attach(|py| {
            let future = future_ref.bind(py);
            if future
                .call_method0(intern!(py, "done"))
                .and_then(|done| done.is_truthy())
                .unwrap_or(true)
            {
                return;
            }
            let (value, failed) = outcome(py, result);
            let scheduled = completer(py).and_then(|complete| {
                loop_ref.bind(py).call_method1(
                    intern!(py, "call_soon_threadsafe"),
                    (complete, future, value, failed),
                )
            });
            // The loop closed while the call ran: nobody awaits the answer any more.
            drop(scheduled);
        });
    });
    py_future.call_method1(
        intern!(py, "add_done_callback"),
        (AbortOnCancel {
            handle: task.abort_handle(),
        },),
    )?;
    Ok(py_future)
}
