//! `failover demo`: the seed's five scenarios through the real provider clients, in one
//! process, against local stand-in servers.
//!
//! - **Providers**: the real [`BedrockProvider`](failover_bedrock::BedrockProvider) (the
//!   AWS SDK, static dummy credentials, region `us-east-1`) and
//!   [`OpenAiProvider`](failover_openai::OpenAiProvider) (a dummy key), each pointed at one
//!   of the [`StandIns`](failover_standin::StandIns) (`failover-standin`): wiremock servers on
//!   127.0.0.1 that answer in the providers' real wire formats and serve scripted faults.
//!   One SDK attempt per call, so what each server received can be counted exactly
//!   ([`providers`]).
//! - **Cache**: [`ElastiCacheCache`](failover_elasticache::ElastiCacheCache) on the Redis at
//!   `REDIS_URL` (a key generated for this run, the key prefix `failover-demo-<run>`;
//!   entries are left to expire with the cache TTL), else the in-memory cache.
//! - **Usage ledger**: [`DynamoDbUsageSink`](failover_dynamodb::DynamoDbUsageSink) on the
//!   endpoint `DYNAMODB_ENDPOINT` (table `FAILOVER_DYNAMODB_TABLE`, created when missing),
//!   else the in-memory sink ([`backends`]).
//!
//! The scenarios ([`scenarios`]): 1 Bedrock answers; 2 Bedrock's stand-in answers 503 once
//! and OpenAI answers; 3 Bedrock's breaker is forced open and OpenAI answers without a
//! request reaching Bedrock; 4 scenario 1's request again, answered by the cache with no
//! request reaching either server; 5 Bedrock's breaker still open and OpenAI's stand-in
//! answering 503 until OpenAI's breaker opens, each request ending in one error that names
//! every attempt. The report ([`report`]) prints the backends, a table, each outcome, the
//! breaker transitions, the cache counters and the usage ledger — read back from the
//! DynamoDB table when one is used, after the sink was shut down.
//!
//! The demo checks itself: it fails (exit status 1, the reasons on stderr) when a scenario
//! ends other than the seed expects, when a server received other requests than the
//! scenario implies, or when the ledger does not hold exactly one record per provider call.
//! Nothing leaves 127.0.0.1 unless `REDIS_URL` / `DYNAMODB_ENDPOINT` point elsewhere.

mod backends;
mod providers;
mod report;
mod scenarios;

use std::error::Error;
use std::time::Duration;

use failover_core::{AdapterConfig, FailoverAdapter};
use failover_telemetry::prometheus::PrometheusMetrics;
use failover_usage::UsageQuery;

use backends::Backends;
use failover_standin::seed::seed_breaker_config;
use providers::Providers;
use scenarios::Scenarios;

/// Options of `failover demo`: where the cache and the usage ledger live.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// Cache answers in this Redis (ElastiCacheCache; e.g. `redis://127.0.0.1:6379`)
    /// instead of in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    redis_url: Option<String>,
    /// Write the usage ledger to the DynamoDB endpoint at this URL (DynamoDbUsageSink;
    /// e.g. a moto server) instead of keeping it in memory.
    #[arg(long, env = "DYNAMODB_ENDPOINT", value_name = "URL")]
    dynamodb_endpoint: Option<String>,
    /// The usage table on that endpoint; created when missing.
    #[arg(
        long,
        env = "FAILOVER_DYNAMODB_TABLE",
        default_value = backends::DEFAULT_TABLE,
        value_name = "NAME"
    )]
    dynamodb_table: String,
    /// After the report, print the Prometheus exposition of the run: every metric the
    /// scenarios moved (requests, attempts, fallbacks, tokens, cost, cache, breakers, the
    /// usage sink).
    #[arg(long)]
    pub(crate) metrics: bool,
}

/// The seed's tenant; the demo appends the run's id, so its records never mix with those
/// of an earlier run in a shared table.
const TENANT: &str = "test_tenant";

/// Twelve random hex digits naming this run (cache key prefix, tenant, spill file).
fn run_id() -> String {
    format!("{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

/// Runs the scenarios and prints the report; `Err` when the system is not as the seed
/// expects (or could not be assembled).
/// `prometheus`: the exposition to print after the report (`--metrics`).
pub(crate) async fn run(
    args: DemoArgs,
    prometheus: Option<&PrometheusMetrics>,
) -> Result<(), Box<dyn Error>> {
    let run = run_id();
    let tenant = format!("{TENANT}_{run}");
    let backends = Backends::from_args(&args, &run).await?;
    let providers = Providers::start().await?;
    report::print_setup(&run, &tenant, &providers, &backends);

    let adapter = FailoverAdapter::builder()
        // Breakers as the suite's harness sets them up: the seed's threshold, no jitter.
        .provider(providers.bedrock.clone(), seed_breaker_config())
        .provider(providers.openai.clone(), seed_breaker_config())
        .cache(backends.cache.clone())
        .key_deriver(backends.key_deriver.clone())
        .usage_sink(backends.sink.clone())
        // A lookup or write past its budget counts as a miss; the first one against Redis
        // also opens the connection, which can take longer than the default 50 ms.
        .config(
            AdapterConfig::default()
                .with_cache_lookup_budget(Duration::from_secs(1))
                .with_cache_write_budget(Duration::from_secs(1)),
        )
        .build()?;

    let rows = Scenarios::new(&adapter, &providers.standins, &tenant)
        .run()
        .await;
    // The seed closes the breakers again afterwards.
    for name in adapter.provider_names() {
        if let Some(breaker) = adapter.breaker(name) {
            breaker.reset();
        }
    }

    report::print_table(&rows);
    report::print_outcomes(&rows);
    report::print_breakers_and_cache(&adapter);

    // Everything recorded is stored before the ledger is read: the DynamoDB sink is shut
    // down, so the ledger below is what the table holds.
    adapter.flush_usage().await?;
    backends.finish().await?;
    let stats = adapter.usage_stats(&UsageQuery::tenant(&tenant)).await?;
    report::print_ledger(&tenant, &backends, &stats);
    report::print_health(&adapter);
    if let Some(prometheus) = prometheus {
        report::print_metrics(prometheus);
    }

    let mut failures: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            row.problems
                .iter()
                .map(move |problem| format!("{}: {problem}", row.scenario))
        })
        .collect();
    failures.extend(
        scenarios::ledger_problems(&rows, &stats)
            .into_iter()
            .map(|problem| format!("usage ledger: {problem}")),
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("not as the seed expects:\n  {}", failures.join("\n  ")).into())
    }
}
