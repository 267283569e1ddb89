//! Seed class 6, `TestUsageTracking`, on the DynamoDB usage sink: the statistics structure
//! (totals and per-tenant, agent, provider and model breakdowns, equal to what the table's
//! items add up to), one DynamoDB item per provider call with every fact of the call, failed
//! and fallback calls as items of their own, and cache hits logged only when configured —
//! each test reading the items back from the table with a raw query.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use failover_provider::{CompletionRequest, ErrorKind, RequestId, TokenUsage, Usd};
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    AGENT, BEDROCK, BEDROCK_MODEL, CACHE_TTL, MODEL, OPENAI, stored_cache_entries, stored_usage,
};
use failover_scenarios::{Harness, HarnessOptions};
use failover_standin::Vendor;
use failover_usage::{UsageOutcome, UsageQuery, UsageStats};

/// This class's tests, for the suite's runner.
pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            usage_statistics_have_totals_and_breakdowns_matching_the_stored_items,
            each_completion_logs_one_dynamodb_item_with_its_facts,
            failed_and_fallback_calls_are_logged_as_items_of_their_own,
            cache_hits_are_logged_only_when_configured,
        ],
    }
}

/// A seed request of the harness's tenant from `agent_id`.
fn agent_request(harness: &Harness, agent_id: &str, prompt: &str) -> CompletionRequest {
    let mut request = harness.request(prompt);
    request.agent_id = agent_id.to_owned();
    request
}

/// Now, in milliseconds since the Unix epoch (as usage items are stamped).
fn unix_ms_now() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since_epoch.as_millis()).unwrap()
}

async fn usage_statistics_have_totals_and_breakdowns_matching_the_stored_items() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let tenant = harness.tenant();
    let mut answers = Vec::new();
    for (agent, prompt) in [("agent_1", "Say one."), ("agent_2", "Say two.")] {
        answers.push(
            adapter
                .generate_completion(agent_request(&harness, agent, prompt))
                .await
                .unwrap(),
        );
    }
    // The third answer comes from OpenAI: Bedrock's breaker is forced open.
    adapter.breaker(BEDROCK).unwrap().force_open();
    answers.push(
        adapter
            .generate_completion(agent_request(&harness, "agent_1", "Say three."))
            .await
            .unwrap(),
    );
    let providers: Vec<&str> = answers.iter().map(|a| a.provider.as_str()).collect();
    assert_eq!(providers, vec![BEDROCK, BEDROCK, OPENAI]);
    // A hit adds nothing to the statistics.
    let hit = adapter
        .generate_completion(agent_request(&harness, "agent_1", "Say one."))
        .await
        .unwrap();
    assert!(hit.cached);

    let stats = adapter
        .usage_stats(&UsageQuery::tenant(&tenant))
        .await
        .unwrap();
    let tokens: TokenUsage = answers.iter().map(|answer| answer.usage).sum();
    let cost: Usd = answers.iter().map(|answer| answer.estimated_cost).sum();
    assert_eq!(stats.records, 3);
    assert_eq!(
        (stats.successes, stats.failures, stats.cancelled),
        (3, 0, 0)
    );
    assert_eq!(
        (stats.cache_hits, stats.fallbacks, stats.estimated),
        (0, 1, 0)
    );
    assert_eq!(stats.tokens, tokens);
    assert_eq!(stats.cost, cost);
    assert_eq!(stats.by_tenant.keys().collect::<Vec<_>>(), vec![&tenant]);
    assert_eq!(stats.by_tenant[&tenant].calls, 3);
    assert_eq!(
        (
            stats.by_agent["agent_1"].calls,
            stats.by_agent["agent_2"].calls
        ),
        (2, 1)
    );
    assert_eq!(stats.by_provider[BEDROCK].calls, 2);
    assert_eq!(stats.by_provider[OPENAI].calls, 1);
    assert_eq!(
        stats.by_provider[OPENAI].tokens, answers[2].usage,
        "each bucket holds its own calls' tokens"
    );
    assert_eq!(stats.by_model[BEDROCK_MODEL].calls, 2);
    assert_eq!(
        stats.by_model[MODEL].calls, 1,
        "OpenAI serves gpt-4 as gpt-4"
    );

    // The statistics are what the table's items add up to — from the daily aggregates
    // (`usage_stats`) and from the raw items alike.
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(
        UsageStats::from_records(&items, &UsageQuery::tenant(&tenant)),
        stats
    );
    assert_eq!(
        harness
            .stats_from_records(&UsageQuery::tenant(&tenant))
            .await,
        stats
    );

    // Narrower queries: one agent of the tenant (read through the `by_agent` index, which
    // real DynamoDB updates eventually: polled for up to 10 s); a tenant with no usage.
    let agent_query = UsageQuery::tenant(&tenant).with_agent("agent_1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let agent = loop {
        let agent = adapter.usage_stats(&agent_query).await.unwrap();
        if agent.records >= 2 || std::time::Instant::now() > deadline {
            break agent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!((agent.records, agent.successes), (2, 2));
    assert_eq!(agent.tokens, answers[0].usage + answers[2].usage);
    let nobody = adapter
        .usage_stats(&UsageQuery::tenant(harness.tenant_named("nobody")))
        .await
        .unwrap();
    assert_eq!(nobody, UsageStats::default());
}

async fn each_completion_logs_one_dynamodb_item_with_its_facts() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let tenant = harness.tenant();
    let request_id = RequestId::new(format!("{tenant}-request-1"));
    let before = unix_ms_now();
    let started = Instant::now();
    let result = adapter
        .generate_completion(
            harness
                .request("What is 2+2?")
                .request_id(request_id.clone()),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let after = unix_ms_now();
    assert_eq!(result.request_id, request_id);

    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(
        item.request_id, request_id,
        "the caller's id, for correlation"
    );
    assert!(!item.call_id.is_empty());
    assert_eq!(item.attempt, 1);
    assert_eq!(
        (item.tenant_id.as_str(), item.agent_id.as_str()),
        (tenant.as_str(), AGENT)
    );
    assert_eq!(
        (
            item.provider.as_str(),
            item.model.as_str(),
            item.logical_model.as_str()
        ),
        (BEDROCK, BEDROCK_MODEL, MODEL)
    );
    assert_eq!(item.usage, result.usage);
    assert!(item.usage.input_tokens > 0 && item.usage.output_tokens > 0);
    assert!(!item.usage_estimated);
    assert_eq!(item.cost, result.estimated_cost);
    assert_eq!(item.outcome, UsageOutcome::Success);
    assert!(!item.cached && !item.fallback_used && !item.streamed);
    assert!(
        (before..=after).contains(&item.timestamp_unix_ms),
        "{before} <= {} <= {after}",
        item.timestamp_unix_ms
    );
    assert!(u128::from(item.latency_ms) <= elapsed.as_millis());
    let health = adapter.health().usage;
    assert_eq!((health.accepted, health.written, health.queued), (1, 1, 0));

    // The next completion is an item of its own.
    let next = adapter
        .generate_completion(harness.request("What is 3+3?"))
        .await
        .unwrap();
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().any(|item| item.request_id == next.request_id));
    assert_ne!(items[0].call_id, items[1].call_id);
    assert_ne!(items[0].request_id, items[1].request_id);
}

