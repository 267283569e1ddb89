//! The OTLP pipeline against the stand-in collector on 127.0.0.1: spans from `tracing`,
//! metrics from the `metrics` facade, and the `OTEL_*` configuration.
//!
//! No test touches the process environment (it is shared by every test thread): they
//! configure the pipeline with `OtlpConfig` or `OtlpConfig::from_lookup` over a map.
//! Nothing sleeps: a test flushes the pipeline (which waits for the collector's answer)
//! and then waits for the collector's notification of what it decoded.

use std::collections::HashMap;
use std::time::Duration;

use failover_standin::collector::{
    AttributeValue, CollectedSpan, Collector, DataPoint, PointValue, SpanKind,
};
use failover_telemetry::names::{self, label, metric, span, value};
use failover_telemetry::otlp::{OtlpConfig, OtlpError, OtlpPipeline, OtlpSignalConfig, Signal};
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

/// Only a bound on a broken test: flushes complete long before.
const WAIT: Duration = Duration::from_secs(30);

async fn collector() -> Collector {
    Collector::start()
        .await
        .expect("the stand-in collector binds 127.0.0.1:0")
}

fn pipeline(collector: &Collector) -> OtlpPipeline {
    let config =
        OtlpConfig::new(&collector.endpoint()).with_default_service_name("failover-otlp-test");
    OtlpPipeline::new(config).expect("the pipeline builds")
}

/// A request as the engine traces it: the request span, a failed and a successful attempt,
/// a cache lookup and store, and the usage record.
fn trace_one_request() {
    let request = tracing::info_span!(
        span::REQUEST,
        failover.request_id = "req-1",
        failover.tenant = "acme",
        gen_ai.agent.id = "agent-7",
        gen_ai.request.model = "fast",
        failover.stream = false,
        failover.outcome = Empty,
        failover.provider = Empty,
        failover.cached = Empty,
    );
    request.in_scope(|| {
        tracing::debug_span!(span::CACHE_LOOKUP).in_scope(|| {});
        for (provider, provider_name, model, outcome) in [
            ("bedrock", "aws.bedrock", "claude", "unavailable"),
            ("openai", "openai", "gpt", "success"),
        ] {
            let attempt = tracing::debug_span!(
                span::ATTEMPT,
                otel.name = format!("chat {model}"),
                otel.kind = "client",
                gen_ai.operation.name = value::CHAT,
                gen_ai.provider.name = provider_name,
                failover.provider = provider,
                gen_ai.request.model = model,
                failover.outcome = Empty,
                "error.type" = Empty,
                failover.retry_after_ms = Empty,
                gen_ai.usage.input_tokens = Empty,
                gen_ai.usage.output_tokens = Empty,
                gen_ai.response.model = Empty,
            );
            attempt.record(label::OUTCOME, outcome);
            // i64, not u64: tracing-opentelemetry exports u64 fields as strings.
            if outcome == "success" {
                attempt.record("gen_ai.usage.input_tokens", 12_i64);
                attempt.record("gen_ai.usage.output_tokens", 5_i64);
                attempt.record(label::RESPONSE_MODEL, "gpt-2026-01-01");
            } else {
                attempt.record(label::ERROR_TYPE, outcome);
                attempt.record("failover.retry_after_ms", 250_i64);
            }
        }
        tracing::debug_span!(span::CACHE_STORE).in_scope(|| {});
        tracing::debug_span!(span::USAGE_RECORD).in_scope(|| {});
    });
    request.record(label::OUTCOME, "success");
    request.record(label::PROVIDER, "openai");
    request.record("failover.cached", false);
}

