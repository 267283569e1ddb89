//! The sink's metrics against a real endpoint: `failover.usage.written`, `.spilled`,
//! `.replayed` and `.queue_depth` agree with the sink's own counters, and every DynamoDB
//! call is one `failover.dynamodb.duration` sample labelled with its operation and result.
//!
//! Each test runs on a thread of its own, on a current-thread runtime, with a
//! `DebuggingRecorder` as that thread's recorder (`set_default_local_recorder`) — never a
//! global one: the tests of this binary run in parallel. The sink registers its handles when
//! it is built, so what its spill-writer thread emits reaches the same recorder. On a
//! current-thread runtime the writer task runs only when the test awaits, so the queue depth
//! right after a series of `record` calls is exact.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::proxy::FaultProxy;
use failover_dynamodb::{
    DynamoDbHealth, DynamoDbUsageSink, TableOptions, WriteMode, create_table_if_missing,
};
use failover_telemetry::names::{label, metric, value};
use failover_testenv::moto;
use failover_testenv::recorded::with_thread_recorder;
use failover_usage::{UsageQuery, UsageSink};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, Snapshotter};

failover_testenv::service_test_main! {
    service: "dynamodb endpoint",
    available: failover_testenv::moto::shared(),
    tests: [
        stored_records_count_as_written_and_leave_the_queue,
        records_spilled_while_dynamodb_is_down_are_counted_then_replayed,
        a_spill_left_by_an_earlier_run_is_in_the_queue_depth_from_the_start,
        table_calls_are_timed,
    ],
}

/// One snapshot (a `DebuggingRecorder` snapshot resets counters and gauges to 0 and empties
/// histograms: each is what happened since the previous one, and a gauge reads 0 unless it
/// was set since). Metrics are keyed by name and their sorted labels.
#[derive(Debug)]
struct Seen {
    counters: BTreeMap<Id, u64>,
    gauges: BTreeMap<Id, f64>,
    histograms: BTreeMap<Id, Vec<f64>>,
}

/// A metric's name and sorted labels.
type Id = (String, Vec<(String, String)>);

fn seen(snapshotter: &Snapshotter) -> Seen {
    let mut seen = Seen {
        counters: BTreeMap::new(),
        gauges: BTreeMap::new(),
        histograms: BTreeMap::new(),
    };
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let id = (key.name().to_owned(), labels);
        match (kind, value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                seen.counters.insert(id, n);
            }
            (MetricKind::Gauge, DebugValue::Gauge(v)) => {
                seen.gauges.insert(id, v.0);
            }
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => {
                seen.histograms
                    .insert(id, samples.into_iter().map(|s| s.0).collect());
            }
            (kind, value) => panic!("{kind:?} with {value:?}"),
        }
    }
    seen
}

fn sink_labels() -> Vec<(String, String)> {
    vec![(label::USAGE_SINK.to_owned(), "dynamodb".to_owned())]
}

impl Seen {
    /// A usage counter of the sink (0 when not registered).
    fn usage(&self, name: &str) -> u64 {
        self.counters
            .get(&(name.to_owned(), sink_labels()))
            .copied()
            .unwrap_or(0)
    }

    fn queue_depth(&self) -> f64 {
        self.gauges[&(metric::USAGE_QUEUE_DEPTH.to_owned(), sink_labels())]
    }

    /// How many `failover.dynamodb.duration` samples each (operation, result) has, leaving
    /// out those without any; every sample is a plausible number of seconds.
    fn all_calls(&self) -> BTreeMap<(String, String), usize> {
        self.histograms
            .iter()
            .filter(|((name, _), samples)| name == metric::DYNAMODB_DURATION && !samples.is_empty())
            .map(|((_, labels), samples)| {
                assert_eq!(labels.len(), 2, "{labels:?}");
                for s in samples {
                    assert!(s.is_finite() && *s >= 0.0 && *s < 120.0, "{s}");
                }
                let get = |key: &str| {
                    labels
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                (
                    (get(label::STORE_OPERATION), get(label::STORE_RESULT)),
                    samples.len(),
                )
            })
            .collect()
    }
}

fn calls(list: &[(&str, &str, usize)]) -> BTreeMap<(String, String), usize> {
    list.iter()
        .map(|&(op, result, n)| ((op.to_owned(), result.to_owned()), n))
        .collect()
}

/// The write operation of `mode`.
fn write_operation(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Transactional => "TransactWriteItems",
        _ => "BatchWriteItem",
    }
}

/// What the sink's `SinkHealth::queued` says, as the gauge's type.
fn queued(sink: &DynamoDbUsageSink) -> f64 {
    sink.health().queued as f64
}

