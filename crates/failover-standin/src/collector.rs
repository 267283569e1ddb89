//! A stand-in OpenTelemetry collector (feature `collector`): an OTLP/HTTP server on
//! `127.0.0.1:0` that accepts protobuf exports on `/v1/traces` and `/v1/metrics`, keeps
//! what it decoded, and lets a test wait for a span or a metric to arrive.
//!
//! It answers every export it can decode with 200 and an empty protobuf response (full
//! success), and anything it cannot decode with 400, so an exporter sending the wrong
//! encoding fails loudly instead of being counted as delivered. Waiting is event-based:
//! every decoded export wakes the waiters, which look at what has arrived so far, so a test
//! never sleeps and never misses an export that came before it started waiting.
//!
//! ```rust,no_run
//! # async fn example() -> std::io::Result<()> {
//! let collector = failover_standin::collector::Collector::start().await?;
//! // Point the exporter at `collector.endpoint()`, export, then:
//! let span = collector
//!     .wait_for_span("failover.request", std::time::Duration::from_secs(10))
//!     .await
//!     .expect("the span arrives");
//! println!("{:?}", span.attributes);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use tokio::sync::watch;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The OTLP/HTTP traces path.
pub const TRACES_PATH: &str = "/v1/traces";
/// The OTLP/HTTP metrics path.
pub const METRICS_PATH: &str = "/v1/metrics";

const PROTOBUF: &str = "application/x-protobuf";

/// An attribute value as exported (OTLP `AnyValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
    /// An array, a key-value list or bytes, in their debug form (nothing we emit uses them).
    Other(String),
}

impl AttributeValue {
    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(value) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(value) | Self::Other(value) => f.write_str(value),
            Self::Bool(value) => write!(f, "{value}"),
            Self::Int(value) => write!(f, "{value}"),
            Self::Double(value) => write!(f, "{value}"),
        }
    }
}

/// Attributes by key.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// A span's kind (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Not given.
    Unspecified,
    /// An operation inside the process.
    Internal,
    /// Serving a remote call.
    Server,
    /// A call to a remote service.
    Client,
    /// Sending a message.
    Producer,
    /// Receiving a message.
    Consumer,
}

impl SpanKind {
    fn from_otlp(kind: i32) -> Self {
        match kind {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }
}

/// One span the collector received.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedSpan {
    /// The span's name (with `tracing-opentelemetry`, its `otel.name` field when set).
    pub name: String,
    /// Its kind.
    pub kind: SpanKind,
    /// The trace id, lowercase hex.
    pub trace_id: String,
    /// The span id, lowercase hex.
    pub span_id: String,
    /// The parent's span id, lowercase hex; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Its attributes.
    pub attributes: Attributes,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The resource's attributes (`service.name`, …).
    pub resource: Attributes,
}

impl CollectedSpan {
    /// A string attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(AttributeValue::as_str)
    }
}

/// The value of one metric data point.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    /// A sum (counter); integers are converted to `f64`.
    Sum {
        /// The value.
        value: f64,
        /// Whether it only goes up.
        monotonic: bool,
    },
    /// A gauge's last value.
    Gauge(f64),
    /// An explicit-bucket histogram.
    Histogram {
        /// Number of samples.
        count: u64,
        /// Their sum, when exported.
        sum: Option<f64>,
        /// The buckets' upper bounds.
        bounds: Vec<f64>,
        /// Samples per bucket (one more than `bounds`: the last is `+Inf`).
        bucket_counts: Vec<u64>,
    },
    /// An exponential histogram or a summary (nothing we emit produces them).
    Other,
}

/// One metric data point the collector received.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    /// The metric's name.
    pub metric: String,
    /// Its unit.
    pub unit: String,
    /// Its description.
    pub description: String,
    /// The point's attributes (the metric's labels).
    pub attributes: Attributes,
    /// The point's value.
    pub value: PointValue,
}

impl DataPoint {
    /// A string attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(AttributeValue::as_str)
    }
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<CollectedSpan>,
    points: Vec<DataPoint>,
    trace_exports: usize,
    metric_exports: usize,
}

/// What the server and the test share: the received data, and a counter of decoded exports
/// that waiters watch (a watch channel, so a waiter subscribing after an export still sees
/// the data and waits only for later ones).
#[derive(Debug)]
struct Shared {
    received: Mutex<Received>,
    exports: watch::Sender<u64>,
}