async fn span(collector: &Collector, name: &str) -> CollectedSpan {
    collector
        .wait_for_span(name, WAIT)
        .await
        .unwrap_or_else(|| panic!("span {name} never arrived; got {:?}", collector.spans()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_with_their_attributes_and_parents() {
    let collector = collector().await;
    let otlp = pipeline(&collector);
    let subscriber = tracing_subscriber::registry().with(otlp.layer());
    tracing::subscriber::with_default(subscriber, trace_one_request);
    otlp.force_flush()
        .await
        .expect("the collector takes the spans");

    let request = span(&collector, span::REQUEST).await;
    assert_eq!(request.parent_span_id, None);
    assert_eq!(request.scope, "llm-failover");
    for (key, expected) in [
        ("failover.request_id", "req-1"),
        ("failover.tenant", "acme"),
        ("gen_ai.agent.id", "agent-7"),
        ("gen_ai.request.model", "fast"),
        ("failover.outcome", "success"),
        ("failover.provider", "openai"),
    ] {
        assert_eq!(request.attribute(key), Some(expected), "{key}: {request:?}");
    }
    assert_eq!(
        request.attributes.get("failover.stream"),
        Some(&AttributeValue::Bool(false))
    );
    assert_eq!(
        request.attributes.get("failover.cached"),
        Some(&AttributeValue::Bool(false))
    );
    if std::env::var_os("OTEL_SERVICE_NAME").is_none()
        && std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_none()
    {
        assert_eq!(
            request
                .resource
                .get("service.name")
                .and_then(AttributeValue::as_str),
            Some("failover-otlp-test")
        );
    }

    // `otel.name` names the attempts (the GenAI convention's `chat {model}`), `otel.kind`
    // makes them client spans.
    let failed = span(&collector, "chat claude").await;
    let answered = span(&collector, "chat gpt").await;
    for attempt in [&failed, &answered] {
        assert_eq!(attempt.kind, SpanKind::Client);
        assert_eq!(attempt.trace_id, request.trace_id);
        assert_eq!(attempt.parent_span_id.as_ref(), Some(&request.span_id));
        assert_eq!(attempt.attribute("gen_ai.operation.name"), Some("chat"));
    }
    assert_eq!(
        failed.attribute("gen_ai.provider.name"),
        Some("aws.bedrock")
    );
    assert_eq!(failed.attribute("failover.provider"), Some("bedrock"));
    assert_eq!(failed.attribute("gen_ai.request.model"), Some("claude"));
    assert_eq!(failed.attribute("failover.outcome"), Some("unavailable"));
    assert_eq!(failed.attribute("error.type"), Some("unavailable"));
    assert_eq!(
        failed.attributes.get("failover.retry_after_ms"),
        Some(&AttributeValue::Int(250))
    );
    assert_eq!(answered.attribute("failover.outcome"), Some("success"));
    assert_eq!(
        answered.attribute("gen_ai.response.model"),
        Some("gpt-2026-01-01")
    );
    assert_eq!(
        answered.attributes.get("gen_ai.usage.input_tokens"),
        Some(&AttributeValue::Int(12))
    );
    assert_eq!(
        answered.attributes.get("gen_ai.usage.output_tokens"),
        Some(&AttributeValue::Int(5))
    );
    assert!(
        !answered.attributes.contains_key("error.type"),
        "{answered:?}"
    );

    for name in [span::CACHE_LOOKUP, span::CACHE_STORE, span::USAGE_RECORD] {
        let child = span(&collector, name).await;
        assert_eq!(
            child.parent_span_id.as_ref(),
            Some(&request.span_id),
            "{name}"
        );
    }
    otlp.shutdown().await.expect("the pipeline shuts down");
}

/// Under a current-thread runtime the exports run on a runtime of their own: flush and
/// shutdown must not wait for the very thread that waits for them.
#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_exports_and_shuts_down() {
    let collector = collector().await;
    let otlp = pipeline(&collector);
    let subscriber = tracing_subscriber::registry().with(otlp.layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!(span::REQUEST, failover.request_id = "req-2").in_scope(|| {});
    });
    let recorder = otlp.recorder().expect("metrics are on");
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(metric::CACHE_HITS).increment(1);
    });
    otlp.shutdown().await.expect("the pipeline shuts down");
    assert_eq!(
        span(&collector, span::REQUEST)
            .await
            .attribute("failover.request_id"),
        Some("req-2")
    );
    assert!(collector.metric_names().contains(metric::CACHE_HITS));
}

