//! Seed class 4, `TestCircuitBreakerFailover`: the breaker opens after its threshold and
//! traffic fails over to OpenAI; an open breaker prevents calls; the breaker recovers
//! OPEN → HALF_OPEN → CLOSED. Both modes fail Bedrock through a closed port or by recording
//! failures on its breaker; offline, real 503s and throttling from the stand-in do it too.

use std::time::Duration;

use failover_breaker::{BreakerState, Outcome};
use failover_core::FailoverAdapter;
use failover_provider::{CompletionRequest, ErrorKind};
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{BEDROCK, CACHE_TTL, OPENAI, stored_cache_entries, stored_usage};
use failover_scenarios::{Harness, HarnessOptions};
use failover_standin::{Fault, Vendor};
use failover_usage::{UsageOutcome, UsageRecord};

pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            breaker_opens_after_threshold_failures_and_traffic_fails_over,
            open_breaker_prevents_calls,
            breaker_recovers_open_half_open_closed,
        ],
        offline_only("scripts Bedrock 503s, then answers"): [
            real_unavailable_answers_trip_the_breaker_and_a_probe_closes_it,
        ],
        offline_only("scripts Bedrock throttling with a retry-after hint"): [
            retry_after_longer_than_the_open_period_is_honoured,
        ],
        offline_only("holds Bedrock's answers for two minutes"): [
            a_hung_bedrock_fails_over_within_the_deadline_and_trips_its_breaker,
        ],
    }
}

/// A distinct question per call, so the cache never answers.
fn question(harness: &Harness, n: usize) -> CompletionRequest {
    harness.request(&format!("Question number {n}: what is {n} + {n}?"))
}

async fn provider_of(harness: &Harness, adapter: &FailoverAdapter, n: usize) -> String {
    adapter
        .generate_completion(question(harness, n))
        .await
        .unwrap()
        .provider
}

fn count(items: &[UsageRecord], provider: &str, outcome: &UsageOutcome) -> usize {
    items
        .iter()
        .filter(|item| item.provider == provider && &item.outcome == outcome)
        .count()
}

fn transitions(adapter: &FailoverAdapter) -> Vec<(BreakerState, BreakerState)> {
    adapter
        .breaker(BEDROCK)
        .unwrap()
        .snapshot()
        .recent_transitions
        .iter()
        .map(|transition| (transition.from, transition.to))
        .collect()
}

async fn breaker_opens_after_threshold_failures_and_traffic_fails_over() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let adapter = harness.adapter();
    for n in 0..3 {
        assert_eq!(
            provider_of(&harness, &adapter, n).await,
            OPENAI,
            "automatic fallback on call {n}"
        );
    }
    let snapshot = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.trips, 1);
    assert_eq!(snapshot.last_error_kind, Some("network"));
    assert!(snapshot.next_probe_at.is_some());
    assert_eq!(
        transitions(&adapter),
        vec![(BreakerState::Closed, BreakerState::Open)]
    );
    // The ledger: three failed Bedrock calls, three OpenAI answers marked as fallbacks.
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    let network = UsageOutcome::Failed {
        kind: ErrorKind::Network,
    };
    assert_eq!(items.len(), 6, "{items:?}");
    assert_eq!(count(&items, BEDROCK, &network), 3);
    assert_eq!(count(&items, OPENAI, &UsageOutcome::Success), 3);
    assert!(
        items
            .iter()
            .filter(|item| item.provider == OPENAI)
            .all(|item| item.fallback_used)
    );
    // Each distinct question's answer is cached for the tenant.
    let entries = stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &[]).await;
    assert_eq!(entries.len(), 3);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::OpenAi).await, 3);
        assert_eq!(
            standins.calls(Vendor::Bedrock).await,
            0,
            "its endpoint is closed"
        );
    }
}

async fn open_breaker_prevents_calls() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let adapter = harness.adapter();
    // Seven calls (a live run pays for each OpenAI answer): three trip the breaker, four
    // find it open.
    for n in 0..7 {
        assert_eq!(provider_of(&harness, &adapter, n).await, OPENAI);
    }
    let snapshot = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.rejected, 4);
    // Every provider call is in the ledger: after the three that tripped the breaker, no
    // call reached Bedrock.
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    let bedrock_calls = items.iter().filter(|i| i.provider == BEDROCK).count();
    let openai_calls = items.iter().filter(|i| i.provider == OPENAI).count();
    assert_eq!((bedrock_calls, openai_calls), (3, 7), "{items:?}");
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::OpenAi).await, 7);
    }
}

/// Recovery with the real Bedrock answering the probe: failures are recorded on the breaker
/// (the seed's way in a live run, where Bedrock cannot be made to fail on demand), the open
/// period passes on the breakers' clock, and the next request is the probe.
async fn breaker_recovers_open_half_open_closed() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let breaker = adapter.breaker(BEDROCK).unwrap();
    for _ in 0..3 {
        breaker.try_acquire().unwrap().record(Outcome::Failure {
            kind: "unavailable",
            retry_after: None,
        });
    }
    assert_eq!(breaker.snapshot().state, BreakerState::Open);
    harness.clock().advance(Duration::from_secs(29));
    assert_eq!(
        provider_of(&harness, &adapter, 0).await,
        OPENAI,
        "still open"
    );
    harness.clock().advance(Duration::from_secs(2));
    assert_eq!(
        provider_of(&harness, &adapter, 1).await,
        BEDROCK,
        "the probe"
    );
    assert_eq!(breaker.snapshot().state, BreakerState::Closed);
    assert_eq!(
        transitions(&adapter),
        vec![
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed),
        ]
    );
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    // One OpenAI answer while open, one Bedrock answer as the probe (recorded failures are
    // the breaker's, not calls: they are not in the ledger).
    let mut providers: Vec<_> = items.iter().map(|item| item.provider.as_str()).collect();
    providers.sort_unstable();
    assert_eq!(providers, vec![BEDROCK, OPENAI]);
}