async fn new_table(prefix: &str) -> (String, String) {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let table = moto::unique_table_name(prefix);
    // Outside the recorder: only the sink's own calls are counted.
    common::create(endpoint.url(), &table).await;
    (endpoint.url().to_owned(), table)
}

/// N records (and one more) are written: `written` = N + 1, the queue depth reads N while
/// they are queued and 0 once stored, and every write request is one `ok` sample of the
/// mode's write operation; a stats query and a scan are one `Query` and one `Scan`.
async fn stored_records_count_as_written_and_leave_the_queue() {
    for mode in [WriteMode::Transactional, WriteMode::RawBatch] {
        let (url, table) = new_table("metrics-written").await;
        with_thread_recorder(move |snapshotter| async move {
            let sink = common::builder(&url, &table, mode).build().await.unwrap();
            let run = common::run_id();
            let tenant = format!("{run}-t");
            const N: u64 = 60;
            for i in 0..N {
                sink.record(common::simple(&run, &tenant, i)).unwrap();
            }
            // Nothing awaited yet: the writer has not run.
            let queued_now = seen(&snapshotter);
            assert_eq!(queued_now.queue_depth(), N as f64);
            assert_eq!(queued_now.usage(metric::USAGE_WRITTEN), 0);
            assert_eq!(queued_now.all_calls(), calls(&[]));

            // One more after that snapshot (which reset the gauge), so the 0 below is the
            // writer's doing.
            sink.record(common::simple(&run, &tenant, N)).unwrap();
            sink.flush().await.unwrap();
            let stored = seen(&snapshotter);
            let health: DynamoDbHealth = sink.dynamodb_health();
            assert_eq!(health.written, N + 1, "{health:?}");
            assert_eq!(stored.usage(metric::USAGE_WRITTEN), N + 1);
            assert_eq!(stored.usage(metric::USAGE_SPILLED), 0);
            assert_eq!(stored.usage(metric::USAGE_REPLAYED), 0);
            assert_eq!(stored.queue_depth(), 0.0);
            assert_eq!(queued(&sink), 0.0);
            // At least ⌈61 / 25⌉ requests; exactly as many as the sink counted.
            assert!(health.write_requests >= 3, "{health:?}");
            assert_eq!(
                stored.all_calls(),
                calls(&[(
                    write_operation(mode),
                    value::OK,
                    health.write_requests as usize
                )])
            );

            let stats = sink.stats(&UsageQuery::tenant(&tenant)).await.unwrap();
            assert_eq!(stats.records, N + 1);
            let records = sink.records(&UsageQuery::all()).await.unwrap();
            assert_eq!(records.len() as u64, N + 1);
            let read = seen(&snapshotter);
            assert_eq!(
                read.all_calls(),
                calls(&[("Query", value::OK, 1), ("Scan", value::OK, 1)])
            );
            assert_eq!(read.usage(metric::USAGE_WRITTEN), 0);
            sink.shutdown().await.unwrap();
        });
    }
}