async fn point(
    collector: &Collector,
    name: &str,
    matches: impl Fn(&DataPoint) -> bool,
) -> DataPoint {
    collector
        .wait_for_data_point(name, WAIT, matches)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no matching point of {name}; got {:?}",
                collector.data_points(name)
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_arrive_with_their_labels_units_and_buckets() {
    let collector = collector().await;
    let otlp = pipeline(&collector);
    let recorder = otlp.recorder().expect("metrics are on");
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_histogram!("test.outside.catalogue", "Not in the catalogue.");
        // Many calls with one key: one cached handle, one series.
        for _ in 0..1000 {
            metrics::counter!(metric::REQUESTS, label::OUTCOME => "success", label::STREAM => "false")
                .increment(1);
        }
        metrics::counter!(metric::REQUESTS, label::OUTCOME => "all_failed", label::STREAM => "true")
            .increment(2);
        metrics::counter!(metric::COST).absolute(40);
        metrics::counter!(metric::COST).absolute(100);
        metrics::histogram!(
            metric::OPERATION_DURATION,
            label::OPERATION_NAME => value::CHAT,
            label::PROVIDER_NAME => "aws.bedrock",
            label::PROVIDER => "bedrock",
        )
        .record(0.03);
        metrics::histogram!(metric::TOKEN_USAGE, label::TOKEN_TYPE => value::INPUT).record(12.0);
        metrics::histogram!("test.outside.catalogue").record(7.0);
        let state = metrics::gauge!(metric::BREAKER_STATE, label::PROVIDER => "bedrock", label::BREAKER_STATE => "open");
        state.set(1.0);
        state.increment(2.0);
        state.decrement(1.5);
    });
    otlp.force_flush()
        .await
        .expect("the collector takes the metrics");

    let success = point(&collector, metric::REQUESTS, |point| {
        point.attribute(label::OUTCOME) == Some("success")
    })
    .await;
    assert_eq!(
        success.value,
        PointValue::Sum {
            value: 1000.0,
            monotonic: true
        }
    );
    assert_eq!(success.attribute(label::STREAM), Some("false"));
    assert_eq!(success.description, "Requests that ended, by outcome.");
    let failed = point(&collector, metric::REQUESTS, |point| {
        point.attribute(label::OUTCOME) == Some("all_failed")
    })
    .await;
    assert_eq!(
        failed.value,
        PointValue::Sum {
            value: 2.0,
            monotonic: true
        }
    );
    let cost = point(&collector, metric::COST, |_| true).await;
    assert_eq!(
        cost.value,
        PointValue::Sum {
            value: 100.0,
            monotonic: true
        }
    );

    let duration = point(&collector, metric::OPERATION_DURATION, |point| {
        point.attribute(label::PROVIDER) == Some("bedrock")
    })
    .await;
    assert_eq!(duration.unit, "s");
    assert_eq!(
        duration.attribute(label::PROVIDER_NAME),
        Some("aws.bedrock")
    );
    assert_eq!(duration.attribute(label::OPERATION_NAME), Some("chat"));
    let PointValue::Histogram {
        count,
        bounds,
        bucket_counts,
        ..
    } = duration.value
    else {
        panic!("{duration:?} is not a histogram");
    };
    assert_eq!(count, 1);
    assert_eq!(bounds, names::DURATION_BUCKETS);
    // 0.03 s falls in (0.02, 0.04].
    assert_eq!(bucket_counts[2], 1, "{bucket_counts:?}");

    let tokens = point(&collector, metric::TOKEN_USAGE, |_| true).await;
    assert_eq!(tokens.unit, "{token}");
    assert_eq!(tokens.attribute(label::TOKEN_TYPE), Some("input"));
    assert!(
        matches!(&tokens.value, PointValue::Histogram { bounds, .. } if bounds == names::TOKEN_BUCKETS),
        "{tokens:?}"
    );

    let other = point(&collector, "test.outside.catalogue", |_| true).await;
    assert_eq!(other.description, "Not in the catalogue.");

    let state = point(&collector, metric::BREAKER_STATE, |_| true).await;
    assert_eq!(state.value, PointValue::Gauge(1.5));
    assert_eq!(state.attribute(label::BREAKER_STATE), Some("open"));
    otlp.shutdown().await.expect("the pipeline shuts down");
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn without_an_endpoint_variable_otlp_is_off() {
    assert_eq!(OtlpConfig::from_lookup(lookup(&[])).unwrap(), None);
    let no_endpoint = lookup(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
    ]);
    assert_eq!(OtlpConfig::from_lookup(no_endpoint).unwrap(), None);
    let both_off = lookup(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ]);
    assert_eq!(OtlpConfig::from_lookup(both_off).unwrap(), None);
    // The real environment: only read, and only checked when it sets no endpoint.
    let endpoint_set = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if !endpoint_set {
        assert!(OtlpPipeline::from_env().unwrap().is_none());
    }
}

