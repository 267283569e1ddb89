//! Seed class 4, `TestCircuitBreakerFailover`: the breaker opens after its threshold, traffic
//! fails over, the breaker recovers OPEN → HALF_OPEN → CLOSED, and an open breaker prevents
//! calls.

use std::time::Duration;

use failover_breaker::BreakerState;
use failover_provider::{CompletionRequest, ErrorKind};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step};

fn request(n: usize) -> CompletionRequest {
    // Distinct prompts, so the cache never answers.
    CompletionRequest::prompt("t", "a", "gpt-4", format!("question {n}"))
}

#[tokio::test]
async fn breaker_opens_after_threshold_failures_and_traffic_fails_over() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then_repeat(Step::fail(ErrorKind::Unavailable), 3),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    for n in 0..3 {
        let result = world.adapter.generate_completion(request(n)).await.unwrap();
        assert_eq!(result.provider, OPENAI, "automatic fallback on call {n}");
    }
    let snapshot = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.trips, 1);
    assert_eq!(snapshot.last_error_kind, Some("unavailable"));
    assert!(snapshot.next_probe_at.is_some());
}

#[tokio::test]
async fn open_breaker_prevents_calls() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then_repeat(Step::fail(ErrorKind::Throttled), 3),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    for n in 0..3 {
        world.adapter.generate_completion(request(n)).await.unwrap();
    }
    for n in 3..10 {
        world.adapter.generate_completion(request(n)).await.unwrap();
    }
    assert_eq!(
        world.bedrock.call_count(),
        3,
        "no call reaches an open breaker's provider"
    );
    assert_eq!(world.openai.call_count(), 10);
}

#[tokio::test]
async fn breaker_recovers_open_half_open_closed() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then_repeat(Step::fail(ErrorKind::Unavailable), 3)
            .otherwise(Step::reply("bedrock is back")),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    for n in 0..3 {
        world.adapter.generate_completion(request(n)).await.unwrap();
    }
    let breaker = world.adapter.breaker(BEDROCK).unwrap();
    assert_eq!(breaker.snapshot().state, BreakerState::Open);
    world.clock.advance(Duration::from_secs(29));
    assert_eq!(
        world
            .adapter
            .generate_completion(request(3))
            .await
            .unwrap()
            .provider,
        OPENAI
    );
    world.clock.advance(Duration::from_secs(2));
    let probe = world.adapter.generate_completion(request(4)).await.unwrap();
    assert_eq!(probe.provider, BEDROCK);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    let path: Vec<_> = snapshot
        .recent_transitions
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        path,
        vec![
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed),
        ]
    );
}

#[tokio::test]
async fn retry_after_longer_than_the_open_period_is_honoured() {
    let throttled = ErrorSpec::new(ErrorKind::Throttled).retry_after(Duration::from_secs(120));
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then_repeat(Step::fail_with(throttled), 3)
            .otherwise(Step::reply("ok")),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    for n in 0..3 {
        world.adapter.generate_completion(request(n)).await.unwrap();
    }
    world.clock.advance(Duration::from_secs(60));
    assert_eq!(
        world
            .adapter
            .generate_completion(request(3))
            .await
            .unwrap()
            .provider,
        OPENAI
    );
    world.clock.advance(Duration::from_secs(61));
    assert_eq!(
        world
            .adapter
            .generate_completion(request(4))
            .await
            .unwrap()
            .provider,
        BEDROCK
    );
}

#[tokio::test]
async fn caller_faults_do_not_count_against_the_breaker_and_do_not_fail_over() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::fail(ErrorKind::InvalidRequest)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    for n in 0..5 {
        let error = world
            .adapter
            .generate_completion(request(n))
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            failover_core::FailoverError::Refused {
                kind: ErrorKind::InvalidRequest,
                ..
            }
        ));
    }
    let snapshot = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.failures, 0);
    assert_eq!(world.openai.call_count(), 0);
}
