//! The Prometheus text exposition of everything llm-failover emits (feature `prometheus`).

pub use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::names::{CATALOGUE, MetricKind, describe};

/// A Prometheus recorder's handle: renders the exposition for a `/metrics` route.
///
/// Histograms are exported as Prometheus histograms with the buckets of
/// [`CATALOGUE`] (the GenAI conventions' where they give some), never as summaries, so
/// they aggregate across replicas.
#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    handle: PrometheusHandle,
}

/// Installing the recorder failed.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The exporter refused its configuration.
    #[error("cannot build the Prometheus recorder: {0}")]
    Build(#[from] BuildError),
    /// Another `metrics` recorder is already installed in this process.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

impl PrometheusMetrics {
    /// Builds a recorder (not installed) and its handle; install the recorder with
    /// [`metrics::set_global_recorder`], or scope it with `metrics::with_local_recorder`.
    pub fn recorder() -> Result<(PrometheusRecorder, Self), PrometheusError> {
        let mut builder = PrometheusBuilder::new();
        for info in CATALOGUE {
            if info.kind == MetricKind::Histogram {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(info.name.to_owned()), info.buckets)?;
            }
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Ok((recorder, Self { handle }))
    }

    /// Builds the recorder, installs it as the process's `metrics` recorder and describes
    /// every metric of the catalogue.
    pub fn install() -> Result<Self, PrometheusError> {
        let (recorder, metrics) = Self::recorder()?;
        metrics::set_global_recorder(recorder).map_err(|_| PrometheusError::AlreadyInstalled)?;
        describe();
        Ok(metrics)
    }

    /// The text exposition (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets. Rendering does it too; a server that
    /// is rarely scraped calls this every few seconds to bound the memory samples hold.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::metric;

    #[test]
    fn histograms_render_with_their_buckets_and_dots_become_underscores() {
        let (recorder, metrics) = PrometheusMetrics::recorder().unwrap();
        metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::histogram!(metric::OPERATION_DURATION, "gen_ai.provider.name" => "openai")
                .record(0.03);
            metrics::counter!(metric::REQUESTS, "failover.outcome" => "success").increment(2);
        });
        let text = metrics.render();
        assert!(
            text.contains(
                "gen_ai_client_operation_duration_bucket{gen_ai_provider_name=\"openai\",le=\"0.04\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("failover_requests{failover_outcome=\"success\"} 2"),
            "{text}"
        );
        assert!(text.contains("# HELP failover_requests"), "{text}");
    }
}
