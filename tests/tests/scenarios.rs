//! The seed's five scenarios, end to end through the adapter, asserting the expected result
//! and what the cache, the usage sink and the breakers hold afterwards.

use failover_breaker::BreakerState;
use failover_core::FailoverError;
use failover_provider::{AttemptOutcome, CompletionRequest, ErrorKind, ResponseFormat};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ScriptedProvider, Step};
use failover_usage::UsageOutcome;

fn seed_request(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt("test_tenant", "test_agent", "gpt-4", prompt)
        .temperature(0.1)
        .max_tokens(10)
        .response_format(ResponseFormat::Text)
}

#[tokio::test]
async fn scenario_1_normal_operation_answers_from_bedrock_and_caches() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::reply("4").with_usage(20, 1)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let result = world
        .adapter
        .generate_completion(seed_request("What is 2+2?"))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    assert_eq!(result.content, "4");
    assert!(!result.cached);
    assert_eq!(result.usage.total_tokens(), 21);
    assert!(result.estimated_cost.amount() > rust_decimal::Decimal::ZERO);
    assert_eq!(world.openai.call_count(), 0);

    // Cached for future calls: the same request is answered without a provider.
    let again = world
        .adapter
        .generate_completion(seed_request("What is 2+2?"))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.content, "4");
    assert_eq!(world.bedrock.call_count(), 1);

    // Usage logged once, for the provider call.
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].provider, BEDROCK);
    assert_eq!(records[0].tenant_id, "test_tenant");
    assert_eq!(records[0].outcome, UsageOutcome::Success);
    assert_eq!(records[0].cost, result.estimated_cost);
}

#[tokio::test]
async fn scenario_2_bedrock_failure_falls_back_to_openai_and_the_breaker_counts_it() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::fail(ErrorKind::Unavailable)),
        ScriptedProvider::new(OPENAI).then(Step::reply("4 from OpenAI")),
    );
    let result = world
        .adapter
        .generate_completion(seed_request("What is 2+2?"))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert_eq!(result.model, "gpt-4");
    assert_eq!(result.attempts.len(), 2);
    assert!(matches!(
        result.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Unavailable,
            ..
        }
    ));
    assert_eq!(result.attempts[1].outcome, AttemptOutcome::Succeeded);

    let bedrock = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(bedrock.state, BreakerState::Closed);
    assert_eq!(bedrock.failures, 1);
    assert_eq!(bedrock.last_error_kind, Some("unavailable"));

    // Cached, and both provider calls are in the ledger.
    assert!(
        world
            .adapter
            .generate_completion(seed_request("What is 2+2?"))
            .await
            .unwrap()
            .cached
    );
    let records = world.usage_records();
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::Unavailable
        }
    );
    assert_eq!((records[0].attempt, records[1].attempt), (1, 2));
    assert!(records[1].fallback_used);
    assert_eq!(records[1].provider, OPENAI);
}

#[tokio::test]
async fn scenario_3_open_breaker_skips_bedrock_without_calling_it() {
    let world = World::healthy();
    world.adapter.breaker(BEDROCK).unwrap().force_open();
    let result = world
        .adapter
        .generate_completion(seed_request("Test fallback"))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert_eq!(world.bedrock.call_count(), 0);
    assert_eq!(
        result.attempts[0].outcome,
        AttemptOutcome::SkippedBreakerOpen
    );
    let health = world.adapter.health();
    assert_eq!(
        health.provider(BEDROCK).unwrap().breaker.state,
        BreakerState::ForcedOpen
    );
    assert!(health.provider(BEDROCK).unwrap().breaker.rejected >= 1);
    world.adapter.breaker(BEDROCK).unwrap().reset();
    let result = world
        .adapter
        .generate_completion(seed_request("Test recovery"))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
}

#[tokio::test]
async fn scenario_4_cache_hit_calls_no_provider_and_logs_no_usage() {
    let world = World::healthy();
    let first = world
        .adapter
        .generate_completion(seed_request("capital of France?"))
        .await
        .unwrap();
    let records_before = world.usage_records().len();
    let second = world
        .adapter
        .generate_completion(seed_request("capital of France?"))
        .await
        .unwrap();
    assert!(second.cached);
    assert_eq!(second.content, first.content);
    assert_eq!(second.provider, first.provider);
    assert_eq!(second.estimated_cost, failover_provider::Usd::ZERO);
    assert!(second.attempts.is_empty());
    assert_eq!(world.bedrock.call_count() + world.openai.call_count(), 1);
    assert_eq!(world.usage_records().len(), records_before);
    assert_eq!(world.adapter.health().cache.unwrap().hits, 1);
}

#[tokio::test]
async fn scenario_5_all_providers_failing_is_one_error_naming_each_attempt() {
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "unused"),
        ScriptedProvider::new(OPENAI).otherwise(Step::fail(ErrorKind::Unavailable)),
    );
    world.adapter.breaker(BEDROCK).unwrap().force_open();
    let error = world
        .adapter
        .generate_completion(seed_request("anything"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, FailoverError::AllProvidersFailed { .. }),
        "{message}"
    );
    assert!(
        message.starts_with("all providers failed for request "),
        "{message}"
    );
    assert!(
        message.contains(
            "bedrock (anthropic.claude-3-5-sonnet-20240620-v1:0): skipped, circuit breaker open"
        ),
        "{message}"
    );
    assert!(
        message.contains("openai (gpt-4): unavailable: scripted unavailable"),
        "{message}"
    );

    // OpenAI's breaker opens after its threshold; then nothing is called at all.
    for _ in 0..2 {
        world
            .adapter
            .generate_completion(seed_request("anything"))
            .await
            .unwrap_err();
    }
    assert_eq!(
        world.adapter.breaker(OPENAI).unwrap().snapshot().state,
        BreakerState::Open
    );
    let calls = world.openai.call_count();
    let error = world
        .adapter
        .generate_completion(seed_request("anything"))
        .await
        .unwrap_err();
    assert_eq!(world.openai.call_count(), calls);
    assert!(
        error
            .attempts()
            .iter()
            .all(|a| a.outcome == AttemptOutcome::SkippedBreakerOpen)
    );
    assert_eq!(
        world.adapter.health().status,
        failover_core::HealthStatus::Unhealthy
    );
    // Nothing was cached for the failures.
    assert_eq!(world.adapter.health().cache.unwrap().hits, 0);
}
