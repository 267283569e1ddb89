//! The shared usage-sink behaviour suite from `failover-testkit`, unchanged, on DynamoDB
//! (moto, or `DYNAMODB_ENDPOINT`), in both write modes.
//!
//! Under failover-testenv's service harness: without an endpoint every check is reported as
//! ignored (failed under `FAILOVER_REQUIRE_SERVICES=1`), never as passed. Every check gets
//! its own table.

mod common;

use std::sync::Arc;

use failover_dynamodb::WriteMode;
use failover_usage::UsageSink;

failover_testenv::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testenv::moto::shared(),
    tests: [],
    suites: [
        with_mode("transactional", WriteMode::Transactional),
        with_mode("raw_batch", WriteMode::RawBatch),
    ],
}

/// The suite's checks on a sink in `mode`, each check on a new table, named `mode::check`.
fn with_mode(mode_name: &'static str, mode: WriteMode) -> Vec<failover_testkit::suites::Check> {
    failover_testkit::usage_sink_behaviour_tests!(|| async move {
        let endpoint = failover_testenv::require_service!(failover_testenv::moto::shared());
        Arc::new(common::sink_on_new_table(endpoint.url(), "behaviour", mode).await)
            as Arc<dyn UsageSink>
    })
    .into_iter()
    .map(|check| failover_testkit::suites::Check {
        name: format!("{mode_name}::{}", check.name),
        ..check
    })
    .collect()
}
