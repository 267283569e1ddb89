//! The sink's life around an outage: `record` never touching the disk, `stats` answering
//! while records are spilled, one sink per spill file, shutdown with DynamoDB up and down,
//! a replay streamed in small batches, and the degraded reasons of its health.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use failover_dynamodb::{DynamoDbError, WriteMode};
use failover_testenv::moto;
use failover_usage::{UsageError, UsageQuery, UsageRecord, UsageSink, UsageStats};

failover_testenv::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testenv::moto::shared(),
    tests: [
        a_full_queue_hands_records_to_the_spill_writer_and_refuses_only_when_it_is_full,
        stats_answer_from_what_is_stored_while_records_are_spilled,
        a_second_sink_on_the_same_spill_file_is_refused,
        shutdown_with_dynamodb_up_writes_everything_and_closes,
        shutdown_with_dynamodb_down_spills_everything_for_the_next_sink,
        a_large_spill_is_replayed_in_small_batches,
        health_is_degraded_while_dynamodb_is_unreachable_and_recovers,
        rejected_records_round_trip_through_the_aggregates,
    ],
}

async fn new_table(prefix: &str) -> (String, String) {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let table = moto::unique_table_name(prefix);
    common::create(endpoint.url(), &table).await;
    (endpoint.url().to_owned(), table)
}

fn remove_spill(path: &std::path::Path) {
    for suffix in ["", ".replaying", ".replaying.pos", ".corrupt", ".lock"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(name));
    }
}

