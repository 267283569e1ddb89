//! The adapter's metrics and spans with scripted providers: the tenant label's bound, the
//! stream metrics, cancellations, and the fields of the request and attempt spans.
//!
//! Each test runs on a current-thread runtime with a recorder (and, for spans, a
//! subscriber) of its own as the thread's default, so tests running in parallel never see
//! each other's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_breaker::BreakerConfig;
use failover_cache::MemoryCache;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_provider::{CompletionRequest, ErrorKind, FinishReason, TokenUsage};
use failover_testkit::{ScriptedProvider, Step, StreamStep};
use failover_usage::MemoryUsageSink;
use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

fn adapter(
    bedrock: ScriptedProvider,
    openai: ScriptedProvider,
    config: AdapterConfig,
) -> FailoverAdapter {
    FailoverAdapter::builder()
        .provider(Arc::new(bedrock), BreakerConfig::default())
        .provider(Arc::new(openai), BreakerConfig::default())
        .cache(Arc::new(MemoryCache::new()))
        .usage_sink(Arc::new(MemoryUsageSink::with_capacity(100_000)))
        .config(config)
        .build()
        .expect("the scripted adapter builds")
}

fn request(tenant: &str, prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt(tenant, "agent-7", "gpt-4", prompt)
}

/// Runs `body` on a current-thread runtime with a fresh recorder as the thread's default;
/// returns what it recorded.
fn recorded<F: Future<Output = ()>>(body: impl FnOnce() -> F) -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body());
    snapshotter
}

