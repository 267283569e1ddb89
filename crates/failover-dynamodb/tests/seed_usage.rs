//! The seed's usage tracking class (statistics structure, logging after a completion,
//! DynamoDB records) and cost tracking class, through `FailoverAdapter` with scripted
//! providers, against a real DynamoDB endpoint (moto) — the scenario suite's
//! `usage_tracking.rs` and `cost_tracking.rs` with the DynamoDB sink in place of the memory
//! one. Each test owns its table.

mod common;

use std::sync::Arc;
use std::time::Duration;

use failover_breaker::{BreakerConfig, ManualClock};
use failover_cache::MemoryCache;
use failover_core::{AdapterConfig, FailoverAdapter};
use failover_dynamodb::{DynamoDbUsageSink, WriteMode};
use failover_provider::{CompletionRequest, ErrorKind, TokenUsage, Usd};
use failover_testkit::{ScriptedProvider, Step, moto};
use failover_usage::{PricingTable, UsageOutcome, UsageQuery, UsageRecord};
use rust_decimal::Decimal;

failover_testkit::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testkit::moto::shared(),
    tests: [
        statistics_have_totals_and_breakdowns,
        each_completion_logs_one_dynamodb_record_with_its_facts,
        cache_hits_are_recorded_only_when_configured,
        cost_in_the_response_is_the_exact_price_of_the_usage,
        statistics_sum_costs_exactly,
        each_model_has_its_own_price,
    ],
}

const BEDROCK: &str = "bedrock";
const OPENAI: &str = "openai";

struct World {
    adapter: FailoverAdapter,
    sink: Arc<DynamoDbUsageSink>,
    endpoint: String,
    table: String,
}

impl World {
    async fn usage_records(&self) -> Vec<UsageRecord> {
        self.sink.records(&UsageQuery::all()).await.unwrap()
    }
}

fn breaker() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(3)
        .with_open_duration(Duration::from_secs(30))
        .with_jitter(0.0)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1)
}

async fn new_world(
    endpoint: &str,
    bedrock: ScriptedProvider,
    openai: ScriptedProvider,
    config: AdapterConfig,
) -> World {
    let table = moto::unique_table_name("seed");
    common::create(endpoint, &table).await;
    let sink = Arc::new(
        common::builder(endpoint, &table, WriteMode::Transactional)
            .build()
            .await
            .unwrap(),
    );
    let adapter = FailoverAdapter::builder()
        .clock(Arc::new(ManualClock::new()))
        .provider(Arc::new(bedrock), breaker())
        .provider(Arc::new(openai), breaker())
        .cache(Arc::new(MemoryCache::new()))
        .usage_sink(sink.clone())
        .config(config)
        .build()
        .expect("the adapter builds");
    World {
        adapter,
        sink,
        endpoint: endpoint.to_owned(),
        table,
    }
}

// ----- Seed class 6: TestUsageTracking ----------------------------------------------------

async fn statistics_have_totals_and_breakdowns() {
    let endpoint = failover_testkit::require_service!(moto::shared());
    let world = new_world(
        endpoint.url(),
        ScriptedProvider::new(BEDROCK)
            .then(Step::reply("a").with_usage(10, 5))
            .then(Step::fail(ErrorKind::Unavailable))
            .otherwise(Step::reply("c").with_usage(30, 15)),
        ScriptedProvider::always(OPENAI, "b"),
        AdapterConfig::default(),
    )
    .await;
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
    // Served from the aggregates; the raw records agree.
    assert_eq!(
        world
            .sink
            .stats_from_records(&UsageQuery::tenant("tenant-x"))
            .await
            .unwrap(),
        stats
    );
    let agent = world
        .adapter
        .usage_stats(&UsageQuery::tenant("tenant-x").with_agent("agent-1"))
        .await
        .unwrap();
    assert_eq!((agent.records, agent.successes), (2, 2));
    let none = world
        .adapter
        .usage_stats(&UsageQuery::tenant("nobody"))
        .await
        .unwrap();
    assert_eq!(none.records, 0);
}

async fn each_completion_logs_one_dynamodb_record_with_its_facts() {
    let endpoint = failover_testkit::require_service!(moto::shared());
    let world = new_world(
        endpoint.url(),
        ScriptedProvider::always(BEDROCK, "Bedrock says 4"),
        ScriptedProvider::always(OPENAI, "OpenAI says 4"),
        AdapterConfig::default(),
    )
    .await;
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt(
            "tenant-x", "agent-1", "gpt-4", "hello",
        ))
        .await
        .unwrap();
    let records = world.usage_records().await;
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
    // It is one item in the table (plus the tenant's daily aggregate).
    assert_eq!(
        common::record_item_count(&world.endpoint, &world.table).await,
        1
    );
    assert_eq!(
        common::raw_keys(&world.endpoint, &world.table).await.len(),
        2
    );
}

