//! OTLP export of llm-failover's spans and metrics to an OpenTelemetry collector (feature
//! `otlp`).
//!
//! [`OtlpPipeline`] holds one exporter per signal, OTLP/HTTP with protobuf bodies:
//!
//! - spans: [`OtlpPipeline::layer`] is a `tracing-subscriber` layer (`tracing-opentelemetry`)
//!   that turns the spans libraries create with `tracing` into OpenTelemetry spans, exported
//!   in batches;
//! - metrics: [`OtlpPipeline::recorder`] is a [`metrics::Recorder`] that records into
//!   OpenTelemetry instruments, read and exported every `OTEL_METRIC_EXPORT_INTERVAL`
//!   (60 s by default). Histograms get the bucket bounds of [`CATALOGUE`].
//!
//! [`OtlpConfig::from_env`] reads the standard variables; it returns `None` when no
//! endpoint variable is set, so a binary turns OTLP on by setting one:
//!
//! ```rust,no_run
//! use tracing_subscriber::prelude::*;
//! # async fn example() -> Result<(), failover_telemetry::otlp::OtlpError> {
//! let otlp = failover_telemetry::otlp::OtlpPipeline::from_env()?;
//! let layer = otlp.as_ref().and_then(|otlp| otlp.layer());
//! tracing_subscriber::registry().with(layer).init();
//! if let Some(otlp) = &otlp {
//!     otlp.install_recorder()?;
//! }
//! // … run …
//! if let Some(otlp) = otlp {
//!     otlp.shutdown().await?; // exports what is left before the process exits
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Span fields become attributes with their types, except `u64`: `tracing-opentelemetry`
//! exports those as strings, so integer fields (token counts, `failover.retry_after_ms`)
//! are best recorded as `i64`.
//!
//! Exports run on the caller's tokio runtime when it is a multi-thread one. Under a
//! current-thread runtime (or none) they run on a runtime of their own instead (one
//! background thread per signal): the SDK's flush and shutdown block until the export task
//! answers, which on a single runtime thread would wait for itself.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{Registry, Storage};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    ExporterBuildError, MetricExporter, OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_PROTOBUF, OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, Protocol, SpanExporter, WithExportConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::runtime::{RuntimeChannel, Tokio, TokioCurrentThread};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

pub use opentelemetry_sdk::trace::SdkTracer;
pub use tracing_opentelemetry::OpenTelemetryLayer;

use crate::names::{CATALOGUE, MetricKind, metric};

/// `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between two metric exports.
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// `OTEL_TRACES_EXPORTER`: `none` turns span export off (unset or `otlp`: on).
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_METRICS_EXPORTER`: `none` turns metric export off (unset or `otlp`: on).
pub const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";

/// The endpoint of a signal whose own variable and the common one are both unset, while
/// the other signal's is set (the OTLP specification's default).
const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
const TRACES_PATH: &str = "/v1/traces";
const METRICS_PATH: &str = "/v1/metrics";
/// The instrumentation scope of every span and metric.
const SCOPE: &str = "llm-failover";

/// One of the two exported signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
        })
    }
}

/// What can go wrong configuring, flushing or shutting down the OTLP pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// A protocol other than `http/protobuf` was asked for.
    #[error("{variable}={value:?}: only the http/protobuf OTLP protocol is supported")]
    UnsupportedProtocol {
        /// The variable that asked for it.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// A variable's value does not parse.
    #[error("{variable}={value:?}: {expected}")]
    InvalidValue {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The OpenTelemetry exporter refused its configuration (an endpoint that is not a URL…).
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// The signal.
        signal: Signal,
        /// Why.
        #[source]
        source: ExporterBuildError,
    },
    /// A flush or a shutdown failed: an export was refused or timed out, or the pipeline
    /// was already shut down.
    #[error("OTLP {signal} {operation} failed: {source}")]
    Export {
        /// The signal.
        signal: Signal,
        /// `flush` or `shutdown`.
        operation: &'static str,
        /// Why.
        #[source]
        source: OTelSdkError,
    },
    /// The tokio runtime shut down while a flush or a shutdown waited for its exports.
    #[error("the tokio runtime shut down during the OTLP {0}")]
    RuntimeShutDown(&'static str),
    /// Another `metrics` recorder is already installed in this process.
    #[error("a metrics recorder is already installed in this process")]
    RecorderAlreadyInstalled,
}

/// Where one signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpSignalConfig {
    /// The full URL exports are POSTed to (`http://collector:4318/v1/traces`).
    pub endpoint: String,
    /// How long one export may take; `None`: the exporter's default (10 s), or
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` read by the exporter itself.
    pub timeout: Option<Duration>,
}

impl OtlpSignalConfig {
    /// Exports to `endpoint` (the full URL, path included) with the default timeout.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            timeout: None,
        }
    }
}

/// The pipeline's configuration: an explicit form of the `OTEL_*` variables.
///
/// What it does not hold the OpenTelemetry crates read from the process environment
/// themselves: headers (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TRACES_HEADERS`,
/// `…_METRICS_HEADERS`), the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`),
/// the batch processor's limits (`OTEL_BSP_*`), `OTEL_METRIC_EXPORT_TIMEOUT` and the
/// temporality preference.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// Span export; `None`: off.
    pub traces: Option<OtlpSignalConfig>,
    /// Metric export; `None`: off.
    pub metrics: Option<OtlpSignalConfig>,
    /// Time between two metric exports.
    pub metric_export_interval: Duration,
    /// The `service.name` when the environment gives none (instead of the SDK's
    /// `unknown_service:<executable>`).
    pub default_service_name: Option<String>,
}