#[test]
fn endpoints_timeouts_and_interval_follow_the_otlp_variables() {
    let config = OtlpConfig::from_lookup(lookup(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://collector:4318/",
    )]))
    .unwrap()
    .expect("configured");
    assert_eq!(
        config.traces,
        Some(OtlpSignalConfig::new("http://collector:4318/v1/traces"))
    );
    assert_eq!(
        config.metrics,
        Some(OtlpSignalConfig::new("http://collector:4318/v1/metrics"))
    );
    assert_eq!(config.metric_export_interval, Duration::from_secs(60));

    let config = OtlpConfig::from_lookup(lookup(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:9999/custom",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "700"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/Protobuf"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
    ]))
    .unwrap()
    .expect("configured");
    let traces = config.traces.expect("traces on");
    assert_eq!(traces.endpoint, "http://traces:9999/custom");
    assert_eq!(traces.timeout, Some(Duration::from_millis(2500)));
    let metrics = config.metrics.expect("metrics on");
    assert_eq!(metrics.endpoint, "http://localhost:4318/v1/metrics");
    assert_eq!(metrics.timeout, Some(Duration::from_millis(700)));
    assert_eq!(config.metric_export_interval, Duration::from_millis(500));

    let config = OtlpConfig::from_lookup(lookup(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ]))
    .unwrap()
    .expect("configured");
    assert!(config.traces.is_some());
    assert_eq!(config.metrics, None);
}

#[test]
fn bad_values_are_typed_errors_naming_their_variable() {
    let with_endpoint = |vars: &[(&'static str, &'static str)]| {
        let mut vars = vars.to_vec();
        vars.push(("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"));
        OtlpConfig::from_lookup(lookup(&vars)).unwrap_err()
    };
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten seconds"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-5"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1.5"),
    ] {
        let error = with_endpoint(&[(variable, value)]);
        assert!(
            matches!(&error, OtlpError::InvalidValue { variable: v, value: got, .. } if *v == variable && got == value),
            "{variable}: {error:?}"
        );
        assert!(error.to_string().contains(variable), "{error}");
    }
    for (variable, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
    ] {
        let error = with_endpoint(&[(variable, value)]);
        assert!(
            matches!(&error, OtlpError::UnsupportedProtocol { variable: v, value: got } if *v == variable && got == value),
            "{variable}: {error:?}"
        );
        assert!(error.to_string().contains(variable), "{error}");
    }

    let mut config = OtlpConfig::new("http://127.0.0.1:4318");
    config.traces = Some(OtlpSignalConfig::new("not a url"));
    let error = OtlpPipeline::new(config).unwrap_err();
    assert!(
        matches!(
            error,
            OtlpError::Exporter {
                signal: Signal::Traces,
                ..
            }
        ),
        "{error:?}"
    );
}
