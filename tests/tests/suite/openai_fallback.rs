//! Seed class 5, `TestOpenAIFallback`: OpenAI answers when Bedrock fails, all providers
//! failing is one clear error naming each attempt, and the response has the same structure
//! whichever provider answers — with the real Bedrock and OpenAI clients on the wire.
//! (Fallback to OpenAI *streaming* is in `streaming`.)

use failover_core::FailoverError;
use failover_provider::{AttemptOutcome, Completion, ErrorKind, FinishReason, Usd};
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    BEDROCK, BEDROCK_MODEL, CACHE_TTL, OPENAI, assert_served_by_route, stored_cache_entries,
    stored_usage,
};
use failover_scenarios::{Harness, HarnessOptions};
use failover_standin::STANDIN_OPENAI_KEY;
use failover_standin::{Fault, Vendor};
use failover_usage::UsageOutcome;

pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            openai_answers_when_bedrock_is_unreachable,
            all_providers_failing_is_one_error_naming_each_attempt,
            the_response_structure_is_the_same_whichever_provider_answers,
        ],
        offline_only("scripts a Bedrock 503 and reads the requests the stand-ins received"): [
            openai_answers_a_bedrock_503_with_the_routed_model_and_its_key,
        ],
        offline_only("scripts Bedrock throttling and an OpenAI 503"): [
            throttled_bedrock_and_unavailable_openai_are_both_named,
        ],
    }
}

fn openai_key(harness: &Harness) -> String {
    match harness.standins() {
        Some(_) => STANDIN_OPENAI_KEY.to_owned(),
        None => std::env::var("OPENAI_API_KEY").unwrap_or_default(),
    }
}

/// What a fallback answer leaves in the ledger: Bedrock's failed attempt, then OpenAI's
/// answer marked as a fallback, billed what the response says.
async fn assert_fallback_ledger(
    harness: &Harness,
    adapter: &failover_core::FailoverAdapter,
    result: &Completion,
    bedrock_failure: ErrorKind,
) {
    let items = stored_usage(harness, adapter, &harness.tenant()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].provider, BEDROCK);
    assert_eq!(items[0].model, BEDROCK_MODEL);
    assert_eq!(
        items[0].outcome,
        UsageOutcome::Failed {
            kind: bedrock_failure
        }
    );
    assert_eq!(items[1].provider, OPENAI);
    assert!(items[1].fallback_used);
    assert_eq!(items[1].usage, result.usage);
    assert_eq!(items[1].cost, result.estimated_cost);
}

async fn openai_answers_when_bedrock_is_unreachable() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let adapter = harness.adapter();
    let result = adapter
        .generate_completion(harness.request("Capital of France?"))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert_served_by_route(&result);
    assert!(!result.content.is_empty());
    assert!(result.usage.input_tokens > 0 && result.usage.output_tokens > 0);
    assert!(matches!(
        result.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Network,
            ..
        }
    ));
    assert_eq!(result.attempts[1].outcome, AttemptOutcome::Succeeded);
    assert_fallback_ledger(&harness, &adapter, &result, ErrorKind::Network).await;
    let entries = stored_cache_entries(
        &harness,
        &harness.tenant(),
        CACHE_TTL,
        &["Capital of France?"],
    )
    .await;
    assert_eq!(entries.len(), 1);
}

async fn openai_answers_a_bedrock_503_with_the_routed_model_and_its_key() {
    let harness = Harness::start().await;
    let standins = harness.offline();
    standins
        .inject(Vendor::Bedrock, Fault::Unavailable, 1)
        .await;
    let adapter = harness.adapter();
    let result = adapter
        .generate_completion(harness.request("Capital of France?"))
        .await
        .unwrap();
    assert_eq!(result.provider, OPENAI);
    assert!(matches!(
        &result.attempts[0].outcome,
        AttemptOutcome::Failed { kind: ErrorKind::Unavailable, message }
            if message.contains("ServiceUnavailableException")
    ));
    assert_fallback_ledger(&harness, &adapter, &result, ErrorKind::Unavailable).await;

    // What the OpenAI server received: the routed model and the bearer key, over its API.
    let openai = &standins.requests(Vendor::OpenAi).await[0];
    assert_eq!(openai.url.path(), "/v1/chat/completions");
    let body: serde_json::Value = serde_json::from_slice(&openai.body).unwrap();
    assert_eq!(body["model"], "gpt-4");
    assert_eq!(body["messages"][0]["content"], "Capital of France?");
    assert_eq!(
        openai.headers.get("authorization").unwrap(),
        format!("Bearer {STANDIN_OPENAI_KEY}").as_str()
    );
    // And the Bedrock request went to the routed model, SigV4-signed by the real SDK.
    let bedrock = &standins.requests(Vendor::Bedrock).await[0];
    assert_eq!(
        bedrock.url.path(),
        failover_standin::eventstream::converse_path(BEDROCK_MODEL)
    );
    let signature = bedrock
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(signature.starts_with("AWS4-HMAC-SHA256"), "{signature}");
}

