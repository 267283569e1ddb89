//! Faults moto cannot produce, injected by a proxy in front of it (so the storage and the
//! final counts are real): unprocessed items, throttling, 5xx, cancelled transactions,
//! acknowledgements lost after the write was applied. None may lose or duplicate a record.

mod common;

use std::collections::HashSet;

use common::proxy::{Fault, FaultProxy};
use failover_dynamodb::{DynamoDbUsageSink, WriteMode};
use failover_testenv::moto;
use failover_usage::{UsageQuery, UsageRecord, UsageSink, UsageStats};

failover_testenv::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testenv::moto::shared(),
    tests: [
        unprocessed_items_are_sent_again_until_stored,
        throttling_5xx_and_cancelled_transactions_are_retried,
        throttling_in_raw_batch_mode_is_retried,
        a_lost_acknowledgement_never_double_counts,
        a_lost_acknowledgement_in_raw_batch_mode_overwrites_identically,
        a_permanent_error_spills_at_once_and_replays_later,
        a_replay_stopped_part_way_resumes_where_it_stopped,
    ],
}

struct World {
    moto_url: String,
    proxy: FaultProxy,
    table: String,
    sink: DynamoDbUsageSink,
}

async fn world(prefix: &str, mode: WriteMode) -> World {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let table = moto::unique_table_name(prefix);
    common::create(endpoint.url(), &table).await;
    let proxy = FaultProxy::start(endpoint.url()).await;
    let sink = common::builder(&proxy.url(), &table, mode)
        .build()
        .await
        .expect("sink");
    World {
        moto_url: endpoint.url().to_owned(),
        proxy,
        table,
        sink,
    }
}

fn records(run: &str, n: u64) -> Vec<UsageRecord> {
    (0..n)
        .map(|i| common::varied(run, i, 1_764_000_000_000))
        .collect()
}

/// Exactly the expected records are stored, once each; tenant statistics (aggregates in
/// transactional mode) equal the statistics of the records sent.
async fn assert_exact(world: &World, sent: &[UsageRecord]) {
    let stored = common::record_item_count(&world.moto_url, &world.table).await;
    assert_eq!(
        stored,
        sent.len(),
        "one item per record, none lost, none doubled"
    );
    let tenants: HashSet<&str> = sent.iter().map(|r| r.tenant_id.as_str()).collect();
    for tenant in tenants {
        let query = UsageQuery::tenant(tenant);
        let expected = UsageStats::from_records(sent, &query);
        assert_eq!(
            world.sink.stats(&query).await.unwrap(),
            expected,
            "{tenant}"
        );
        assert_eq!(
            world.sink.stats_from_records(&query).await.unwrap(),
            expected,
            "{tenant} from raw records"
        );
    }
}

fn assert_no_duplicate_keys_in_a_request(proxy: &FaultProxy, operation: &str) {
    for seen in proxy.seen().iter().filter(|s| s.operation == operation) {
        let unique: HashSet<_> = seen.keys.iter().collect();
        assert_eq!(unique.len(), seen.keys.len(), "duplicate keys in {seen:?}");
        assert!(
            seen.keys.len() <= 25,
            "{} items in one request",
            seen.keys.len()
        );
    }
}

async fn unprocessed_items_are_sent_again_until_stored() {
    let world = world("unprocessed", WriteMode::RawBatch).await;
    // Three batches in a row come back partly unprocessed.
    world.proxy.inject("BatchWriteItem", Fault::Unprocessed(10));
    world.proxy.inject("BatchWriteItem", Fault::Unprocessed(0));
    world.proxy.inject("BatchWriteItem", Fault::Unprocessed(3));
    let run = common::run_id();
    let sent = records(&run, 60);
    for record in &sent {
        world.sink.record(record.clone()).unwrap();
    }
    // Duplicates of the same records, in the same batches: one item each.
    for record in &sent[..10] {
        world.sink.record(record.clone()).unwrap();
    }
    world.sink.flush().await.unwrap();
    assert_eq!(world.proxy.queued_faults(), 0, "every fault was hit");
    assert_exact(&world, &sent).await;
    let health = world.sink.dynamodb_health();
    assert!(health.retried >= 3, "{health:?}");
    // In raw-batch mode `written` counts acknowledged puts: the 10 duplicates that fell
    // into later batches were put again (overwriting identical items, as the item count
    // above shows).
    assert_eq!(health.written, 70, "{health:?}");
    assert_eq!((health.spilled, health.rejected), (0, 0), "{health:?}");
    assert_no_duplicate_keys_in_a_request(&world.proxy, "BatchWriteItem");
}

async fn throttling_5xx_and_cancelled_transactions_are_retried() {
    let world = world("throttled", WriteMode::Transactional).await;
    for fault in [
        Fault::Error(400, "ThrottlingException"),
        Fault::Error(400, "ProvisionedThroughputExceededException"),
        Fault::Error(500, "InternalServerError"),
        Fault::Error(503, "ServiceUnavailable"),
        Fault::CancelThrottled,
        Fault::Error(400, "TransactionConflictException"),
    ] {
        world.proxy.inject("TransactWriteItems", fault);
    }
    let run = common::run_id();
    let sent = records(&run, 75);
    for record in &sent {
        world.sink.record(record.clone()).unwrap();
    }
    world.sink.flush().await.unwrap();
    assert_eq!(world.proxy.queued_faults(), 0, "every fault was hit");
    assert_exact(&world, &sent).await;
    let health = world.sink.dynamodb_health();
    assert_eq!(health.retried, 6, "{health:?}");
    assert_eq!((health.written, health.duplicates), (75, 0), "{health:?}");
    assert_eq!(health.spilled, 0, "{health:?}");
    assert!(health.last_error.is_some(), "{health:?}");
    assert_no_duplicate_keys_in_a_request(&world.proxy, "TransactWriteItems");
}