impl OtlpConfig {
    /// Both signals to the collector at `endpoint`, a base URL such as
    /// `http://127.0.0.1:4318` (`/v1/traces` and `/v1/metrics` are appended, as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), metrics every 60 s.
    pub fn new(endpoint: &str) -> Self {
        Self {
            traces: Some(OtlpSignalConfig::new(signal_url(endpoint, TRACES_PATH))),
            metrics: Some(OtlpSignalConfig::new(signal_url(endpoint, METRICS_PATH))),
            metric_export_interval: DEFAULT_EXPORT_INTERVAL,
            default_service_name: None,
        }
    }

    /// The configuration the process environment asks for; `None` when no endpoint
    /// variable is set (OTLP is off).
    pub fn from_env() -> Result<Option<Self>, OtlpError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration the variables `lookup` returns ask for (`from_env` with
    /// `std::env::var`; tests pass a map); `None` when neither
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` nor a signal's endpoint variable is set, or both
    /// signals' exporters are `none`. Empty values count as unset.
    ///
    /// A signal's endpoint is its own variable's URL as it is, else the common endpoint with
    /// `/v1/traces` or `/v1/metrics` appended, else `http://localhost:4318/…`; its timeout
    /// and protocol are its own variable's, else the common one's. Every protocol but
    /// `http/protobuf` is refused, and a timeout or interval that is not a positive number
    /// of milliseconds is an error naming its variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, OtlpError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let common = get(OTEL_EXPORTER_OTLP_ENDPOINT);
        let traces_endpoint = get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
        let metrics_endpoint = get(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
        if common.is_none() && traces_endpoint.is_none() && metrics_endpoint.is_none() {
            return Ok(None);
        }
        let signal = |exporter: &'static str,
                      endpoint: Option<String>,
                      path: &str,
                      protocol: &'static str,
                      timeout: &'static str|
         -> Result<Option<OtlpSignalConfig>, OtlpError> {
            // `OTEL_*_EXPORTER` is a comma-separated list of exporters; anything without
            // `otlp` in it (`none`, `console`, `prometheus`) is not ours to run.
            if let Some(exporters) = get(exporter)
                && !exporters
                    .split(',')
                    .any(|name| name.trim().eq_ignore_ascii_case("otlp"))
            {
                return Ok(None);
            }
            let (variable, value) = first_set(&get, protocol, OTEL_EXPORTER_OTLP_PROTOCOL);
            if let Some(value) = value
                && !value
                    .trim()
                    .eq_ignore_ascii_case(OTEL_EXPORTER_OTLP_PROTOCOL_HTTP_PROTOBUF)
            {
                return Err(OtlpError::UnsupportedProtocol { variable, value });
            }
            let endpoint = endpoint
                .unwrap_or_else(|| signal_url(common.as_deref().unwrap_or(DEFAULT_ENDPOINT), path));
            let (variable, value) = first_set(&get, timeout, OTEL_EXPORTER_OTLP_TIMEOUT);
            let timeout = value
                .map(|value| milliseconds(variable, value))
                .transpose()?;
            Ok(Some(OtlpSignalConfig { endpoint, timeout }))
        };
        let traces = signal(
            OTEL_TRACES_EXPORTER,
            traces_endpoint,
            TRACES_PATH,
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        )?;
        let metrics = signal(
            OTEL_METRICS_EXPORTER,
            metrics_endpoint,
            METRICS_PATH,
            OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
            OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
        )?;
        let metric_export_interval = get(OTEL_METRIC_EXPORT_INTERVAL)
            .map(|value| milliseconds(OTEL_METRIC_EXPORT_INTERVAL, value))
            .transpose()?
            .unwrap_or(DEFAULT_EXPORT_INTERVAL);
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            traces,
            metrics,
            metric_export_interval,
            default_service_name: None,
        }))
    }

    /// Sets the `service.name` used when the environment gives none.
    pub fn with_default_service_name(mut self, name: impl Into<String>) -> Self {
        self.default_service_name = Some(name.into());
        self
    }
}

