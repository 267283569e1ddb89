//! `failover demo` with `OTEL_EXPORTER_OTLP_ENDPOINT` set exports its spans and metrics to
//! the collector there: a stand-in OTLP/HTTP collector on 127.0.0.1 that decodes what it
//! receives. The binary runs as a subprocess and flushes before it exits, so everything the
//! scenarios produced is at the collector once the process has ended.

use std::process::Command;

use failover_standin::collector::{AttributeValue, Collector, PointValue, SpanKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_exports_its_spans_and_metrics_over_otlp() {
    let collector = Collector::start().await.expect("the collector starts");
    let endpoint = collector.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_failover"))
            .arg("demo")
            .env_remove("REDIS_URL")
            .env_remove("DYNAMODB_ENDPOINT")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_SERVICE_NAME", "failover-demo-test")
            .output()
            .expect("the failover binary runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Seven requests: 1, 2, 3, 4 (the cache hit) and the three of scenario 5.
    let requests = collector.spans_named("failover.request");
    assert_eq!(requests.len(), 7, "{requests:#?}");
    for request in &requests {
        assert!(
            request
                .attribute("failover.tenant")
                .is_some_and(|t| t.starts_with("test_tenant"))
        );
        assert_eq!(request.attribute("gen_ai.agent.id"), Some("test_agent"));
        assert_eq!(request.attribute("gen_ai.request.model"), Some("gpt-4"));
        assert_eq!(
            request.attributes.get("failover.stream"),
            Some(&AttributeValue::Bool(false))
        );
        assert!(request.attribute("failover.request_id").is_some());
        assert_eq!(
            request
                .resource
                .get("service.name")
                .and_then(AttributeValue::as_str),
            Some("failover-demo-test")
        );
    }
    let outcomes: Vec<_> = requests
        .iter()
        .filter_map(|r| r.attribute("failover.outcome"))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "success").count(),
        3,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "cached").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "all_failed").count(),
        3,
        "{outcomes:?}"
    );

    // Scenario 2's failed Bedrock call: a client span `chat <model>` in a request's trace,
    // with the GenAI attributes, the error kind and an error status.
    let attempts = collector.spans_named("chat anthropic.claude-3-5-sonnet-20240620-v1:0");
    let failed = attempts
        .iter()
        .find(|span| span.attribute("failover.outcome") == Some("failure"))
        .unwrap_or_else(|| panic!("no failed Bedrock attempt in {attempts:#?}"));
    assert_eq!(failed.kind, SpanKind::Client);
    assert_eq!(
        failed.attribute("gen_ai.provider.name"),
        Some("aws.bedrock")
    );
    assert_eq!(failed.attribute("gen_ai.operation.name"), Some("chat"));
    assert_eq!(failed.attribute("failover.provider"), Some("bedrock"));
    assert_eq!(failed.attribute("error.type"), Some("unavailable"));
    let parent = requests
        .iter()
        .find(|request| Some(&request.span_id) == failed.parent_span_id.as_ref())
        .expect("the attempt is a child of a request span");
    assert_eq!(parent.trace_id, failed.trace_id);
    // Scenario 1's answer carries its token counts as integers.
    let answered = attempts
        .iter()
        .find(|span| span.attribute("failover.outcome") == Some("success"))
        .expect("Bedrock answered scenario 1");
    assert!(
        matches!(answered.attributes.get("gen_ai.usage.input_tokens"), Some(AttributeValue::Int(n)) if *n > 0)
    );

    // The metrics: the GenAI duration histogram with its convention's buckets, and the
    // attempts counter with the failure's kind.
    let durations = collector.data_points("gen_ai.client.operation.duration");
    assert!(
        durations
            .iter()
            .any(|point| point.attribute("error.type") == Some("unavailable")
                && matches!(&point.value, PointValue::Histogram { count, bounds, .. }
                if *count >= 1 && bounds.first() == Some(&0.01))),
        "{durations:#?}"
    );
    let attempts = collector.data_points("failover.provider.attempts");
    assert!(
        attempts.iter().any(
            |point| point.attribute("failover.provider") == Some("openai")
                && point.attribute("failover.outcome") == Some("success")
                && matches!(point.value, PointValue::Sum { value, monotonic: true } if value == 2.0)
        ),
        "{attempts:#?}"
    );
}
