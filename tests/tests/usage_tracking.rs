//! Seed class 6, `TestUsageTracking`: the statistics structure and usage logged after each
//! completion (the DynamoDB backend runs the same checks in its own crate).

use failover_core::AdapterConfig;
use failover_provider::{CompletionRequest, ErrorKind};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ScriptedProvider, Step};
use failover_usage::{UsageOutcome, UsageQuery};

#[tokio::test]
async fn statistics_have_totals_and_breakdowns() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::reply("a").with_usage(10, 5))
            .then(Step::fail(ErrorKind::Unavailable))
            .otherwise(Step::reply("c").with_usage(30, 15)),
        ScriptedProvider::always(OPENAI, "b"),
    );
    for (agent, prompt) in [("agent-1", "one"), ("agent-2", "two"), ("agent-1", "three")] {
        world
            .adapter
            .generate_completion(CompletionRequest::prompt(
                "tenant-x", agent, "gpt-4", prompt,
            ))
            .await
            .unwrap();
    }
    world.adapter.flush_usage().await.unwrap();
    let stats = world
        .adapter
        .usage_stats(&UsageQuery::tenant("tenant-x"))
        .await
        .unwrap();
    assert_eq!(stats.records, 4, "three successes and one failed attempt");
    assert_eq!(stats.successes, 3);
    assert_eq!(stats.failures, 1);
    assert_eq!(stats.tokens.input_tokens, 10 + 10 + 30);
    assert_eq!(stats.by_provider[BEDROCK].calls, 3);
    assert_eq!(stats.by_provider[OPENAI].calls, 1);
    assert_eq!(stats.by_agent["agent-1"].successes, 2);
    let none = world
        .adapter
        .usage_stats(&UsageQuery::tenant("nobody"))
        .await
        .unwrap();
    assert_eq!(none.records, 0);
}

#[tokio::test]
async fn each_completion_logs_one_record_with_its_facts() {
    let world = World::healthy();
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt(
            "tenant-x", "agent-1", "gpt-4", "hello",
        ))
        .await
        .unwrap();
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.request_id, result.request_id);
    assert_eq!(
        (record.tenant_id.as_str(), record.agent_id.as_str()),
        ("tenant-x", "agent-1")
    );
    assert_eq!(
        (record.provider.as_str(), record.model.as_str()),
        (BEDROCK, result.model.as_str())
    );
    assert_eq!(record.logical_model, "gpt-4");
    assert_eq!(record.usage, result.usage);
    assert_eq!(record.cost, result.estimated_cost);
    assert_eq!(record.outcome, UsageOutcome::Success);
    assert!(!record.cached && !record.fallback_used && !record.streamed);
    assert!(record.timestamp_unix_ms > 1_700_000_000_000);
}

#[tokio::test]
async fn cache_hits_are_recorded_only_when_configured() {
    let world = World::with_config(
        ScriptedProvider::always(BEDROCK, "x"),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default().with_record_cache_hits(true),
    );
    let request = || CompletionRequest::prompt("t", "a", "gpt-4", "same");
    world.adapter.generate_completion(request()).await.unwrap();
    world.adapter.generate_completion(request()).await.unwrap();
    let records = world.usage_records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].outcome, UsageOutcome::CacheHit);
    assert!(records[1].cached);
    assert_eq!(records[1].cost, failover_provider::Usd::ZERO);
}