/// `specific`'s value if set, else `common`'s, with the name of the variable it came from.
fn first_set(
    get: &impl Fn(&str) -> Option<String>,
    specific: &'static str,
    common: &'static str,
) -> (&'static str, Option<String>) {
    match get(specific) {
        Some(value) => (specific, Some(value)),
        None => (common, get(common)),
    }
}

fn milliseconds(variable: &'static str, value: String) -> Result<Duration, OtlpError> {
    match value.trim().parse::<u64>() {
        Ok(millis) if millis > 0 => Ok(Duration::from_millis(millis)),
        _ => Err(OtlpError::InvalidValue {
            variable,
            value,
            expected: "a positive whole number of milliseconds",
        }),
    }
}

/// The base URL with a signal's path, as the OTLP specification builds it from
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn signal_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim().trim_end_matches('/'))
}

/// The OTLP exporters of a process: spans through a `tracing` layer, metrics through a
/// `metrics` recorder, both over OTLP/HTTP protobuf.
///
/// Dropping the last handle of a signal (the pipeline, its layer's tracer) shuts that
/// signal's exporter down, which exports what is pending and blocks until then; call
/// [`shutdown`](Self::shutdown) (async) before the end instead, as a CLI must anyway to
/// deliver its last spans and metrics.
#[derive(Debug)]
pub struct OtlpPipeline {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    recorder: Option<OtlpRecorder>,
}

impl OtlpPipeline {
    /// The pipeline the process environment asks for ([`OtlpConfig::from_env`]); `None`
    /// when OTLP is not configured.
    pub fn from_env() -> Result<Option<Self>, OtlpError> {
        OtlpConfig::from_env()?.map(Self::new).transpose()
    }