fn failure_kinds(error: &FailoverError) -> Vec<(&str, ErrorKind)> {
    error
        .attempts()
        .iter()
        .map(|attempt| match &attempt.outcome {
            AttemptOutcome::Failed { kind, .. } => (attempt.provider.as_str(), *kind),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

async fn all_providers_failing_is_one_error_naming_each_attempt() {
    let harness = Harness::start_with(
        HarnessOptions::default()
            .bedrock_unreachable()
            .openai_unreachable(),
    )
    .await;
    let adapter = harness.adapter();
    let error = adapter
        .generate_completion(harness.request("anything"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, FailoverError::AllProvidersFailed { .. }),
        "{message}"
    );
    assert_eq!(
        failure_kinds(&error),
        vec![(BEDROCK, ErrorKind::Network), (OPENAI, ErrorKind::Network)]
    );
    assert!(
        message.contains(&format!("bedrock ({BEDROCK_MODEL}): network")),
        "{message}"
    );
    assert!(message.contains("openai (gpt-4): network"), "{message}");
    let key = openai_key(&harness);
    assert!(key.is_empty() || !message.contains(&key));
    // Two failed calls in the ledger, none billed; nothing cached.
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|item| item.cost == Usd::ZERO));
    assert!(
        stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &["anything"])
            .await
            .is_empty()
    );
}

async fn throttled_bedrock_and_unavailable_openai_are_both_named() {
    let harness = Harness::start().await;
    let standins = harness.offline();
    standins
        .inject(
            Vendor::Bedrock,
            Fault::Throttled {
                retry_after_secs: 5,
            },
            1,
        )
        .await;
    standins.inject(Vendor::OpenAi, Fault::Unavailable, 1).await;
    let adapter = harness.adapter();
    let error = adapter
        .generate_completion(harness.request("anything"))
        .await
        .unwrap_err();
    assert_eq!(
        failure_kinds(&error),
        vec![
            (BEDROCK, ErrorKind::Throttled),
            (OPENAI, ErrorKind::Unavailable)
        ]
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("bedrock ({BEDROCK_MODEL}): throttled")),
        "{message}"
    );
    assert!(message.contains("openai (gpt-4): unavailable"), "{message}");
    assert!(!message.contains(STANDIN_OPENAI_KEY));
    assert_eq!(
        (
            standins.calls(Vendor::Bedrock).await,
            standins.calls(Vendor::OpenAi).await
        ),
        (1, 1)
    );
}

async fn the_response_structure_is_the_same_whichever_provider_answers() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let from_bedrock = adapter
        .generate_completion(harness.request("What is 2+2?"))
        .await
        .unwrap();
    adapter.breaker(BEDROCK).unwrap().force_open();
    let from_openai = adapter
        .generate_completion(harness.request("What is 3+3?"))
        .await
        .unwrap();
    assert_eq!(
        (
            from_bedrock.provider.as_str(),
            from_openai.provider.as_str()
        ),
        (BEDROCK, OPENAI)
    );
    for (result, routed_model) in [(&from_bedrock, BEDROCK_MODEL), (&from_openai, "gpt-4")] {
        assert!(!result.content.is_empty());
        // The model that answered, as the provider reports it: the routed one or a dated
        // version of it (`gpt-4-0613` for `gpt-4`).
        assert!(
            result.model.starts_with(routed_model),
            "the model that answered: {}",
            result.model
        );
        assert_eq!(result.attempts.last().unwrap().model, routed_model);
        assert!(result.usage.input_tokens > 0 && result.usage.output_tokens > 0);
        assert!(result.estimated_cost.amount() > rust_decimal::Decimal::ZERO);
        assert!(!result.cached);
        assert!(matches!(
            result.finish_reason,
            FinishReason::Stop | FinishReason::Length
        ));
        assert_eq!(
            result.attempts.last().unwrap().outcome,
            AttemptOutcome::Succeeded
        );
        assert!(!result.request_id.as_str().is_empty());
    }
    let items = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(items.len(), 2);
    for (provider, result) in [(BEDROCK, &from_bedrock), (OPENAI, &from_openai)] {
        let item = items.iter().find(|item| item.provider == provider).unwrap();
        assert_eq!(item.cost, result.estimated_cost);
        assert_eq!(item.request_id, result.request_id);
    }
}
