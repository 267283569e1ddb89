//! `AWSLLMAdapter`: the seed's API over [`FailoverAdapter`].

use std::sync::Arc;
use std::time::Duration;

use failover_core::FailoverAdapter;
use failover_dynamodb::DynamoDbUsageSink;
use failover_usage::UsageQuery;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::breaker::CircuitBreakerHandle;
use crate::config::{AdapterOptions, build};
use crate::convert::{CompletionResult, StatsResult, health};
use crate::errors;
use crate::request::RequestArgs;
use crate::runtime::block_on;
use crate::stream::CompletionStream;

/// Resilient LLM access: Bedrock first, OpenAI as the fallback, one circuit breaker each,
/// a tenant-bound response cache and a usage ledger — the engine, with the seed's API.
#[pyclass(
    name = "AWSLLMAdapter",
    module = "llm_failover._native",
    frozen,
    subclass
)]
pub(crate) struct AwsLlmAdapter {
    adapter: FailoverAdapter,
    dynamodb: Option<Arc<DynamoDbUsageSink>>,
    description: Vec<String>,
}

/// Seconds as a duration, or an `InvalidRequest` naming `field`.
fn seconds(py: Python<'_>, field: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| *d <= Duration::from_secs(365 * 24 * 3600))
                .ok_or_else(|| {
                    errors::configuration(
                        py,
                        format!("{field} must be a non-negative number of seconds, got {secs}"),
                    )
                })
        })
        .transpose()
}

fn millis(py: Python<'_>, field: &str, value: Option<f64>) -> PyResult<Option<u64>> {
    value
        .map(|ms| {
            if ms.is_finite() && ms >= 0.0 {
                Ok(ms as u64)
            } else {
                Err(errors::invalid(
                    py,
                    format!("{field} must be a non-negative time in ms since the epoch"),
                ))
            }
        })
        .transpose()
}

impl AwsLlmAdapter {
    fn breaker_handle(&self, py: Python<'_>, name: &str) -> PyResult<CircuitBreakerHandle> {
        if self.adapter.breaker(name).is_none() {
            return Err(errors::invalid(
                py,
                format!(
                    "no provider named `{name}` (providers: {})",
                    self.adapter.provider_names().join(", ")
                ),
            ));
        }
        Ok(CircuitBreakerHandle::new(self.adapter.clone(), name))
    }

    fn query(
        py: Python<'_>,
        tenant_id: Option<String>,
        agent_id: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
    ) -> PyResult<UsageQuery> {
        let mut query = UsageQuery::all();
        if let Some(tenant) = tenant_id {
            query = query.with_tenant(tenant);
        }
        if let Some(agent) = agent_id {
            query = query.with_agent(agent);
        }
        if let Some(from) = millis(py, "since", since)? {
            query = query.since(from);
        }
        if let Some(to) = millis(py, "until", until)? {
            query = query.until(to);
        }
        Ok(query)
    }
}