    /// Builds the exporters `config` asks for and starts their export tasks.
    pub fn new(config: OtlpConfig) -> Result<Self, OtlpError> {
        match Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => Self::on(config, Tokio),
            // See the module's documentation: a single-threaded (or absent) runtime cannot
            // run the export task while the SDK blocks on it.
            _ => Self::on(config, TokioCurrentThread),
        }
    }

    fn on<R: RuntimeChannel>(config: OtlpConfig, runtime: R) -> Result<Self, OtlpError> {
        let resource = resource(config.default_service_name.as_deref());
        let tracer_provider = config
            .traces
            .map(|traces| {
                let mut exporter = SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(traces.endpoint);
                if let Some(timeout) = traces.timeout {
                    exporter = exporter.with_timeout(timeout);
                }
                let exporter = exporter.build().map_err(|source| OtlpError::Exporter {
                    signal: Signal::Traces,
                    source,
                })?;
                Ok::<_, OtlpError>(
                    SdkTracerProvider::builder()
                        .with_span_processor(
                            BatchSpanProcessor::builder(exporter, runtime.clone()).build(),
                        )
                        .with_resource(resource.clone())
                        .build(),
                )
            })
            .transpose()?;
        let meter_provider = config
            .metrics
            .map(|metrics| {
                let mut exporter = MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(metrics.endpoint);
                if let Some(timeout) = metrics.timeout {
                    exporter = exporter.with_timeout(timeout);
                }
                let exporter = exporter.build().map_err(|source| OtlpError::Exporter {
                    signal: Signal::Metrics,
                    source,
                })?;
                let reader = PeriodicReader::builder(exporter, runtime.clone())
                    .with_interval(config.metric_export_interval)
                    .build();
                Ok::<_, OtlpError>(
                    SdkMeterProvider::builder()
                        .with_reader(reader)
                        .with_resource(resource.clone())
                        .build(),
                )
            })
            .transpose()?;
        let recorder = meter_provider
            .as_ref()
            .map(|provider| OtlpRecorder::new(provider.meter_with_scope(scope())));
        Ok(Self {
            tracer_provider,
            meter_provider,
            recorder,
        })
    }

    /// The layer exporting spans; `None` when span export is off (`Option<Layer>` is a
    /// layer, so `registry().with(pipeline.layer())` works either way). Which spans it
    /// sees is up to the subscriber's filters: the engine's spans are `DEBUG`. Filter it
    /// by target (`failover_core=debug`)
    /// rather than by a global `TRACE`, which would also export the HTTP stack's own spans,
    /// the exporter's included.
    pub fn layer<S>(&self) -> Option<OpenTelemetryLayer<S, SdkTracer>>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        self.tracer_provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer_with_scope(scope()))
        })
    }

    /// The recorder exporting metrics; `None` when metric export is off. Install it with
    /// [`metrics::set_global_recorder`] or [`install_recorder`](Self::install_recorder),
    /// or scope it with [`metrics::with_local_recorder`].
    pub fn recorder(&self) -> Option<OtlpRecorder> {
        self.recorder.clone()
    }

    /// Installs [`recorder`](Self::recorder) as the process's `metrics` recorder; does
    /// nothing when metric export is off.
    pub fn install_recorder(&self) -> Result<(), OtlpError> {
        match self.recorder() {
            Some(recorder) => metrics::set_global_recorder(recorder)
                .map_err(|_| OtlpError::RecorderAlreadyInstalled),
            None => Ok(()),
        }
    }

    /// Exports every span ended and every metric recorded so far, and waits until the
    /// collector answered (or the export timed out).
    pub async fn force_flush(&self) -> Result<(), OtlpError> {
        let (traces, metrics) = (self.tracer_provider.clone(), self.meter_provider.clone());
        off_runtime("flush", move || {
            let traces = traces.map(|provider| provider.force_flush());
            let metrics = metrics.map(|provider| provider.force_flush());
            (traces, metrics)
        })
        .await
        .and_then(|(traces, metrics)| both("flush", traces, metrics))
    }

    /// Exports what is pending, then stops both exporters; later spans and metrics are
    /// dropped. A second call fails (`Export` with the SDK's already-shut-down error).
    pub async fn shutdown(&self) -> Result<(), OtlpError> {
        let (traces, metrics) = (self.tracer_provider.clone(), self.meter_provider.clone());
        off_runtime("shutdown", move || {
            let traces = traces.map(|provider| provider.shutdown());
            let metrics = metrics.map(|provider| provider.shutdown());
            (traces, metrics)
        })
        .await
        .and_then(|(traces, metrics)| both("shutdown", traces, metrics))
    }
}

/// Runs the SDK's blocking flush or shutdown where blocking is allowed: on tokio's
/// blocking pool, so the runtime's threads stay free to run the export tasks it waits for.
async fn off_runtime<T: Send + 'static>(
    operation: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OtlpError> {
    match Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(work).await {
            Ok(value) => Ok(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(OtlpError::RuntimeShutDown(operation)),
        },
        // No runtime: the exports run on their own (see `OtlpPipeline::new`).
        Err(_) => Ok(work()),
    }
}

