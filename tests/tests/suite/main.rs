//! The seed's test plan (the Python adapter's integration-test plan: eight test classes and
//! five scenarios) as one suite over the whole assembled system:
//! the real Bedrock and OpenAI clients, Redis through the ElastiCache cache, a DynamoDB
//! endpoint through the usage sink. One module per seed class, plus the five scenarios,
//! streams and the cache, and request coalescing.
//!
//! `cargo test -p failover-scenarios --test suite` runs it offline (local stand-ins speaking
//! the providers' wire formats; Redis and moto spawned on free ports);
//! `cargo xtask test-live` runs it against the real services (README, "Tests: offline and
//! live"). Filter by class as with the seed's pytest classes:
//! `cargo test -p failover-scenarios --test suite -- caching::`.

mod agents;
mod basic_adapter;
mod bedrock_integration;
mod caching;
mod circuit_breaker_failover;
mod coalescing;
mod cost_tracking;
mod openai_fallback;
mod scenarios;
mod streaming;
mod usage_tracking;

fn main() -> std::process::ExitCode {
    failover_scenarios::runner::main(
        [
            basic_adapter::tests(),
            agents::tests(),
            bedrock_integration::tests(),
            caching::tests(),
            circuit_breaker_failover::tests(),
            openai_fallback::tests(),
            usage_tracking::tests(),
            cost_tracking::tests(),
            streaming::tests(),
            scenarios::tests(),
            coalescing::tests(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
}
