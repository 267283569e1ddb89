//! The engine's errors as the Python exceptions of `llm_failover.errors` (a pure-Python
//! module: the hierarchy, its docstrings and attributes live there). Messages are the
//! engine's own `Display`.

use failover_core::FailoverError;
use failover_core::layers::RejectionKind;
use failover_provider::{AttemptOutcome, AttemptRecord};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Extra attributes set on an exception: name and value.
type Attributes<'a> = Vec<(&'a str, Py<PyAny>)>;

/// `llm_failover.errors.<class_name>(message)` with `attributes` set on it, as a `PyErr`.
pub(crate) fn python_error(
    py: Python<'_>,
    class_name: &str,
    message: String,
    attributes: &[(&str, Py<PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module =
            ERRORS.get_or_try_init(py, || py.import("llm_failover.errors").map(Bound::unbind))?;
        let class = module.bind(py).getattr(class_name)?;
        let instance = class.call1((message.clone(),))?;
        for (name, value) in attributes {
            instance.setattr(*name, value.bind(py))?;
        }
        Ok(PyErr::from_value(instance))
    };
    // The errors module is part of the package; failing to load it is itself the error.
    build().unwrap_or_else(|error| error)
}

/// An invalid argument, before the engine is asked: `InvalidRequest`.
pub(crate) fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    python_error(py, "InvalidRequest", message.into(), &[])
}

/// A configuration the adapter cannot start with: `ConfigurationError`.
pub(crate) fn configuration(py: Python<'_>, message: impl Into<String>) -> PyErr {
    python_error(py, "ConfigurationError", message.into(), &[])
}

/// The usage ledger failed: `UsageLedgerError`.
pub(crate) fn usage(py: Python<'_>, error: &failover_usage::UsageError) -> PyErr {
    python_error(py, "UsageLedgerError", error.to_string(), &[])
}

/// A cache operation failed: `CacheError`.
pub(crate) fn cache(py: Python<'_>, error: &failover_cache::CacheError) -> PyErr {
    python_error(py, "CacheError", error.to_string(), &[])
}

fn none(py: Python<'_>) -> Py<PyAny> {
    py.None()
}

fn text(py: Python<'_>, value: &str) -> Py<PyAny> {
    value
        .into_pyobject(py)
        .map_or_else(|_| none(py), |s| s.into_any().unbind())
}

/// One attempt as a dict: provider, model, outcome, error kind and message, latency.
pub(crate) fn attempt_dict<'py>(
    py: Python<'py>,
    attempt: &AttemptRecord,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("provider", &attempt.provider)?;
    dict.set_item("model", &attempt.model)?;
    let (outcome, kind, message): (&str, Option<String>, Option<String>) = match &attempt.outcome {
        AttemptOutcome::Succeeded => ("succeeded", None, None),
        AttemptOutcome::Failed { kind, message, .. } => {
            ("failed", Some(kind.to_string()), Some(message.clone()))
        }
        AttemptOutcome::SkippedBreakerOpen { .. } => ("skipped_breaker_open", None, None),
        AttemptOutcome::SkippedUnsupported { reason, .. } => {
            ("skipped_unsupported", None, Some(reason.to_string()))
        }
        AttemptOutcome::SkippedRejected { reason, .. } => {
            ("skipped_rejected", None, Some(reason.to_string()))
        }
    };
    dict.set_item("outcome", outcome)?;
    dict.set_item("error_kind", kind)?;
    dict.set_item("message", message)?;
    dict.set_item("latency", attempt.latency.as_secs_f64())?;
    Ok(dict)
}

fn attempts_list(py: Python<'_>, attempts: &[AttemptRecord]) -> Py<PyAny> {
    let build = || -> PyResult<Py<PyAny>> {
        let list = PyList::empty(py);
        for attempt in attempts {
            list.append(attempt_dict(py, attempt)?)?;
        }
        Ok(list.into_any().unbind())
    };
    build().unwrap_or_else(|_| none(py))
}

fn seconds(py: Python<'_>, duration: Option<std::time::Duration>) -> Py<PyAny> {
    match duration {
        Some(d) => d
            .as_secs_f64()
            .into_pyobject(py)
            .map_or_else(|_| none(py), |f| f.into_any().unbind()),
        None => none(py),
    }
}

/// The engine's error as its Python exception, with `request_id`, `attempts` and
/// `retry_after` (seconds) where the engine knows them.
pub(crate) fn failover(py: Python<'_>, error: FailoverError) -> PyErr {
    let message = error.to_string();
    let attempts = attempts_list(py, error.attempts());
    let retry_after = seconds(py, error.retry_after());
    let (class, request_id, extra): (&str, Option<String>, Attributes<'_>) = match &error {
        FailoverError::Invalid(_) => ("InvalidRequest", None, vec![]),
        FailoverError::ShutDown => ("AdapterShutDown", None, vec![]),
        FailoverError::Rejected {
            request_id,
            layer,
            reason,
            kind,
            ..
        } => (
            match kind {
                RejectionKind::BudgetExceeded => "BudgetExceeded",
                RejectionKind::RateLimited => "RateLimited",
                RejectionKind::LimitUnavailable => "LimitUnavailable",
                _ => "RequestRejected",
            },
            Some(request_id.as_str().to_owned()),
            vec![("layer", text(py, layer)), ("reason", text(py, reason))],
        ),
        FailoverError::AllProvidersFailed { request_id, .. } => (
            "AllProvidersFailed",
            Some(request_id.as_str().to_owned()),
            vec![],
        ),
        FailoverError::Unavailable { request_id, .. } => (
            "ProvidersUnavailable",
            Some(request_id.as_str().to_owned()),
            vec![],
        ),
        FailoverError::Refused {
            request_id,
            provider,
            kind,
            ..
        } => (
            "ProviderRefused",
            Some(request_id.as_str().to_owned()),
            vec![
                ("provider", text(py, provider)),
                ("error_kind", text(py, &kind.to_string())),
            ],
        ),
        FailoverError::DeadlineExceeded { request_id, .. } => (
            "DeadlineExceeded",
            Some(request_id.as_str().to_owned()),
            vec![],
        ),
        FailoverError::StreamInterrupted {
            request_id,
            provider,
            kind,
            ..
        } => (
            "StreamInterrupted",
            Some(request_id.as_str().to_owned()),
            vec![
                ("provider", text(py, provider)),
                ("error_kind", text(py, &kind.to_string())),
            ],
        ),
        // A variant added to the engine later: still an llm_failover error, with its message.
        _ => ("LLMFailoverError", None, vec![]),
    };
    let request_id = request_id.map_or_else(|| none(py), |id| text(py, &id));
    let mut attributes = vec![
        ("request_id", request_id),
        ("attempts", attempts),
        ("retry_after", retry_after),
    ];
    attributes.extend(extra);
    python_error(py, class, message, &attributes)
}