async fn real_unavailable_answers_trip_the_breaker_and_a_probe_closes_it() {
    let harness = Harness::start().await;
    harness
        .offline()
        .inject(Vendor::Bedrock, Fault::Unavailable, 3)
        .await;
    let adapter = harness.adapter();
    for n in 0..3 {
        assert_eq!(provider_of(&harness, &adapter, n).await, OPENAI);
    }
    assert_eq!(
        adapter.breaker(BEDROCK).unwrap().snapshot().last_error_kind,
        Some("unavailable")
    );
    harness.clock().advance(Duration::from_secs(31));
    assert_eq!(provider_of(&harness, &adapter, 3).await, BEDROCK);
    assert_eq!(transitions(&adapter).len(), 3);
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 4);
    assert_eq!(harness.offline().calls(Vendor::OpenAi).await, 3);
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    let unavailable = UsageOutcome::Failed {
        kind: ErrorKind::Unavailable,
    };
    assert_eq!(count(&items, BEDROCK, &unavailable), 3);
    assert_eq!(count(&items, BEDROCK, &UsageOutcome::Success), 1);
}

async fn retry_after_longer_than_the_open_period_is_honoured() {
    let harness = Harness::start().await;
    harness
        .offline()
        .inject(
            Vendor::Bedrock,
            Fault::Throttled {
                retry_after_secs: 120,
            },
            3,
        )
        .await;
    let adapter = harness.adapter();
    for n in 0..3 {
        assert_eq!(provider_of(&harness, &adapter, n).await, OPENAI);
    }
    assert_eq!(
        adapter.breaker(BEDROCK).unwrap().snapshot().last_error_kind,
        Some("throttled")
    );
    // 60 s is past the 30 s open period but not past the server's 120 s hint.
    harness.clock().advance(Duration::from_secs(60));
    assert_eq!(provider_of(&harness, &adapter, 3).await, OPENAI);
    harness.clock().advance(Duration::from_secs(61));
    assert_eq!(provider_of(&harness, &adapter, 4).await, BEDROCK);
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 4);
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    let throttled = UsageOutcome::Failed {
        kind: ErrorKind::Throttled,
    };
    assert_eq!(count(&items, BEDROCK, &throttled), 3);
    assert_eq!(count(&items, OPENAI, &UsageOutcome::Success), 4);
    assert_eq!(count(&items, BEDROCK, &UsageOutcome::Success), 1);
}

/// Bedrock accepts the connection and never answers in time (the real Bedrock client, the
/// stand-in holding its responses). With a 4 s deadline, each request gives Bedrock its
/// share (2 s), counts the time-out against its breaker and is answered by OpenAI in the
/// time left; after the threshold the breaker is open and Bedrock is not called at all.
async fn a_hung_bedrock_fails_over_within_the_deadline_and_trips_its_breaker() {
    let harness = Harness::start().await;
    let threshold = failover_scenarios::seed_breaker_config().consecutive_failures;
    harness
        .offline()
        .inject(
            Vendor::Bedrock,
            Fault::Slow(Duration::from_secs(120)),
            u64::from(threshold) + 1,
        )
        .await;
    let adapter = harness.adapter();
    for n in 0..threshold as usize {
        let answer = adapter
            .generate_completion(question(&harness, n).timeout(Duration::from_secs(4)))
            .await
            .unwrap();
        assert_eq!(answer.provider, OPENAI);
        assert!(
            matches!(
                &answer.attempts[0].outcome,
                failover_provider::AttemptOutcome::Failed {
                    kind: ErrorKind::Timeout,
                    ..
                }
            ),
            "{:?}",
            answer.attempts
        );
    }
    let breaker = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(breaker.state, BreakerState::Open);
    assert_eq!(breaker.failures, u64::from(threshold));
    let answer = adapter
        .generate_completion(question(&harness, 99).timeout(Duration::from_secs(4)))
        .await
        .unwrap();
    assert_eq!(answer.provider, OPENAI);
    assert_eq!(
        harness.offline().calls(Vendor::Bedrock).await,
        threshold as usize,
        "an open breaker is not called"
    );
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    let timed_out: Vec<&UsageRecord> = stored
        .iter()
        .filter(|record| record.provider == BEDROCK)
        .collect();
    assert_eq!(timed_out.len(), threshold as usize);
    for record in timed_out {
        assert_eq!(
            record.outcome,
            UsageOutcome::Failed {
                kind: ErrorKind::Timeout
            }
        );
        assert!(
            record.usage_estimated,
            "an abandoned call is billed by estimate"
        );
    }
}
