//! Bad input is a typed error before any cache or provider is touched, and never counts
//! against a breaker.

use std::sync::Arc;

use failover_breaker::BreakerConfig;
use failover_cache::MemoryCache;
use failover_core::{FailoverAdapter, FailoverError, Limits, ValidationError};
use failover_provider::{CompletionRequest, Message, ResponseFormat};
use failover_testkit::ScriptedProvider;

struct Fixture {
    adapter: FailoverAdapter,
    provider: Arc<ScriptedProvider>,
}

fn fixture() -> Fixture {
    let provider = Arc::new(ScriptedProvider::always("bedrock", "never"));
    let adapter = FailoverAdapter::builder()
        .provider(provider.clone(), BreakerConfig::default())
        .cache(Arc::new(MemoryCache::new()))
        .config(failover_core::AdapterConfig::default().with_limits(Limits {
            max_input_bytes: 64 * 1024,
            ..Limits::default()
        }))
        .build()
        .unwrap();
    Fixture { adapter, provider }
}

fn base() -> CompletionRequest {
    CompletionRequest::prompt("tenant", "agent", "gpt-4", "hello")
}

async fn refused(request: CompletionRequest) -> ValidationError {
    let fixture = fixture();
    let plain = fixture
        .adapter
        .generate_completion(request.clone())
        .await
        .unwrap_err();
    let streamed = match fixture.adapter.stream_completion(request).await {
        Err(error) => error,
        Ok(_) => panic!("the stream must be refused too"),
    };
    assert_eq!(
        fixture.provider.call_count(),
        0,
        "nothing may reach a provider"
    );
    let health = fixture.adapter.health();
    let breaker = &health.providers[0].breaker;
    assert_eq!(
        (breaker.successes, breaker.failures, breaker.rejected),
        (0, 0, 0),
        "no breaker touched"
    );
    let cache = health.cache.unwrap();
    assert_eq!(cache.hits + cache.misses, 0, "no cache touched");
    assert!(
        fixture
            .adapter
            .usage_stats(&Default::default())
            .await
            .unwrap()
            .records
            == 0
    );
    let (FailoverError::Invalid(plain), FailoverError::Invalid(streamed)) = (plain, streamed)
    else {
        panic!("expected validation errors")
    };
    assert_eq!(plain, streamed);
    plain
}

#[tokio::test]
async fn empty_prompt() {
    assert_eq!(
        refused(CompletionRequest::prompt("t", "a", "gpt-4", "  \n")).await,
        ValidationError::EmptyPrompt
    );
    assert_eq!(
        refused(CompletionRequest::messages("t", "a", "gpt-4", vec![])).await,
        ValidationError::EmptyPrompt
    );
}

#[tokio::test]
async fn temperature_out_of_range() {
    assert_eq!(
        refused(base().temperature(-0.1)).await,
        ValidationError::Temperature { value: -0.1 }
    );
    assert!(matches!(
        refused(base().temperature(f32::INFINITY)).await,
        ValidationError::Temperature { .. }
    ));
}

#[tokio::test]
async fn max_tokens_out_of_range() {
    assert_eq!(
        refused(base().max_tokens(0)).await,
        ValidationError::MaxTokens {
            value: 0,
            max: 128_000
        }
    );
    assert_eq!(
        refused(base().max_tokens(128_001)).await,
        ValidationError::MaxTokens {
            value: 128_001,
            max: 128_000
        }
    );
}

#[tokio::test]
async fn unknown_model() {
    let error = refused(CompletionRequest::prompt("t", "a", "gpt-17", "hi")).await;
    assert_eq!(
        error,
        ValidationError::UnknownModel {
            model: "gpt-17".into()
        }
    );
    assert_eq!(
        error.to_string(),
        "unknown model `gpt-17`: no route to any configured provider"
    );
}

#[tokio::test]
async fn ids_with_separators_or_nul_bytes() {
    for (tenant, found) in [
        ("a:b", ':'),
        ("a/b", '/'),
        ("a\0b", '\0'),
        ("a b", ' '),
        ("a#b", '#'),
        ("ä", 'ä'),
    ] {
        let error = refused(CompletionRequest::prompt(tenant, "agent", "gpt-4", "hi")).await;
        assert!(
            matches!(error, ValidationError::IdCharacter { field: "tenant_id", found: f, .. } if f == found),
            "{tenant:?}: {error}"
        );
    }
    assert!(matches!(
        refused(CompletionRequest::prompt("t", "", "gpt-4", "hi")).await,
        ValidationError::EmptyId { field: "agent_id" }
    ));
    assert!(matches!(
        refused(CompletionRequest::prompt(
            "t".repeat(129),
            "a",
            "gpt-4",
            "hi"
        ))
        .await,
        ValidationError::IdTooLong {
            field: "tenant_id",
            len: 129,
            max: 128
        }
    ));
}

#[tokio::test]
async fn oversized_prompt() {
    let error = refused(CompletionRequest::prompt(
        "t",
        "a",
        "gpt-4",
        "x".repeat(64 * 1024 + 1),
    ))
    .await;
    assert_eq!(
        error,
        ValidationError::InputTooLarge {
            bytes: 64 * 1024 + 1,
            max: 64 * 1024
        }
    );
}

#[tokio::test]
async fn malformed_messages_stop_and_schema() {
    assert_eq!(
        refused(CompletionRequest::messages(
            "t",
            "a",
            "gpt-4",
            vec![Message::system("rules")]
        ))
        .await,
        ValidationError::NoUserMessage
    );
    assert!(matches!(
        refused(base().stop("")).await,
        ValidationError::Stop { .. }
    ));
    let bad_schema = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: serde_json::json!([1, 2]),
    };
    assert!(matches!(
        refused(base().response_format(bad_schema)).await,
        ValidationError::ResponseFormat { .. }
    ));
}

#[tokio::test]
async fn deadline_already_passed() {
    let past = std::time::Instant::now() - std::time::Duration::from_millis(1);
    assert_eq!(
        refused(base().deadline(past)).await,
        ValidationError::DeadlinePassed
    );
}

#[tokio::test]
async fn request_ids_follow_the_id_rules() {
    let request = base().request_id(failover_provider::RequestId::new("x\ny"));
    assert!(matches!(
        refused(request).await,
        ValidationError::IdCharacter {
            field: "request_id",
            ..
        }
    ));
}
