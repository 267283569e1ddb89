//! The endpoint killed mid-run: records spill, the endpoint comes back on the same port,
//! they are replayed, and the final count is exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::FaultProxy;
use failover_dynamodb::WriteMode;
use failover_testenv::moto;
use failover_usage::{UsageQuery, UsageRecord, UsageSink, UsageStats};

failover_testenv::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testenv::moto::shared(),
    tests: [
        endpoint_killed_mid_run_spills_replays_and_counts_exactly,
        moto_killed_and_restarted_on_the_same_port,
    ],
}

/// The endpoint the sink talks to is killed while a producer is recording, and restarted
/// on the same port. moto behind it keeps its state, so every record ever accepted must be
/// there exactly once at the end.
async fn endpoint_killed_mid_run_spills_replays_and_counts_exactly() {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let table = moto::unique_table_name("outage");
    common::create(endpoint.url(), &table).await;
    let proxy = FaultProxy::start(endpoint.url()).await;
    // The common builder's generous attempt time-out: a killed endpoint resets its
    // connections and refuses new ones, so the writer learns of the outage at once. A short
    // one would only measure moto, whose transactions copy the table once per action
    // (1.3–3 s for 26 actions on a 500-item table with the machine loaded): every attempt
    // timed out and no replay finished within a minute.
    let sink = Arc::new(
        common::builder(&proxy.url(), &table, WriteMode::Transactional)
            .spill_after(Duration::from_millis(300))
            .replay_interval(Duration::from_millis(100))
            .build()
            .await
            .unwrap(),
    );
    let run = common::run_id();
    let tenant = format!("{run}-t");
    // 240 records: moto's transaction time grows with the table (it copies the table once
    // per action), so 600 took minutes on a loaded machine and the writer, rightly busy
    // with its backlog, had not reached the spill when the test's minute ran out.
    let sent: Arc<Vec<UsageRecord>> =
        Arc::new((0..240).map(|i| common::simple(&run, &tenant, i)).collect());
    let producer = {
        let sink = sink.clone();
        let sent = sent.clone();
        tokio::spawn(async move {
            for chunk in sent.chunks(10) {
                for record in chunk {
                    sink.record(record.clone()).unwrap();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    // Kill the endpoint once writes are flowing.
    assert!(
        common::eventually(Duration::from_secs(30), || sink.dynamodb_health().written
            >= 50)
        .await
    );
    proxy.kill();
    assert!(
        common::eventually(Duration::from_secs(30), || sink.dynamodb_health().spilled
            >= 50)
        .await,
        "batches spill while the endpoint is down: {:?}",
        sink.dynamodb_health()
    );
    proxy.restart().await;
    producer.await.unwrap();
    // The periodic replay brings the spill back without a flush.
    assert!(
        common::eventually(Duration::from_secs(60), || {
            let h = sink.dynamodb_health();
            h.spill_pending == 0 && h.queued == 0 && h.replayed > 0
        })
        .await,
        "replayed after the restart: {:?}",
        sink.dynamodb_health()
    );
    sink.flush().await.unwrap();
    let health = sink.dynamodb_health();
    assert_eq!(health.rejected, 0, "{health:?}");
    assert!(
        health.spilled >= 50 && health.replayed >= health.spilled,
        "{health:?}"
    );
    assert_eq!(
        common::record_item_count(endpoint.url(), &table).await,
        240,
        "every record once"
    );
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(
        stats,
        UsageStats::from_records(sent.iter(), &UsageQuery::all())
    );
    sink.shutdown().await.unwrap();
}

/// The moto process itself is killed and restarted on the same port. moto keeps its
/// tables in memory, so the restarted one is empty: the check is that every record
/// recorded during the outage is replayed once the table exists again, and that the
/// writer keeps them (spilled) through the `ResourceNotFound` in between.
async fn moto_killed_and_restarted_on_the_same_port() {
    let moto = failover_testenv::require_service!(moto::spawn_owned());
    let url = moto.url();
    let table = moto::unique_table_name("moto-restart");
    common::create(&url, &table).await;
    // A stopped moto refuses connections: no short attempt time-out needed (see above).
    let sink = common::builder(&url, &table, WriteMode::Transactional)
        .spill_after(Duration::from_millis(300))
        .replay_interval(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let run = common::run_id();
    let tenant = format!("{run}-t");
    let before: Vec<UsageRecord> = (0..40).map(|i| common::simple(&run, &tenant, i)).collect();
    for record in &before {
        sink.record(record.clone()).unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(common::record_item_count(&url, &table).await, 40);

    moto.stop();
    let during: Vec<UsageRecord> = (40..240)
        .map(|i| common::simple(&run, &tenant, i))
        .collect();
    for record in &during {
        sink.record(record.clone()).unwrap();
    }
    let error = sink.flush().await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("200 usage records are held in the spill file"),
        "{error}"
    );
    let health = sink.dynamodb_health();
    assert_eq!(
        (health.spilled, health.spill_pending),
        (200, 200),
        "{health:?}"
    );

    moto.restart().expect("moto restarts on its port");
    // The replay fails (no table yet) and keeps the records.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.dynamodb_health().spill_pending, 200);
    common::create(&url, &table).await;
    assert!(
        common::eventually(Duration::from_secs(60), || sink
            .dynamodb_health()
            .spill_pending
            == 0)
        .await,
        "{:?}",
        sink.dynamodb_health()
    );
    sink.flush().await.unwrap();
    assert_eq!(common::record_item_count(&url, &table).await, 200);
    let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
    assert_eq!(stats, UsageStats::from_records(&during, &UsageQuery::all()));
    assert_eq!(sink.dynamodb_health().replayed, 200);
}
