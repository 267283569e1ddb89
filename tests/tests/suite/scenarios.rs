//! The seed's five scenarios end to end, each asserting the seed's expected result and what
//! the stores hold afterwards: DynamoDB usage items, Redis entries, breaker states, and —
//! offline — the requests each provider's server received.

use std::time::Duration;

use failover_breaker::BreakerState;
use failover_core::{FailoverError, HealthStatus};
use failover_provider::{AttemptOutcome, ErrorKind, Usd};
use failover_scenarios::metrics::{assert_counted, attempts, fallbacks, requests, transitions};
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    BEDROCK, CACHE_TTL, MODEL, OPENAI, assert_served_by_route, stored_cache_entries, stored_usage,
};
use failover_scenarios::{Harness, HarnessOptions};
use failover_standin::{Fault, Vendor};
use failover_usage::UsageOutcome;

pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            scenario_1_normal_operation_answers_from_bedrock_and_caches,
            scenario_2_unreachable_bedrock_falls_back_to_openai,
            scenario_3_open_breaker_skips_bedrock_without_calling_it,
            scenario_4_cache_hit_calls_no_provider_and_logs_no_usage,
            scenario_5_all_providers_failing_is_one_error_naming_each_attempt,
        ],
        offline_only("scripts a Bedrock 503"): [
            scenario_2_bedrock_unavailable_falls_back_to_openai,
        ],
    }
}

async fn scenario_1_normal_operation_answers_from_bedrock_and_caches() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is 2+2? Answer with just the number.";
    let result = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    assert!(!result.content.is_empty());
    assert!(!result.cached);
    assert!(result.usage.input_tokens > 0 && result.usage.output_tokens > 0);
    assert!(result.estimated_cost.amount() > rust_decimal::Decimal::ZERO);

    // Cached for future calls: the same request is answered without a provider.
    let again = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.content, result.content);
    // Metrics: one Bedrock success and a miss, then a hit with no provider attempt.
    let bedrock_model = &result.attempts[0].model;
    assert_counted(&[
        (requests(MODEL, "success"), 1),
        (requests(MODEL, "cached"), 1),
        (attempts(BEDROCK, bedrock_model, "success", None), 1),
        ("failover.cache.misses{}".into(), 1),
        ("failover.cache.hits{}".into(), 1),
    ]);

    // Redis: one entry, the tenant's, with a TTL, holding no prompt text.
    let tenant = harness.tenant();
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    // DynamoDB: one item, for the one provider call.
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].tenant_id, tenant);
    assert_eq!(items[0].provider, BEDROCK);
    assert_eq!(items[0].outcome, UsageOutcome::Success);
    assert_eq!(items[0].usage, result.usage);
    assert_eq!(items[0].cost, result.estimated_cost);
    assert!(!items[0].fallback_used);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

/// Scenario 2, checked the way both modes can fail Bedrock: its endpoint is a closed port.
async fn scenario_2_unreachable_bedrock_falls_back_to_openai() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let adapter = harness.adapter();
    let prompt = "What is the capital of France?";
    let result = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert_served_by_route(&result);
    assert!(matches!(
        result.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Network,
            ..
        }
    ));
    let bedrock = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(bedrock.state, BreakerState::Closed);
    assert_eq!(bedrock.failures, 1);
    assert_eq!(bedrock.last_error_kind, Some("network"));
    assert_fallback_counted(&result, "network");
    assert_fallback_stored(&harness, &adapter, prompt, &result, ErrorKind::Network).await;
}

/// Scenario 2's metrics: one Bedrock failure of `kind`, one OpenAI success, one fallback.
#[track_caller]
fn assert_fallback_counted(result: &failover_provider::Completion, kind: &str) {
    let (bedrock_model, openai_model) = (&result.attempts[0].model, &result.attempts[1].model);
    assert_counted(&[
        (requests(MODEL, "success"), 1),
        (attempts(BEDROCK, bedrock_model, "failure", Some(kind)), 1),
        (attempts(OPENAI, openai_model, "success", None), 1),
        (fallbacks(OPENAI, openai_model), 1),
        ("failover.cache.misses{}".into(), 1),
    ]);
}

/// Scenario 2 as the seed pictures it: Bedrock answers, with a 503.
async fn scenario_2_bedrock_unavailable_falls_back_to_openai() {
    let harness = Harness::start().await;
    harness
        .offline()
        .inject(Vendor::Bedrock, Fault::Unavailable, 1)
        .await;
    let adapter = harness.adapter();
    let prompt = "What is the capital of France?";
    let result = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert!(matches!(
        &result.attempts[0].outcome,
        AttemptOutcome::Failed { kind: ErrorKind::Unavailable, message }
            if message.contains("ServiceUnavailableException")
    ));
    let bedrock = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!((bedrock.state, bedrock.failures), (BreakerState::Closed, 1));
    assert_eq!(bedrock.last_error_kind, Some("unavailable"));
    assert_fallback_counted(&result, "unavailable");
    assert_fallback_stored(&harness, &adapter, prompt, &result, ErrorKind::Unavailable).await;
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 1);
    assert_eq!(harness.offline().calls(Vendor::OpenAi).await, 1);
}

