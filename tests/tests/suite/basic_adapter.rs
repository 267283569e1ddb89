//! Seed class 1, `TestAWSLLMAdapterBasic`: the adapter as assembled (Bedrock first, OpenAI
//! second, nothing written before the first request), its health report (each breaker,
//! the ElastiCache cache, the DynamoDB usage sink) and cache keys bound to the tenant — each
//! test asserting what Redis and DynamoDB hold afterwards and, offline, what each provider's
//! server received.

use failover_breaker::BreakerState;
use failover_core::HealthStatus;
use failover_provider::{AttemptOutcome, JsonModeSupport};
use failover_scenarios::Harness;
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    BEDROCK, BEDROCK_MODEL, CACHE_TTL, OPENAI, request_for, stored_cache_entries, stored_usage,
};
use failover_standin::Vendor;
use failover_usage::UsageOutcome;

/// This class's tests, for the suite's runner.
pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            adapter_initializes_with_bedrock_first_and_openai_second,
            health_reports_each_breaker_the_cache_and_the_usage_sink,
            same_prompt_from_two_tenants_is_two_calls_and_two_tenant_tagged_entries,
        ],
    }
}

async fn adapter_initializes_with_bedrock_first_and_openai_second() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    assert_eq!(adapter.provider_names(), vec![BEDROCK, OPENAI]);
    let health = adapter.health();
    let names: Vec<&str> = health.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![BEDROCK, OPENAI],
        "health lists the chain in order"
    );
    // Bedrock gets JSON through a forced tool; OpenAI has a native JSON mode.
    let bedrock = health.provider(BEDROCK).unwrap();
    assert_eq!(bedrock.capabilities.json_object, JsonModeSupport::Emulated);
    assert!(bedrock.capabilities.streaming);
    let openai = health.provider(OPENAI).unwrap();
    assert_eq!(openai.capabilities.json_object, JsonModeSupport::Native);
    assert!(openai.capabilities.streaming);

    // Building the adapter wrote nothing: no Redis key, no usage item.
    let tenant = harness.tenant();
    assert!(harness.cache_store().entries().await.is_empty());
    assert!(stored_usage(&harness, &adapter, &tenant).await.is_empty());

    // The first request goes to the first provider, and to it only.
    let prompt = "Say hello in one word.";
    let result = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert_eq!(
        (result.provider.as_str(), result.model.as_str()),
        (BEDROCK, BEDROCK_MODEL)
    );
    assert_eq!(result.attempts.len(), 1, "{:?}", result.attempts);
    assert_eq!(result.attempts[0].provider, BEDROCK);
    assert_eq!(result.attempts[0].outcome, AttemptOutcome::Succeeded);
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!((items[0].provider.as_str(), items[0].attempt), (BEDROCK, 1));
    assert!(!items[0].fallback_used);
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

