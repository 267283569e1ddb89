//! A provider's circuit breaker as the seed's object: `force_open()`, `force_close()`,
//! `reset()`, `state`.

use failover_core::FailoverAdapter;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors;

/// One provider's circuit breaker (a handle: the breaker lives in the adapter).
#[pyclass(name = "CircuitBreaker", module = "llm_failover._native", frozen)]
pub(crate) struct CircuitBreakerHandle {
    adapter: FailoverAdapter,
    name: String,
}

impl CircuitBreakerHandle {
    pub(crate) fn new(adapter: FailoverAdapter, name: &str) -> Self {
        Self {
            adapter,
            name: name.to_owned(),
        }
    }

    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&dyn failover_breaker::Breaker) -> T,
    ) -> PyResult<T> {
        self.adapter
            .breaker(&self.name)
            .map(|breaker| f(breaker.as_ref()))
            .ok_or_else(|| errors::invalid(py, format!("no provider named `{}`", self.name)))
    }
}

#[pymethods]
impl CircuitBreakerHandle {
    /// Opens the breaker until `reset()` or `force_close()`: the provider is skipped.
    fn force_open(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |b| b.force_open())
    }

    /// Holds the breaker closed (every call admitted, nothing counted) until `reset()`.
    /// After `force_open()` it is the seed's way back: the provider is called again.
    fn force_close(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |b| b.force_close())
    }

    /// A fresh CLOSED breaker, counters cleared and any forced state released.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |b| b.reset())
    }

    /// `CLOSED`, `OPEN`, `HALF_OPEN`, `FORCED_OPEN` or `FORCED_CLOSED`. An OPEN breaker whose
    /// period has ended reads OPEN until the next call probes it (HALF_OPEN).
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with(py, |b| b.snapshot().state.as_str())
    }

    /// The provider's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// State, counters and the recent transitions (`[(from, to), ...]`, oldest first).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = self.with(py, |b| b.snapshot())?;
        let dict = PyDict::new(py);
        dict.set_item("state", snapshot.state.as_str())?;
        dict.set_item("failures", snapshot.failures)?;
        dict.set_item("successes", snapshot.successes)?;
        dict.set_item("consecutive_failures", snapshot.consecutive_failures)?;
        dict.set_item("failure_rate", snapshot.failure_rate)?;
        dict.set_item("rejected", snapshot.rejected)?;
        dict.set_item("trips", snapshot.trips)?;
        dict.set_item("last_error_kind", snapshot.last_error_kind)?;
        dict.set_item(
            "next_probe_in",
            snapshot.next_probe_at.map(|at| {
                at.saturating_duration_since(std::time::Instant::now())
                    .as_secs_f64()
            }),
        )?;
        let transitions = PyList::empty(py);
        for t in &snapshot.recent_transitions {
            transitions.append((t.from.as_str(), t.to.as_str()))?;
        }
        dict.set_item("transitions", transitions)?;
        Ok(dict)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CircuitBreaker(name={:?}, state={})",
            self.name,
            self.state(py)?
        ))
    }
}