impl Shared {
    fn with<T>(&self, read: impl FnOnce(&Received) -> T) -> T {
        // A panicking test thread must not hide what arrived from the others.
        read(&self.received.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn add(&self, add: impl FnOnce(&mut Received)) {
        add(&mut self.received.lock().unwrap_or_else(PoisonError::into_inner));
        self.exports.send_modify(|exports| *exports += 1);
    }
}

/// A stand-in OTLP/HTTP collector on `127.0.0.1`.
#[derive(Debug)]
pub struct Collector {
    server: MockServer,
    shared: Arc<Shared>,
}

impl Collector {
    /// Starts the collector on a free port of `127.0.0.1`.
    pub async fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        // The collector keeps what it decoded; wiremock's own copy of every body is waste.
        let server = MockServer::builder()
            .listener(listener)
            .disable_request_recording()
            .start()
            .await;
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            exports: watch::Sender::new(0),
        });
        for (route, signal) in [
            (TRACES_PATH, Signal::Traces),
            (METRICS_PATH, Signal::Metrics),
        ] {
            Mock::given(method("POST"))
                .and(path(route))
                .respond_with(Export {
                    signal,
                    shared: Arc::clone(&shared),
                })
                .mount(&server)
                .await;
        }
        Ok(Self { server, shared })
    }

    /// The base URL, `http://127.0.0.1:{port}` (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
    pub fn endpoint(&self) -> String {
        self.server.uri()
    }

    /// The traces URL, `{endpoint}/v1/traces` (what `…_TRACES_ENDPOINT` takes).
    pub fn traces_endpoint(&self) -> String {
        format!("{}{TRACES_PATH}", self.endpoint())
    }

    /// The metrics URL, `{endpoint}/v1/metrics` (what `…_METRICS_ENDPOINT` takes).
    pub fn metrics_endpoint(&self) -> String {
        format!("{}{METRICS_PATH}", self.endpoint())
    }

    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.shared.with(|received| received.spans.clone())
    }

    /// The spans named `name`, in arrival order.
    pub fn spans_named(&self, name: &str) -> Vec<CollectedSpan> {
        self.shared.with(|received| {
            received
                .spans
                .iter()
                .filter(|span| span.name == name)
                .cloned()
                .collect()
        })
    }

    /// The names of every metric received.
    pub fn metric_names(&self) -> BTreeSet<String> {
        self.shared.with(|received| {
            received
                .points
                .iter()
                .map(|point| point.metric.clone())
                .collect()
        })
    }

    /// Every data point of metric `name`, in arrival order. Exporters with cumulative
    /// temporality (the default) send every series again on each export, so the last point
    /// of a series is its current value.
    pub fn data_points(&self, name: &str) -> Vec<DataPoint> {
        self.shared.with(|received| {
            received
                .points
                .iter()
                .filter(|point| point.metric == name)
                .cloned()
                .collect()
        })
    }

    /// How many trace exports (`/v1/traces` requests) were decoded.
    pub fn trace_exports(&self) -> usize {
        self.shared.with(|received| received.trace_exports)
    }

    /// How many metric exports (`/v1/metrics` requests) were decoded.
    pub fn metric_exports(&self) -> usize {
        self.shared.with(|received| received.metric_exports)
    }

    /// Waits until a span named `name` has arrived (returns the first one) or `timeout`
    /// passes (`None`).
    pub async fn wait_for_span(&self, name: &str, timeout: Duration) -> Option<CollectedSpan> {
        self.wait_until(timeout, |received| {
            received
                .spans
                .iter()
                .find(|span| span.name == name)
                .cloned()
        })
        .await
    }

    /// Waits until a data point of metric `name` matching `matches` has arrived (returns
    /// the latest such point) or `timeout` passes (`None`).
    pub async fn wait_for_data_point(
        &self,
        name: &str,
        timeout: Duration,
        matches: impl Fn(&DataPoint) -> bool,
    ) -> Option<DataPoint> {
        self.wait_until(timeout, |received| {
            received
                .points
                .iter()
                .rev()
                .find(|point| point.metric == name && matches(point))
                .cloned()
        })
        .await
    }

    async fn wait_until<T>(
        &self,
        timeout: Duration,
        found: impl Fn(&Received) -> Option<T>,
    ) -> Option<T> {
        // Subscribe before looking, so an export landing between the look and the wait
        // still wakes us.
        let mut exports = self.shared.exports.subscribe();
        let wait = async {
            loop {
                exports.borrow_and_update();
                if let Some(value) = self.shared.with(&found) {
                    return Some(value);
                }
                // The sender lives in `self.shared`, so the channel cannot close here.
                if exports.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
}

/// The responder of one OTLP route: decodes the export and keeps its content.
struct Export {
    signal: Signal,
    shared: Arc<Shared>,
}

impl Respond for Export {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = request.body.as_slice();
        let response = match self.signal {
            Signal::Traces => ExportTraceServiceRequest::decode(body).map(|export| {
                let spans = spans_of(export);
                self.shared.add(|received| {
                    received.trace_exports += 1;
                    received.spans.extend(spans);
                });
                ExportTraceServiceResponse::default().encode_to_vec()
            }),
            Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(|export| {
                let points = points_of(export);
                self.shared.add(|received| {
                    received.metric_exports += 1;
                    received.points.extend(points);
                });
                ExportMetricsServiceResponse::default().encode_to_vec()
            }),
        };
        match response {
            Ok(body) => ResponseTemplate::new(200).set_body_raw(body, PROTOBUF),
            Err(error) => ResponseTemplate::new(400).set_body_string(error.to_string()),
        }
    }
}

fn spans_of(export: ExportTraceServiceRequest) -> Vec<CollectedSpan> {
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_attributes(resource_spans.resource);
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .map(|scope| scope.name)
                .unwrap_or_default();
            for span in scope_spans.spans {
                spans.push(CollectedSpan {
                    name: span.name,
                    kind: SpanKind::from_otlp(span.kind),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    attributes: attributes(span.attributes),
                    scope: scope.clone(),
                    resource: resource.clone(),
                });
            }
        }
    }
    spans
}

