//! The engine's hardening, with scripted providers and paused time: a committed stream
//! frees its breaker at once and keeps its deadline without the caller polling, a provider
//! that panics is a failed call, `fallback_used` means an earlier provider was tried, the
//! health report sees the cache, and a shut-down adapter takes no requests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{BEDROCK, OPENAI, World, request};
use failover_breaker::{BreakerConfig, BreakerState, ManualClock};
use failover_core::{FailoverAdapter, FailoverError, HealthStatus, Router};
use failover_provider::{
    AttemptOutcome, Capabilities, ErrorKind, FinishReason, Provider, ProviderError,
    ProviderRequest, ProviderResponse, ProviderStream, StreamChunk, TokenUsage,
};
use failover_testkit::{BrokenCache, CacheFault, ScriptedProvider, Step, StreamStep};
use failover_usage::{MemoryUsageSink, UsageOutcome};
use futures::StreamExt;

fn slow_stream(pause: Duration) -> Step {
    Step::Stream(vec![
        StreamStep::Delta("first".into()),
        StreamStep::Pause(pause),
        StreamStep::Delta(" second".into()),
        StreamStep::Finish {
            usage: Some(TokenUsage::new(10, 2)),
            finish_reason: FinishReason::Stop,
        },
    ])
}

#[tokio::test(start_paused = true)]
async fn a_committed_stream_reports_success_to_its_breaker_at_once() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(slow_stream(Duration::from_secs(30))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let mut stream = world
        .adapter
        .stream_completion(request("poem"))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    // The stream is still open (30 s to its next delta), but the provider answered: its
    // breaker has heard the success and holds no permit for it.
    let breaker = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!((breaker.successes, breaker.failures), (1, 0));
    drop(stream);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_provider_is_not_held_shut_by_a_slow_stream() {
    let config = BreakerConfig::default()
        .with_consecutive_failures(1)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1);
    let clock = Arc::new(ManualClock::new());
    let bedrock = Arc::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::fail(ErrorKind::Unavailable))
            .then(slow_stream(Duration::from_secs(3600)))
            .otherwise(Step::reply("after the probe")),
    );
    let adapter = FailoverAdapter::builder()
        .clock(clock.clone())
        .provider(bedrock.clone(), config)
        .provider(
            Arc::new(ScriptedProvider::always(OPENAI, "fallback")),
            BreakerConfig::default(),
        )
        .build()
        .unwrap();
    adapter.generate_completion(request("trip")).await.unwrap();
    let breaker = adapter.breaker(BEDROCK).unwrap();
    assert_eq!(breaker.snapshot().state, BreakerState::Open);
    clock.advance(Duration::from_secs(3600));
    // The probe is a stream that commits and then idles for an hour.
    let mut probe = adapter.stream_completion(request("probe")).await.unwrap();
    assert!(matches!(
        probe.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    assert_eq!(breaker.snapshot().state, BreakerState::Closed);
    let answer = adapter.generate_completion(request("next")).await.unwrap();
    assert_eq!(answer.provider, BEDROCK);
    drop(probe);
}

#[tokio::test(start_paused = true)]
async fn a_stream_nobody_reads_still_ends_at_its_deadline_and_is_accounted() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(slow_stream(Duration::from_secs(3600))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let mut stream = world
        .adapter
        .stream_completion(request("poem").timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    // Nobody polls the stream. Its deadline passes; the call is cut and accounted anyway.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let records = world.usage_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::Timeout
        }
    );
    assert!(records[0].usage_estimated);
    // The caller finds the interruption when it reads on.
    let Some(Err(FailoverError::StreamInterrupted { kind, .. })) = stream.next().await else {
        panic!("expected the interruption")
    };
    assert_eq!(kind, ErrorKind::Timeout);
    assert!(stream.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stream_mid_way_settles_it_as_cancelled_in_the_drop() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(slow_stream(Duration::from_secs(30))),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let mut stream = world
        .adapter
        .stream_completion(request("poem"))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    drop(stream);
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, UsageOutcome::Cancelled);
}

/// A provider with a bug: it panics on every call.
#[derive(Debug)]
struct Panicking;

#[async_trait]
impl Provider for Panicking {
    fn name(&self) -> &str {
        BEDROCK
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }
    async fn complete(&self, _: ProviderRequest) -> Result<ProviderResponse, ProviderError> {
        panic!("index out of bounds")
    }
    async fn stream(&self, _: ProviderRequest) -> Result<ProviderStream, ProviderError> {
        Ok(Box::pin(futures::stream::poll_fn(|_| {
            panic!("decoder bug")
        })))
    }
}