/// DynamoDB down (the proxy in front of it killed), a queue of 4: 4 records wait for the
/// writer, the other 36 overflow to the spill writer's thread; every write attempt is an
/// `error` sample, and after a flush all 40 are spilled and counted in the queue depth. A
/// read fails as one `Query` error. DynamoDB back: a flush replays the 40 (and writes one
/// more): `replayed` = 40, `written` = 41, depth 0, only `ok` samples.
async fn records_spilled_while_dynamodb_is_down_are_counted_then_replayed() {
    for mode in [WriteMode::Transactional, WriteMode::RawBatch] {
        let (url, table) = new_table("metrics-spilled").await;
        with_thread_recorder(move |snapshotter| async move {
            let proxy = FaultProxy::start(&url).await;
            let sink = common::builder(&proxy.url(), &table, mode)
                .queue_capacity(4)
                .spill_after(Duration::from_millis(300))
                // Replays only on flush: the counters do not move between the snapshot and
                // the health read.
                .replay_interval(Duration::from_secs(3_600))
                .build()
                .await
                .unwrap();
            proxy.kill();
            let run = common::run_id();
            let tenant = format!("{run}-t");
            const N: u64 = 40;
            for i in 0..N {
                sink.record(common::simple(&run, &tenant, i)).unwrap();
            }
            sink.flush().await.unwrap_err();
            assert!(sink.stats(&UsageQuery::tenant(&tenant)).await.is_err());
            let down = seen(&snapshotter);
            let health = sink.dynamodb_health();
            assert_eq!(
                (health.spilled, health.spill_pending, health.written),
                (N, N, 0),
                "{health:?}"
            );
            assert_eq!(down.usage(metric::USAGE_SPILLED), N);
            assert_eq!(down.usage(metric::USAGE_WRITTEN), 0);
            assert_eq!(down.usage(metric::USAGE_REPLAYED), 0);
            assert_eq!(down.queue_depth(), N as f64);
            assert_eq!(queued(&sink), N as f64);
            assert!(health.write_requests > 0, "{health:?}");
            assert_eq!(
                down.all_calls(),
                calls(&[
                    (
                        write_operation(mode),
                        value::ERROR,
                        health.write_requests as usize
                    ),
                    ("Query", value::ERROR, 1),
                ])
            );

            proxy.restart().await;
            let requests_before = health.write_requests;
            // Sets the depth to 41 after the snapshot reset it: the 0 below is the writer's.
            sink.record(common::simple(&run, &tenant, N)).unwrap();
            sink.flush().await.unwrap();
            let up = seen(&snapshotter);
            let health = sink.dynamodb_health();
            assert_eq!(
                (health.replayed, health.written, health.spill_pending),
                (N, N + 1, 0),
                "{health:?}"
            );
            assert_eq!(up.usage(metric::USAGE_REPLAYED), N);
            assert_eq!(up.usage(metric::USAGE_WRITTEN), N + 1);
            assert_eq!(up.usage(metric::USAGE_SPILLED), 0);
            assert_eq!(up.queue_depth(), 0.0);
            assert_eq!(queued(&sink), 0.0);
            assert_eq!(
                up.all_calls(),
                calls(&[(
                    write_operation(mode),
                    value::OK,
                    (health.write_requests - requests_before) as usize
                )])
            );
            sink.shutdown().await.unwrap();
            drop(proxy);
        });
    }
}

/// A spill file an earlier run left is in the queue depth as soon as the sink is built, and
/// its replay counts in `replayed` and `written`.
async fn a_spill_left_by_an_earlier_run_is_in_the_queue_depth_from_the_start() {
    let (url, table) = new_table("metrics-earlier").await;
    with_thread_recorder(move |snapshotter| async move {
        let run = common::run_id();
        let tenant = format!("{run}-t");
        let left: Vec<_> = (0..10).map(|i| common::simple(&run, &tenant, i)).collect();
        let spill = common::temp_spill(&table);
        common::write_spill(&spill, &left);
        let sink = common::builder(&url, &table, WriteMode::Transactional)
            .replay_interval(Duration::from_secs(3_600))
            .build()
            .await
            .unwrap();
        // Built, nothing awaited since: the writer has not replayed anything yet.
        let start = seen(&snapshotter);
        assert_eq!(start.queue_depth(), 10.0);
        assert_eq!(start.usage(metric::USAGE_REPLAYED), 0);

        sink.record(common::simple(&run, &tenant, 10)).unwrap();
        sink.flush().await.unwrap();
        let replayed = seen(&snapshotter);
        assert_eq!(replayed.usage(metric::USAGE_REPLAYED), 10);
        assert_eq!(replayed.usage(metric::USAGE_WRITTEN), 11);
        assert_eq!(replayed.usage(metric::USAGE_SPILLED), 0);
        assert_eq!(replayed.queue_depth(), 0.0);
        let health = sink.dynamodb_health();
        assert_eq!((health.replayed, health.written), (10, 11), "{health:?}");
        sink.shutdown().await.unwrap();
    });
}

/// `create_table_if_missing` on a new table: `DescribeTable` fails (no such table: an
/// `error` sample), then `CreateTable`, `DescribeTable` (active) and `UpdateTimeToLive`;
/// on an existing table one `DescribeTable`.
async fn table_calls_are_timed() {
    let endpoint = failover_testenv::require_service!(moto::shared());
    let url = endpoint.url().to_owned();
    with_thread_recorder(move |snapshotter| async move {
        let client = common::client(&url).await;
        let table = moto::unique_table_name("metrics-table");
        let created = create_table_if_missing(&client, &table, &TableOptions::default())
            .await
            .unwrap();
        assert!(created);
        let first = seen(&snapshotter).all_calls();
        // moto creates tables ACTIVE, so the wait is one DescribeTable.
        assert_eq!(
            first,
            calls(&[
                ("DescribeTable", value::ERROR, 1),
                ("CreateTable", value::OK, 1),
                ("DescribeTable", value::OK, 1),
                ("UpdateTimeToLive", value::OK, 1),
            ])
        );
        let created = create_table_if_missing(&client, &table, &TableOptions::default())
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(
            seen(&snapshotter).all_calls(),
            calls(&[("DescribeTable", value::OK, 1)])
        );
    });
}