fn points_of(export: ExportMetricsServiceRequest) -> Vec<DataPoint> {
    let mut points = Vec::new();
    let all_metrics = export
        .resource_metrics
        .into_iter()
        .flat_map(|resource| resource.scope_metrics)
        .flat_map(|scope| scope.metrics);
    for otlp_metric in all_metrics {
        let Metric {
            name,
            unit,
            description,
            data,
            ..
        } = otlp_metric;
        let point = |attributes: Vec<KeyValue>, value| DataPoint {
            metric: name.clone(),
            unit: unit.clone(),
            description: description.clone(),
            attributes: self::attributes(attributes),
            value,
        };
        match data {
            Some(metric::Data::Sum(sum)) => {
                points.extend(sum.data_points.into_iter().map(|data| {
                    let value = PointValue::Sum {
                        value: number(data.value),
                        monotonic: sum.is_monotonic,
                    };
                    point(data.attributes, value)
                }));
            }
            Some(metric::Data::Gauge(gauge)) => {
                points.extend(gauge.data_points.into_iter().map(|data| {
                    let value = PointValue::Gauge(number(data.value));
                    point(data.attributes, value)
                }));
            }
            Some(metric::Data::Histogram(histogram)) => {
                points.extend(histogram.data_points.into_iter().map(|data| {
                    let value = PointValue::Histogram {
                        count: data.count,
                        sum: data.sum,
                        bounds: data.explicit_bounds,
                        bucket_counts: data.bucket_counts,
                    };
                    point(data.attributes, value)
                }));
            }
            Some(metric::Data::ExponentialHistogram(histogram)) => points.extend(
                histogram
                    .data_points
                    .into_iter()
                    .map(|data| point(data.attributes, PointValue::Other)),
            ),
            Some(metric::Data::Summary(summary)) => points.extend(
                summary
                    .data_points
                    .into_iter()
                    .map(|data| point(data.attributes, PointValue::Other)),
            ),
            None => {}
        }
    }
    points
}

fn number(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(value)) => value,
        // Counters are u64 on our side; exact in f64 up to 2^53, far beyond a test's counts.
        Some(number_data_point::Value::AsInt(value)) => value as f64,
        None => f64::NAN,
    }
}

fn resource_attributes(resource: Option<Resource>) -> Attributes {
    resource
        .map(|resource| attributes(resource.attributes))
        .unwrap_or_default()
}

fn attributes(key_values: Vec<KeyValue>) -> Attributes {
    key_values
        .into_iter()
        .map(|key_value| {
            let value = match key_value.value.and_then(|value| value.value) {
                Some(any_value::Value::StringValue(value)) => AttributeValue::String(value),
                Some(any_value::Value::BoolValue(value)) => AttributeValue::Bool(value),
                Some(any_value::Value::IntValue(value)) => AttributeValue::Int(value),
                Some(any_value::Value::DoubleValue(value)) => AttributeValue::Double(value),
                Some(other) => AttributeValue::Other(format!("{other:?}")),
                None => AttributeValue::Other(String::new()),
            };
            (key_value.key, value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
