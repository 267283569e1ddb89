//! What llm-failover's crates emit, and the exporters a binary may choose.
//!
//! Libraries emit through the [`metrics`] facade and [`tracing`](https://docs.rs/tracing)
//! spans; they depend on this crate for the names only ([`names`]), so every crate spells a
//! metric the same way and none of them compiles an exporter. A binary installs one:
//! [`prometheus`] (feature `prometheus`) renders the text exposition for a `/metrics`
//! route; `otlp` (feature `otlp`) exports spans and metrics to an OpenTelemetry collector.
//!
//! Names follow the OpenTelemetry GenAI semantic conventions where they define one
//! (`gen_ai.client.operation.duration`, `gen_ai.client.token.usage`,
//! `gen_ai.provider.name`, …); the rest live under `failover.`. Exporters that do not
//! allow dots (Prometheus) turn them into underscores.
//!
//! Tenants are a label only when asked for, and then for a bounded number of them
//! ([`TenantLabels`]): an unbounded label is an outage of the metrics backend.

pub mod names;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod tenants;

pub use tenants::{OTHER_TENANTS, TenantLabels};