async fn health_reports_each_breaker_the_cache_and_the_usage_sink() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();

    // Fresh: every breaker closed and clean, the cache and the sink idle.
    let health = adapter.health();
    assert_eq!(health.status, HealthStatus::Healthy);
    for name in [BEDROCK, OPENAI] {
        let breaker = &health.provider(name).unwrap().breaker;
        assert_eq!(breaker.state, BreakerState::Closed, "{name}");
        assert_eq!(
            (breaker.failures, breaker.rejected, breaker.trips),
            (0, 0, 0)
        );
    }
    let cache = health.cache.as_ref().expect("the cache is configured");
    assert_eq!(cache.backend.backend, harness.stores().cache_backend());
    assert!(cache.available);
    assert_eq!((cache.hits, cache.misses, cache.errors), (0, 0, 0));
    assert_eq!(health.usage.backend, harness.stores().usage_backend());
    assert_eq!(
        (
            health.usage.accepted,
            health.usage.written,
            health.usage.queued
        ),
        (0, 0, 0)
    );
    assert_eq!(health.usage.last_error, None);
    assert_eq!(health.usage_records_refused, 0);

    // One miss and one hit: the counters follow, and the sink reports its write.
    let tenant = harness.tenant();
    let prompt = "What is the capital of France?";
    adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    let hit = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert!(hit.cached);
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let health = adapter.health();
    let cache = health.cache.as_ref().unwrap();
    assert_eq!(
        (cache.hits, cache.misses, cache.errors, cache.timeouts),
        (1, 1, 0, 0)
    );
    assert_eq!((cache.backend.hits, cache.backend.misses), (1, 1));
    assert!(cache.available && cache.backend.available);
    assert_eq!(health.usage.accepted, 1, "the hit is not logged");
    assert_eq!(health.usage.written, 1, "{:?}", health.usage);
    assert_eq!((health.usage.queued, health.usage.rejected), (0, 0));
    assert_eq!(health.usage.last_error, None);
    let bedrock = &health.provider(BEDROCK).unwrap().breaker;
    assert_eq!(
        (bedrock.state, bedrock.successes),
        (BreakerState::Closed, 1)
    );
    assert_eq!(
        stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt])
            .await
            .len(),
        1
    );

    // The seed's forced breakers show in the report: one open is degraded, both unhealthy.
    adapter.breaker(BEDROCK).unwrap().force_open();
    let health = adapter.health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(
        health.provider(BEDROCK).unwrap().breaker.state,
        BreakerState::ForcedOpen
    );
    assert_eq!(
        health.provider(OPENAI).unwrap().breaker.state,
        BreakerState::Closed
    );
    adapter.breaker(OPENAI).unwrap().force_open();
    assert_eq!(adapter.health().status, HealthStatus::Unhealthy);
    adapter.breaker(BEDROCK).unwrap().reset();
    adapter.breaker(OPENAI).unwrap().reset();
    assert_eq!(adapter.health().status, HealthStatus::Healthy);
    // Reading the health called nothing and logged nothing.
    assert_eq!(stored_usage(&harness, &adapter, &tenant).await.len(), 1);
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

async fn same_prompt_from_two_tenants_is_two_calls_and_two_tenant_tagged_entries() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let (tenant_a, tenant_b) = (
        harness.tenant_named("tenant_a"),
        harness.tenant_named("tenant_b"),
    );
    let prompt = "What is the capital of France?";
    for tenant in [&tenant_a, &tenant_b] {
        let result = adapter
            .generate_completion(request_for(&harness, tenant, prompt))
            .await
            .unwrap();
        assert!(
            !result.cached,
            "{tenant} must not see the other tenant's entry"
        );
        assert_eq!(result.provider, BEDROCK);
    }

    // Redis: one entry per tenant, each under its own tenant tag, keys of hex only.
    let (tag_a, tag_b) = (harness.tenant_tag(&tenant_a), harness.tenant_tag(&tenant_b));
    assert_ne!(tag_a, tag_b);
    let entries_a = stored_cache_entries(&harness, &tenant_a, CACHE_TTL, &[prompt]).await;
    let entries_b = stored_cache_entries(&harness, &tenant_b, CACHE_TTL, &[prompt]).await;
    assert_eq!((entries_a.len(), entries_b.len()), (1, 1));
    assert_eq!(harness.cache_store().entries().await.len(), 2);
    for (entry, tag) in [(&entries_a[0], &tag_a), (&entries_b[0], &tag_b)] {
        let prefix = format!("{}:{{{tag}}}:", harness.cache_store().prefix());
        let digest = entry.key.strip_prefix(&prefix).unwrap();
        assert!(
            digest.len() >= 32 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}",
            entry.key
        );
        for tenant in [&tenant_a, &tenant_b] {
            assert!(
                !entry.key.contains(tenant.as_str()),
                "tenant id in {}",
                entry.key
            );
        }
    }
    let digest_of = |key: &str| key.rsplit(':').next().unwrap().to_owned();
    assert_ne!(
        digest_of(&entries_a[0].key),
        digest_of(&entries_b[0].key),
        "the digest binds the tenant too"
    );

    // Each tenant is now answered from its own entry, with no further provider call.
    for tenant in [&tenant_a, &tenant_b] {
        let again = adapter
            .generate_completion(request_for(&harness, tenant, prompt))
            .await
            .unwrap();
        assert!(again.cached, "{tenant}");
    }

    // DynamoDB: each tenant billed once, for its own call.
    for tenant in [&tenant_a, &tenant_b] {
        let items = stored_usage(&harness, &adapter, tenant).await;
        assert_eq!(items.len(), 1, "{tenant}: {items:?}");
        assert_eq!(items[0].tenant_id, *tenant);
        assert_eq!(items[0].outcome, UsageOutcome::Success);
    }
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 2);
    }
}
