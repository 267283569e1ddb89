//! The adapter's metrics with scripted providers: the tenant label's bound, the stream
//! metrics, cancellations. (Spans: `tests/spans.rs`.)
//!
//! Each test runs on a current-thread runtime with a recorder of its own as the thread's
//! default, so tests running in parallel never see each other's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use failover_breaker::BreakerConfig;
use failover_cache::MemoryCache;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_provider::{CompletionRequest, FinishReason, TokenUsage};
use failover_testkit::{ScriptedProvider, Step, StreamStep};
use failover_usage::MemoryUsageSink;
use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

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