async fn failed_and_fallback_calls_are_logged_as_items_of_their_own() {
    // Bedrock's endpoint is a closed port: it fails in both modes, OpenAI answers.
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let adapter = harness.adapter();
    let tenant = harness.tenant();
    let prompt = "What is the capital of France?";
    let result = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);

    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let (failed, answered) = (&items[0], &items[1]);
    assert_eq!(
        (
            failed.provider.as_str(),
            failed.model.as_str(),
            failed.attempt
        ),
        (BEDROCK, BEDROCK_MODEL, 1)
    );
    assert_eq!(
        failed.outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::Network
        }
    );
    assert_eq!(
        (failed.usage, failed.cost),
        (TokenUsage::default(), Usd::ZERO),
        "a refused connection consumed and costs nothing"
    );
    assert!(!failed.fallback_used);
    assert_eq!(
        (
            answered.provider.as_str(),
            answered.model.as_str(),
            answered.attempt
        ),
        (OPENAI, MODEL, 2)
    );
    assert_eq!(answered.outcome, UsageOutcome::Success);
    assert!(answered.fallback_used);
    assert_eq!(answered.usage, result.usage);
    assert_eq!(answered.cost, result.estimated_cost);
    for item in &items {
        assert_eq!(item.request_id, result.request_id, "one request, two calls");
    }

    let stats = adapter
        .usage_stats(&UsageQuery::tenant(&tenant))
        .await
        .unwrap();
    assert_eq!((stats.records, stats.successes, stats.failures), (2, 1, 1));
    assert_eq!(stats.fallbacks, 1);
    assert_eq!(stats.by_provider[BEDROCK].failures, 1);
    assert_eq!(stats.by_provider[BEDROCK].cost, Usd::ZERO);
    assert_eq!(stats.by_provider[OPENAI].successes, 1);
    assert_eq!(stats.cost, result.estimated_cost);
    assert_eq!(
        stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt])
            .await
            .len(),
        1
    );
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 0, "unreachable");
        assert_eq!(standins.calls(Vendor::OpenAi).await, 1);
    }
}

async fn cache_hits_are_logged_only_when_configured() {
    let harness = Harness::start().await;
    let tenant = harness.tenant();
    let prompt = "What is the capital of France?";

    // The seed's default: a hit logs nothing.
    let adapter = harness.adapter();
    let answered = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert!(
        adapter
            .generate_completion(harness.request(prompt))
            .await
            .unwrap()
            .cached
    );
    assert_eq!(stored_usage(&harness, &adapter, &tenant).await.len(), 1);

    // With `record_cache_hits`, the hit is an item: no call, no cost, the original tokens.
    let recording = harness.adapter_with(harness.config().with_record_cache_hits(true));
    let hit = recording
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert!(hit.cached);
    let items = stored_usage(&harness, &recording, &tenant).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let logged: Vec<_> = items
        .iter()
        .filter(|item| item.outcome == UsageOutcome::CacheHit)
        .collect();
    assert_eq!(logged.len(), 1, "{items:?}");
    let logged = logged[0];
    assert_eq!(logged.request_id, hit.request_id);
    assert!(logged.cached);
    assert_eq!((logged.attempt, logged.cost), (0, Usd::ZERO));
    assert_eq!(
        (logged.provider.as_str(), logged.model.as_str()),
        (answered.provider.as_str(), answered.model.as_str())
    );
    assert_eq!(logged.usage, answered.usage);
    let stats = recording
        .usage_stats(&UsageQuery::tenant(&tenant))
        .await
        .unwrap();
    assert_eq!(
        (stats.records, stats.successes, stats.cache_hits),
        (2, 1, 1)
    );
    assert_eq!(stats.cost, answered.estimated_cost, "the hit costs nothing");
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
    }
}
