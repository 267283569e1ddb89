//! N records in → exactly N items and matching aggregates out, also after a replay; exact
//! decimal storage; queries by range and agent; the queue-full path.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::proxy::FaultProxy;
use failover_dynamodb::{WriteMode, partition_key, record_sort_key};
use failover_testenv::moto;
use failover_usage::{UsageQuery, UsageRecord, UsageSink, UsageStats};

failover_testenv::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testenv::moto::shared(),
    tests: [
        n_records_make_n_items_and_matching_aggregates_also_after_a_replay,
        a_full_queue_spills_instead_of_dropping,
    ],
}

const DAY: u64 = 86_400_000;
/// 2025-11-24T16:00:00Z: records spread over this day and the next two.
const BASE: u64 = 1_764_000_000_000;

async fn check(
    label: &str,
    url: &str,
    table: &str,
    sink: &failover_dynamodb::DynamoDbUsageSink,
    sent: &[UsageRecord],
    run: &str,
) {
    assert_eq!(common::record_item_count(url, table).await, 300, "{label}");
    // One aggregate item per (tenant, UTC day).
    let days: HashSet<(String, u64)> = sent
        .iter()
        .map(|r| (r.tenant_id.clone(), r.timestamp_unix_ms / DAY))
        .collect();
    let aggregates = common::raw_keys(url, table)
        .await
        .into_iter()
        .filter(|(_, sk)| sk.starts_with("DAY#"))
        .count();
    assert_eq!(aggregates, days.len(), "{label}");
    for tenant in [format!("{run}-tenant-0"), format!("{run}-tenant-1")] {
        for query in [
            // Whole history: aggregates only.
            UsageQuery::tenant(&tenant),
            // Partial first and last day around one whole day.
            UsageQuery::tenant(&tenant).between(BASE + 3_600_000, BASE + 2 * DAY),
            // Inside one day: raw records only.
            UsageQuery::tenant(&tenant).between(BASE, BASE + 60_000),
            // An agent: the index.
            UsageQuery::tenant(&tenant).with_agent("agent#1"),
            UsageQuery::tenant(&tenant)
                .with_agent("agent#2")
                .since(BASE + DAY),
        ] {
            let expected = UsageStats::from_records(sent, &query);
            let stats = sink.stats(&query).await.unwrap();
            assert_eq!(stats, expected, "{label}: {query:?}");
            assert_eq!(
                sink.stats_from_records(&query).await.unwrap(),
                expected,
                "{label}: {query:?}"
            );
            let mut records = sink.records(&query).await.unwrap();
            records.sort_by(|a, b| a.call_id.cmp(&b.call_id));
            let mut want: Vec<_> = sent.iter().filter(|r| query.matches(r)).cloned().collect();
            want.sort_by(|a, b| a.call_id.cmp(&b.call_id));
            assert_eq!(records, want, "{label}: {query:?}");
        }
    }
    let everything = sink.stats(&UsageQuery::all()).await.unwrap();
    assert_eq!(
        everything,
        UsageStats::from_records(sent, &UsageQuery::all())
    );
}

async fn n_records_make_n_items_and_matching_aggregates_also_after_a_replay() {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let url = endpoint.url();
    let table = moto::unique_table_name("ledger");
    common::create(url, &table).await;
    let sink = common::builder(url, &table, WriteMode::Transactional)
        .ttl_days(30)
        .build()
        .await
        .unwrap();
    let run = common::run_id();
    let sent: Vec<UsageRecord> = (0..300).map(|i| common::varied(&run, i, BASE)).collect();
    for record in &sent {
        sink.record(record.clone()).unwrap();
    }
    sink.flush().await.unwrap();

    check("first write", url, &table, &sink, &sent, &run).await;

    // Cost is stored as an exact Number, and the TTL attribute is set.
    let probe = &sent[7];
    let item = common::client(url)
        .await
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(partition_key(&probe.tenant_id)))
        .key("sk", AttributeValue::S(record_sort_key(probe)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the record's item");
    assert_eq!(item["cost"], AttributeValue::N("0.00005".into()));
    assert_eq!(
        item["expires_at"],
        AttributeValue::N((probe.timestamp_unix_ms / 1_000 + 30 * 86_400).to_string())
    );

    // The same records recorded again: found stored, nothing added.
    for record in &sent[..50] {
        sink.record(record.clone()).unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(sink.dynamodb_health().duplicates, 50);
    check("after re-recording", url, &table, &sink, &sent, &run).await;

    // A spill file holding every record (twice), replayed by a new sink at start.
    let spill = common::temp_spill(&format!("{table}-replay"));
    let mut twice = sent.clone();
    twice.extend(sent.iter().cloned());
    common::write_spill(&spill, &twice);
    let replayer = common::builder(url, &table, WriteMode::Transactional)
        .spill_path(&spill)
        .build()
        .await
        .unwrap();
    assert_eq!(replayer.dynamodb_health().spill_pending, 600);
    replayer.flush().await.unwrap();
    let health = replayer.dynamodb_health();
    assert_eq!(
        (
            health.replayed,
            health.written,
            health.duplicates,
            health.spill_pending
        ),
        (600, 0, 600, 0),
        "{health:?}"
    );
    assert!(!spill.exists());
    check("after a replay", url, &table, &sink, &sent, &run).await;
}

async fn a_full_queue_spills_instead_of_dropping() {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let table = moto::unique_table_name("queue-full");
    common::create(endpoint.url(), &table).await;
    let proxy = FaultProxy::start(endpoint.url()).await;
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .queue_capacity(2)
        .spill_after(Duration::from_millis(200))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    // DynamoDB unreachable: the writer is stuck retrying, the queue fills.
    proxy.kill();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let sent: Vec<UsageRecord> = (0..200).map(|i| common::simple(&run, &tenant, i)).collect();
    for record in &sent {
        sink.record(record.clone())
            .expect("never refused while the disk works");
    }
    let health = sink.dynamodb_health();
    assert_eq!((health.accepted, health.rejected), (200, 0), "{health:?}");
    // The overflow reaches the spill file in the background, not on `record`'s thread.
    assert!(
        common::eventually(Duration::from_secs(30), || sink
            .dynamodb_health()
            .spill_queued
            == 0)
        .await,
        "{:?}",
        sink.dynamodb_health()
    );
    let health = sink.dynamodb_health();
    // Held in memory at most: the queue (2) and the writer's batches (one in flight, one
    // being assembled, 25 each). Everything else must have gone to the spill file.
    assert!(
        health.spilled >= 200 - 2 - 2 * 25,
        "the rest went to the spill file: {health:?}"
    );
    assert_eq!(sink.health().queued, 200, "all of them still to write");
    proxy.restart().await;
    // The attempt time-out is short (2 s) and moto's transactions are slow on a loaded
    // machine: a replay may stop part way, and the periodic replay resumes where it
    // stopped. Wait for it rather than for one flush.
    assert!(
        common::eventually(Duration::from_secs(120), || {
            let h = sink.dynamodb_health();
            h.spill_pending == 0 && h.queued == 0 && h.spill_queued == 0
        })
        .await,
        "{:?}",
        sink.dynamodb_health()
    );
    sink.flush().await.unwrap();
    assert_eq!(common::record_item_count(endpoint.url(), &table).await, 200);
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(stats, UsageStats::from_records(&sent, &UsageQuery::all()));
    let health = sink.dynamodb_health();
    assert_eq!((health.spill_pending, health.queued), (0, 0), "{health:?}");
    assert_eq!(sink.health().queued, 0);
}