/// `(name, labels, value)` of every series.
fn series(snapshotter: &Snapshotter) -> Vec<(String, BTreeMap<String, String>, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

#[test]
fn ten_thousand_tenants_make_at_most_the_configured_number_of_tenant_series() {
    const TENANTS: usize = 10_000;
    const LIMIT: usize = 25;
    let snapshotter = recorded(|| async {
        let adapter = adapter(
            ScriptedProvider::new("bedrock").otherwise(Step::reply("4")),
            ScriptedProvider::new("openai"),
            AdapterConfig::default().with_metrics_tenant_limit(LIMIT),
        );
        for tenant in 0..TENANTS {
            adapter
                .generate_completion(request(&format!("tenant-{tenant}"), "2+2?"))
                .await
                .unwrap();
        }
    });
    let all = series(&snapshotter);
    for family in ["failover.requests", "failover.cost.nano_usd"] {
        let tenants: BTreeSet<&str> = all
            .iter()
            .filter(|(name, _, _)| name == family)
            .filter_map(|(_, labels, _)| labels.get("failover.tenant").map(String::as_str))
            .collect();
        // The first LIMIT tenants, and one series for all the others.
        assert_eq!(tenants.len(), LIMIT + 1, "{family}: {tenants:?}");
        assert!(tenants.contains("_other") && tenants.contains("tenant-0"));
        let counted: u64 = all
            .iter()
            .filter(|(name, labels, _)| name == family && labels.contains_key("failover.tenant"))
            .map(|(_, _, value)| match value {
                DebugValue::Counter(count) => *count,
                other => panic!("{family} is a counter, not {other:?}"),
            })
            .sum();
        if family == "failover.requests" {
            // Nothing lost in the bound: every request is counted once.
            assert_eq!(counted, TENANTS as u64);
        }
    }
}

#[test]
fn without_a_tenant_limit_no_series_carries_a_tenant() {
    let snapshotter = recorded(|| async {
        let adapter = adapter(
            ScriptedProvider::new("bedrock").otherwise(Step::reply("4")),
            ScriptedProvider::new("openai"),
            AdapterConfig::default(),
        );
        for tenant in ["a", "b", "c"] {
            adapter
                .generate_completion(request(tenant, "2+2?"))
                .await
                .unwrap();
        }
    });
    let all = series(&snapshotter);
    assert!(!all.is_empty());
    assert!(
        all.iter()
            .all(|(_, labels, _)| !labels.contains_key("failover.tenant")),
        "{all:?}"
    );
}

#[test]
fn a_stream_records_its_time_to_first_chunk_and_its_longest_gap() {
    let pause = Duration::from_millis(30);
    let snapshotter = recorded(|| async {
        let adapter = adapter(
            ScriptedProvider::new("bedrock").then(Step::Stream(vec![
                StreamStep::Delta("one".into()),
                StreamStep::Pause(pause),
                StreamStep::Delta(" two".into()),
                StreamStep::Finish {
                    usage: Some(TokenUsage::new(4, 2)),
                    finish_reason: FinishReason::Stop,
                },
            ])),
            ScriptedProvider::new("openai"),
            AdapterConfig::default(),
        );
        let items: Vec<_> = adapter
            .stream_completion(request("t", "count"))
            .await
            .unwrap()
            .collect()
            .await;
        assert!(items.iter().all(Result::is_ok), "{items:?}");
    });
    let all = series(&snapshotter);
    let samples = |family: &str| -> Vec<f64> {
        all.iter()
            .filter(|(name, _, _)| name == family)
            .flat_map(|(_, _, value)| match value {
                DebugValue::Histogram(samples) => samples.iter().map(|s| s.into_inner()).collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    assert_eq!(
        samples("gen_ai.client.operation.time_to_first_chunk").len(),
        1
    );
    let gaps = samples("failover.stream.longest_chunk_gap");
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= pause.as_secs_f64(), "{gaps:?}");
    let streamed = all.iter().find(|(name, labels, _)| {
        name == "failover.requests"
            && labels.get("failover.stream").map(String::as_str) == Some("true")
    });
    assert!(
        matches!(streamed, Some((_, labels, DebugValue::Counter(1)))
            if labels["failover.outcome"] == "success"),
        "{all:?}"
    );
}

#[test]
fn a_request_the_caller_abandons_is_counted_cancelled_with_its_call() {
    let snapshotter = recorded(|| async {
        let adapter = adapter(
            ScriptedProvider::new("bedrock")
                .then(Step::reply("late").after(Duration::from_secs(30))),
            ScriptedProvider::new("openai"),
            AdapterConfig::default(),
        );
        let abandoned = tokio::time::timeout(
            Duration::from_millis(20),
            adapter.generate_completion(request("t", "slow")),
        )
        .await;
        assert!(abandoned.is_err(), "the call was still in flight");
    });
    let counters: BTreeMap<(String, String), u64> = series(&snapshotter)
        .into_iter()
        .filter_map(|(name, labels, value)| match value {
            DebugValue::Counter(count) if count > 0 => {
                Some(((name, labels.get("failover.outcome")?.clone()), count))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        counters,
        BTreeMap::from([
            (("failover.requests".into(), "cancelled".into()), 1),
            (("failover.provider.attempts".into(), "cancelled".into()), 1),
        ])
    );
}

/// Every span's name, parent's name and fields, as a subscriber sees them.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<BTreeMap<u64, SpanSeen>>>);

#[derive(Debug, Clone, Default)]
struct SpanSeen {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = SpanSeen {
            name: attrs.metadata().name(),
            parent: ctx
                .span(id)
                .and_then(|span| span.parent())
                .map(|parent| parent.name()),
            ..SpanSeen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().insert(id.into_u64(), seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(seen) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

#[test]
fn the_request_span_holds_its_attempts_with_their_provider_model_outcome_and_error() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    tracing::subscriber::with_default(subscriber, || {
        recorded(|| async {
            let adapter = adapter(
                ScriptedProvider::new("bedrock").then(Step::fail(ErrorKind::Throttled)),
                ScriptedProvider::new("openai").then(Step::reply("4")),
                AdapterConfig::default(),
            );
            let answer = adapter
                .generate_completion(request("tenant-9", "2+2?"))
                .await
                .unwrap();
            assert_eq!(answer.provider, "openai");
        });
    });
    let seen: Vec<SpanSeen> = spans.0.lock().unwrap().values().cloned().collect();
    let of = |name: &str| -> Vec<&SpanSeen> { seen.iter().filter(|s| s.name == name).collect() };
    let requests = of("failover.request");
    assert_eq!(requests.len(), 1, "{seen:#?}");
    let fields = &requests[0].fields;
    for (field, expected) in [
        ("failover.tenant", "tenant-9"),
        ("gen_ai.agent.id", "agent-7"),
        ("gen_ai.request.model", "gpt-4"),
        ("failover.stream", "false"),
        ("failover.outcome", "success"),
        ("failover.provider", "openai"),
        ("failover.cached", "false"),
        ("failover.attempts", "2"),
    ] {
        assert_eq!(
            fields.get(field).map(String::as_str),
            Some(expected),
            "{field}: {fields:?}"
        );
    }
    assert!(!fields["failover.request_id"].is_empty());

    let attempts = of("failover.attempt");
    assert_eq!(attempts.len(), 2, "{seen:#?}");
    let by_provider = |provider: &str| {
        attempts
            .iter()
            .find(|s| s.fields.get("failover.provider").map(String::as_str) == Some(provider))
            .unwrap_or_else(|| panic!("no attempt span of {provider}: {attempts:#?}"))
    };
    let bedrock = by_provider("bedrock");
    assert_eq!(bedrock.parent, Some("failover.request"));
    assert_eq!(bedrock.fields["failover.outcome"], "failure");
    assert_eq!(bedrock.fields["error.type"], "throttled");
    assert_eq!(bedrock.fields["otel.status_code"], "ERROR");
    assert_eq!(bedrock.fields["gen_ai.operation.name"], "chat");
    assert!(bedrock.fields["gen_ai.request.model"].contains("claude"));
    let openai = by_provider("openai");
    assert_eq!(openai.parent, Some("failover.request"));
    assert_eq!(openai.fields["failover.outcome"], "success");
    assert_eq!(openai.fields["failover.fallback"], "true");
    assert_eq!(openai.fields["gen_ai.usage.input_tokens"], "10");
    assert_eq!(openai.fields["gen_ai.usage.output_tokens"], "5");
    assert!(!openai.fields.contains_key("error.type"));

    let lookups = of("failover.cache.lookup");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].fields["failover.cache.result"], "miss");
    assert_eq!(
        of("failover.cache.store")[0].fields["failover.cache.result"],
        "stored"
    );
    // Two usage records (the failed call and the answer), inside the request.
    let records = of("failover.usage.record");
    assert_eq!(records.len(), 2, "{seen:#?}");
    assert!(
        records
            .iter()
            .all(|r| r.parent == Some("failover.attempt") || r.parent == Some("failover.request"))
    );
}
