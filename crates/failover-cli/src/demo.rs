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
    breakers: Vec<(String, BreakerState, u64)>,
    /// Whether what happened is what the seed expects.
    as_expected: bool,
}

fn breaker_states(adapter: &FailoverAdapter) -> Vec<(String, BreakerState, u64)> {
    adapter
        .health()
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.breaker.state, p.breaker.failures))
        .collect()
}

fn served_by(outcome: &Result<Completion, FailoverError>, provider: &str, cached: bool) -> bool {
    outcome
        .as_ref()
        .is_ok_and(|c| c.provider == provider && c.cached == cached)
}

/// Runs the scenarios and prints the table.
pub(crate) async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let gap = Duration::from_millis(25);
    let bedrock = Arc::new(
        ScriptedProvider::new("bedrock")
            // Scenario 1: answers.
            .then(Step::reply("4").with_usage(21, 1).after(gap))
            // Scenario 2: the service is unavailable.
            .then(
                Step::fail_with(ErrorSpec::new(ErrorKind::Unavailable).http_status(503)).after(gap),
            )
            .otherwise(Step::reply("Bedrock is back").after(gap)),
    );
    let openai = Arc::new(
        ScriptedProvider::new("openai")
            // Scenario 2: the fallback answers.
            .then(Step::reply("4").with_usage(19, 1).after(gap))
            // Scenario 3: answers while Bedrock's breaker is open.
            .then(Step::reply("Fallback works").with_usage(12, 3).after(gap))
            // Scenario 5: OpenAI fails too.
            .otherwise(
                Step::fail_with(ErrorSpec::new(ErrorKind::Unavailable).http_status(502)).after(gap),
            ),
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
    let outcome = adapter
        .generate_completion(seed_request("What is 2+2? Answer with just the number."))
        .await;
    rows.push(Row {
        scenario: "1. Normal operation",
        expected: "Bedrock answers; cached",
        as_expected: served_by(&outcome, "bedrock", false),
        outcome,
        breakers: breaker_states(&adapter),
    });

    let outcome = adapter
        .generate_completion(seed_request("What is 3+1? Answer with just the number."))
        .await;
    rows.push(Row {
        scenario: "2. Bedrock failure",
        expected: "OpenAI answers; Bedrock failure counted",
        as_expected: served_by(&outcome, "openai", false)
            && adapter
                .breaker("bedrock")
                .is_some_and(|b| b.snapshot().failures == 1),
        outcome,
        breakers: breaker_states(&adapter),
    });

    let bedrock_breaker = adapter.breaker("bedrock").ok_or("no bedrock breaker")?;
    bedrock_breaker.force_open();
    let calls_before = bedrock.call_count();
    let outcome = adapter
        .generate_completion(seed_request("Test fallback"))
        .await;
    rows.push(Row {
        scenario: "3. Circuit breaker open",
        expected: "OpenAI at once; Bedrock not called",
        as_expected: served_by(&outcome, "openai", false) && bedrock.call_count() == calls_before,
        outcome,
        breakers: breaker_states(&adapter),
    });

    let calls_before = bedrock.call_count() + openai.call_count();
    let outcome = adapter
        .generate_completion(seed_request("What is 2+2? Answer with just the number."))
        .await;
    rows.push(Row {
        scenario: "4. Cache hit",
        expected: "cached; no provider; no cost",
        as_expected: served_by(&outcome, "bedrock", true)
            && bedrock.call_count() + openai.call_count() == calls_before,
        outcome,
        breakers: breaker_states(&adapter),
    });

    let outcome = adapter
        .generate_completion(seed_request("Everything is down"))
        .await;
    rows.push(Row {
        scenario: "5. All providers fail",
        expected: "one error naming every attempt",
        as_expected: matches!(&outcome, Err(FailoverError::AllProvidersFailed { attempts, .. }) if attempts.len() == 2),
        outcome,
        breakers: breaker_states(&adapter),
    });
    bedrock_breaker.reset();

    let mut table = Table::new();
    let mut header = vec![
        "scenario".to_owned(),
        "expected".into(),
        "provider".into(),
        "cached".into(),
    ];
    header.extend([
        "tokens in/out".into(),
        "cost (USD)".into(),
        "latency".into(),
    ]);
    header.extend(
        rows[0]
            .breakers
            .iter()
            .map(|(name, _, _)| format!("{name} breaker")),
    );
    header.push("check".into());
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for row in &rows {
        let mut cells = vec![row.scenario.to_owned(), row.expected.to_owned()];
        match &row.outcome {
            Ok(completion) => cells.extend([
                completion.provider.clone(),
                completion.cached.to_string(),
                format!(
                    "{}/{}",
                    completion.usage.input_tokens, completion.usage.output_tokens
                ),
                completion.estimated_cost.amount().normalize().to_string(),
                format!("{:.1?}", completion.latency),
            ]),
            Err(_) => cells.extend([
                "error".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
        cells.extend(
            row.breakers
                .iter()
                .map(|(_, state, failures)| format!("{state} ({failures} fail)")),
        );
        cells.push(if row.as_expected { "ok" } else { "UNEXPECTED" }.into());
        table.add_row(cells);
    }
    println!(
        "llm-failover demo: the seed's five scenarios, offline (scripted providers, memory cache and sink)\n"
    );
    println!("{table}\n");
    for row in &rows {
        match &row.outcome {
            Ok(completion) if completion.cached => println!(
                "{}: the cache answered {:?} (first produced by {} with {}), no provider called",
                row.scenario, completion.content, completion.provider, completion.model
            ),
            Ok(completion) => println!(
                "{}: {} answered {:?} with {}",
                row.scenario, completion.provider, completion.content, completion.model
            ),
            Err(error) => println!("{}: {error}", row.scenario),
        }
    }
    for provider in adapter.health().providers {
        let transitions: Vec<String> = provider
            .breaker
            .recent_transitions
            .iter()
            .map(|t| format!("{} -> {}", t.from, t.to))
            .collect();
        println!(
            "{} breaker transitions: {}",
            provider.name,
            if transitions.is_empty() {
                "none".into()
            } else {
                transitions.join(", ")
            }
        );
    }

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
    let states: Vec<String> = health
        .providers
        .iter()
        .map(|p| format!("{} {}", p.name, p.breaker.state))
        .collect();
    println!(
        "health after reset: {:?}; {}",
        health.status,
        states.join(", ")
    );
    let unexpected: Vec<&str> = rows
        .iter()
        .filter(|row| !row.as_expected)
        .map(|row| row.scenario)
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "scenarios not as the seed expects: {}",
            unexpected.join(", ")
        )
        .into());
    }
    Ok(())
}
