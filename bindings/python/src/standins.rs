//! `llm_failover.testing.StandIns`' engine: the Rust stand-ins of `failover-standin` (local
//! Bedrock and OpenAI servers in their real wire formats, with scripted faults), started
//! in-process on the binding's runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_provider::ToolCall;
use failover_standin::{Fault, Reply, StandIns, Vendor};
use pyo3::prelude::*;

use crate::errors;
use crate::runtime::{block_on, runtime};

/// The two stand-in servers on 127.0.0.1 (ports of their own).
#[pyclass(name = "StandIns", module = "llm_failover._native", frozen)]
pub(crate) struct NativeStandIns {
    servers: Mutex<Option<Arc<StandIns>>>,
    bedrock_endpoint: String,
    openai_base_url: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    max_attempts: u32,
}

fn vendor(py: Python<'_>, name: &str) -> PyResult<Vendor> {
    match name {
        "bedrock" => Ok(Vendor::Bedrock),
        "openai" => Ok(Vendor::OpenAi),
        other => Err(errors::invalid(
            py,
            format!("unknown stand-in `{other}` (bedrock or openai)"),
        )),
    }
}

impl NativeStandIns {
    fn servers(&self, py: Python<'_>) -> PyResult<Arc<StandIns>> {
        self.servers
            .lock()
            .map_err(|_| errors::configuration(py, "the stand-ins' lock is poisoned"))?
            .clone()
            .ok_or_else(|| errors::configuration(py, "the stand-ins are stopped"))
    }
}

#[pymethods]
impl NativeStandIns {
    /// Starts both servers.
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let servers = block_on(py, StandIns::start())?;
        // The settings the Rust demo and suite give the real clients for the stand-ins.
        let bedrock = servers.bedrock_config().build();
        let credentials = bedrock.credentials.clone().ok_or_else(|| {
            errors::configuration(py, "the stand-ins' settings have no credentials")
        })?;
        Ok(Self {
            bedrock_endpoint: servers.bedrock_endpoint(),
            openai_base_url: servers.openai_base_url(),
            region: bedrock
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            max_attempts: bedrock.retry.max_attempts,
            servers: Mutex::new(Some(Arc::new(servers))),
        })
    }

    /// The Bedrock runtime endpoint URL.
    #[getter]
    fn bedrock_endpoint(&self) -> &str {
        &self.bedrock_endpoint
    }

    /// The OpenAI base URL (`…/v1`).
    #[getter]
    fn openai_base_url(&self) -> &str {
        &self.openai_base_url
    }

    /// The API key the OpenAI stand-in expects.
    #[getter]
    fn openai_api_key(&self) -> &'static str {
        failover_standin::STANDIN_OPENAI_KEY
    }

    /// The region the Bedrock client signs for.
    #[getter]
    fn region(&self) -> &str {
        &self.region
    }

    /// The dummy access key id (SigV4 signing still runs).
    #[getter]
    fn aws_access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The dummy secret key.
    #[getter]
    fn aws_secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// SDK attempts per provider call (one: the adapter fails over instead of retrying, so
    /// every request a stand-in sees is one provider call).
    #[getter]
    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Serves `fault` to the next `times` requests of `vendor`: `"unavailable"` (503),
    /// `"throttled"` (429 with `retry_after` seconds), `"cut_stream"` (a stream cut after
    /// its first delta), `"slow"` (the answer after `delay` seconds).
    #[pyo3(signature = (vendor_name, fault, times=1, *, retry_after=1, delay=0.0))]
    fn inject(
        &self,
        py: Python<'_>,
        vendor_name: &str,
        fault: &str,
        times: u64,
        retry_after: u64,
        delay: f64,
    ) -> PyResult<()> {
        let vendor = vendor(py, vendor_name)?;
        let fault = match fault {
            "unavailable" => Fault::Unavailable,
            "throttled" => Fault::Throttled {
                retry_after_secs: retry_after,
            },
            "cut_stream" => Fault::CutStream,
            "slow" => Fault::Slow(
                Duration::try_from_secs_f64(delay)
                    .ok()
                    .filter(|d| *d <= Duration::from_secs(3600))
                    .ok_or_else(|| errors::invalid(py, "delay: 0 to 3600 seconds"))?,
            ),
            other => {
                return Err(errors::invalid(
                    py,
                    format!("unknown fault `{other}` (unavailable, throttled, cut_stream, slow)"),
                ));
            }
        };
        let servers = self.servers(py)?;
        block_on(py, servers.inject(vendor, fault, times))
    }

    /// Answers the next `times` requests of `vendor` with `text`, or with tool calls
    /// (OpenAI-style dicts: `{"id", "function": {"name", "arguments"}}`) after the text.
    #[pyo3(signature = (vendor_name, text=None, times=1, *, tool_calls=None))]
    fn reply(
        &self,
        py: Python<'_>,
        vendor_name: &str,
        text: Option<String>,
        times: u64,
        tool_calls: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let vendor = vendor(py, vendor_name)?;
        let reply = match tool_calls {
            None => Reply::text(text.unwrap_or_default()),
            Some(calls) => {
                let calls: Vec<serde_json::Value> = pythonize::depythonize(&calls)
                    .map_err(|e| errors::invalid(py, format!("tool_calls: {e}")))?;
                let calls = calls
                    .iter()
                    .map(|call| {
                        let function = call.get("function").unwrap_or(call);
                        let field = |value: &serde_json::Value, key: &str| {
                            value
                                .get(key)
                                .and_then(|v| v.as_str())
                                .map(str::to_owned)
                                .ok_or_else(|| {
                                    errors::invalid(
                                        py,
                                        format!("tool_calls: `{key}` must be a string"),
                                    )
                                })
                        };
                        Ok(ToolCall::new(
                            field(call, "id")?,
                            field(function, "name")?,
                            field(function, "arguments")?,
                        ))
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                Reply::ToolCalls { text, calls }
            }
        };
        let servers = self.servers(py)?;
        block_on(py, servers.reply(vendor, reply, times))
    }

    /// How many requests `vendor`'s server received.
    fn calls(&self, py: Python<'_>, vendor_name: &str) -> PyResult<usize> {
        let vendor = vendor(py, vendor_name)?;
        let servers = self.servers(py)?;
        block_on(py, servers.calls(vendor))
    }

    /// The JSON bodies `vendor`'s server received, in order.
    fn bodies<'py>(&self, py: Python<'py>, vendor_name: &str) -> PyResult<Bound<'py, PyAny>> {
        let vendor = vendor(py, vendor_name)?;
        let servers = self.servers(py)?;
        let bodies = block_on(py, servers.bodies(vendor))?;
        Ok(pythonize::pythonize(py, &bodies)?)
    }

    /// Stops both servers (idempotent).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let servers = self
            .servers
            .lock()
            .map_err(|_| errors::configuration(py, "the stand-ins' lock is poisoned"))?
            .take();
        let _runtime = runtime().enter();
        py.detach(|| drop(servers));
        Ok(())
    }
}
