//! Seed class 7, `TestCostTracking`: cost in the response, in the statistics, per model.

use failover_provider::{CompletionRequest, TokenUsage, Usd};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ScriptedProvider, Step};
use failover_usage::{PricingTable, UsageQuery};
use rust_decimal::Decimal;

#[tokio::test]
async fn cost_in_the_response_is_the_exact_price_of_the_usage() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::reply("x").with_usage(1_000, 500)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
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
}

#[tokio::test]
async fn statistics_sum_costs_exactly() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::reply("x").with_usage(1, 1)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
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
    let stats = world
        .adapter
        .usage_stats(&UsageQuery::tenant("t"))
        .await
        .unwrap();
    assert_eq!(stats.cost, expected);
    // 100 × (3 + 15) / 1e6 exactly.
    assert_eq!(stats.cost, Usd::new(Decimal::new(18, 4)));
}

#[tokio::test]
async fn each_model_has_its_own_price() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::reply("x").with_usage(1_000_000, 0)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
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
}