async fn throttling_in_raw_batch_mode_is_retried() {
    let world = world("throttled-raw", WriteMode::RawBatch).await;
    world
        .proxy
        .inject("BatchWriteItem", Fault::Error(400, "ThrottlingException"));
    world
        .proxy
        .inject("BatchWriteItem", Fault::Error(500, "InternalServerError"));
    let run = common::run_id();
    let sent = records(&run, 40);
    for record in &sent {
        world.sink.record(record.clone()).unwrap();
    }
    world.sink.flush().await.unwrap();
    assert_eq!(world.proxy.queued_faults(), 0);
    assert_exact(&world, &sent).await;
    assert_eq!(world.sink.dynamodb_health().retried, 2);
}

async fn a_lost_acknowledgement_never_double_counts() {
    let world = world("lost-ack", WriteMode::Transactional).await;
    // Both transactions are applied by moto, then the answer is lost: a 500, and a
    // connection closed without an answer.
    world
        .proxy
        .inject("TransactWriteItems", Fault::LostAckStatus);
    world.proxy.inject("TransactWriteItems", Fault::LostAckDrop);
    let run = common::run_id();
    let sent = records(&run, 50);
    for record in &sent {
        world.sink.record(record.clone()).unwrap();
    }
    world.sink.flush().await.unwrap();
    assert_eq!(world.proxy.queued_faults(), 0);
    // The aggregates were applied once: the retried transactions were cancelled by the
    // conditional puts and their records dropped as already stored.
    assert_exact(&world, &sent).await;
    let health = world.sink.dynamodb_health();
    assert_eq!(health.retried, 2, "{health:?}");
    assert_eq!(health.written + health.duplicates, 50, "{health:?}");
    assert!(
        health.duplicates >= 25,
        "the lost batches were found stored: {health:?}"
    );
}

async fn a_lost_acknowledgement_in_raw_batch_mode_overwrites_identically() {
    let world = world("lost-ack-raw", WriteMode::RawBatch).await;
    world.proxy.inject("BatchWriteItem", Fault::LostAckStatus);
    world.proxy.inject("BatchWriteItem", Fault::LostAckDrop);
    let run = common::run_id();
    let sent = records(&run, 50);
    for record in &sent {
        world.sink.record(record.clone()).unwrap();
    }
    world.sink.flush().await.unwrap();
    assert_eq!(world.proxy.queued_faults(), 0);
    assert_exact(&world, &sent).await;
}

async fn a_permanent_error_spills_at_once_and_replays_later() {
    let world = world("permanent", WriteMode::Transactional).await;
    world.proxy.inject(
        "TransactWriteItems",
        Fault::Error(400, "ValidationException"),
    );
    let run = common::run_id();
    let sent = records(&run, 20);
    for record in &sent {
        world.sink.record(record.clone()).unwrap();
    }
    // The batch is spilled without retries; the flush replays it (the fault is used up).
    world.sink.flush().await.unwrap();
    let health = world.sink.dynamodb_health();
    assert_eq!(
        (health.retried, health.spilled, health.replayed),
        (0, 20, 20),
        "{health:?}"
    );
    assert_eq!(health.spill_pending, 0, "{health:?}");
    assert_exact(&world, &sent).await;
}

/// A spill of 60 records is replayed in three transactions; the second is refused. The
/// next replay sends only the 35 records not yet stored: a replay that restarted from its
/// first record each time would never drain a large spill against an endpoint that fails
/// now and then (or times out on its slowest requests).
async fn a_replay_stopped_part_way_resumes_where_it_stopped() {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let table = moto::unique_table_name("resume");
    common::create(endpoint.url(), &table).await;
    let proxy = FaultProxy::start(endpoint.url()).await;
    let run = common::run_id();
    let sent = records(&run, 60);
    let spill = common::temp_spill(&table);
    common::write_spill(&spill, &sent);
    proxy.inject("TransactWriteItems", Fault::Forward);
    proxy.inject(
        "TransactWriteItems",
        Fault::Error(400, "ValidationException"),
    );
    let sink = common::builder(&proxy.url(), &table, WriteMode::Transactional)
        .spill_path(&spill)
        .build()
        .await
        .expect("sink");
    // The sink replays at start; the flush may be the replay that is refused part-way.
    if let Err(error) = sink.flush().await {
        assert!(
            error
                .to_string()
                .contains("35 usage records are held in the spill file"),
            "{error}"
        );
        sink.flush().await.unwrap();
    }
    let health = sink.dynamodb_health();
    assert_eq!(
        (
            health.replayed,
            health.duplicates,
            health.spill_pending,
            health.rejected
        ),
        (60, 0, 0, 0),
        "no stored record is sent again: {health:?}"
    );
    let mut forwarded: Vec<(String, String)> = proxy
        .seen()
        .into_iter()
        .filter(|seen| seen.operation == "TransactWriteItems" && seen.fault == "Forward")
        .flat_map(|seen| seen.keys)
        .collect();
    let total = forwarded.len();
    forwarded.sort();
    forwarded.dedup();
    assert_eq!(
        (total, forwarded.len()),
        (60, 60),
        "each record reaches the table in exactly one request"
    );
    assert!(!spill.exists());
    let world = World {
        moto_url: endpoint.url().to_owned(),
        proxy,
        table,
        sink,
    };
    assert_exact(&world, &sent).await;
}
