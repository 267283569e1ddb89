//! What the `failover` binary reports and where: logs to stderr (`FAILOVER_LOG`, default
//! `error`), spans and metrics to an OpenTelemetry collector when an `OTEL_EXPORTER_OTLP_*`
//! endpoint is set (feature `otlp`), and metrics as a Prometheus exposition when a command
//! asks for it. The libraries only emit (`tracing`, `metrics`); this module picks the
//! exporters, once, before anything is built.

use std::error::Error;

use failover_telemetry::names;
use failover_telemetry::prometheus::PrometheusMetrics;
use metrics_util::layers::FanoutBuilder;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// The log filter variable, for the lines on stderr.
const LOG_ENV: &str = "FAILOVER_LOG";
/// The filter of the spans exported over OTLP: every engine span (all DEBUG), and warnings
/// of everything else as span events. Not the HTTP stack's own spans: the exporter's requests would trace themselves.
#[cfg(feature = "otlp")]
const OTLP_FILTER_ENV: &str = "FAILOVER_OTLP_FILTER";
#[cfg(feature = "otlp")]
const DEFAULT_OTLP_FILTER: &str = "warn,failover_core=debug";

/// The exporters of this run; [`Telemetry::shutdown`] delivers what is left before exit.
pub(crate) struct Telemetry {
    prometheus: Option<PrometheusMetrics>,
    #[cfg(feature = "otlp")]
    otlp: Option<failover_telemetry::otlp::OtlpPipeline>,
}

impl Telemetry {
    /// Installs the subscriber and the metrics recorder; `prometheus`: keep a Prometheus
    /// exposition of the run's metrics.
    pub(crate) fn init(prometheus: bool) -> Result<Self, Box<dyn Error>> {
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(
                EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("error")),
            );
        #[cfg(feature = "otlp")]
        let otlp = failover_telemetry::otlp::OtlpPipeline::from_env()?;
        #[cfg(feature = "otlp")]
        let spans = {
            let filter = match std::env::var(OTLP_FILTER_ENV) {
                Ok(directives) => EnvFilter::try_new(&directives)
                    .map_err(|error| format!("{OTLP_FILTER_ENV}: {error}"))?,
                Err(_) => EnvFilter::new(DEFAULT_OTLP_FILTER),
            };
            otlp.as_ref()
                .and_then(|otlp| otlp.layer())
                .map(|layer| layer.with_filter(filter))
        };
        #[cfg(not(feature = "otlp"))]
        let spans: Option<tracing_subscriber::layer::Identity> = None;
        tracing_subscriber::registry().with(logs).with(spans).init();

        let mut recorders = FanoutBuilder::default();
        let mut any = false;
        let prometheus = if prometheus {
            let (recorder, handle) = PrometheusMetrics::recorder()?;
            recorders = recorders.add_recorder(recorder);
            any = true;
            Some(handle)
        } else {
            None
        };
        #[cfg(feature = "otlp")]
        if let Some(recorder) = otlp.as_ref().and_then(|otlp| otlp.recorder()) {
            recorders = recorders.add_recorder(recorder);
            any = true;
        }
        if any {
            metrics::set_global_recorder(recorders.build())
                .map_err(|_| "a metrics recorder is already installed")?;
            names::describe();
        }
        Ok(Self {
            prometheus,
            #[cfg(feature = "otlp")]
            otlp,
        })
    }

    /// The Prometheus exposition, when one was asked for.
    pub(crate) fn prometheus(&self) -> Option<&PrometheusMetrics> {
        self.prometheus.as_ref()
    }

    /// Exports the spans and metrics still pending (OTLP) and stops the exporters.
    pub(crate) async fn shutdown(self) -> Result<(), Box<dyn Error>> {
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.otlp {
            otlp.shutdown().await?;
        }
        Ok(())
    }
}
