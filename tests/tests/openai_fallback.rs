//! Seed class 5, `TestOpenAIFallback`: fallback completion, all providers failing, and the
//! same response structure whichever provider answers.

use failover_core::FailoverError;
use failover_provider::{AttemptOutcome, CompletionRequest, ErrorKind};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ScriptedProvider, Step};

#[tokio::test]
async fn openai_answers_when_bedrock_cannot() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::fail(ErrorKind::Timeout)),
        ScriptedProvider::new(OPENAI).then(Step::reply("fallback answer").with_usage(9, 2)),
    );
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "hi"))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert_eq!(result.content, "fallback answer");
    assert_eq!(world.openai.requests()[0].model, "gpt-4");
}

#[tokio::test]
async fn all_providers_failing_returns_every_attempt() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::fail(ErrorKind::Throttled)),
        ScriptedProvider::new(OPENAI).then(Step::fail(ErrorKind::Unavailable)),
    );
    let error = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "hi"))
        .await
        .unwrap_err();
    let FailoverError::AllProvidersFailed { attempts, .. } = &error else {
        panic!("unexpected {error}")
    };
    let kinds: Vec<_> = attempts
        .iter()
        .map(|a| match &a.outcome {
            AttemptOutcome::Failed { kind, .. } => (a.provider.as_str(), *kind),
            other => panic!("unexpected outcome {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (BEDROCK, ErrorKind::Throttled),
            (OPENAI, ErrorKind::Unavailable)
        ]
    );
    assert!(error.to_string().contains("bedrock") && error.to_string().contains("openai"));
}

#[tokio::test]
async fn fallback_keeps_the_response_structure() {
    let primary = World::healthy();
    let fallback = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::fail(ErrorKind::Unavailable)),
        ScriptedProvider::always(OPENAI, "OpenAI says 4"),
    );
    let request = || CompletionRequest::prompt("t", "a", "gpt-4", "What is 2+2?").max_tokens(10);
    let a = primary
        .adapter
        .generate_completion(request())
        .await
        .unwrap();
    let b = fallback
        .adapter
        .generate_completion(request())
        .await
        .unwrap();
    for result in [&a, &b] {
        assert!(!result.content.is_empty());
        assert!(result.usage.total_tokens() > 0);
        assert!(result.estimated_cost.amount() > rust_decimal::Decimal::ZERO);
        assert!(!result.cached);
        assert!(!result.request_id.as_str().is_empty());
        assert_eq!(
            result.attempts.last().unwrap().outcome,
            AttemptOutcome::Succeeded
        );
    }
    assert_eq!(
        (a.provider.as_str(), b.provider.as_str()),
        (BEDROCK, OPENAI)
    );
}