/// What scenario 2 leaves behind: the answer cached for the tenant, and both provider calls
/// in the ledger — Bedrock's failure (attempt 1) and OpenAI's answer (attempt 2, fallback).
async fn assert_fallback_stored(
    harness: &Harness,
    adapter: &failover_core::FailoverAdapter,
    prompt: &str,
    result: &failover_provider::Completion,
    bedrock_failure: ErrorKind,
) {
    let again = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert!(again.cached && again.provider == OPENAI);
    let tenant = harness.tenant();
    assert_eq!(
        stored_cache_entries(harness, &tenant, CACHE_TTL, &[prompt])
            .await
            .len(),
        1
    );
    let items = stored_usage(harness, adapter, &tenant).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(
        items[0].outcome,
        UsageOutcome::Failed {
            kind: bedrock_failure
        }
    );
    assert_eq!((items[0].provider.as_str(), items[0].attempt), (BEDROCK, 1));
    assert_eq!(items[0].cost, Usd::ZERO);
    assert_eq!((items[1].provider.as_str(), items[1].attempt), (OPENAI, 2));
    assert!(items[1].fallback_used);
    assert_eq!(items[1].usage, result.usage);
    assert_eq!(items[1].cost, result.estimated_cost);
}

async fn scenario_3_open_breaker_skips_bedrock_without_calling_it() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    adapter.breaker(BEDROCK).unwrap().force_open();
    let result = adapter
        .generate_completion(harness.seed_request("Test fallback"))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert!(matches!(
        result.attempts[0].outcome,
        AttemptOutcome::SkippedBreakerOpen { .. }
    ));
    let health = adapter.health();
    let bedrock = &health.provider(BEDROCK).unwrap().breaker;
    assert_eq!(bedrock.state, BreakerState::ForcedOpen);
    assert_eq!(bedrock.rejected, 1);
    assert_eq!(health.status, HealthStatus::Degraded);
    // Metrics: Bedrock skipped (not called), OpenAI's answer a fallback.
    let (bedrock_model, openai_model) = (&result.attempts[0].model, &result.attempts[1].model);
    assert_counted(&[
        (requests(MODEL, "success"), 1),
        (
            attempts(BEDROCK, bedrock_model, "skipped_breaker_open", None),
            1,
        ),
        (attempts(OPENAI, openai_model, "success", None), 1),
        (fallbacks(OPENAI, openai_model), 1),
        ("failover.cache.misses{}".into(), 1),
        (transitions(BEDROCK, "closed", "forced_open"), 1),
    ]);

    // No Bedrock call was made: the ledger holds OpenAI's call only (a skip costs nothing
    // and calls nothing), and — offline — Bedrock's server saw no request.
    let tenant = harness.tenant();
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].provider, OPENAI);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 0);
    }
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &["Test fallback"]).await;
    assert_eq!(entries.len(), 1);

    // The seed closes it again; Bedrock answers the next request.
    adapter.breaker(BEDROCK).unwrap().reset();
    let result = adapter
        .generate_completion(harness.seed_request("Test recovery"))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    assert_counted(&[
        (requests(MODEL, "success"), 1),
        (attempts(BEDROCK, bedrock_model, "success", None), 1),
        ("failover.cache.misses{}".into(), 1),
        (transitions(BEDROCK, "forced_open", "closed"), 1),
    ]);
}

async fn scenario_4_cache_hit_calls_no_provider_and_logs_no_usage() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is the capital of France?";
    let first = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    let tenant = harness.tenant();
    let items_before = stored_usage(&harness, &adapter, &tenant).await.len();
    assert_counted(&[
        (requests(MODEL, "success"), 1),
        (
            attempts(&first.provider, &first.attempts[0].model, "success", None),
            1,
        ),
        ("failover.cache.misses{}".into(), 1),
    ]);
    let second = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert!(second.cached);
    assert_eq!(
        (second.content.as_str(), second.provider.as_str()),
        (first.content.as_str(), first.provider.as_str())
    );
    assert_eq!(second.estimated_cost, Usd::ZERO);
    assert!(second.attempts.is_empty());
    assert_eq!(adapter.health().cache.unwrap().hits, 1);
    // Metrics: one cache hit and no provider attempt.
    assert_counted(&[
        (requests(MODEL, "cached"), 1),
        ("failover.cache.hits{}".into(), 1),
    ]);
    // No usage logged for the hit; one entry in Redis.
    assert_eq!(
        stored_usage(&harness, &adapter, &tenant).await.len(),
        items_before
    );
    assert_eq!(items_before, 1);
    assert_eq!(
        stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt])
            .await
            .len(),
        1
    );
    if let Some(standins) = harness.standins() {
        let calls = standins.calls(Vendor::Bedrock).await + standins.calls(Vendor::OpenAi).await;
        assert_eq!(calls, 1, "the hit reached no provider");
    }
}

