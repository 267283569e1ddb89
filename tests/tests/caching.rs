//! Seed class 3, `TestElastiCacheCaching`, on the memory cache: hit on the second identical
//! call, isolation by tenant, invalidation when any parameter changes, TTL expiry.

use std::time::Duration;

use failover_core::AdapterConfig;
use failover_provider::{CompletionRequest, ResponseFormat};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::ScriptedProvider;

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

#[tokio::test]
async fn second_identical_call_is_a_hit_with_the_same_content() {
    let world = World::healthy();
    let first = world.adapter.generate_completion(request()).await.unwrap();
    let second = world.adapter.generate_completion(request()).await.unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.content, second.content);
    assert_eq!(first.usage, second.usage);
}

#[tokio::test]
async fn tenants_never_share_an_entry() {
    let world = World::healthy();
    world.adapter.generate_completion(request()).await.unwrap();
    let mut other = request();
    other.tenant_id = "other_tenant".into();
    assert!(
        !world
            .adapter
            .generate_completion(other)
            .await
            .unwrap()
            .cached
    );
    assert_eq!(world.bedrock.call_count(), 2);
}

#[tokio::test]
async fn any_parameter_change_is_a_miss() {
    let world = World::healthy();
    world.adapter.generate_completion(request()).await.unwrap();
    let variants = [
        request().temperature(0.4),
        request().max_tokens(21),
        request().stop("\n"),
        request().response_format(ResponseFormat::JsonObject),
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
    let world_json = World::new(
        ScriptedProvider::always(BEDROCK, r#"{"capital": "Paris"}"#),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    for (index, variant) in variants.into_iter().enumerate() {
        let adapter = if variant.response_format.is_json() {
            &world_json.adapter
        } else {
            &world.adapter
        };
        let result = adapter.generate_completion(variant).await.unwrap();
        assert!(
            !result.cached,
            "variant {index} must not hit the original entry"
        );
    }
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let world = World::with_config(
        ScriptedProvider::always(BEDROCK, "Paris"),
        ScriptedProvider::always(OPENAI, "unused"),
        AdapterConfig::default().with_cache_ttl(Duration::from_secs(1)),
    );
    world.adapter.generate_completion(request()).await.unwrap();
    assert!(
        world
            .adapter
            .generate_completion(request())
            .await
            .unwrap()
            .cached
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !world
            .adapter
            .generate_completion(request())
            .await
            .unwrap()
            .cached
    );
    assert_eq!(world.bedrock.call_count(), 2);
}

#[tokio::test]
async fn purging_a_tenant_leaves_other_tenants_cached() {
    let world = World::healthy();
    let mut other = request();
    other.tenant_id = "other_tenant".into();
    world.adapter.generate_completion(request()).await.unwrap();
    world
        .adapter
        .generate_completion(other.clone())
        .await
        .unwrap();
    assert_eq!(
        world
            .adapter
            .purge_tenant_cache("test_tenant")
            .await
            .unwrap(),
        1
    );
    assert!(
        !world
            .adapter
            .generate_completion(request())
            .await
            .unwrap()
            .cached
    );
    assert!(
        world
            .adapter
            .generate_completion(other)
            .await
            .unwrap()
            .cached
    );
}
