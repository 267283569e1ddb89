//! `failover demo`: the seed's five scenarios against scripted providers, in one process.
//!
//! The providers are the testkit's scripted fakes (named `bedrock` and `openai`, with the
//! real routing and pricing tables), the cache and the usage sink are the in-memory ones:
//! no network, no cloud account.

use std::sync::Arc;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use failover_breaker::{BreakerConfig, BreakerState};
use failover_cache::MemoryCache;
use failover_core::{FailoverAdapter, FailoverError};
use failover_provider::{Completion, CompletionRequest, ErrorKind, ResponseFormat};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step};
use failover_usage::{MemoryUsageSink, UsageQuery};

const TENANT: &str = "test_tenant";
const AGENT: &str = "test_agent";

fn seed_request(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt(TENANT, AGENT, "gpt-4", prompt)
        .temperature(0.1)
        .max_tokens(10)
        .response_format(ResponseFormat::Text)
}

struct Row {
    scenario: &'static str,
    expected: &'static str,
    outcome: Result<Completion, FailoverError>,
    breakers: String,
}

fn breaker_summary(adapter: &FailoverAdapter) -> String {
    adapter
        .health()
        .providers
        .iter()
        .map(|p| {
            let transitions: Vec<String> =
                p.breaker.recent_transitions.iter().map(|t| format!("{}→{}", t.from, t.to)).collect();
            let history = if transitions.is_empty() { String::new() } else { format!(" [{}]", transitions.join(", ")) };
            format!("{}: {} (fail {}){}", p.name, p.breaker.state, p.breaker.failures, history)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the scenarios and prints the table.
pub(crate) async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let gap = Duration::from_millis(25);
    let bedrock = Arc::new(
        ScriptedProvider::new("bedrock")
            // Scenario 1: answers.
            .then(Step::reply("4").with_usage(21, 1).after(gap))
            // Scenario 2: the service is unavailable.
            .then(Step::fail_with(ErrorSpec::new(ErrorKind::Unavailable).http_status(503)).after(gap))
            .otherwise(Step::reply("Bedrock is back").after(gap)),
    );
    let openai = Arc::new(
        ScriptedProvider::new("openai")
            // Scenario 2: the fallback answers.
            .then(Step::reply("4").with_usage(19, 1).after(gap))
            // Scenario 3: answers while Bedrock's breaker is open.
            .then(Step::reply("Fallback works").with_usage(12, 3).after(gap))
            // Scenario 5: OpenAI fails too.
            .otherwise(Step::fail_with(ErrorSpec::new(ErrorKind::Unavailable).http_status(502)).after(gap)),
    );
    let sink = Arc::new(MemoryUsageSink::default());
    let breaker = BreakerConfig::default().with_consecutive_failures(3);
    let adapter = FailoverAdapter::builder()
        .provider(bedrock.clone(), breaker.clone())
        .provider(openai.clone(), breaker)
        .cache(Arc::new(MemoryCache::new()))
        .usage_sink(sink.clone())
        .build()?;

    let mut rows = Vec::new();
    let outcome = adapter.generate_completion(seed_request("What is 2+2? Answer with just the number.")).await;
    rows.push(Row {
        scenario: "1. Normal operation",
        expected: "Bedrock answers; cached",
        outcome,
        breakers: breaker_summary(&adapter),
    });

    let outcome = adapter.generate_completion(seed_request("What is 3+1? Answer with just the number.")).await;
    rows.push(Row {
        scenario: "2. Bedrock failure",
        expected: "OpenAI answers; Bedrock failure counted",
        outcome,
        breakers: breaker_summary(&adapter),
    });

    let bedrock_breaker = adapter.breaker("bedrock").ok_or("no bedrock breaker")?;
    bedrock_breaker.force_open();
    let calls_before = bedrock.call_count();
    let outcome = adapter.generate_completion(seed_request("Test fallback")).await;
    if bedrock.call_count() != calls_before {
        return Err("scenario 3 called Bedrock through an open breaker".into());
    }
    rows.push(Row {
        scenario: "3. Circuit breaker open",
        expected: "OpenAI at once; Bedrock not called",
        outcome,
        breakers: breaker_summary(&adapter),
    });

    let outcome = adapter.generate_completion(seed_request("What is 2+2? Answer with just the number.")).await;
    rows.push(Row {
        scenario: "4. Cache hit",
        expected: "cached; no provider; no cost",
        outcome,
        breakers: breaker_summary(&adapter),
    });

    let outcome = adapter.generate_completion(seed_request("Everything is down")).await;
    rows.push(Row {
        scenario: "5. All providers fail",
        expected: "one error naming every attempt",
        outcome,
        breakers: breaker_summary(&adapter),
    });
    bedrock_breaker.reset();

    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(160)
        .set_header(["scenario", "expected", "provider", "cached", "tokens", "cost (USD)", "latency", "breakers", "result"]);
    for row in &rows {
        match &row.outcome {
            Ok(completion) => table.add_row([
                row.scenario.to_owned(),
                row.expected.to_owned(),
                format!("{} ({})", completion.provider, completion.model),
                completion.cached.to_string(),
                format!(
                    "{} in + {} out = {}",
                    completion.usage.input_tokens,
                    completion.usage.output_tokens,
                    completion.usage.total_tokens()
                ),
                completion.estimated_cost.amount().normalize().to_string(),
                format!("{:.1?}", completion.latency),
                row.breakers.clone(),
                format!("{:?}", completion.content),
            ]),
            Err(error) => table.add_row([
                row.scenario.to_owned(),
                row.expected.to_owned(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                row.breakers.clone(),
                format!("error: {error}"),
            ]),
        };
    }
    println!("llm-failover demo: the seed's five scenarios, offline (scripted providers, memory cache and sink)\n");
    println!("{table}");

    adapter.flush_usage().await?;
    let stats = adapter.usage_stats(&UsageQuery::tenant(TENANT)).await?;
    println!(
        "\nusage ledger for {TENANT}: {} provider calls ({} succeeded, {} failed), {} tokens, {} USD",
        stats.records,
        stats.successes,
        stats.failures,
        stats.tokens.total_tokens(),
        stats.cost.amount().normalize()
    );
    for (provider, bucket) in &stats.by_provider {
        println!(
            "  {provider}: {} calls, {} tokens, {} USD",
            bucket.calls,
            bucket.tokens.total_tokens(),
            bucket.cost.amount().normalize()
        );
    }
    let health = adapter.health();
    let states: Vec<String> = health.providers.iter().map(|p| format!("{} {}", p.name, p.breaker.state)).collect();
    println!("health after reset: {:?}; {}", health.status, states.join(", "));
    if health.providers.iter().any(|p| p.breaker.state == BreakerState::ForcedOpen) {
        return Err("a breaker is still forced open after reset".into());
    }
    Ok(())
}
