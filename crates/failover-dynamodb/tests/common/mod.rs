//! Shared test support: endpoints, tables, sinks, records, and a fault proxy.

#![allow(dead_code, unreachable_pub)]

pub mod proxy;

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use failover_dynamodb::{
    DynamoDbUsageSink, DynamoDbUsageSinkBuilder, TableOptions, WriteMode, create_table,
};
use failover_provider::{ErrorKind, RequestId, TokenUsage, Usd};
use failover_usage::{UsageOutcome, UsageRecord};
use rust_decimal::Decimal;

/// Static test credentials (moto does not check them; SigV4 signing still runs).
pub fn test_credentials() -> Credentials {
    Credentials::new("AKIDTEST", "test-secret", None, None, "failover-tests")
}

/// A builder for `endpoint` with test credentials, a fixed region and a private spill
/// file.
pub fn builder(endpoint: &str, table: &str, mode: WriteMode) -> DynamoDbUsageSinkBuilder {
    DynamoDbUsageSinkBuilder::new()
        .table_name(table)
        .endpoint_url(endpoint)
        .region("us-east-1")
        .credentials(test_credentials())
        .write_mode(mode)
        .spill_path(temp_spill(table))
        // moto runs each request in its own thread without isolating transactions
        // (concurrent ones fail with 500s, or apply partly / roll back over each other,
        // and the aggregates drift). DynamoDB's are serializable, a conflict being a
        // retried TransactionConflict. One write in flight keeps moto exact.
        .max_in_flight(1)
        // moto is slow under a parallel test run on a shared machine: generous bounds
        // here; the outage tests set short ones.
        .spill_after(Duration::from_secs(30))
        .backoff(Duration::from_millis(5), Duration::from_millis(200))
        .replay_interval(Duration::from_millis(100))
        .attempt_timeout(Duration::from_secs(30))
}

/// A spill path unique to `table` in the temp dir.
pub fn temp_spill(table: &str) -> PathBuf {
    std::env::temp_dir().join(format!("failover-dynamodb-test-{table}.spill"))
}

/// A client straight to `endpoint` (not through any proxy).
pub async fn client(endpoint: &str) -> Client {
    builder(endpoint, "unused", WriteMode::Transactional)
        .build_client()
        .await
        .expect("client")
}

/// Creates a fresh table named `table` at `endpoint`.
pub async fn create(endpoint: &str, table: &str) {
    create_table(&client(endpoint).await, table, &TableOptions::default())
        .await
        .expect("create table");
}

/// A sink on a new table of its own at `endpoint`.
pub async fn sink_on_new_table(endpoint: &str, prefix: &str, mode: WriteMode) -> DynamoDbUsageSink {
    let table = failover_testenv::moto::unique_table_name(prefix);
    create(endpoint, &table).await;
    builder(endpoint, &table, mode).build().await.expect("sink")
}

/// Every raw item of `table` (a Scan straight to `endpoint`), as (pk, sk) pairs.
pub async fn raw_keys(endpoint: &str, table: &str) -> Vec<(String, String)> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let client = client(endpoint).await;
    let mut keys = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in out.items() {
            match (item.get("pk"), item.get("sk")) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                    keys.push((pk.clone(), sk.clone()))
                }
                other => panic!("item without keys: {other:?}"),
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    keys
}

/// Raw record items (sort key `TS#…`) of `table`.
pub async fn record_item_count(endpoint: &str, table: &str) -> usize {
    raw_keys(endpoint, table)
        .await
        .iter()
        .filter(|(_, sk)| sk.starts_with("TS#"))
        .count()
}

/// A varied record: tenant, agent, provider, model, outcome and cost derived from `i`.
pub fn varied(run: &str, i: u64, base_ms: u64) -> UsageRecord {
    let outcomes = [
        UsageOutcome::Success,
        UsageOutcome::Success,
        UsageOutcome::Failed {
            kind: ErrorKind::Throttled,
        },
        UsageOutcome::Cancelled,
        UsageOutcome::CacheHit,
        UsageOutcome::Rejected,
    ];
    let outcome = outcomes[(i % 6) as usize];
    let provider = if i.is_multiple_of(3) {
        "openai"
    } else {
        "bedrock"
    };
    UsageRecord {
        request_id: RequestId::new(format!("{run}-req-{i}")),
        call_id: format!("{run}-call-{i}"),
        attempt: 1 + (i % 2) as u32,
        tenant_id: format!("{run}-tenant-{}", i % 2),
        agent_id: format!("agent#{}", i % 3),
        // Spread over three UTC days.
        timestamp_unix_ms: base_ms + (i % 3) * 86_400_000 + i * 1_000,
        provider: provider.to_owned(),
        model: format!("{provider}-model-{}", i % 4),
        logical_model: "gpt-4".to_owned(),
        usage: TokenUsage {
            input_tokens: 10 + i,
            output_tokens: 5 + i % 7,
            cache_read_tokens: i % 3,
            cache_write_tokens: i % 5,
        },
        usage_estimated: outcome == UsageOutcome::Cancelled,
        cost: Usd::new(Decimal::new(i as i64 * 7 + 1, 6)),
        latency_ms: 40 + i,
        outcome,
        cached: outcome == UsageOutcome::CacheHit,
        fallback_used: provider == "openai",
        streamed: i.is_multiple_of(2),
    }
}

/// A simple record of `tenant`.
pub fn simple(run: &str, tenant: &str, i: u64) -> UsageRecord {
    UsageRecord {
        request_id: RequestId::new(format!("{run}-r{i}")),
        call_id: format!("{run}-call-{i}"),
        attempt: 1,
        tenant_id: tenant.to_owned(),
        agent_id: "agent".to_owned(),
        timestamp_unix_ms: 1_764_000_000_000 + i,
        provider: "bedrock".to_owned(),
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned(),
        logical_model: "gpt-4".to_owned(),
        usage: TokenUsage::new(100, 50),
        usage_estimated: false,
        cost: Usd::new(Decimal::new(1, 3)),
        latency_ms: 5,
        outcome: UsageOutcome::Success,
        cached: false,
        fallback_used: false,
        streamed: false,
    }
}

/// Writes `records` as a spill file at `path`, the way the sink spills them.
#[allow(dead_code)] // not every test binary replays a prepared spill
pub fn write_spill(path: &std::path::Path, records: &[UsageRecord]) {
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// A random run id.
pub fn run_id() -> String {
    format!("run{:016x}", fastrand::u64(..))
}

/// Waits up to `limit` for `condition`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