/// The queue holds 2 records and the spill file cannot be written (a directory stands
/// where it should be): the spill writer keeps its batch in memory and retries, its queue (10)
/// fills, and only then does `record` refuse — on the caller's thread, without touching
/// the disk. Once the file can be written every accepted record reaches the file,
/// then DynamoDB: none lost.
async fn a_full_queue_hands_records_to_the_spill_writer_and_refuses_only_when_it_is_full() {
    let (url, table) = new_table("overflow").await;
    let proxy = FaultProxy::start(&url).await;
    let dir = std::env::temp_dir().join(format!("failover-overflow-{}", common::run_id()));
    let spill = dir.join("usage.spill");
    std::fs::create_dir_all(&dir).unwrap();
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .spill_path(&spill)
        .queue_capacity(2)
        .spill_queue_capacity(10)
        .spill_after(Duration::from_millis(100))
        .replay_interval(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    // The lock file lives beside the spill file; make the spill file itself unwritable by
    // putting a directory where it should be.
    std::fs::create_dir(&spill).unwrap();
    proxy.kill();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let record = common::simple(&run, &tenant, i);
        match sink.record(record.clone()) {
            Ok(()) => accepted.push(record),
            Err(UsageError::Overloaded(message)) => {
                assert!(message.contains("both full"), "{message}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused > 0,
        "the spill queue filled: {:?}",
        sink.dynamodb_health()
    );
    let health = sink.dynamodb_health();
    assert_eq!(health.rejected, refused, "{health:?}");
    assert_eq!(health.accepted as usize, accepted.len(), "{health:?}");
    assert!(
        common::eventually(Duration::from_secs(30), || sink
            .health()
            .degraded
            .is_some_and(|d| d.contains("DynamoDB unreachable")))
        .await,
        "{:?}",
        sink.health()
    );
    // The disk recovers, then DynamoDB: every accepted record is stored, once.
    std::fs::remove_dir(&spill).unwrap();
    proxy.restart().await;
    assert!(
        common::eventually(Duration::from_secs(30), || {
            let h = sink.dynamodb_health();
            h.spill_queued == 0 && h.queued == 0
        })
        .await,
        "{:?}",
        sink.dynamodb_health()
    );
    sink.flush().await.unwrap();
    assert_eq!(
        common::record_item_count(&url, &table).await,
        accepted.len()
    );
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(
        stats,
        UsageStats::from_records(&accepted, &UsageQuery::all())
    );
    sink.shutdown().await.unwrap();
    remove_spill(&spill);
    let _ = std::fs::remove_dir(&dir);
}

/// A batch refused permanently goes to the spill file. `stats` neither fails nor replays:
/// it counts what is stored, and the health says what waits in the spill file. A flush
/// then replays it and `stats` counts everything.
async fn stats_answer_from_what_is_stored_while_records_are_spilled() {
    let (url, table) = new_table("stats-spilled").await;
    let proxy = FaultProxy::start(&url).await;
    // Batches of exactly 10 (a linger longer than the test), so the refused batch is the
    // second ten records, whole.
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .replay_interval(Duration::from_secs(3_600))
        .batch_size(10)
        .linger(Duration::from_secs(3_600))
        .build()
        .await
        .unwrap();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let stored: Vec<UsageRecord> = (0..10).map(|i| common::simple(&run, &tenant, i)).collect();
    for record in &stored {
        sink.record(record.clone()).unwrap();
    }
    sink.flush().await.unwrap();
    proxy.inject(
        "TransactWriteItems",
        Fault::Error(400, "ValidationException"),
    );
    let spilled: Vec<UsageRecord> = (10..20).map(|i| common::simple(&run, &tenant, i)).collect();
    for record in &spilled {
        sink.record(record.clone()).unwrap();
    }
    let stats = sink
        .stats(&UsageQuery::tenant(&tenant))
        .await
        .expect("stats do not fail because records are spilled");
    assert_eq!(stats, UsageStats::from_records(&stored, &UsageQuery::all()));
    let health = sink.health();
    assert_eq!(health.queued, 10, "{health:?}");
    let degraded = health.degraded.expect("degraded while records are spilled");
    assert!(degraded.contains("10 records spilled"), "{degraded}");
    sink.flush().await.unwrap();
    let mut all = stored.clone();
    all.extend(spilled);
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(stats, UsageStats::from_records(&all, &UsageQuery::all()));
    sink.shutdown().await.unwrap();
}

async fn a_second_sink_on_the_same_spill_file_is_refused() {
    let (url, table) = new_table("spill-lock").await;
    let spill = common::temp_spill(&table);
    let first = common::builder(&url, &table, WriteMode::Transactional)
        .spill_path(&spill)
        .build()
        .await
        .unwrap();
    let error = common::builder(&url, &table, WriteMode::Transactional)
        .spill_path(&spill)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DynamoDbError::SpillLocked { path } if *path == spill.display().to_string()),
        "{error}"
    );
    assert!(
        error.to_string().contains("in use by another sink"),
        "{error}"
    );
    // Released by shutdown: a successor can take the file over.
    first.shutdown().await.unwrap();
    let second = common::builder(&url, &table, WriteMode::Transactional)
        .spill_path(&spill)
        .build()
        .await
        .unwrap();
    second.shutdown().await.unwrap();
    remove_spill(&spill);
}

async fn shutdown_with_dynamodb_up_writes_everything_and_closes() {
    let (url, table) = new_table("shutdown-up").await;
    let sink = common::builder(&url, &table, WriteMode::Transactional)
        .build()
        .await
        .unwrap();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let sent: Vec<UsageRecord> = (0..60).map(|i| common::simple(&run, &tenant, i)).collect();
    for record in &sent {
        sink.record(record.clone()).unwrap();
    }
    // Two at once, then a third: one shutdown, the same answer.
    let (a, b) = tokio::join!(sink.shutdown(), UsageSink::shutdown(&sink));
    a.unwrap();
    b.unwrap();
    sink.shutdown().await.unwrap();
    assert!(matches!(
        sink.record(common::simple(&run, &tenant, 99)),
        Err(UsageError::Closed)
    ));
    assert_eq!(common::record_item_count(&url, &table).await, 60);
    let health = sink.dynamodb_health();
    assert_eq!(
        (health.written, health.queued, health.spill_pending),
        (60, 0, 0),
        "{health:?}"
    );
    assert!(health.closed);
    // Reads still work after shutdown.
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(stats, UsageStats::from_records(&sent, &UsageQuery::all()));
    sink.flush().await.unwrap();
    remove_spill(&sink.spill_path());
}

async fn shutdown_with_dynamodb_down_spills_everything_for_the_next_sink() {
    let (url, table) = new_table("shutdown-down").await;
    let proxy = FaultProxy::start(&url).await;
    let spill = common::temp_spill(&table);
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .spill_path(&spill)
        .queue_capacity(50)
        .shutdown_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    proxy.kill();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let sent: Vec<UsageRecord> = (0..150).map(|i| common::simple(&run, &tenant, i)).collect();
    for record in &sent {
        sink.record(record.clone()).unwrap();
    }
    let started = Instant::now();
    let error = sink.shutdown().await.unwrap_err();
    // The bound, plus time to spill and stop (generous for a loaded machine).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error
            .to_string()
            .contains("150 usage records are held in the spill file"),
        "{error}"
    );
    let health = sink.dynamodb_health();
    assert_eq!(
        (health.spill_pending, health.queued, health.spill_queued),
        (150, 0, 0),
        "{health:?}"
    );
    // Idempotent: the same answer again.
    assert!(sink.shutdown().await.is_err());
    assert!(matches!(
        sink.record(common::simple(&run, &tenant, 999)),
        Err(UsageError::Closed)
    ));
    drop(sink);
    // DynamoDB is back; a new sink on the same spill file replays every record, once.
    let next = common::builder(&url, &table, WriteMode::Transactional)
        .spill_path(&spill)
        .build()
        .await
        .unwrap();
    assert_eq!(next.dynamodb_health().spill_pending, 150);
    next.flush().await.unwrap();
    assert_eq!(common::record_item_count(&url, &table).await, 150);
    let stats = next.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(stats, UsageStats::from_records(&sent, &UsageQuery::all()));
    let health = next.dynamodb_health();
    assert_eq!((health.replayed, health.duplicates), (150, 0), "{health:?}");
    next.shutdown().await.unwrap();
    assert!(!spill.exists());
    remove_spill(&spill);
}