/// The first failure of the two signals' results (both always run).
fn both(
    operation: &'static str,
    traces: Option<Result<(), OTelSdkError>>,
    metrics: Option<Result<(), OTelSdkError>>,
) -> Result<(), OtlpError> {
    for (signal, result) in [(Signal::Traces, traces), (Signal::Metrics, metrics)] {
        if let Some(Err(source)) = result {
            return Err(OtlpError::Export {
                signal,
                operation,
                source,
            });
        }
    }
    Ok(())
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own
/// attributes), with `default_service_name` when it found no service name.
fn resource(default_service_name: Option<&str>) -> Resource {
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    match default_service_name {
        Some(name) if unnamed => Resource::builder()
            .with_service_name(name.to_owned())
            .build(),
        _ => detected,
    }
}

/// A [`metrics::Recorder`] recording into OpenTelemetry instruments.
///
/// Handles are cached per key (name and labels), so a `counter!` call costs a lookup, not
/// an instrument: the first registration of a name creates its instrument (u64 counter,
/// f64 gauge, f64 histogram with the catalogue's bucket bounds), every key keeps its labels
/// as OpenTelemetry attributes. Units and descriptions come from [`CATALOGUE`], or from
/// `describe_*` calls made before a name's first use for names outside it.
#[derive(Debug, Clone)]
pub struct OtlpRecorder {
    registry: Arc<Registry<Key, Instruments>>,
}

impl OtlpRecorder {
    fn new(meter: Meter) -> Self {
        Self {
            registry: Arc::new(Registry::new(Instruments {
                meter,
                counters: Mutex::default(),
                gauges: Mutex::default(),
                histograms: Mutex::default(),
                described: Mutex::default(),
            })),
        }
    }
}

impl metrics::Recorder for OtlpRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry.storage().describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry.storage().describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry.storage().describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Counter {
        self.registry.get_or_create_counter(key, |counter| {
            metrics::Counter::from_arc(Arc::clone(counter))
        })
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Gauge {
        self.registry
            .get_or_create_gauge(key, |gauge| metrics::Gauge::from_arc(Arc::clone(gauge)))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> metrics::Histogram {
        self.registry.get_or_create_histogram(key, |histogram| {
            metrics::Histogram::from_arc(Arc::clone(histogram))
        })
    }
}

/// The registry's storage: one OpenTelemetry instrument per metric name, created on the
/// name's first registration (registrations are rare: the registry caches handles per key).
#[derive(Debug)]
struct Instruments {
    meter: Meter,
    counters: Mutex<HashMap<String, opentelemetry::metrics::Counter<u64>>>,
    gauges: Mutex<HashMap<String, opentelemetry::metrics::Gauge<f64>>>,
    histograms: Mutex<HashMap<String, opentelemetry::metrics::Histogram<f64>>>,
    described: Mutex<HashMap<String, (Option<Unit>, SharedString)>>,
}

impl Instruments {
    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        lock(&self.described).insert(key.as_str().to_owned(), (unit, description));
    }

    /// The unit (UCUM, as OpenTelemetry wants it) and description of `name`.
    fn metadata(&self, name: &str) -> (Option<Cow<'static, str>>, Option<Cow<'static, str>>) {
        if let Some(info) = CATALOGUE.iter().find(|info| info.name == name) {
            return (
                ucum(name, info.unit).map(Cow::Borrowed),
                Some(Cow::Borrowed(info.description)),
            );
        }
        match lock(&self.described).get(name) {
            Some((unit, description)) => (
                unit.and_then(|unit| ucum(name, unit)).map(Cow::Borrowed),
                Some(Cow::Owned(description.to_string())),
            ),
            None => (None, None),
        }
    }

    fn buckets(name: &str) -> Option<Vec<f64>> {
        CATALOGUE
            .iter()
            .find(|info| info.name == name && info.kind == MetricKind::Histogram)
            .filter(|info| !info.buckets.is_empty())
            .map(|info| info.buckets.to_vec())
    }
}

/// Builds an instrument with `name`'s unit and description.
macro_rules! instrument {
    ($instruments:expr, $builder:ident, $name:expr) => {{
        let (unit, description) = $instruments.metadata($name);
        let mut builder = $instruments.meter.$builder($name.to_owned());
        if let Some(unit) = unit {
            builder = builder.with_unit(unit);
        }
        if let Some(description) = description {
            builder = builder.with_description(description);
        }
        builder
    }};
}

impl Storage<Key> for Instruments {
    type Counter = Arc<CounterHandle>;
    type Gauge = Arc<GaugeHandle>;
    type Histogram = Arc<HistogramHandle>;

    fn counter(&self, key: &Key) -> Self::Counter {
        let instrument = lock(&self.counters)
            .entry(key.name().to_owned())
            .or_insert_with(|| instrument!(self, u64_counter, key.name()).build())
            .clone();
        Arc::new(CounterHandle {
            instrument,
            attributes: attributes(key),
            total: AtomicU64::new(0),
        })
    }

    fn gauge(&self, key: &Key) -> Self::Gauge {
        let instrument = lock(&self.gauges)
            .entry(key.name().to_owned())
            .or_insert_with(|| instrument!(self, f64_gauge, key.name()).build())
            .clone();
        Arc::new(GaugeHandle {
            instrument,
            attributes: attributes(key),
            value: Mutex::new(0.0),
        })
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let instrument = lock(&self.histograms)
            .entry(key.name().to_owned())
            .or_insert_with(|| {
                let builder = instrument!(self, f64_histogram, key.name());
                match Self::buckets(key.name()) {
                    Some(buckets) => builder.with_boundaries(buckets).build(),
                    None => builder.build(),
                }
            })
            .clone();
        Arc::new(HistogramHandle {
            instrument,
            attributes: attributes(key),
        })
    }
}

/// A counter for one key.
#[derive(Debug)]
struct CounterHandle {
    instrument: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    /// The total so far, to turn `absolute` values into the increments OpenTelemetry counters
    /// take.
    total: AtomicU64,
}

impl metrics::CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.instrument.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let previous = self.total.fetch_max(value, Ordering::Relaxed);
        if value > previous {
            self.instrument.add(value - previous, &self.attributes);
        }
    }
}

