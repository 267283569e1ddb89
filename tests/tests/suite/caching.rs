//! Seed class 3, `TestElastiCacheCaching`, on Redis through the ElastiCache cache: a hit on
//! the second identical call, isolation by tenant (and a tenant purge that leaves the
//! others), a miss when any generation parameter changes, and expiry after the TTL — each
//! test asserting the Redis entries (tenant tag, TTL, no prompt text), the DynamoDB items
//! (no usage for a hit) and, offline, how many calls each provider's server received.

use std::time::{Duration, Instant};

use failover_provider::{CompletionRequest, ResponseFormat, Usd};
use failover_scenarios::Harness;
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    AGENT, BEDROCK, CACHE_TTL, request_for, stored_cache_entries, stored_usage,
};
use failover_standin::Vendor;
use failover_usage::UsageOutcome;

/// This class's tests, for the suite's runner.
pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            second_identical_call_is_a_hit_served_from_redis,
            tenants_never_share_an_entry_but_agents_of_a_tenant_do,
            changing_any_generation_parameter_is_a_miss,
            entries_expire_after_their_ttl,
            purging_a_tenant_leaves_other_tenants_entries,
        ],
    }
}

const PROMPT: &str = "What is the capital of France?";

async fn second_identical_call_is_a_hit_served_from_redis() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let first = adapter
        .generate_completion(harness.request(PROMPT))
        .await
        .unwrap();
    let second = adapter
        .generate_completion(harness.request(PROMPT))
        .await
        .unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(second.content, first.content);
    assert_eq!(second.usage, first.usage);
    assert_eq!(
        (second.provider.as_str(), second.model.as_str()),
        (first.provider.as_str(), first.model.as_str())
    );
    assert_eq!(second.estimated_cost, Usd::ZERO);
    assert!(second.attempts.is_empty(), "a hit calls no provider");
    let cache = adapter.health().cache.unwrap();
    assert_eq!((cache.hits, cache.misses), (1, 1));
    assert_eq!((cache.backend.hits, cache.backend.misses), (1, 1));

    // The entry lives in Redis, not in the adapter: a second adapter instance over the same
    // cache answers from it too.
    let other_instance = harness.adapter();
    let third = other_instance
        .generate_completion(harness.request(PROMPT))
        .await
        .unwrap();
    assert!(third.cached);
    assert_eq!(third.content, first.content);

    // Redis: one entry for the tenant, its TTL the configured hour (less the seconds since);
    // DynamoDB: the one provider call, no item for either hit.
    let tenant = harness.tenant();
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[PROMPT]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let ttl = entries[0].ttl.unwrap();
    assert!(ttl > CACHE_TTL - Duration::from_secs(300), "{ttl:?}");
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].request_id, first.request_id);
    assert!(!items[0].cached);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

async fn tenants_never_share_an_entry_but_agents_of_a_tenant_do() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let (tenant_a, tenant_b) = (
        harness.tenant_named("tenant_a"),
        harness.tenant_named("tenant_b"),
    );
    let first = adapter
        .generate_completion(request_for(&harness, &tenant_a, PROMPT))
        .await
        .unwrap();
    assert!(!first.cached);

    // Another agent of the same tenant shares the tenant's cache.
    let other_agent = CompletionRequest::prompt(tenant_a.clone(), "other_agent", "gpt-4", PROMPT)
        .temperature(0.3)
        .max_tokens(20);
    let shared = adapter.generate_completion(other_agent).await.unwrap();
    assert!(shared.cached);
    assert_eq!(shared.content, first.content);

    // Another tenant never does: a miss, its own call and its own entry.
    let other_tenant = adapter
        .generate_completion(request_for(&harness, &tenant_b, PROMPT))
        .await
        .unwrap();
    assert!(!other_tenant.cached);
    let hit_b = adapter
        .generate_completion(request_for(&harness, &tenant_b, PROMPT))
        .await
        .unwrap();
    assert!(hit_b.cached);

    let entries_a = stored_cache_entries(&harness, &tenant_a, CACHE_TTL, &[PROMPT]).await;
    let entries_b = stored_cache_entries(&harness, &tenant_b, CACHE_TTL, &[PROMPT]).await;
    assert_eq!((entries_a.len(), entries_b.len()), (1, 1));
    assert_ne!(entries_a[0].key, entries_b[0].key);
    assert_eq!(harness.cache_store().entries().await.len(), 2);

    // Each tenant is billed for its own call only; the hits are not logged.
    let items_a = stored_usage(&harness, &adapter, &tenant_a).await;
    assert_eq!(items_a.len(), 1, "{items_a:?}");
    assert_eq!(items_a[0].agent_id, AGENT);
    let items_b = stored_usage(&harness, &adapter, &tenant_b).await;
    assert_eq!(items_b.len(), 1, "{items_b:?}");
    assert_eq!(items_b[0].tenant_id, tenant_b);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 2);
    }
}

