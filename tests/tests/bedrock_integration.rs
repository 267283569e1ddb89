//! Seed class 2, `TestBedrockIntegration`, on a scripted Bedrock: completion, JSON mode,
//! model routing and token counting.

use failover_provider::{AttemptOutcome, CompletionRequest, ErrorKind, ResponseFormat};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ScriptedProvider, Step};

#[tokio::test]
async fn bedrock_completion() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::reply("4").with_usage(18, 1)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let request = CompletionRequest::prompt(
        "t",
        "a",
        "gpt-4",
        "What is 2+2? Answer with just the number.",
    )
    .temperature(0.1)
    .max_tokens(10);
    let result = world.adapter.generate_completion(request).await.unwrap();
    assert_eq!(
        (result.provider.as_str(), result.content.as_str()),
        (BEDROCK, "4")
    );
    let sent = &world.bedrock.requests()[0];
    assert_eq!(sent.temperature, Some(0.1));
    assert_eq!(sent.max_tokens, Some(10));
    assert_eq!(
        sent.messages[0].content,
        "What is 2+2? Answer with just the number."
    );
}

#[tokio::test]
async fn json_mode_returns_json_and_rejects_non_json_by_failing_over() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::reply(r#"{"answer": 4}"#))
            .then(Step::reply("Sure! Here is JSON: {\"answer\": 4}")),
        ScriptedProvider::new(OPENAI).then(Step::reply(r#"{"answer": 4}"#)),
    );
    let request = |prompt: &str| {
        CompletionRequest::prompt("t", "a", "gpt-4", prompt)
            .response_format(ResponseFormat::JsonObject)
    };
    let ok = world
        .adapter
        .generate_completion(request("first"))
        .await
        .unwrap();
    assert_eq!(ok.provider, BEDROCK);
    let parsed: serde_json::Value = serde_json::from_str(&ok.content).unwrap();
    assert_eq!(parsed["answer"], 4);
    assert_eq!(
        world.bedrock.requests()[0].response_format,
        ResponseFormat::JsonObject
    );

    let recovered = world
        .adapter
        .generate_completion(request("second"))
        .await
        .unwrap();
    assert_eq!(recovered.provider, OPENAI);
    assert!(matches!(
        recovered.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::MalformedResponse,
            ..
        }
    ));
}

#[tokio::test]
async fn logical_models_route_to_a_concrete_model_per_provider() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).otherwise(Step::fail(ErrorKind::Unavailable)),
        ScriptedProvider::always(OPENAI, "ok"),
    );
    for (logical, bedrock_model) in [
        ("gpt-4", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("gpt-3.5-turbo", "anthropic.claude-3-haiku-20240307-v1:0"),
    ] {
        let result = world
            .adapter
            .generate_completion(CompletionRequest::prompt("t", "a", logical, "route me"))
            .await
            .unwrap();
        assert_eq!(
            world.bedrock.requests().last().unwrap().model,
            bedrock_model
        );
        assert_eq!(
            result.model, logical,
            "OpenAI serves the logical name as its own model"
        );
    }
}

#[tokio::test]
async fn token_counts_are_reported_and_totalled() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::reply("four").with_usage(25, 3)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let result = world
        .adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "count"))
        .await
        .unwrap();
    assert_eq!(result.usage.input_tokens, 25);
    assert_eq!(result.usage.output_tokens, 3);
    assert_eq!(result.usage.total_tokens(), 28);
    assert_eq!(world.usage_records()[0].usage, result.usage);
}