async fn cache_hits_are_recorded_only_when_configured() {
    let endpoint = failover_testkit::require_service!(moto::shared());
    let world = new_world(
        endpoint.url(),
        ScriptedProvider::always(BEDROCK, "x"),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default().with_record_cache_hits(true),
    )
    .await;
    let request = || CompletionRequest::prompt("t", "a", "gpt-4", "same");
    world.adapter.generate_completion(request()).await.unwrap();
    world.adapter.generate_completion(request()).await.unwrap();
    let records = world.usage_records().await;
    assert_eq!(records.len(), 2);
    // Both may carry the same millisecond, so find the hit by its outcome, not its place.
    let hits: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == UsageOutcome::CacheHit)
        .collect();
    assert_eq!(hits.len(), 1, "{records:?}");
    assert!(hits[0].cached);
    assert_eq!(hits[0].cost, Usd::ZERO);

    let without = new_world(
        endpoint.url(),
        ScriptedProvider::always(BEDROCK, "x"),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default(),
    )
    .await;
    without
        .adapter
        .generate_completion(request())
        .await
        .unwrap();
    without
        .adapter
        .generate_completion(request())
        .await
        .unwrap();
    assert_eq!(
        without.usage_records().await.len(),
        1,
        "no record for the hit"
    );
}

// ----- Seed class 7: TestCostTracking -----------------------------------------------------

async fn cost_in_the_response_is_the_exact_price_of_the_usage() {
    let endpoint = failover_testkit::require_service!(moto::shared());
    let world = new_world(
        endpoint.url(),
        ScriptedProvider::new(BEDROCK).then(Step::reply("x").with_usage(1_000, 500)),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default(),
    )
    .await;
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "q"))
        .await
        .unwrap();
    // Claude 3.5 Sonnet on Bedrock: $3 / $15 per million tokens.
    assert_eq!(result.estimated_cost, Usd::new(Decimal::new(105, 4)));
    assert_eq!(
        Some(result.estimated_cost),
        PricingTable::embedded().cost(BEDROCK, &result.model, &TokenUsage::new(1_000, 500))
    );
    let records = world.usage_records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].cost, result.estimated_cost, "stored exactly");
}

async fn statistics_sum_costs_exactly() {
    let endpoint = failover_testkit::require_service!(moto::shared());
    let world = new_world(
        endpoint.url(),
        ScriptedProvider::new(BEDROCK).otherwise(Step::reply("x").with_usage(1, 1)),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default(),
    )
    .await;
    let mut expected = Usd::ZERO;
    for n in 0..100 {
        let result = world
            .adapter
            .generate_completion(CompletionRequest::prompt(
                "t",
                "a",
                "gpt-4",
                format!("q{n}"),
            ))
            .await
            .unwrap();
        expected += result.estimated_cost;
    }
    // No explicit flush: `stats` flushes first (read your writes).
    let stats = world
        .adapter
        .usage_stats(&UsageQuery::tenant("t"))
        .await
        .unwrap();
    assert_eq!(stats.cost, expected);
    // 100 × (3 + 15) / 1e6 exactly.
    assert_eq!(stats.cost, Usd::new(Decimal::new(18, 4)));
    assert_eq!(stats.records, 100);
}

async fn each_model_has_its_own_price() {
    let endpoint = failover_testkit::require_service!(moto::shared());
    let world = new_world(
        endpoint.url(),
        ScriptedProvider::new(BEDROCK).otherwise(Step::reply("x").with_usage(1_000_000, 0)),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default(),
    )
    .await;
    let cost_of = |model: &'static str| {
        let adapter = world.adapter.clone();
        async move {
            adapter
                .generate_completion(CompletionRequest::prompt("t", "a", model, "q"))
                .await
                .unwrap()
                .estimated_cost
        }
    };
    let sonnet = cost_of("gpt-4").await;
    let haiku = cost_of("gpt-3.5-turbo").await;
    assert_eq!(sonnet, Usd::new(Decimal::new(3, 0)));
    assert_eq!(haiku, Usd::new(Decimal::new(25, 2)));
    let stats = world
        .adapter
        .usage_stats(&UsageQuery::default())
        .await
        .unwrap();
    assert_eq!(stats.by_model.len(), 2);
    assert_eq!(stats.cost, Usd::new(Decimal::new(325, 2)));
    let tenant = world
        .adapter
        .usage_stats(&UsageQuery::tenant("t"))
        .await
        .unwrap();
    assert_eq!(tenant, stats, "aggregates agree with the scan");
}
