//! Sustained ingest against a local DynamoDB endpoint (`DYNAMODB_ENDPOINT`, else a fresh
//! `moto_server`): records per second from the first `record` to the end of `flush`, and
//! items per write request, in both write modes.
//!
//! `cargo bench -p failover-dynamodb --bench ingest` (`INGEST_RECORDS` sets the count).
//! The figures measure the emulator as much as the sink: moto copies the whole table for
//! every action of a transaction, so transactional ingest slows as the table grows, which
//! DynamoDB does not. One write in flight in transactional mode (moto does not isolate
//! concurrent transactions).

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use failover_dynamodb::{DynamoDbUsageSinkBuilder, TableOptions, WriteMode, create_table};
use failover_provider::{RequestId, TokenUsage, Usd};
use failover_testenv::moto;
use failover_usage::{UsageOutcome, UsageQuery, UsageRecord, UsageSink};
use rust_decimal::Decimal;

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: RequestId::new(format!("ingest-{i}")),
        call_id: format!("ingest-call-{i}"),
        attempt: 1,
        tenant_id: format!("tenant-{}", i % 4),
        agent_id: format!("agent-{}", i % 8),
        timestamp_unix_ms: 1_764_000_000_000 + i,
        provider: if i.is_multiple_of(3) {
            "openai"
        } else {
            "bedrock"
        }
        .into(),
        model: format!("model-{}", i % 3),
        logical_model: "gpt-4".into(),
        usage: TokenUsage::new(1_000, 500),
        usage_estimated: false,
        cost: Usd::new(Decimal::new(105, 4)),
        latency_ms: 420,
        outcome: UsageOutcome::Success,
        cached: false,
        fallback_used: false,
        streamed: false,
    }
}

async fn run(endpoint: &str, mode: WriteMode, n: u64, in_flight: usize) {
    let table = moto::unique_table_name("ingest");
    let builder = DynamoDbUsageSinkBuilder::new()
        .table_name(&table)
        .endpoint_url(endpoint)
        .region("us-east-1")
        .credentials(aws_sdk_dynamodb::config::Credentials::new(
            "AKIDBENCH",
            "bench",
            None,
            None,
            "bench",
        ))
        .write_mode(mode)
        .max_in_flight(in_flight)
        .spill_after(Duration::from_secs(120))
        .attempt_timeout(Duration::from_secs(60))
        .spill_path(std::env::temp_dir().join(format!("{table}.spill")));
    let client = builder.build_client().await.unwrap();
    create_table(&client, &table, &TableOptions::default())
        .await
        .unwrap();
    let sink = builder.build().await.unwrap();
    let records: Vec<UsageRecord> = (0..n).map(record).collect();
    let start = Instant::now();
    for r in records {
        sink.record(r).unwrap();
    }
    sink.flush().await.unwrap();
    let elapsed = start.elapsed();
    let health = sink.dynamodb_health();
    let stored = sink.stats(&UsageQuery::all()).await.unwrap().records;
    assert_eq!(stored, n, "every record stored once");
    println!(
        "{mode:?}: {n} records in {:.2?} = {:.0} records/s; {} write requests, {:.1} records per request; retried {}, spilled {}",
        elapsed,
        n as f64 / elapsed.as_secs_f64(),
        health.write_requests,
        health.written as f64 / health.write_requests.max(1) as f64,
        health.retried,
        health.spilled,
    );
    sink.shutdown().await.unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run passes nothing
    // useful either: this binary always runs the measurement.
    let n: u64 = std::env::var("INGEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let endpoint = match moto::discover() {
        Ok(endpoint) => endpoint,
        Err(unavailable) => {
            // A measurement, not a test: nothing to count as passed. Say plainly that no
            // figure was produced.
            eprintln!("ingest: NOT MEASURED, no DynamoDB endpoint: {unavailable}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "endpoint {} (spawned: {})",
            endpoint.url(),
            endpoint.spawned()
        );
        run(endpoint.url(), WriteMode::RawBatch, n * 5, 4).await;
        run(endpoint.url(), WriteMode::Transactional, n, 1).await;
    });
}
