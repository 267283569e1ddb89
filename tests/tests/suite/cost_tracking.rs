//! Seed class 7, `TestCostTracking`: the cost in a response is exactly the embedded pricing
//! table's price of its usage, the usage statistics sum the DynamoDB items' costs exactly
//! (decimals, never floats), and each model — Bedrock's Claude, OpenAI's GPT-4 — is priced
//! at its own rate; each test asserting the costs the DynamoDB items hold.

use failover_provider::{CompletionRequest, TokenUsage, Usd};
use failover_scenarios::Harness;
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    AGENT, BEDROCK, BEDROCK_MODEL, MODEL, OPENAI, assert_served_by_route, request_for, stored_usage,
};
use failover_standin::Vendor;
use failover_usage::{PricingTable, UsageQuery};
use rust_decimal::Decimal;

/// This class's tests, for the suite's runner.
pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            response_cost_is_the_pricing_table_price_of_its_usage,
            usage_statistics_sum_the_item_costs_exactly,
            each_model_is_priced_at_its_own_rate,
        ],
    }
}

/// Claude 3.5 Sonnet on Bedrock, USD per million input and output tokens (`pricing.toml`).
const SONNET_PER_MTOK: (i64, i64) = (3, 15);

/// `usage` at `per_mtok` (input, output) USD per million tokens, worked out by hand.
fn priced_by_hand(usage: &TokenUsage, per_mtok: (i64, i64)) -> Usd {
    let (input, output) = per_mtok;
    let total = Decimal::from(usage.input_tokens) * Decimal::from(input)
        + Decimal::from(usage.output_tokens) * Decimal::from(output);
    Usd::new(total / Decimal::from(1_000_000))
}

async fn response_cost_is_the_pricing_table_price_of_its_usage() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is 2+2? Answer with just the number.";
    let result = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    let usage = result.usage;
    assert_eq!(
        (usage.cache_read_tokens, usage.cache_write_tokens),
        (0, 0),
        "no prompt caching was asked for"
    );
    let pricing = PricingTable::embedded();
    assert_eq!(
        Some(result.estimated_cost),
        pricing.cost(BEDROCK, BEDROCK_MODEL, &usage)
    );
    assert_eq!(
        result.estimated_cost,
        priced_by_hand(&usage, SONNET_PER_MTOK)
    );
    assert!(result.estimated_cost > Usd::ZERO);

    // A hit costs nothing; the one DynamoDB item holds the exact cost of the call.
    let hit = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert!(hit.cached);
    assert_eq!(hit.estimated_cost, Usd::ZERO);
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].cost, result.estimated_cost, "stored exactly");
    assert_eq!(items[0].usage, usage);
}

async fn usage_statistics_sum_the_item_costs_exactly() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let (tenant_a, tenant_b) = (
        harness.tenant_named("tenant_a"),
        harness.tenant_named("tenant_b"),
    );
    let mut cost_a = Usd::ZERO;
    for prompt in ["Name a colour.", "Name a fruit.", "Name a planet."] {
        let result = adapter
            .generate_completion(request_for(&harness, &tenant_a, prompt))
            .await
            .unwrap();
        assert!(result.estimated_cost > Usd::ZERO);
        cost_a += result.estimated_cost;
    }
    // A hit adds no cost.
    let hit = adapter
        .generate_completion(request_for(&harness, &tenant_a, "Name a colour."))
        .await
        .unwrap();
    assert!(hit.cached);
    let cost_b = adapter
        .generate_completion(request_for(&harness, &tenant_b, "Name a colour."))
        .await
        .unwrap()
        .estimated_cost;

    // No explicit flush: the statistics read their own writes.
    let stats_a = adapter
        .usage_stats(&UsageQuery::tenant(&tenant_a))
        .await
        .unwrap();
    assert_eq!(stats_a.cost, cost_a, "exact, not approximately");

    // The items' costs, read back from DynamoDB, add up to the same.
    let items_a = stored_usage(&harness, &adapter, &tenant_a).await;
    assert_eq!(items_a.len(), 3, "{items_a:?}");
    assert_eq!(items_a.iter().map(|item| item.cost).sum::<Usd>(), cost_a);
    // Every breakdown of the tenant's one agent, provider and model holds the same sum.
    assert_eq!(stats_a.by_tenant[&tenant_a].cost, cost_a);
    assert_eq!(stats_a.by_agent[AGENT].cost, cost_a);
    assert_eq!(stats_a.by_provider[BEDROCK].cost, cost_a);
    assert_eq!(stats_a.by_model[BEDROCK_MODEL].cost, cost_a);
    assert_eq!(
        harness
            .stats_from_records(&UsageQuery::tenant(&tenant_a))
            .await
            .cost,
        cost_a,
        "the daily aggregates and the raw items agree"
    );
    // Each tenant's statistics hold its own costs only.
    let stats_b = adapter
        .usage_stats(&UsageQuery::tenant(&tenant_b))
        .await
        .unwrap();
    assert_eq!((stats_b.records, stats_b.cost), (1, cost_b));
    let items_b = stored_usage(&harness, &adapter, &tenant_b).await;
    assert_eq!(items_b.len(), 1, "{items_b:?}");
    assert_eq!(items_b[0].cost, cost_b);
}

