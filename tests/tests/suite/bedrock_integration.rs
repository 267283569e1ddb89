//! Seed class 2, `TestBedrockIntegration`: completions from Bedrock through the AWS SDK's
//! Converse API — the seed's request, JSON mode, routing of the logical model to its Bedrock
//! model, and token counts carried into the DynamoDB usage item — each test asserting what
//! Redis and DynamoDB hold afterwards and, offline, what Bedrock's server was sent.

use failover_provider::{AttemptOutcome, CompletionRequest, ResponseFormat};
use failover_scenarios::Harness;
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{
    AGENT, BEDROCK, BEDROCK_MODEL, CACHE_TTL, MODEL, bedrock_paths, stored_cache_entries,
    stored_usage,
};
use failover_standin::eventstream::converse_path;
use failover_standin::{BEDROCK_REPLY, JSON_REPLY, Vendor};
use failover_usage::{PricingTable, UsageOutcome, UsageQuery};

/// This class's tests, for the suite's runner.
pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            bedrock_answers_the_seed_request,
            json_object_format_answers_a_json_object,
            gpt_4_routes_to_claude_3_5_sonnet_on_bedrock,
            token_counts_are_reported_and_logged_as_usage,
        ],
    }
}

async fn bedrock_answers_the_seed_request() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is 2+2? Answer with just the number.";
    let result = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    assert!(!result.content.trim().is_empty());
    assert!(!result.cached);
    assert_eq!(result.attempts.len(), 1);
    assert_eq!(result.attempts[0].outcome, AttemptOutcome::Succeeded);

    // Stores: the answer cached for the tenant, the call in the ledger.
    let tenant = harness.tenant();
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].provider, BEDROCK);
    assert_eq!(items[0].request_id, result.request_id);
    assert_eq!(items[0].outcome, UsageOutcome::Success);

    // Offline: one Converse call carrying the prompt and the seed's inference settings.
    if let Some(standins) = harness.standins() {
        assert_eq!(result.content, BEDROCK_REPLY);
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
        let bodies = standins.bodies(Vendor::Bedrock).await;
        assert_eq!(bodies.len(), 1);
        let body = &bodies[0];
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"][0]["content"][0]["text"], prompt);
        assert_eq!(body["inferenceConfig"]["maxTokens"], 10);
        let temperature = body["inferenceConfig"]["temperature"].as_f64().unwrap();
        assert!((temperature - 0.1).abs() < 1e-6, "{temperature}");
        assert!(
            body.get("toolConfig").is_none(),
            "a text request forces no tool"
        );
    }
}

async fn json_object_format_answers_a_json_object() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is 2+2? Reply with a JSON object whose key \"answer\" holds the number.";
    let request = || {
        harness
            .request(prompt)
            .temperature(0.1)
            .max_tokens(50)
            .response_format(ResponseFormat::JsonObject)
    };
    let result = adapter.generate_completion(request()).await.unwrap();
    assert_eq!(result.provider, BEDROCK);
    let parsed: serde_json::Value = serde_json::from_str(&result.content)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", result.content));
    assert!(parsed.is_object(), "{parsed}");

    // The cached copy is the same JSON object, and costs no second call.
    let again = adapter.generate_completion(request()).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.content, result.content);

    let tenant = harness.tenant();
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (items[0].provider.as_str(), items[0].outcome),
        (BEDROCK, UsageOutcome::Success)
    );

    // Offline: JSON mode is a forced tool on Converse, answered by calling it.
    if let Some(standins) = harness.standins() {
        assert_eq!(
            parsed,
            serde_json::from_str::<serde_json::Value>(JSON_REPLY).unwrap()
        );
        let bodies = standins.bodies(Vendor::Bedrock).await;
        assert_eq!(bodies.len(), 1);
        let tools = &bodies[0]["toolConfig"];
        let tool = tools["tools"][0]["toolSpec"]["name"].as_str().unwrap();
        assert_eq!(tools["toolChoice"]["tool"]["name"], tool);
        assert_eq!(
            tools["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"],
            "object"
        );
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

async fn gpt_4_routes_to_claude_3_5_sonnet_on_bedrock() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let result = adapter
        .generate_completion(harness.seed_request("Name one primary colour."))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    assert_eq!(result.model, BEDROCK_MODEL);
    assert_eq!(result.attempts[0].model, BEDROCK_MODEL);

    // The ledger keeps both names: the concrete model called and the logical one asked for.
    let tenant = harness.tenant();
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].model, BEDROCK_MODEL);
    assert_eq!(items[0].logical_model, MODEL);

    if let Some(standins) = harness.standins() {
        assert_eq!(
            bedrock_paths(standins).await,
            vec![converse_path(BEDROCK_MODEL)]
        );
        // Another logical model goes to its own Bedrock model (`data/routes.toml`).
        let haiku = "anthropic.claude-3-haiku-20240307-v1:0";
        let request =
            CompletionRequest::prompt(tenant.clone(), AGENT, "gpt-3.5-turbo", "Hi.").max_tokens(10);
        let result = adapter.generate_completion(request).await.unwrap();
        assert_eq!(
            (result.provider.as_str(), result.model.as_str()),
            (BEDROCK, haiku)
        );
        assert_eq!(
            bedrock_paths(standins).await,
            vec![converse_path(BEDROCK_MODEL), converse_path(haiku)]
        );
        let items = stored_usage(&harness, &adapter, &tenant).await;
        assert_eq!(items.len(), 2, "{items:?}");
        let item = items.iter().find(|item| item.model == haiku).unwrap();
        assert_eq!(item.logical_model, "gpt-3.5-turbo");
        assert_eq!(standins.calls(Vendor::OpenAi).await, 0);
    }
}

async fn token_counts_are_reported_and_logged_as_usage() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is 2+2? Answer with just the number.";
    let result = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert_eq!(result.provider, BEDROCK);
    let usage = result.usage;
    assert!(usage.input_tokens > 0, "{usage:?}");
    assert!(
        (1..=10).contains(&usage.output_tokens),
        "at most max_tokens: {usage:?}"
    );
    assert_eq!(
        usage.total_tokens(),
        usage.input_tokens + usage.output_tokens
    );

    // The DynamoDB item holds the provider's counts (not an estimate) and their price.
    let tenant = harness.tenant();
    let items = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].usage, usage);
    assert!(!items[0].usage_estimated);
    assert_eq!(
        Some(items[0].cost),
        PricingTable::embedded().cost(BEDROCK, BEDROCK_MODEL, &usage)
    );
    assert_eq!(items[0].cost, result.estimated_cost);
    let stats = adapter
        .usage_stats(&UsageQuery::tenant(&tenant))
        .await
        .unwrap();
    assert_eq!(stats.tokens, usage);
    assert_eq!(stats.by_model[BEDROCK_MODEL].tokens, usage);

    // A cache hit reports the original counts but adds none to the ledger.
    let hit = adapter
        .generate_completion(harness.seed_request(prompt))
        .await
        .unwrap();
    assert!(hit.cached);
    assert_eq!(hit.usage, usage);
    let stats = adapter
        .usage_stats(&UsageQuery::tenant(&tenant))
        .await
        .unwrap();
    assert_eq!((stats.records, stats.tokens), (1, usage));

    // Offline: the counts are the ones the server reported (its output is the reply's
    // word count).
    if harness.standins().is_some() {
        let words = u64::try_from(BEDROCK_REPLY.split(' ').count()).unwrap();
        assert_eq!(usage.output_tokens, words);
    }
}
