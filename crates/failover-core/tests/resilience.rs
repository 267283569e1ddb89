//! Cloud faults are normal weather: a broken cache costs at most its budget, deadlines hold
//! across attempts, and a dropped call is accounted for without judging the provider.

use std::sync::Arc;
use std::time::Duration;

use failover_breaker::BreakerConfig;
use failover_core::{AdapterConfig, FailoverAdapter, FailoverError};
use failover_provider::{AttemptOutcome, CompletionRequest, ErrorKind};
use failover_testkit::{BrokenCache, CacheFault, ScriptedProvider, Step};
use failover_usage::{MemoryUsageSink, UsageOutcome};

fn adapter_over(
    providers: Vec<Arc<ScriptedProvider>>,
    cache: Option<BrokenCache>,
    sink: Arc<MemoryUsageSink>,
) -> FailoverAdapter {
    let mut builder = FailoverAdapter::builder()
        .usage_sink(sink)
        .config(AdapterConfig::default().with_cache_lookup_budget(Duration::from_millis(50)));
    for provider in providers {
        builder = builder.provider(provider, BreakerConfig::default());
    }
    if let Some(cache) = cache {
        builder = builder.cache(Arc::new(cache));
    }
    builder.build().unwrap()
}

/// Within the paused clock's timer resolution of `expected`.
fn assert_near(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed <= expected + Duration::from_millis(5),
        "{elapsed:?} is not {expected:?}"
    );
}

fn request() -> CompletionRequest {
    CompletionRequest::prompt("t", "a", "gpt-4", "hello")
}

#[tokio::test(start_paused = true)]
async fn a_black_holed_cache_costs_one_budget_and_the_request_succeeds() {
    let provider = Arc::new(ScriptedProvider::always("bedrock", "answer"));
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(
        vec![provider.clone()],
        Some(BrokenCache::new(CacheFault::Hang(Duration::from_secs(
            3600,
        )))),
        sink,
    );
    let started = tokio::time::Instant::now();
    let result = adapter.generate_completion(request()).await.unwrap();
    assert_eq!(result.content, "answer");
    assert!(!result.cached);
    // Paused clock: the only time that passes is the lookup budget; after a failed lookup
    // the write is skipped, so a dead cache costs one budget per request.
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    let cache = adapter.health().cache.unwrap();
    assert_eq!(
        (cache.timeouts, cache.misses, cache.available),
        (1, 1, false)
    );
}

