//! The engine's answers as the seed's dicts: a completion, a stream chunk, the health
//! report and the usage statistics.

use std::time::Instant;

use failover_core::HealthReport;
use failover_provider::{
    AttemptRecord, Completion, FinishReason, StreamChunk, StreamSummary, TokenUsage, ToolCall, Usd,
};
use failover_usage::{UsageBucket, UsageStats};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::attempt_dict;

/// The engine's finish reason, in OpenAI's words where it has one.
fn finish_reason(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolUse => "tool_calls",
        FinishReason::Other(other) => other,
    }
}

/// A tool call in OpenAI's shape: `{"id", "type": "function", "function": {"name",
/// "arguments"}}` (arguments as JSON text, as OpenAI sends them).
fn tool_calls<'py>(py: Python<'py>, calls: &[ToolCall]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for call in calls {
        let function = PyDict::new(py);
        function.set_item(intern!(py, "name"), &call.name)?;
        function.set_item(intern!(py, "arguments"), &call.arguments)?;
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "id"), &call.id)?;
        dict.set_item(intern!(py, "type"), intern!(py, "function"))?;
        dict.set_item(intern!(py, "function"), function)?;
        list.append(dict)?;
    }
    Ok(list)
}

fn usage_dict<'py>(py: Python<'py>, usage: &TokenUsage) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "input_tokens"), usage.input_tokens)?;
    dict.set_item(intern!(py, "output_tokens"), usage.output_tokens)?;
    dict.set_item(intern!(py, "cache_read_tokens"), usage.cache_read_tokens)?;
    dict.set_item(intern!(py, "cache_write_tokens"), usage.cache_write_tokens)?;
    dict.set_item(intern!(py, "total_tokens"), usage.total_tokens())?;
    Ok(dict)
}

fn attempts<'py>(py: Python<'py>, attempts: &[AttemptRecord]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for attempt in attempts {
        list.append(attempt_dict(py, attempt)?)?;
    }
    Ok(list)
}

/// The fields a completion and a stream's summary share.
struct Answer<'a> {
    request_id: &'a str,
    provider: &'a str,
    model: &'a str,
    tool_calls: &'a [ToolCall],
    finish_reason: &'a FinishReason,
    usage: &'a TokenUsage,
    estimated_cost: &'a Usd,
    cached: bool,
    latency: std::time::Duration,
    attempts: &'a [AttemptRecord],
}

impl Answer<'_> {
    fn fill(&self, py: Python<'_>, dict: &Bound<'_, PyDict>) -> PyResult<()> {
        dict.set_item(intern!(py, "provider"), self.provider)?;
        dict.set_item(intern!(py, "model"), self.model)?;
        dict.set_item(intern!(py, "tokens"), self.usage.total_tokens())?;
        dict.set_item(intern!(py, "input_tokens"), self.usage.input_tokens)?;
        dict.set_item(intern!(py, "output_tokens"), self.usage.output_tokens)?;
        dict.set_item(intern!(py, "usage"), usage_dict(py, self.usage)?)?;
        dict.set_item(intern!(py, "estimated_cost"), self.estimated_cost.to_f64())?;
        dict.set_item(
            intern!(py, "estimated_cost_usd"),
            self.estimated_cost.amount().to_string(),
        )?;
        dict.set_item(intern!(py, "cached"), self.cached)?;
        dict.set_item(intern!(py, "latency"), self.latency.as_secs_f64())?;
        dict.set_item(
            intern!(py, "latency_ms"),
            self.latency.as_secs_f64() * 1000.0,
        )?;
        dict.set_item(intern!(py, "request_id"), self.request_id)?;
        dict.set_item(
            intern!(py, "finish_reason"),
            finish_reason(self.finish_reason),
        )?;
        dict.set_item(intern!(py, "tool_calls"), tool_calls(py, self.tool_calls)?)?;
        dict.set_item(intern!(py, "attempts"), attempts(py, self.attempts)?)?;
        Ok(())
    }
}

