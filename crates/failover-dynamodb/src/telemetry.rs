//! The sink's metrics, through the [`metrics`] facade (names from `failover-telemetry`).
//!
//! A sink registers its handles once, when it is built ([`SinkMetrics`]), with the recorder
//! installed then: every update afterwards is a handle call — no key built, no allocation,
//! no registry lookup on `record`'s path — and it reaches that recorder from any thread,
//! including the background spill writer's (a thread of its own, where a thread-local test
//! recorder would otherwise not be seen). The table functions ([`create_table`] and
//! friends) belong to no sink and use the recorder installed when they are called.
//!
//! [`create_table`]: crate::create_table

use std::future::Future;
use std::time::Instant;

use failover_telemetry::names::{label, metric, value};
use metrics::{Counter, Gauge, Histogram};

use crate::BACKEND;

/// A DynamoDB API operation a sink's store calls; the label value is the API's own name.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StoreCall {
    TransactWriteItems = 0,
    BatchWriteItem = 1,
    Query = 2,
    Scan = 3,
}

impl StoreCall {
    const ALL: [StoreCall; 4] = [
        StoreCall::TransactWriteItems,
        StoreCall::BatchWriteItem,
        StoreCall::Query,
        StoreCall::Scan,
    ];

    const fn name(self) -> &'static str {
        match self {
            StoreCall::TransactWriteItems => "TransactWriteItems",
            StoreCall::BatchWriteItem => "BatchWriteItem",
            StoreCall::Query => "Query",
            StoreCall::Scan => "Scan",
        }
    }
}

/// `CreateTable`, the `failover.store.operation` of creating the table.
pub(crate) const CREATE_TABLE: &str = "CreateTable";
/// `DescribeTable`: whether the table exists, and whether it is `ACTIVE` yet.
pub(crate) const DESCRIBE_TABLE: &str = "DescribeTable";
/// `UpdateTimeToLive`: enabling TTL on a new table.
pub(crate) const UPDATE_TIME_TO_LIVE: &str = "UpdateTimeToLive";

/// One sink's metric handles, all labelled `failover.usage.sink = dynamodb`.
#[derive(Debug)]
pub(crate) struct SinkMetrics {
    /// `failover.usage.queue_depth`: set to the sink's own
    /// [`SinkHealth::queued`](failover_usage::SinkHealth::queued) by [`publish_depth`].
    ///
    /// [`publish_depth`]: crate::writer::Shared::publish_depth
    pub(crate) queue_depth: Gauge,
    written: Counter,
    spilled: Counter,
    replayed: Counter,
    /// `failover.dynamodb.duration` by [`StoreCall`], then `[error, ok]`.
    calls: [[Histogram; 2]; 4],
}

/// Registers the handles with the recorder installed now (see the module docs).
impl Default for SinkMetrics {
    fn default() -> Self {
        let call = |call: StoreCall, result: &'static str| {
            metrics::histogram!(
                metric::DYNAMODB_DURATION,
                label::STORE_OPERATION => call.name(),
                label::STORE_RESULT => result,
            )
        };
        Self {
            queue_depth: metrics::gauge!(metric::USAGE_QUEUE_DEPTH, label::USAGE_SINK => BACKEND),
            written: metrics::counter!(metric::USAGE_WRITTEN, label::USAGE_SINK => BACKEND),
            spilled: metrics::counter!(metric::USAGE_SPILLED, label::USAGE_SINK => BACKEND),
            replayed: metrics::counter!(metric::USAGE_REPLAYED, label::USAGE_SINK => BACKEND),
            calls: StoreCall::ALL.map(|c| [call(c, value::ERROR), call(c, value::OK)]),
        }
    }
}

impl SinkMetrics {
    /// `n` records stored (`failover.usage.written`).
    pub(crate) fn written(&self, n: u64) {
        self.written.increment(n);
    }

    /// `n` records appended to the spill file (`failover.usage.spilled`).
    pub(crate) fn spilled(&self, n: u64) {
        self.spilled.increment(n);
    }

    /// `n` spilled records replayed into the store (`failover.usage.replayed`).
    pub(crate) fn replayed(&self, n: u64) {
        self.replayed.increment(n);
    }

    /// Runs one SDK call (`request`, the `send()` future) and records its duration in
    /// `failover.dynamodb.duration`, `ok` or `error` as the SDK returned. A call cut short
    /// (the future dropped at the shutdown deadline) records nothing: it has no result.
    pub(crate) async fn time<T, E>(
        &self,
        call: StoreCall,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = request.await;
        self.calls[call as usize][usize::from(result.is_ok())]
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// As [`SinkMetrics::time`], for a call made outside any sink (the table functions): the
/// histogram is looked up in the recorder installed now. These calls are rare (start-up),
/// so the lookup's cost does not matter.
pub(crate) async fn time_table_call<T, E>(
    operation: &'static str,
    request: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = request.await;
    let result_label = if result.is_ok() {
        value::OK
    } else {
        value::ERROR
    };
    metrics::histogram!(
        metric::DYNAMODB_DURATION,
        label::STORE_OPERATION => operation,
        label::STORE_RESULT => result_label,
    )
    .record(started.elapsed().as_secs_f64());
    result
}