/// A gauge for one key.
#[derive(Debug)]
struct GaugeHandle {
    instrument: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    /// OpenTelemetry gauges only take values; `increment`/`decrement` need the current one.
    /// Recording under the lock keeps the last recorded value the last computed one.
    value: Mutex<f64>,
}

impl GaugeHandle {
    fn update(&self, update: impl FnOnce(f64) -> f64) {
        let mut value = lock(&self.value);
        *value = update(*value);
        self.instrument.record(*value, &self.attributes);
    }
}

impl metrics::GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        self.update(|current| current + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|current| current - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

/// A histogram for one key.
#[derive(Debug)]
struct HistogramHandle {
    instrument: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl metrics::HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|label| KeyValue::new(label.key().to_owned(), label.value().to_owned()))
        .collect()
}

/// The UCUM unit OpenTelemetry expects; counts have none, except tokens, which the GenAI
/// conventions give `{token}`.
fn ucum(name: &str, unit: Unit) -> Option<&'static str> {
    Some(match unit {
        Unit::Count if name == metric::TOKEN_USAGE => "{token}",
        Unit::Count => return None,
        Unit::Percent => "%",
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Microseconds => "us",
        Unit::Nanoseconds => "ns",
        Unit::Bytes => "By",
        Unit::Kibibytes => "KiBy",
        Unit::Mebibytes => "MiBy",
        Unit::Gibibytes => "GiBy",
        Unit::Tebibytes => "TiBy",
        Unit::BitsPerSecond => "bit/s",
        Unit::KilobitsPerSecond => "kbit/s",
        Unit::MegabitsPerSecond => "Mbit/s",
        Unit::GigabitsPerSecond => "Gbit/s",
        Unit::TerabitsPerSecond => "Tbit/s",
        Unit::CountPerSecond => "{count}/s",
    })
}

/// The lock's data even after a panic elsewhere: every map here stays consistent across a
/// panic (single inserts), and metrics must not take the process down.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