/// 130 spilled records, replayed 20 at a time, with one batch refused part way: every
/// record reaches the table in exactly one accepted request.
async fn a_large_spill_is_replayed_in_small_batches() {
    let (url, table) = new_table("replay-batches").await;
    let proxy = FaultProxy::start(&url).await;
    let run = common::run_id();
    let sent: Vec<UsageRecord> = (0..130)
        .map(|i| common::varied(&run, i, 1_764_000_000_000))
        .collect();
    let spill = common::temp_spill(&table);
    common::write_spill(&spill, &sent);
    // Batches of 20 records go out as one transaction each (batch_size 25): the third is
    // refused.
    proxy.inject("TransactWriteItems", Fault::Forward);
    proxy.inject("TransactWriteItems", Fault::Forward);
    proxy.inject(
        "TransactWriteItems",
        Fault::Error(400, "ValidationException"),
    );
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .spill_path(&spill)
        .replay_batch_size(20)
        .build()
        .await
        .unwrap();
    if let Err(error) = sink.flush().await {
        assert!(
            error
                .to_string()
                .contains("90 usage records are held in the spill file"),
            "{error}"
        );
        sink.flush().await.unwrap();
    }
    let health = sink.dynamodb_health();
    assert_eq!(
        (health.replayed, health.spill_pending, health.duplicates),
        (130, 0, 0),
        "{health:?}"
    );
    let forwarded: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|seen| seen.operation == "TransactWriteItems" && seen.fault == "Forward")
        .collect();
    assert!(
        forwarded.iter().all(|seen| seen.keys.len() <= 20),
        "no request carries more than one replay batch"
    );
    let mut keys: Vec<_> = forwarded.into_iter().flat_map(|seen| seen.keys).collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!((total, keys.len()), (130, 130));
    assert_eq!(common::record_item_count(&url, &table).await, 130);
    sink.shutdown().await.unwrap();
    remove_spill(&spill);
}

async fn health_is_degraded_while_dynamodb_is_unreachable_and_recovers() {
    let (url, table) = new_table("degraded").await;
    let proxy = FaultProxy::start(&url).await;
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .spill_after(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    assert_eq!(sink.health().degraded, None, "healthy at start");
    let run = common::run_id();
    let tenant = format!("{run}-t");
    for i in 0..5 {
        sink.record(common::simple(&run, &tenant, i)).unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(sink.health().degraded, None, "healthy after writes");
    proxy.kill();
    for i in 5..10 {
        sink.record(common::simple(&run, &tenant, i)).unwrap();
    }
    assert!(
        common::eventually(Duration::from_secs(30), || sink
            .health()
            .degraded
            .is_some_and(|d| d.contains("DynamoDB unreachable")))
        .await,
        "{:?}",
        sink.health()
    );
    assert!(
        common::eventually(Duration::from_secs(30), || sink
            .health()
            .degraded
            .is_some_and(|d| d.contains("5 records spilled")))
        .await,
        "{:?}",
        sink.health()
    );
    proxy.restart().await;
    sink.flush().await.unwrap();
    assert_eq!(sink.health().degraded, None, "{:?}", sink.health());
    sink.shutdown().await.unwrap();
}

async fn rejected_records_round_trip_through_the_aggregates() {
    let (url, table) = new_table("rejected").await;
    let sink = common::builder(&url, &table, WriteMode::Transactional)
        .build()
        .await
        .unwrap();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let sent: Vec<UsageRecord> = (0..6)
        .map(|i| {
            let mut record = common::simple(&run, &tenant, i);
            if i % 2 == 0 {
                record.outcome = failover_usage::UsageOutcome::Rejected;
                record.usage = Default::default();
                record.cost = failover_provider::Usd::ZERO;
            }
            record
        })
        .collect();
    for record in &sent {
        sink.record(record.clone()).unwrap();
    }
    sink.flush().await.unwrap();
    let expected = UsageStats::from_records(&sent, &UsageQuery::all());
    assert_eq!(expected.rejected, 3);
    // From the daily aggregate, and from the raw records.
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(stats, expected);
    assert_eq!(stats.by_tenant[&tenant].rejected, 3);
    assert_eq!(
        sink.stats_from_records(&UsageQuery::tenant(&tenant))
            .await
            .unwrap(),
        expected
    );
    sink.shutdown().await.unwrap();
}