#[pymethods]
#[allow(clippy::too_many_arguments)]
impl AwsLlmAdapter {
    /// Builds the adapter from keyword arguments, the rest from the environment
    /// (`AWS_REGION`, the AWS credential chain, `OPENAI_API_KEY`, `ELASTICACHE_ENDPOINT`,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, `OPENAI_BASE_URL`, `DYNAMODB_ENDPOINT`,
    /// `FAILOVER_DYNAMODB_TABLE`, `FAILOVER_CACHE_KEY`, `FAILOVER_CACHE_ENCRYPTION_KEY`).
    /// With `shared_state_url` (a Redis/ElastiCache every process of the application
    /// reaches) the breakers are shared, and `tenant_limits` (`{"default": {...},
    /// "tenants": {"acme": {...}}}` with `usd_per_day`, `usd_per_month`,
    /// `requests_per_minute`, `tokens_per_minute`) are enforced across them.
    #[new]
    #[pyo3(signature = (
        region_name=None, elasticache_endpoint=None, *, bedrock_endpoint_url=None,
        openai_api_key=None, openai_base_url=None, aws_access_key_id=None,
        aws_secret_access_key=None, aws_session_token=None, dynamodb_endpoint=None,
        dynamodb_table=None, create_dynamodb_table=false, cache=true, cache_ttl=None,
        failure_threshold=None, recovery_timeout=None, max_attempts=None, timeout=None,
        shared_state_url=None, shared_state_prefix=None, tenant_limits=None
    ))]
    fn new(
        py: Python<'_>,
        region_name: Option<String>,
        elasticache_endpoint: Option<String>,
        bedrock_endpoint_url: Option<String>,
        openai_api_key: Option<String>,
        openai_base_url: Option<String>,
        aws_access_key_id: Option<String>,
        aws_secret_access_key: Option<String>,
        aws_session_token: Option<String>,
        dynamodb_endpoint: Option<String>,
        dynamodb_table: Option<String>,
        create_dynamodb_table: bool,
        cache: bool,
        cache_ttl: Option<f64>,
        failure_threshold: Option<u32>,
        recovery_timeout: Option<f64>,
        max_attempts: Option<u32>,
        timeout: Option<f64>,
        shared_state_url: Option<String>,
        shared_state_prefix: Option<String>,
        tenant_limits: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let tenant_limits = tenant_limits
            .map(|limits| pythonize::depythonize::<failover_shared::LimitsConfig>(&limits))
            .transpose()
            .map_err(|error| errors::configuration(py, format!("tenant_limits: {error}")))?;
        let options = AdapterOptions {
            region_name,
            elasticache_endpoint,
            bedrock_endpoint_url,
            openai_api_key,
            openai_base_url,
            aws_access_key_id,
            aws_secret_access_key,
            aws_session_token,
            dynamodb_endpoint,
            dynamodb_table,
            create_dynamodb_table,
            cache,
            cache_ttl: seconds(py, "cache_ttl", cache_ttl)?,
            failure_threshold,
            recovery_timeout: seconds(py, "recovery_timeout", recovery_timeout)?,
            max_attempts,
            timeout: match seconds(py, "timeout", timeout)? {
                Some(zero) if zero.is_zero() => {
                    return Err(errors::configuration(py, "timeout must be above 0 seconds"));
                }
                other => other,
            },
            shared_state_url,
            shared_state_prefix,
            tenant_limits,
        };
        let built = block_on(py, build(options))?.map_err(|e| errors::configuration(py, e))?;
        Ok(Self {
            adapter: built.adapter,
            dynamodb: built.dynamodb,
            description: built.description,
        })
    }

    /// `await adapter.generate_completion(prompt=..., agent_id=..., tenant_id=..., model=...,
    /// temperature=..., max_tokens=..., response_format=...)`: the seed's dict.
    #[pyo3(signature = (
        prompt=None, agent_id=None, tenant_id=None, model=None, temperature=None,
        max_tokens=None, response_format=None, *, messages=None, system=None, images=None,
        tools=None, tool_choice=None, parallel_tool_calls=None, stop=None, top_p=None,
        seed=None, user=None, timeout=None, request_id=None
    ))]
    fn generate_completion<'py>(
        &self,
        py: Python<'py>,
        prompt: Option<String>,
        agent_id: Option<String>,
        tenant_id: Option<String>,
        model: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<i64>,
        response_format: Option<Bound<'py, PyAny>>,
        messages: Option<Bound<'py, PyAny>>,
        system: Option<String>,
        images: Option<Bound<'py, PyAny>>,
        tools: Option<Bound<'py, PyAny>>,
        tool_choice: Option<Bound<'py, PyAny>>,
        parallel_tool_calls: Option<bool>,
        stop: Option<Bound<'py, PyAny>>,
        top_p: Option<f64>,
        seed: Option<i64>,
        user: Option<String>,
        timeout: Option<f64>,
        request_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = RequestArgs {
            prompt,
            agent_id,
            tenant_id,
            model,
            temperature,
            max_tokens,
            response_format,
            messages,
            system,
            images,
            tools,
            tool_choice,
            parallel_tool_calls,
            stop,
            top_p,
            seed,
            user,
            timeout,
            request_id,
        }
        .into_request(py)?;
        let adapter = self.adapter.clone();
        crate::bridge::into_awaitable(py, async move {
            match adapter.generate_completion(request).await {
                Ok(completion) => Ok(CompletionResult(completion)),
                Err(error) => Err(Python::attach(|py| errors::failover(py, error))),
            }
        })
    }

    /// [`generate_completion`](Self::generate_completion) for synchronous code: blocks the
    /// calling thread (not the GIL) until the answer.
    #[pyo3(signature = (
        prompt=None, agent_id=None, tenant_id=None, model=None, temperature=None,
        max_tokens=None, response_format=None, *, messages=None, system=None, images=None,
        tools=None, tool_choice=None, parallel_tool_calls=None, stop=None, top_p=None,
        seed=None, user=None, timeout=None, request_id=None
    ))]
    fn generate_completion_sync<'py>(
        &self,
        py: Python<'py>,
        prompt: Option<String>,
        agent_id: Option<String>,
        tenant_id: Option<String>,
        model: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<i64>,
        response_format: Option<Bound<'py, PyAny>>,
        messages: Option<Bound<'py, PyAny>>,
        system: Option<String>,
        images: Option<Bound<'py, PyAny>>,
        tools: Option<Bound<'py, PyAny>>,
        tool_choice: Option<Bound<'py, PyAny>>,
        parallel_tool_calls: Option<bool>,
        stop: Option<Bound<'py, PyAny>>,
        top_p: Option<f64>,
        seed: Option<i64>,
        user: Option<String>,
        timeout: Option<f64>,
        request_id: Option<String>,
    ) -> PyResult<CompletionResult> {
        let request = RequestArgs {
            prompt,
            agent_id,
            tenant_id,
            model,
            temperature,
            max_tokens,
            response_format,
            messages,
            system,
            images,
            tools,
            tool_choice,
            parallel_tool_calls,
            stop,
            top_p,
            seed,
            user,
            timeout,
            request_id,
        }
        .into_request(py)?;
        let adapter = &self.adapter;
        block_on(py, adapter.generate_completion(request))?
            .map(CompletionResult)
            .map_err(|error| errors::failover(py, error))
    }

    /// `async for chunk in adapter.stream_completion(...)`: the same arguments; chunks are
    /// dicts (`{"type": "delta", "content": ...}`, tool-call items, and a last `done` with
    /// the seed's fields). Also iterable with a plain `for` (blocking, GIL released).
    #[pyo3(signature = (
        prompt=None, agent_id=None, tenant_id=None, model=None, temperature=None,
        max_tokens=None, response_format=None, *, messages=None, system=None, images=None,
        tools=None, tool_choice=None, parallel_tool_calls=None, stop=None, top_p=None,
        seed=None, user=None, timeout=None, request_id=None
    ))]
    fn stream_completion<'py>(
        &self,
        py: Python<'py>,
        prompt: Option<String>,
        agent_id: Option<String>,
        tenant_id: Option<String>,
        model: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<i64>,
        response_format: Option<Bound<'py, PyAny>>,
        messages: Option<Bound<'py, PyAny>>,
        system: Option<String>,
        images: Option<Bound<'py, PyAny>>,
        tools: Option<Bound<'py, PyAny>>,
        tool_choice: Option<Bound<'py, PyAny>>,
        parallel_tool_calls: Option<bool>,
        stop: Option<Bound<'py, PyAny>>,
        top_p: Option<f64>,
        seed: Option<i64>,
        user: Option<String>,
        timeout: Option<f64>,
        request_id: Option<String>,
    ) -> PyResult<CompletionStream> {
        let request = RequestArgs {
            prompt,
            agent_id,
            tenant_id,
            model,
            temperature,
            max_tokens,
            response_format,
            messages,
            system,
            images,
            tools,
            tool_choice,
            parallel_tool_calls,
            stop,
            top_p,
            seed,
            user,
            timeout,
            request_id,
        }
        .into_request(py)?;
        Ok(CompletionStream::new(self.adapter.clone(), request))
    }

    /// The seed's health dict: `health["providers"]["bedrock"]["circuit_breaker_state"]`.
    fn get_health_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        health(py, &self.adapter.health())
    }

    /// Bedrock's circuit breaker: `force_open()`, `force_close()`, `reset()`, `state`.
    #[getter]
    fn bedrock_circuit_breaker(&self, py: Python<'_>) -> PyResult<CircuitBreakerHandle> {
        self.breaker_handle(py, failover_standin::seed::BEDROCK)
    }

    /// OpenAI's circuit breaker.
    #[getter]
    fn openai_circuit_breaker(&self, py: Python<'_>) -> PyResult<CircuitBreakerHandle> {
        self.breaker_handle(py, failover_standin::seed::OPENAI)
    }

    /// The circuit breaker of the provider `name`.
    fn circuit_breaker(&self, py: Python<'_>, name: &str) -> PyResult<CircuitBreakerHandle> {
        self.breaker_handle(py, name)
    }

    /// The providers, in failover order.
    #[getter]
    fn providers(&self) -> Vec<String> {
        self.adapter
            .provider_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// What the adapter talks to: one line per backend (no secrets).
    #[getter]
    fn backends(&self) -> Vec<String> {
        self.description.clone()
    }

    /// `await adapter.get_usage_statistics(tenant_id=..., agent_id=..., since=..., until=...)`
    /// (`since`/`until` in ms since the epoch): totals and per tenant, agent, provider and
    /// model, from the usage ledger. With `flush` (the default) every record of a call
    /// that already returned is stored first.
    #[pyo3(signature = (tenant_id=None, agent_id=None, since=None, until=None, *, flush=true))]
    fn get_usage_statistics<'py>(
        &self,
        py: Python<'py>,
        tenant_id: Option<String>,
        agent_id: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        flush: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query = Self::query(py, tenant_id, agent_id, since, until)?;
        let adapter = self.adapter.clone();
        crate::bridge::into_awaitable(py, async move {
            if flush {
                adapter
                    .flush_usage()
                    .await
                    .map_err(|e| Python::attach(|py| errors::usage(py, &e)))?;
            }
            adapter
                .usage_stats(&query)
                .await
                .map(StatsResult)
                .map_err(|e| Python::attach(|py| errors::usage(py, &e)))
        })
    }

    /// [`get_usage_statistics`](Self::get_usage_statistics), blocking.
    #[pyo3(signature = (tenant_id=None, agent_id=None, since=None, until=None, *, flush=true))]
    fn get_usage_statistics_sync(
        &self,
        py: Python<'_>,
        tenant_id: Option<String>,
        agent_id: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        flush: bool,
    ) -> PyResult<StatsResult> {
        let query = Self::query(py, tenant_id, agent_id, since, until)?;
        let adapter = &self.adapter;
        block_on(py, async move {
            if flush {
                adapter.flush_usage().await?;
            }
            adapter.usage_stats(&query).await
        })?
        .map(StatsResult)
        .map_err(|e| errors::usage(py, &e))
    }

    /// `await adapter.flush_usage()`: waits until every usage record so far is stored.
    fn flush_usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let adapter = self.adapter.clone();
        crate::bridge::into_awaitable(py, async move {
            adapter
                .flush_usage()
                .await
                .map_err(|e| Python::attach(|py| errors::usage(py, &e)))
        })
    }

    /// Removes every cached answer of `tenant_id`; returns how many entries went, where the
    /// cache knows.
    fn purge_tenant_cache<'py>(
        &self,
        py: Python<'py>,
        tenant_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let adapter = self.adapter.clone();
        crate::bridge::into_awaitable(py, async move {
            adapter
                .purge_tenant_cache(&tenant_id)
                .await
                .map_err(|e| Python::attach(|py| errors::cache(py, &e)))
        })
    }

    /// `await adapter.shutdown()`: refuses new requests and stores every usage record
    /// accepted (the DynamoDB ledger flushes; what it cannot write is spilled to disk).
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let adapter = self.adapter.clone();
        crate::bridge::into_awaitable(py, async move {
            adapter
                .shutdown()
                .await
                .map_err(|e| Python::attach(|py| errors::usage(py, &e)))
        })
    }

    /// [`shutdown`](Self::shutdown), blocking.
    fn shutdown_sync(&self, py: Python<'_>) -> PyResult<()> {
        let adapter = &self.adapter;
        block_on(py, adapter.shutdown())?.map_err(|e| errors::usage(py, &e))
    }

    /// The DynamoDB usage table, when the ledger is DynamoDB.
    #[getter]
    fn dynamodb_table(&self) -> Option<String> {
        self.dynamodb
            .as_ref()
            .map(|sink| sink.config().table_name.clone())
    }

    /// Measurement helper (bench/overhead.py): the engine's own time per call, in ns, for
    /// `n` sequential identical requests made in Rust (no Python in the loop) — the baseline
    /// the Python layer's cost is measured against.
    #[pyo3(signature = (n, prompt, agent_id, tenant_id, model))]
    fn _bench_engine_ns(
        &self,
        py: Python<'_>,
        n: usize,
        prompt: String,
        agent_id: String,
        tenant_id: String,
        model: String,
    ) -> PyResult<Vec<u64>> {
        let request =
            failover_provider::CompletionRequest::prompt(tenant_id, agent_id, model, prompt);
        let adapter = &self.adapter;
        let timings = block_on(py, async move {
            let mut timings = Vec::with_capacity(n);
            for _ in 0..n {
                let request = request.clone();
                let started = std::time::Instant::now();
                let result = adapter.generate_completion(request).await;
                timings.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
                result?;
            }
            Ok::<_, failover_core::FailoverError>(timings)
        })?;
        timings.map_err(|error| errors::failover(py, error))
    }

    fn __repr__(&self) -> String {
        format!(
            "AWSLLMAdapter(providers=[{}], {})",
            self.adapter.provider_names().join(", "),
            self.description.join("; ")
        )
    }
}