async fn each_model_is_priced_at_its_own_rate() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let tenant = harness.tenant();
    let pricing = PricingTable::embedded();
    let bedrock = adapter
        .generate_completion(harness.request("Name a colour."))
        .await
        .unwrap();
    assert_eq!(bedrock.provider, BEDROCK);
    // Bedrock's breaker forced open: the next answer is OpenAI's GPT-4.
    adapter.breaker(BEDROCK).unwrap().force_open();
    let openai = adapter
        .generate_completion(harness.request("Name a fruit."))
        .await
        .unwrap();
    assert_eq!(openai.provider, OPENAI);
    assert_served_by_route(&openai);

    assert_eq!(
        Some(bedrock.estimated_cost),
        pricing.cost(BEDROCK, BEDROCK_MODEL, &bedrock.usage)
    );
    assert_eq!(
        Some(openai.estimated_cost),
        pricing.cost(OPENAI, MODEL, &openai.usage)
    );
    // GPT-4's list price is above Claude 3.5 Sonnet's: OpenAI's answer was not priced at
    // Bedrock's rate.
    let at_bedrock_rate = pricing.cost(BEDROCK, BEDROCK_MODEL, &openai.usage).unwrap();
    assert!(
        openai.estimated_cost > at_bedrock_rate,
        "{} vs {at_bedrock_rate}",
        openai.estimated_cost
    );

    // DynamoDB: each item carries its model and that model's price.
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let cost_of = |model: &str| {
        items
            .iter()
            .find(|item| item.model == model)
            .map(|item| item.cost)
    };
    assert_eq!(cost_of(BEDROCK_MODEL), Some(bedrock.estimated_cost));
    assert_eq!(cost_of(MODEL), Some(openai.estimated_cost));
    let stats = adapter
        .usage_stats(&UsageQuery::tenant(&tenant))
        .await
        .unwrap();
    assert_eq!(stats.by_model.len(), 2);
    assert_eq!(stats.by_model[BEDROCK_MODEL].cost, bedrock.estimated_cost);
    assert_eq!(stats.by_model[MODEL].cost, openai.estimated_cost);
    assert_eq!(stats.cost, bedrock.estimated_cost + openai.estimated_cost);

    // Offline, where the same request always counts the same tokens: Claude 3 Haiku (the
    // route of gpt-3.5-turbo) costs exactly a twelfth of Claude 3.5 Sonnet.
    if let Some(standins) = harness.standins() {
        adapter.breaker(BEDROCK).unwrap().reset();
        let request = |model: &str| {
            CompletionRequest::prompt(tenant.clone(), AGENT, model, "Name a planet.")
                .temperature(0.3)
                .max_tokens(20)
        };
        let sonnet = adapter.generate_completion(request(MODEL)).await.unwrap();
        let haiku = adapter
            .generate_completion(request("gpt-3.5-turbo"))
            .await
            .unwrap();
        assert_eq!(
            (sonnet.provider.as_str(), haiku.provider.as_str()),
            (BEDROCK, BEDROCK)
        );
        assert_eq!(sonnet.usage, haiku.usage);
        assert_eq!(
            Usd::new(haiku.estimated_cost.amount() * Decimal::from(12)),
            sonnet.estimated_cost
        );
        assert_eq!(standins.calls(Vendor::Bedrock).await, 3);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 1);
    }
}
