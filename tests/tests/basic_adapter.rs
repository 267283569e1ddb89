//! Seed class 1, `TestAWSLLMAdapterBasic`: initialisation, health, tenant-isolated cache keys.

use failover_breaker::BreakerState;
use failover_cache::{CacheKeyInput, KeyDeriver};
use failover_core::HealthStatus;
use failover_provider::{CompletionRequest, Message, ResponseFormat};
use failover_scenarios::{BEDROCK, OPENAI, World};

#[tokio::test]
async fn adapter_initialises_with_bedrock_first_and_openai_second() {
    let world = World::healthy();
    assert_eq!(world.adapter.provider_names(), vec![BEDROCK, OPENAI]);
}

#[tokio::test]
async fn health_reports_every_breaker_the_cache_and_the_sink() {
    let world = World::healthy();
    let health = world.adapter.health();
    assert_eq!(health.status, HealthStatus::Healthy);
    for name in [BEDROCK, OPENAI] {
        let provider = health.provider(name).unwrap();
        assert_eq!(provider.breaker.state, BreakerState::Closed);
        assert_eq!(provider.breaker.failures, 0);
    }
    assert!(health.cache.as_ref().unwrap().available);
    assert_eq!(health.usage.backend, "memory");
    world.adapter.breaker(BEDROCK).unwrap().force_open();
    assert_eq!(world.adapter.health().status, HealthStatus::Degraded);
}

#[test]
fn cache_keys_are_bound_to_the_tenant() {
    let deriver = KeyDeriver::default();
    let messages = [Message::user("What is the capital of France?")];
    let input = |tenant_id| CacheKeyInput {
        tenant_id,
        model: "gpt-4",
        messages: &messages,
        temperature: Some(0.3),
        max_tokens: Some(20),
        stop: &[],
        response_format: &ResponseFormat::Text,
    };
    let a = deriver.derive(&input("tenant-a"));
    let b = deriver.derive(&input("tenant-b"));
    assert_ne!(a, b);
    assert_ne!(a.tenant(), b.tenant());
    assert_eq!(a, deriver.derive(&input("tenant-a")));
    assert!(!a.to_string().contains("France"));
}

#[tokio::test]
async fn same_prompt_from_two_tenants_is_two_provider_calls() {
    let world = World::healthy();
    for tenant in ["tenant-a", "tenant-b"] {
        let request = CompletionRequest::prompt(tenant, "agent", "gpt-4", "same prompt");
        assert!(
            !world
                .adapter
                .generate_completion(request)
                .await
                .unwrap()
                .cached
        );
    }
    assert_eq!(world.bedrock.call_count(), 2);
}