#[tokio::test]
async fn a_panicking_provider_is_a_failed_call_that_fails_over() {
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = FailoverAdapter::builder()
        .provider(Arc::new(Panicking), BreakerConfig::default())
        .provider(
            Arc::new(ScriptedProvider::always(OPENAI, "fallback")),
            BreakerConfig::default(),
        )
        .usage_sink(sink.clone())
        .build()
        .unwrap();
    let answer = adapter.generate_completion(request("q")).await.unwrap();
    assert_eq!(answer.provider, OPENAI);
    let AttemptOutcome::Failed { kind, message } = &answer.attempts[0].outcome else {
        panic!("{:?}", answer.attempts)
    };
    assert_eq!(*kind, ErrorKind::Unavailable);
    assert!(
        message.contains("panicked: index out of bounds"),
        "{message}"
    );
    let streamed: Vec<_> = adapter
        .stream_completion(request("s"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(streamed.last(), Some(Ok(StreamChunk::Done(done))) if done.provider == OPENAI)
    );
    let breaker = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(breaker.failures, 2, "a panic is the provider's failure");
    let outcomes: Vec<_> = sink.records().iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes[0],
        UsageOutcome::Failed {
            kind: ErrorKind::Unavailable
        }
    );
}

#[tokio::test]
async fn fallback_used_means_an_earlier_provider_was_tried() {
    let sink = Arc::new(MemoryUsageSink::default());
    let router = Router::embedded().route("openai-only", OPENAI, "gpt-4o");
    let adapter = FailoverAdapter::builder()
        .provider(
            Arc::new(ScriptedProvider::always(BEDROCK, "primary")),
            BreakerConfig::default(),
        )
        .provider(
            Arc::new(ScriptedProvider::always(OPENAI, "only route")),
            BreakerConfig::default(),
        )
        .router(router)
        .usage_sink(sink.clone())
        .build()
        .unwrap();
    let mut only_openai = request("q");
    only_openai.model = "openai-only".into();
    let answer = adapter.generate_completion(only_openai).await.unwrap();
    assert_eq!(answer.provider, OPENAI);
    assert!(
        !sink.records()[0].fallback_used,
        "no earlier provider routes this model: OpenAI is not standing in for anyone"
    );
    adapter.breaker(BEDROCK).unwrap().force_open();
    adapter.generate_completion(request("q")).await.unwrap();
    assert!(sink.records()[1].fallback_used);
}

#[tokio::test]
async fn health_degrades_with_a_reason_when_the_cache_fails() {
    let adapter = FailoverAdapter::builder()
        .provider(
            Arc::new(ScriptedProvider::always(BEDROCK, "answer")),
            BreakerConfig::default(),
        )
        .cache(Arc::new(BrokenCache::new(CacheFault::Unavailable)))
        .build()
        .unwrap();
    assert_eq!(adapter.health().status, HealthStatus::Healthy);
    adapter.generate_completion(request("q")).await.unwrap();
    let health = adapter.health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health
            .problems
            .iter()
            .any(|problem| problem.starts_with("cache:")),
        "{:?}",
        health.problems
    );
}

#[tokio::test]
async fn a_shut_down_adapter_refuses_requests_and_its_ledger_is_closed() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "answer"),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    world
        .adapter
        .generate_completion(request("q"))
        .await
        .unwrap();
    world.adapter.shutdown().await.unwrap();
    world.adapter.shutdown().await.unwrap();
    let error = world
        .adapter
        .generate_completion(request("q2"))
        .await
        .unwrap_err();
    assert!(matches!(error, FailoverError::ShutDown), "{error}");
    assert_eq!(world.bedrock.call_count(), 1);
    assert_eq!(world.usage_records().len(), 1);
}

#[tokio::test]
async fn revoked_credentials_hold_the_breaker_open_and_health_asks_for_an_operator() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::fail(ErrorKind::AuthOrConfig)),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    let trip_after = BreakerConfig::default().consecutive_failures;
    for n in 0..trip_after {
        let answer = world
            .adapter
            .generate_completion(request(&format!("question {n}")))
            .await
            .unwrap();
        assert_eq!(answer.provider, OPENAI);
    }
    let breaker = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(breaker.state, BreakerState::Open);
    assert!(breaker.needs_operator);
    let held = breaker
        .next_probe_at
        .unwrap()
        .saturating_duration_since(std::time::Instant::now());
    assert!(
        held > Duration::from_secs(9 * 60),
        "a configuration fault is not re-probed every 30 s: held {held:?}"
    );
    let health = world.adapter.health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health
            .problems
            .iter()
            .any(|problem| problem.starts_with("bedrock: needs an operator (auth_or_config)")),
        "{:?}",
        health.problems
    );
}