async fn scenario_5_all_providers_failing_is_one_error_naming_each_attempt() {
    // OpenAI fails the way both modes can make it fail: a closed port.
    let harness = Harness::start_with(HarnessOptions::default().openai_unreachable()).await;
    let adapter = harness.adapter();
    adapter.breaker(BEDROCK).unwrap().force_open();
    let error = adapter
        .generate_completion(harness.seed_request("anything"))
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
            "bedrock (anthropic.claude-3-5-sonnet-20240620-v1:0): skipped, circuit breaker forced \
             open by an operator (open until reset)"
        ),
        "{message}"
    );
    assert!(message.contains("openai (gpt-4): network"), "{message}");
    let (bedrock_model, openai_model) = (
        error.attempts()[0].model.clone(),
        error.attempts()[1].model.clone(),
    );
    assert_counted(&[
        (requests(MODEL, "all_failed"), 1),
        (
            attempts(BEDROCK, &bedrock_model, "skipped_breaker_open", None),
            1,
        ),
        (
            attempts(OPENAI, &openai_model, "failure", Some("network")),
            1,
        ),
        ("failover.cache.misses{}".into(), 1),
        (transitions(BEDROCK, "closed", "forced_open"), 1),
    ]);

    // OpenAI's breaker opens after its threshold; then nothing is called at all.
    for _ in 0..2 {
        adapter
            .generate_completion(harness.seed_request("anything"))
            .await
            .unwrap_err();
    }
    let openai = adapter.breaker(OPENAI).unwrap().snapshot();
    assert_eq!(openai.state, BreakerState::Open);
    assert_eq!(openai.trips, 1);
    let error = adapter
        .generate_completion(harness.seed_request("anything"))
        .await
        .unwrap_err();
    assert!(
        error
            .attempts()
            .iter()
            .all(|attempt| matches!(attempt.outcome, AttemptOutcome::SkippedBreakerOpen { .. }))
    );
    // Metrics: two more failed OpenAI calls, then a request no provider was called for.
    assert_counted(&[
        (requests(MODEL, "all_failed"), 2),
        (requests(MODEL, "unavailable"), 1),
        (
            attempts(BEDROCK, &bedrock_model, "skipped_breaker_open", None),
            3,
        ),
        (
            attempts(OPENAI, &openai_model, "failure", Some("network")),
            2,
        ),
        (
            attempts(OPENAI, &openai_model, "skipped_breaker_open", None),
            1,
        ),
        ("failover.cache.misses{}".into(), 3),
        (transitions(OPENAI, "closed", "open"), 1),
    ]);
    // No provider was called: the error says when OpenAI's breaker admits its next probe
    // (Bedrock, forced open, reopens only when reset).
    let FailoverError::Unavailable { retry_after, .. } = &error else {
        panic!("expected every provider unavailable, got {error}")
    };
    let next_probe = retry_after.expect("OpenAI's breaker knows its next probe");
    assert!(next_probe > Duration::ZERO && next_probe <= Duration::from_secs(120));
    assert_eq!(error.retry_after(), *retry_after);
    assert_eq!(adapter.health().status, HealthStatus::Unhealthy);

    // Stores: nothing cached; three failed OpenAI calls in the ledger, none billed, and the
    // request no provider could take, recorded as rejected at no cost.
    let tenant = harness.tenant();
    assert!(
        stored_cache_entries(&harness, &tenant, CACHE_TTL, &["anything"])
            .await
            .is_empty()
    );
    let mut items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 4, "{items:?}");
    let rejected = items.remove(
        items
            .iter()
            .position(|item| item.outcome == UsageOutcome::Rejected)
            .expect("the rejected request is recorded"),
    );
    assert_eq!(
        (rejected.outcome, rejected.cost, rejected.provider.as_str()),
        (UsageOutcome::Rejected, Usd::ZERO, BEDROCK)
    );
    for item in &items {
        assert_eq!(item.provider, OPENAI);
        assert_eq!(
            item.outcome,
            UsageOutcome::Failed {
                kind: ErrorKind::Network
            }
        );
        assert_eq!(item.cost, Usd::ZERO);
    }
    if let Some(standins) = harness.standins() {
        assert_eq!(
            standins.calls(Vendor::Bedrock).await,
            0,
            "its breaker was open"
        );
        assert_eq!(
            standins.calls(Vendor::OpenAi).await,
            0,
            "its endpoint is closed"
        );
    }
}
