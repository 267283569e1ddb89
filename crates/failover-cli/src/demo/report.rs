//! What the demo prints: the setup, the scenario table, each outcome (the all-fail error
//! in full), the breaker transitions and cache counters, the usage ledger and the health
//! after the breakers were reset.

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use failover_core::FailoverAdapter;
use failover_telemetry::prometheus::PrometheusMetrics;
use failover_usage::UsageStats;

use super::backends::Backends;
use super::providers::Providers;
use super::scenarios::Row;

/// The title and the backends in use.
pub(crate) fn print_setup(run: &str, tenant: &str, providers: &Providers, backends: &Backends) {
    println!(
        "llm-failover demo: the seed's five scenarios through the real provider clients, \
         against local stand-in servers\n"
    );
    println!(
        "providers: bedrock = BedrockProvider (AWS SDK) -> Bedrock stand-in at {}",
        providers.standins.bedrock_endpoint()
    );
    println!(
        "           openai = OpenAiProvider -> OpenAI stand-in at {}",
        providers.standins.openai_base_url()
    );
    println!("{}", backends.cache_label);
    println!("{}", backends.sink_label);
    println!("run: {run} (tenant {tenant})\n");
}

/// One row per scenario.
pub(crate) fn print_table(rows: &[Row]) {
    let mut header: Vec<String> = [
        "scenario",
        "expected",
        "provider",
        "cached",
        "tokens in/out",
        "cost (USD)",
        "latency",
        "requests bedrock/openai",
    ]
    .map(str::to_owned)
    .into();
    if let Some(first) = rows.first() {
        header.extend(
            first
                .breakers
                .iter()
                .map(|breaker| format!("{} breaker", breaker.provider)),
        );
    }
    header.push("check".into());
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for row in rows {
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
            Err(_) => cells.extend(["error", "-", "-", "-", "-"].map(str::to_owned)),
        }
        cells.push(format!("{}/{}", row.requests.bedrock, row.requests.openai));
        cells.extend(
            row.breakers
                .iter()
                .map(|breaker| format!("{} ({} fail)", breaker.state, breaker.failures)),
        );
        cells.push(
            if row.problems.is_empty() {
                "ok"
            } else {
                "UNEXPECTED"
            }
            .into(),
        );
        table.add_row(cells);
    }
    println!("{table}\n");
}

/// What each scenario answered, or its error in full.
pub(crate) fn print_outcomes(rows: &[Row]) {
    for row in rows {
        let scenario = row.scenario;
        match &row.outcome {
            Ok(completion) if completion.cached => println!(
                "{scenario}: the cache answered {:?} (first produced by {} with {}), no server called",
                completion.content, completion.provider, completion.model
            ),
            Ok(completion) => println!(
                "{scenario}: {} answered {:?} with {}",
                completion.provider, completion.content, completion.model
            ),
            Err(error) if row.sent > 1 => println!(
                "{scenario}: {} requests, each failed; the last, after which OpenAI's breaker \
                 was open: {error}",
                row.sent
            ),
            Err(error) => println!("{scenario}: {error}"),
        }
        for problem in &row.problems {
            println!("  UNEXPECTED: {problem}");
        }
    }
}

/// Every breaker's transitions (the resets after scenario 5 included) and the cache's
/// counters.
pub(crate) fn print_breakers_and_cache(adapter: &FailoverAdapter) {
    let health = adapter.health();
    for provider in &health.providers {
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
    if let Some(cache) = &health.cache {
        println!(
            "cache ({}): hits {}, misses {}, errors {}, time-outs {}",
            cache.backend.backend, cache.hits, cache.misses, cache.errors, cache.timeouts
        );
    }
}

/// The tenant's usage ledger, as the sink's store holds it.
pub(crate) fn print_ledger(tenant: &str, backends: &Backends, stats: &UsageStats) {
    println!(
        "\nusage ledger for {tenant} ({}): {} provider calls ({} succeeded, {} failed), {} tokens, {} USD",
        backends.ledger_source(),
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
}

/// The adapter's health once the breakers are reset.
pub(crate) fn print_health(adapter: &FailoverAdapter) {
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
}

/// The Prometheus exposition of the run (`--metrics`), as a `/metrics` route would serve
/// it.
pub(crate) fn print_metrics(prometheus: &PrometheusMetrics) {
    println!("\n== metrics (Prometheus exposition) ==");
    print!("{}", prometheus.render());
}
