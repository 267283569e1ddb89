//! `llm_failover._native`: the pyo3 extension behind the `llm_failover` Python package.
//!
//! Every call goes to the engine ([`failover_core::FailoverAdapter`]) on one tokio runtime
//! owned by this module (pyo3-async-runtimes'); the GIL is released while the engine works.
//! The Python package (`python/llm_failover`) re-exports the classes, holds the exception
//! hierarchy and the type stubs.

mod adapter;
mod breaker;
mod bridge;
mod config;
mod convert;
mod errors;
mod request;
mod runtime;
mod standins;
mod stream;

use pyo3::prelude::*;

/// The native module: `AWSLLMAdapter`, its breaker handles and streams, and the stand-ins.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<adapter::AwsLlmAdapter>()?;
    m.add_class::<breaker::CircuitBreakerHandle>()?;
    m.add_class::<stream::CompletionStream>()?;
    m.add_class::<standins::NativeStandIns>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