/// A completion, converted to the seed's dict when handed to Python.
pub(crate) struct CompletionResult(pub(crate) Completion);

impl<'py> IntoPyObject<'py> for CompletionResult {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.0;
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "content"), &c.content)?;
        Answer {
            request_id: c.request_id.as_str(),
            provider: &c.provider,
            model: &c.model,
            tool_calls: &c.tool_calls,
            finish_reason: &c.finish_reason,
            usage: &c.usage,
            estimated_cost: &c.estimated_cost,
            cached: c.cached,
            latency: c.latency,
            attempts: &c.attempts,
        }
        .fill(py, &dict)?;
        Ok(dict)
    }
}

fn summary_dict<'py>(py: Python<'py>, s: &StreamSummary) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "type"), intern!(py, "done"))?;
    Answer {
        request_id: s.request_id.as_str(),
        provider: &s.provider,
        model: &s.model,
        tool_calls: &s.tool_calls,
        finish_reason: &s.finish_reason,
        usage: &s.usage,
        estimated_cost: &s.estimated_cost,
        cached: s.cached,
        latency: s.latency,
        attempts: &s.attempts,
    }
    .fill(py, &dict)?;
    Ok(dict)
}

/// A stream item, converted when handed to Python: `{"type": "delta", "content": …}`,
/// `tool_call_start` / `tool_call_delta` / `tool_call_end`, and `done` with the summary.
pub(crate) struct ChunkResult(pub(crate) StreamChunk);

impl<'py> IntoPyObject<'py> for ChunkResult {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        let kind = intern!(py, "type");
        match &self.0 {
            StreamChunk::Delta { text } => {
                dict.set_item(kind, intern!(py, "delta"))?;
                dict.set_item(intern!(py, "content"), text)?;
            }
            StreamChunk::ToolCallStart { index, id, name } => {
                dict.set_item(kind, intern!(py, "tool_call_start"))?;
                dict.set_item(intern!(py, "index"), index)?;
                dict.set_item(intern!(py, "id"), id)?;
                dict.set_item(intern!(py, "name"), name)?;
            }
            StreamChunk::ToolCallDelta { index, arguments } => {
                dict.set_item(kind, intern!(py, "tool_call_delta"))?;
                dict.set_item(intern!(py, "index"), index)?;
                dict.set_item(intern!(py, "arguments"), arguments)?;
            }
            StreamChunk::ToolCallEnd { index } => {
                dict.set_item(kind, intern!(py, "tool_call_end"))?;
                dict.set_item(intern!(py, "index"), index)?;
            }
            StreamChunk::Done(summary) => return summary_dict(py, summary),
        }
        Ok(dict)
    }
}

/// Seconds from now until `at`, or `None`.
fn seconds_until(at: Option<Instant>) -> Option<f64> {
    at.map(|at| at.saturating_duration_since(Instant::now()).as_secs_f64())
}