#[tokio::test]
async fn an_unavailable_cache_is_a_miss_not_a_failure() {
    let provider = Arc::new(ScriptedProvider::always("bedrock", "answer"));
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(
        vec![provider.clone()],
        Some(BrokenCache::new(CacheFault::Unavailable)),
        sink,
    );
    for _ in 0..3 {
        assert!(!adapter.generate_completion(request()).await.unwrap().cached);
    }
    assert_eq!(provider.call_count(), 3);
    let cache = adapter.health().cache.unwrap();
    assert_eq!((cache.errors, cache.misses), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_hung_primary_gets_a_share_of_the_deadline_and_fails_over_in_time() {
    let hung = Arc::new(
        ScriptedProvider::new("bedrock").then(Step::reply("late").after(Duration::from_secs(10))),
    );
    let fallback = Arc::new(ScriptedProvider::always("openai", "in time"));
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(vec![hung.clone(), fallback.clone()], None, sink.clone());
    let started = tokio::time::Instant::now();
    let answer = adapter
        .generate_completion(request().timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(
        (answer.provider.as_str(), answer.content.as_str()),
        ("openai", "in time")
    );
    // The default share is half of the time left: the primary is abandoned at 1 s (give
    // or take the timer's millisecond resolution).
    assert_near(started.elapsed(), Duration::from_secs(1));
    assert!(matches!(
        answer.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Timeout,
            ..
        }
    ));
    // Using up its share is the provider's time-out: its breaker counts it, and the
    // abandoned call is billed by estimate (the provider went on processing the input).
    let breaker = adapter.breaker("bedrock").unwrap().snapshot();
    assert_eq!((breaker.failures, breaker.successes), (1, 0));
    let records = sink.records();
    assert_eq!(
        records[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::Timeout
        }
    );
    assert!(records[0].usage_estimated);
    assert!(records[0].usage.input_tokens > 0);
    assert!(records[1].fallback_used);
}

#[tokio::test(start_paused = true)]
async fn hung_primaries_trip_their_breaker_while_callers_get_answers() {
    let hung = Arc::new(
        ScriptedProvider::new("bedrock")
            .otherwise(Step::reply("late").after(Duration::from_secs(3600))),
    );
    let fallback = Arc::new(ScriptedProvider::always("openai", "in time"));
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(vec![hung.clone(), fallback.clone()], None, sink);
    let trip_after = BreakerConfig::default().consecutive_failures;
    for _ in 0..trip_after {
        let answer = adapter
            .generate_completion(request().timeout(Duration::from_secs(2)))
            .await
            .unwrap();
        assert_eq!(answer.provider, "openai");
    }
    let breaker = adapter.breaker("bedrock").unwrap().snapshot();
    assert_eq!(breaker.state, failover_breaker::BreakerState::Open);
    // Now Bedrock is skipped at once: the fallback answers without waiting for a share.
    let started = tokio::time::Instant::now();
    adapter
        .generate_completion(request().timeout(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(hung.call_count(), trip_after as usize);
}

#[tokio::test(start_paused = true)]
async fn the_last_candidate_gets_all_the_time_left_and_the_deadline_is_the_callers() {
    let slow = Arc::new(
        ScriptedProvider::new("bedrock").then(Step::reply("late").after(Duration::from_secs(10))),
    );
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(vec![slow.clone()], None, sink.clone());
    let started = tokio::time::Instant::now();
    let error = adapter
        .generate_completion(request().timeout(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_near(started.elapsed(), Duration::from_secs(2));
    let FailoverError::DeadlineExceeded { attempts, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(attempts.len(), 1);
    // The caller's deadline is the caller's budget: it judges no provider, and the
    // abandoned call is billed by estimate.
    let breaker = adapter.breaker("bedrock").unwrap().snapshot();
    assert_eq!((breaker.failures, breaker.successes), (0, 0));
    assert!(sink.records()[0].usage_estimated);
}

#[tokio::test]
async fn a_reused_request_id_still_records_every_provider_call() {
    let provider = Arc::new(ScriptedProvider::always("bedrock", "answer"));
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(vec![provider], None, sink.clone());
    let id = failover_provider::RequestId::new("client-retry-1");
    for prompt in ["first", "second"] {
        let request = CompletionRequest::prompt("t", "a", "gpt-4", prompt).request_id(id.clone());
        assert_eq!(
            adapter
                .generate_completion(request)
                .await
                .unwrap()
                .request_id,
            id
        );
    }
    let records = sink.records();
    assert_eq!(
        records.len(),
        2,
        "a reused request id must not swallow a billed call"
    );
    assert_ne!(records[0].call_id, records[1].call_id);
}

#[tokio::test]
async fn a_rejected_json_answer_is_still_billed() {
    let provider =
        Arc::new(ScriptedProvider::new("bedrock").then(Step::reply("not json").with_usage(40, 7)));
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(vec![provider], None, sink.clone());
    let request = request().response_format(failover_provider::ResponseFormat::JsonObject);
    adapter.generate_completion(request).await.unwrap_err();
    let records = sink.records();
    assert_eq!(
        records[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::MalformedResponse
        }
    );
    assert_eq!(records[0].usage, failover_provider::TokenUsage::new(40, 7));
    assert!(!records[0].usage_estimated);
    assert!(records[0].cost > failover_provider::Usd::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_recorded_as_cancelled_and_judges_nobody() {
    let slow = Arc::new(
        ScriptedProvider::new("bedrock").then(Step::reply("late").after(Duration::from_secs(10))),
    );
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = adapter_over(vec![slow.clone()], None, sink.clone());
    let call = adapter.generate_completion(request());
    assert!(
        tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .is_err()
    );
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, UsageOutcome::Cancelled);
    assert!(records[0].usage_estimated);
    let breaker = adapter.breaker("bedrock").unwrap().snapshot();
    assert_eq!((breaker.successes, breaker.failures), (0, 0));
}

#[tokio::test]
async fn builder_refuses_unpriced_routes_and_duplicate_names() {
    let provider = Arc::new(ScriptedProvider::always("bedrock", "x"));
    let router =
        failover_core::Router::embedded().route("gpt-4", "bedrock", "some.unpriced-model-v1:0");
    let error = FailoverAdapter::builder()
        .provider(provider.clone(), BreakerConfig::default())
        .router(router)
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no price for model `some.unpriced-model-v1:0` on `bedrock`"),
        "{error}"
    );
    let error = FailoverAdapter::builder()
        .provider(provider.clone(), BreakerConfig::default())
        .provider(provider, BreakerConfig::default())
        .build()
        .unwrap_err();
    assert_eq!(error.to_string(), "provider name `bedrock` is used twice");
}

/// A memory cache that says it is shared, as Redis does.
#[derive(Debug, Default)]
struct SharedCache(failover_cache::MemoryCache);

#[async_trait::async_trait]
impl failover_cache::Cache for SharedCache {
    fn name(&self) -> &str {
        "shared"
    }
    async fn get(
        &self,
        key: &failover_cache::CacheKey,
    ) -> Result<Option<failover_cache::CachedCompletion>, failover_cache::CacheError> {
        self.0.get(key).await
    }
    async fn put(
        &self,
        key: &failover_cache::CacheKey,
        value: failover_cache::CachedCompletion,
        ttl: Duration,
    ) -> Result<(), failover_cache::CacheError> {
        self.0.put(key, value, ttl).await
    }
    async fn purge_tenant(
        &self,
        tenant: &failover_cache::TenantTag,
    ) -> Result<u64, failover_cache::CacheError> {
        self.0.purge_tenant(tenant).await
    }
    fn health(&self) -> failover_cache::CacheHealth {
        self.0.health()
    }
    fn is_shared(&self) -> bool {
        true
    }
}

#[test]
fn a_shared_cache_needs_a_key_of_the_users_own() {
    let provider = Arc::new(ScriptedProvider::always("bedrock", "x"));
    let error = FailoverAdapter::builder()
        .provider(provider.clone(), BreakerConfig::default())
        .cache(Arc::new(SharedCache::default()))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("FAILOVER_CACHE_KEY"), "{error}");
    FailoverAdapter::builder()
        .provider(provider, BreakerConfig::default())
        .cache(Arc::new(SharedCache::default()))
        .key_deriver(failover_cache::KeyDeriver::from_secret(
            b"a secret of our own, 32 bytes+",
        ))
        .build()
        .expect("a key of our own is accepted");
}
