//! `failover demo` against a real Redis and a DynamoDB endpoint (moto): the built binary,
//! run with `REDIS_URL` / `DYNAMODB_ENDPOINT` / `FAILOVER_DYNAMODB_TABLE`, succeeds, and
//! afterwards Redis holds the run's cached answers (with a TTL) and the table holds one
//! usage item per provider call.
//!
//! Under failover-testenv's service harness: without Redis or moto the test is reported as
//! ignored (failed under `FAILOVER_REQUIRE_SERVICES=1`), never as passed.

use std::process::Command;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use failover_scenarios::stores::{CacheStore, UsageTable};
use failover_testenv::services::redis;
use failover_testenv::{moto, require_service};
use failover_usage::UsageOutcome;

failover_testenv::service_test_main! {
    service: "redis and dynamodb (moto_server)",
    available: redis::shared().and_then(|_| moto::shared()),
    tests: [the_demo_stores_its_answers_in_redis_and_its_ledger_in_dynamodb],
}

/// The text after `start` in `stdout`, up to the first of `ends`.
fn after<'a>(stdout: &'a str, start: &str, ends: &[char]) -> &'a str {
    let from = stdout
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in:\n{stdout}"))
        + start.len();
    let rest = &stdout[from..];
    &rest[..rest.find(ends).unwrap_or(rest.len())]
}

async fn the_demo_stores_its_answers_in_redis_and_its_ledger_in_dynamodb() {
    let redis_url = require_service!(redis::shared()).url().to_owned();
    let endpoint = require_service!(moto::shared()).url().to_owned();
    let table = moto::unique_table_name("failover-demo-test");

    let output = {
        let (redis_url, endpoint, table) = (redis_url.clone(), endpoint.clone(), table.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_failover"))
                .arg("demo")
                .env("REDIS_URL", redis_url)
                .env("DYNAMODB_ENDPOINT", endpoint)
                .env("FAILOVER_DYNAMODB_TABLE", table)
                .output()
                .expect("the failover binary runs")
        })
        .await
        .expect("the demo's thread")
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(&format!("cache: redis at {redis_url} (ElastiCacheCache")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "usage: dynamodb at {endpoint} (DynamoDbUsageSink, table {table}, created now"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "(read back from DynamoDB table {table}): 7 provider calls (3 succeeded, 4 failed)"
        )),
        "{stdout}"
    );
    let prefix = after(&stdout, "key prefix ", &[',', ' ']);
    let tenant = after(&stdout, "(tenant ", &[')']);
    assert!(prefix.starts_with("failover-demo-"), "{prefix}");

    // Redis: the three answers (scenarios 1, 2 and 3) under the run's prefix, each with a
    // TTL; the cache hit and the failures wrote nothing.
    let entries = CacheStore::new(redis_url.clone(), None, None, None, prefix.to_owned())
        .entries()
        .await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    for entry in &entries {
        assert!(entry.ttl.is_some(), "{} has a TTL", entry.key);
    }

    // DynamoDB: one raw usage item per provider call, in the run's tenant partition.
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDFAILOVERDEMOTEST",
                "not-a-secret",
                None,
                None,
                "demo-test",
            ))
            .build(),
    );
    let records = UsageTable::new(dynamodb, table.clone())
        .records(tenant)
        .await;
    assert_eq!(records.len(), 7, "{records:?}");
    let count = |provider: &str, success: bool| {
        records
            .iter()
            .filter(|r| r.provider == provider && (r.outcome == UsageOutcome::Success) == success)
            .count()
    };
    // Bedrock: scenario 1 answered, scenario 2 failed. OpenAI: scenarios 2 and 3
    // answered, scenario 5 failed three times.
    assert_eq!(
        (
            count("bedrock", true),
            count("bedrock", false),
            count("openai", true),
            count("openai", false)
        ),
        (1, 1, 2, 3),
        "{records:?}"
    );
}