/// The seed's health dict: `status`, `providers[name]["circuit_breaker_state"]` (and the
/// breaker's counters), `cache`, `usage`, `problems`.
pub(crate) fn health<'py>(py: Python<'py>, report: &HealthReport) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let status = match report.status {
        failover_core::HealthStatus::Healthy => "healthy",
        failover_core::HealthStatus::Degraded => "degraded",
        failover_core::HealthStatus::Unhealthy => "unhealthy",
    };
    dict.set_item("status", status)?;
    let providers = PyDict::new(py);
    for provider in &report.providers {
        let b = &provider.breaker;
        let entry = PyDict::new(py);
        entry.set_item("circuit_breaker_state", b.state.as_str())?;
        entry.set_item(
            "available",
            !matches!(
                b.state,
                failover_breaker::BreakerState::Open | failover_breaker::BreakerState::ForcedOpen
            ),
        )?;
        entry.set_item("failures", b.failures)?;
        entry.set_item("successes", b.successes)?;
        entry.set_item("consecutive_failures", b.consecutive_failures)?;
        entry.set_item("failure_rate", b.failure_rate)?;
        entry.set_item("rejected", b.rejected)?;
        entry.set_item("trips", b.trips)?;
        entry.set_item("last_error_kind", b.last_error_kind)?;
        entry.set_item("next_probe_in", seconds_until(b.next_probe_at))?;
        entry.set_item("needs_operator", b.needs_operator)?;
        entry.set_item("streaming", provider.capabilities.streaming)?;
        providers.set_item(&provider.name, entry)?;
    }
    dict.set_item("providers", providers)?;
    match &report.cache {
        Some(cache) => {
            let entry = PyDict::new(py);
            entry.set_item("backend", &cache.backend.backend)?;
            entry.set_item("available", cache.available)?;
            entry.set_item("hits", cache.hits)?;
            entry.set_item("misses", cache.misses)?;
            entry.set_item("errors", cache.errors)?;
            entry.set_item("timeouts", cache.timeouts)?;
            entry.set_item("coalesced", cache.coalesced)?;
            entry.set_item("entries", cache.backend.entries)?;
            entry.set_item("degraded", &cache.backend.degraded)?;
            dict.set_item("cache", entry)?;
        }
        None => dict.set_item("cache", py.None())?,
    }
    dict.set_item("usage", pythonize::pythonize(py, &report.usage)?)?;
    dict.set_item("usage_records_refused", report.usage_records_refused)?;
    dict.set_item("problems", &report.problems)?;
    Ok(dict)
}

fn bucket_fields(py: Python<'_>, dict: &Bound<'_, PyDict>, b: &UsageBucket) -> PyResult<()> {
    dict.set_item("calls", b.calls)?;
    dict.set_item("successes", b.successes)?;
    dict.set_item("failures", b.failures)?;
    dict.set_item("cancelled", b.cancelled)?;
    dict.set_item("cache_hits", b.cache_hits)?;
    dict.set_item("rejected", b.rejected)?;
    dict.set_item("tokens", b.tokens.total_tokens())?;
    dict.set_item("usage", usage_dict(py, &b.tokens)?)?;
    dict.set_item("estimated_cost", b.cost.to_f64())?;
    dict.set_item("estimated_cost_usd", b.cost.amount().to_string())?;
    Ok(())
}

fn buckets<'py>(
    py: Python<'py>,
    map: &std::collections::BTreeMap<String, UsageBucket>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (name, bucket) in map {
        let entry = PyDict::new(py);
        bucket_fields(py, &entry, bucket)?;
        dict.set_item(name, entry)?;
    }
    Ok(dict)
}

/// Usage statistics: totals (`total_requests` is every record: provider calls, plus cache
/// hits when those are recorded), `total_tokens`, `total_cost`, and per tenant, agent,
/// provider and model.
pub(crate) struct StatsResult(pub(crate) UsageStats);

impl<'py> IntoPyObject<'py> for StatsResult {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.0;
        let dict = PyDict::new(py);
        dict.set_item("total_requests", s.records)?;
        dict.set_item("successes", s.successes)?;
        dict.set_item("failures", s.failures)?;
        dict.set_item("cancelled", s.cancelled)?;
        dict.set_item("cache_hits", s.cache_hits)?;
        dict.set_item("rejected", s.rejected)?;
        dict.set_item("fallbacks", s.fallbacks)?;
        dict.set_item("estimated_tokens", s.estimated)?;
        dict.set_item("total_tokens", s.tokens.total_tokens())?;
        dict.set_item("usage", usage_dict(py, &s.tokens)?)?;
        dict.set_item("total_cost", s.cost.to_f64())?;
        dict.set_item("total_cost_usd", s.cost.amount().to_string())?;
        dict.set_item("by_tenant", buckets(py, &s.by_tenant)?)?;
        dict.set_item("by_agent", buckets(py, &s.by_agent)?)?;
        dict.set_item("by_provider", buckets(py, &s.by_provider)?)?;
        dict.set_item("by_model", buckets(py, &s.by_model)?)?;
        Ok(dict)
    }
}
