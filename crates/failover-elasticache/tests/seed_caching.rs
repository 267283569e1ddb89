//! Seed class 3, `TestElastiCacheCaching`, through `FailoverAdapter` against a real Redis:
//! hit on the second identical call, isolation by tenant, invalidation when any parameter
//! changes, TTL expiry. Each test has its own key prefix, so the shared server holds no
//! state between tests or runs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use failover_core::AdapterConfig;
use failover_provider::{CompletionRequest, ResponseFormat};
use failover_testkit::require_service;
use failover_testkit::services::redis as redis_service;

failover_testkit::service_test_main! {
    service: "redis",
    available: failover_testkit::services::redis::shared(),
    tests: [
        second_identical_call_is_a_hit_with_the_same_content,
        tenants_never_share_an_entry,
        any_parameter_change_is_a_miss,
        entries_expire_after_their_ttl,
    ],
}

fn request() -> CompletionRequest {
    CompletionRequest::prompt(
        "test_tenant",
        "test_agent",
        "gpt-4",
        "What is the capital of France?",
    )
    .temperature(0.3)
    .max_tokens(20)
}

async fn second_identical_call_is_a_hit_with_the_same_content() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let cache = Arc::new(common::cache(&url));
    let (adapter, bedrock) = common::adapter(cache.clone(), AdapterConfig::default());
    let first = adapter.generate_completion(request()).await.unwrap();
    let second = adapter.generate_completion(request()).await.unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.content, second.content);
    assert_eq!(first.usage, second.usage);
    assert_eq!(first.provider, second.provider);
    assert_eq!(bedrock.call_count(), 1, "the second answer came from Redis");
    let health = failover_cache::Cache::health(cache.as_ref());
    assert_eq!((health.hits, health.misses), (1, 1), "{health:?}");
}

async fn tenants_never_share_an_entry() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let config = common::config(&url);
    let prefix = config.key_prefix.clone();
    let cache = Arc::new(failover_elasticache::ElastiCacheCache::new(config).unwrap());
    let (adapter, bedrock) = common::adapter(cache, AdapterConfig::default());
    adapter.generate_completion(request()).await.unwrap();
    let mut other = request();
    other.tenant_id = "other_tenant".into();
    assert!(
        !adapter
            .generate_completion(other.clone())
            .await
            .unwrap()
            .cached
    );
    assert_eq!(bedrock.call_count(), 2);
    assert_eq!(
        common::keys_under(&url, &prefix).await.len(),
        2,
        "one entry per tenant"
    );
    // Both are now cached, each for its own tenant.
    assert!(adapter.generate_completion(request()).await.unwrap().cached);
    assert!(adapter.generate_completion(other).await.unwrap().cached);
    assert_eq!(bedrock.call_count(), 2);
}

async fn any_parameter_change_is_a_miss() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let cache = Arc::new(common::cache(&url));
    let (adapter, bedrock) = common::adapter(cache, AdapterConfig::default());
    adapter.generate_completion(request()).await.unwrap();
    let variants = [
        request().temperature(0.4),
        request().max_tokens(21),
        request().stop("\n"),
        CompletionRequest::prompt(
            "test_tenant",
            "test_agent",
            "gpt-4o",
            "What is the capital of France?",
        )
        .temperature(0.3)
        .max_tokens(20),
        CompletionRequest::prompt(
            "test_tenant",
            "test_agent",
            "gpt-4",
            "What is the capital of Spain?",
        )
        .temperature(0.3)
        .max_tokens(20),
    ];
    for (index, variant) in variants.into_iter().enumerate() {
        let result = adapter.generate_completion(variant).await.unwrap();
        assert!(
            !result.cached,
            "variant {index} must not hit the original entry"
        );
    }
    assert_eq!(bedrock.call_count(), 6);

    // JSON mode needs a JSON answer; its own adapter over the same Redis and prefix space.
    let json_cache = Arc::new(common::cache(&url));
    let json_bedrock = Arc::new(failover_testkit::ScriptedProvider::always(
        "bedrock",
        r#"{"capital": "Paris"}"#,
    ));
    let json_adapter = failover_core::FailoverAdapter::builder()
        .provider(json_bedrock.clone(), common::breaker())
        .provider(
            Arc::new(failover_testkit::ScriptedProvider::always(
                "openai", "unused",
            )),
            common::breaker(),
        )
        .cache(json_cache)
        .build()
        .unwrap();
    json_adapter.generate_completion(request()).await.unwrap();
    let json = json_adapter
        .generate_completion(request().response_format(ResponseFormat::JsonObject))
        .await
        .unwrap();
    assert!(!json.cached, "a response format change is a miss");
    assert_eq!(json_bedrock.call_count(), 2);
}

async fn entries_expire_after_their_ttl() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let cache = Arc::new(common::cache(&url));
    let (adapter, bedrock) = common::adapter(
        cache,
        AdapterConfig::default().with_cache_ttl(Duration::from_millis(150)),
    );
    adapter.generate_completion(request()).await.unwrap();
    assert!(adapter.generate_completion(request()).await.unwrap().cached);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!adapter.generate_completion(request()).await.unwrap().cached);
    assert_eq!(bedrock.call_count(), 2);
}
