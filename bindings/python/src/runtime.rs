//! The one tokio runtime of the binding, and how calls reach it without holding the GIL.

use std::future::Future;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// The binding's runtime: pyo3-async-runtimes' tokio runtime (multi-threaded, created on
/// first use, alive for the life of the process). Async methods run their engine futures
/// on it; synchronous methods block the calling thread on it with the GIL released.
pub(crate) fn runtime() -> &'static Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `future` to completion on the binding's runtime from a Python thread, with the GIL
/// released meanwhile (other Python threads run). Refused, rather than a panic, on a thread
/// that is itself running the runtime's tasks.
pub(crate) fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a synchronous llm_failover call cannot run on the binding's own runtime threads",
        ));
    }
    Ok(py.detach(|| runtime().block_on(future)))
}