async fn changing_any_generation_parameter_is_a_miss() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let tenant = harness.tenant();
    let base = || harness.request(PROMPT);
    let spain = "What is the capital of Spain?";
    let variants: Vec<(&str, CompletionRequest)> = vec![
        ("the original", base()),
        ("temperature", base().temperature(0.4)),
        ("max_tokens", base().max_tokens(21)),
        ("stop sequence", base().stop("STOP")),
        (
            "response format",
            // Room for a real model's whole JSON answer (a cut one fails the JSON check).
            base()
                .max_tokens(50)
                .response_format(ResponseFormat::JsonObject),
        ),
        (
            "model",
            CompletionRequest::prompt(tenant.clone(), AGENT, "gpt-3.5-turbo", PROMPT)
                .temperature(0.3)
                .max_tokens(20),
        ),
        ("prompt", harness.request(spain)),
    ];
    for (changed, request) in &variants {
        let result = adapter.generate_completion(request.clone()).await.unwrap();
        assert!(!result.cached, "{changed}: must not hit an earlier entry");
    }
    // Each variant got an entry of its own: asking again hits every one.
    for (changed, request) in &variants {
        let result = adapter.generate_completion(request.clone()).await.unwrap();
        assert!(result.cached, "{changed}: its own entry");
    }

    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[PROMPT, spain]).await;
    assert_eq!(entries.len(), variants.len(), "{entries:?}");
    let items = stored_usage(&harness, &adapter, &tenant).await;
    let answered = items
        .iter()
        .filter(|item| item.outcome == UsageOutcome::Success)
        .count();
    assert_eq!(
        answered,
        variants.len(),
        "one answered call per variant: {items:?}"
    );
    assert!(items.iter().all(|item| !item.cached));
    if let Some(standins) = harness.standins() {
        assert_eq!(items.len(), variants.len());
        assert_eq!(standins.calls(Vendor::Bedrock).await, variants.len());
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

async fn entries_expire_after_their_ttl() {
    let harness = Harness::start().await;
    // Long enough for two calls and a store read on a loaded machine; short enough to wait.
    let ttl = Duration::from_secs(5);
    let adapter = harness.adapter_with(harness.config().with_cache_ttl(ttl));
    let tenant = harness.tenant();
    let first = adapter
        .generate_completion(harness.request(PROMPT))
        .await
        .unwrap();
    assert!(!first.cached);
    let second = adapter
        .generate_completion(harness.request(PROMPT))
        .await
        .unwrap();
    assert!(second.cached, "within the TTL");
    // Redis holds the entry with the configured TTL at most.
    let entries = stored_cache_entries(&harness, &tenant, ttl, &[PROMPT]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");

    // Redis drops it once the TTL passes; the same request is then a miss and a new call.
    wait_until_tenant_has_no_entries(&harness, &tenant, Duration::from_secs(20)).await;
    let third = adapter
        .generate_completion(harness.request(PROMPT))
        .await
        .unwrap();
    assert!(!third.cached, "after the TTL");
    assert_eq!(third.provider, BEDROCK);
    let cache = adapter.health().cache.unwrap();
    assert_eq!((cache.hits, cache.misses), (1, 2));

    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(
        items.len(),
        2,
        "two provider calls, no hit logged: {items:?}"
    );
    assert!(
        items
            .iter()
            .all(|item| item.outcome == UsageOutcome::Success)
    );
    assert_eq!(items[1].request_id, third.request_id);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 2);
    }
}

/// Waits until Redis holds no entry of `tenant_id` under the harness's prefix; panics after
/// `limit`.
async fn wait_until_tenant_has_no_entries(harness: &Harness, tenant_id: &str, limit: Duration) {
    let tag = harness.tenant_tag(tenant_id);
    let deadline = Instant::now() + limit;
    while !harness.cache_store().entries_of(&tag).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the entry outlived its TTL by {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn purging_a_tenant_leaves_other_tenants_entries() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let (tenant_a, tenant_b) = (
        harness.tenant_named("tenant_a"),
        harness.tenant_named("tenant_b"),
    );
    let spain = "What is the capital of Spain?";
    for (tenant, prompt) in [(&tenant_a, PROMPT), (&tenant_a, spain), (&tenant_b, PROMPT)] {
        adapter
            .generate_completion(request_for(&harness, tenant, prompt))
            .await
            .unwrap();
    }
    let prompts = [PROMPT, spain];
    assert_eq!(
        stored_cache_entries(&harness, &tenant_a, CACHE_TTL, &prompts)
            .await
            .len(),
        2
    );

    let removed = adapter.purge_tenant_cache(&tenant_a).await.unwrap();
    assert_eq!(removed, 2);
    assert!(
        stored_cache_entries(&harness, &tenant_a, CACHE_TTL, &prompts)
            .await
            .is_empty()
    );
    let left = stored_cache_entries(&harness, &tenant_b, CACHE_TTL, &prompts).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(harness.cache_store().entries().await.len(), 1);

    // The purged tenant pays for a new call; the other is still answered from Redis.
    let a = adapter
        .generate_completion(request_for(&harness, &tenant_a, PROMPT))
        .await
        .unwrap();
    assert!(!a.cached);
    let b = adapter
        .generate_completion(request_for(&harness, &tenant_b, PROMPT))
        .await
        .unwrap();
    assert!(b.cached);
    assert_eq!(stored_usage(&harness, &adapter, &tenant_a).await.len(), 3);
    assert_eq!(stored_usage(&harness, &adapter, &tenant_b).await.len(), 1);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 4);
    }
}
