#![doc = include_str!("../README.md")]

mod config;
mod error;
mod item;
mod reader;
mod spill;
mod store;
mod table;
mod telemetry;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use failover_usage::{SinkHealth, UsageError, UsageQuery, UsageRecord, UsageSink, UsageStats};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use config::{DynamoDbConfig, DynamoDbUsageSinkBuilder, MAX_BATCH_SIZE, WriteMode};
pub use error::DynamoDbError;
pub use item::{
    AGENT_INDEX, GSI1_PK, GSI1_SK, PK, SK, TTL_ATTRIBUTE, agent_partition_key, item_to_record,
    partition_key, record_sort_key, record_to_item,
};
pub use table::{TableOptions, create_table, create_table_if_missing};

use crate::spill::Spill;
use crate::store::Store;
use crate::writer::{Counters, Msg, Shared, SpillMsg};

/// The backend name in [`SinkHealth::backend`].
pub const BACKEND: &str = "dynamodb";

/// A [`UsageSink`] on a DynamoDB table: `record` enqueues, a background task writes
/// batches idempotently, a durable local file holds what DynamoDB will not take.
///
/// Create it inside a Tokio runtime (it spawns its writer, and a thread for the spill
/// file). Call [`UsageSink::shutdown`] before the process exits: records still in the
/// in-memory queue are not on disk yet.
///
/// **Dropping** the sink without `shutdown` is safe while the runtime lives: the writer
/// receives everything already queued, writes it within `shutdown_timeout_ms` and spills
/// the rest, exactly as `shutdown` does, and the spill file's lock is released when it has
/// finished. What it cannot do is wait: if the runtime (or the process) stops first,
/// records still in memory are lost. `Drop` logs a warning when records are queued.
pub struct DynamoDbUsageSink {
    tx: mpsc::Sender<Msg>,
    spill_tx: mpsc::Sender<SpillMsg>,
    shared: Arc<Shared>,
    closed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
    spill_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    shutdown: tokio::sync::OnceCell<Result<(), String>>,
}

/// The sink's own counters, beyond [`SinkHealth`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DynamoDbHealth {
    /// Records accepted by `record` (queued or spilled).
    pub accepted: u64,
    /// Records in the in-memory queue or in a write in flight.
    pub queued: u64,
    /// Records handed to the background spill writer (the overflow of a full queue), not
    /// yet on disk.
    pub spill_queued: u64,
    /// Records stored by this sink: new items in transactional mode; acknowledged puts in
    /// raw-batch mode (where a re-put of a stored record overwrites it and counts again).
    pub written: u64,
    /// Records found already stored (duplicates within a batch, replays, writes whose
    /// acknowledgement was lost): not counted again.
    pub duplicates: u64,
    /// Write requests sent again after a temporary failure.
    pub retried: u64,
    /// Records appended to the spill file (queue full, or DynamoDB unavailable past the
    /// bound).
    pub spilled: u64,
    /// Records replayed from the spill file into DynamoDB.
    pub replayed: u64,
    /// Records in the spill file now.
    pub spill_pending: u64,
    /// Unreadable lines found in the spill file (set aside in `{spill}.corrupt`).
    pub spill_corrupt: u64,
    /// Records refused by `record` (the queue and the spill writer's queue both full).
    pub rejected: u64,
    /// Write requests sent (`TransactWriteItems` or `BatchWriteItem`).
    pub write_requests: u64,
    /// Whether the last write request to DynamoDB failed.
    pub store_failing: bool,
    /// Whether `shutdown` has been called (`record` fails with `Closed`).
    pub closed: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl DynamoDbUsageSink {
    /// A builder.
    pub fn builder() -> DynamoDbUsageSinkBuilder {
        DynamoDbUsageSinkBuilder::new()
    }

    /// A sink over an existing client (its retry and timeout settings are used as they
    /// are; [`DynamoDbUsageSinkBuilder::build`] disables the SDK's retries so the writer is
    /// the one owner of retries).
    pub fn from_client(client: Client, config: DynamoDbConfig) -> Result<Self, DynamoDbError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DynamoDbError::Config(
                "the sink must be built inside a Tokio runtime (it spawns its writer)".into(),
            ));
        }
        let counters = Arc::new(Counters::default());
        let spill = Arc::new(Spill::open(config.spill_path())?);
        let spill_path = spill.path().display().to_string();
        let shared = Arc::new(Shared {
            store: Store::new(client, &config, counters.clone()),
            spill,
            counters,
            write_permits: tokio::sync::Semaphore::new(config.max_in_flight),
            shutdown_deadline: tokio::sync::watch::Sender::new(None),
            config,
        });
        // A dashboard sees the depth before the first record: 0, or what an earlier run left
        // in the spill file.
        shared.publish_depth();
        let (spill_tx, spill_rx) = mpsc::channel(shared.config.spill_queue_capacity);
        let spill_thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("failover-usage-spill".into())
                .spawn(move || writer::run_spill_writer(spill_rx, shared))
                .map_err(|source| DynamoDbError::Spill {
                    path: spill_path,
                    source,
                })?
        };
        let (tx, rx) = mpsc::channel(shared.config.queue_capacity);
        let task = tokio::spawn(writer::run(rx, shared.clone()));
        Ok(Self {
            tx,
            spill_tx,
            shared,
            closed: AtomicBool::new(false),
            task: Mutex::new(Some(task)),
            spill_thread: Mutex::new(Some(spill_thread)),
            shutdown: tokio::sync::OnceCell::new(),
        })
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        self.shared.store.client()
    }

    /// The configuration.
    pub fn config(&self) -> &DynamoDbConfig {
        &self.shared.config
    }

    /// The spill file.
    pub fn spill_path(&self) -> PathBuf {
        self.shared.spill.path().to_owned()
    }

    /// Creates this sink's table (see [`create_table`]).
    pub async fn create_table(&self) -> Result<(), DynamoDbError> {
        let options = TableOptions {
            ttl: self.shared.config.ttl_days.is_some(),
            ..TableOptions::default()
        };
        create_table(self.client(), &self.shared.config.table_name, &options).await
    }

    /// The raw records matching `query` that are stored, once the records accepted before
    /// the call are written or spilled (see [`UsageSink::stats`]).
    pub async fn records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, UsageError> {
        self.read_barrier().await;
        Ok(reader::records(
            &self.shared.store,
            query,
            self.shared.config.consistent_reads,
        )
        .await?)
    }

    /// Statistics from the raw records only, never the aggregates: the reconciliation
    /// check of the aggregates, and what `stats` serves when they cannot answer. Counts
    /// what is stored, as [`UsageSink::stats`] does.
    pub async fn stats_from_records(&self, query: &UsageQuery) -> Result<UsageStats, UsageError> {
        self.read_barrier().await;
        Ok(reader::stats_from_records(
            &self.shared.store,
            query,
            self.shared.config.consistent_reads,
        )
        .await?)
    }

    /// Read your writes, cheaply: waits (at most `spill_after_ms`) until every record
    /// accepted before the call has been written or spilled. No replay, no error.
    async fn read_barrier(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let (reply, done) = oneshot::channel();
        let barrier = async {
            if self.tx.send(Msg::Barrier(reply)).await.is_ok() {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(self.shared.config.spill_after(), barrier).await;
    }

    /// [`UsageSink::shutdown`], callable without the trait in scope.
    pub async fn shutdown(&self) -> Result<(), UsageError> {
        <Self as UsageSink>::shutdown(self).await
    }

    async fn shut_down_once(&self) -> Result<(), String> {
        self.closed.store(true, Ordering::Release);
        // The clock starts now, out of band: writes in flight are cut at the deadline even
        // while the queue is full and the writer cannot receive the shutdown message yet.
        self.shared.start_shutdown_clock();
        // 1. The overflow of a full queue goes to the spill file, and its writer stops.
        let (ack, acked) = oneshot::channel();
        if self.spill_tx.send(SpillMsg::Close(ack)).await.is_ok() {
            let _ = acked.await;
        }
        let thread = self
            .spill_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // 2. The writer writes what is queued within the bound, spills the rest, replays
        //    while time is left, and stops.
        let (reply, done) = oneshot::channel();
        let result = if self.tx.send(Msg::Shutdown(reply)).await.is_ok() {
            done.await
                .unwrap_or_else(|_| writer::spill_left(&self.shared, None))
        } else {
            writer::spill_left(&self.shared, None)
        };
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // 3. Nothing touches the spill file any more: another sink may take it over.
        self.shared.spill.release_lock();
        result
    }

    /// The full counters.
    pub fn dynamodb_health(&self) -> DynamoDbHealth {
        let c = &self.shared.counters;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        DynamoDbHealth {
            accepted: load(&c.accepted),
            queued: load(&c.in_memory),
            spill_queued: load(&c.overflow),
            written: load(&c.written),
            duplicates: load(&c.duplicates),
            retried: load(&c.retried),
            spilled: load(&c.spilled),
            replayed: load(&c.replayed),
            spill_pending: self.shared.spill.pending(),
            spill_corrupt: self.shared.spill.corrupt(),
            rejected: load(&c.rejected),
            write_requests: load(&c.requests),
            store_failing: c.store_failing.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            last_error: c.last_error(),
        }
    }

    /// Why the ledger is not fully healthy, or `None`.
    fn degraded(&self, h: &DynamoDbHealth) -> Option<String> {
        let mut reasons = Vec::new();
        if h.closed {
            reasons.push("shut down: records are refused".to_owned());
        }
        if h.store_failing {
            reasons.push(format!(
                "DynamoDB unreachable or refusing writes: the last write failed ({})",
                h.last_error.as_deref().unwrap_or("no detail")
            ));
        }
        if h.spill_pending > 0 || h.spill_queued > 0 {
            reasons.push(format!(
                "{} records spilled to {} wait for replay",
                h.spill_pending + h.spill_queued,
                self.shared.spill.path().display()
            ));
        }
        let high_water = self.shared.config.queue_high_water();
        if h.queued > high_water {
            reasons.push(format!(
                "queue backlog of {} records is above its high-water mark of {high_water} (capacity {})",
                h.queued, self.shared.config.queue_capacity
            ));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// A full queue: hand the record to the background spill writer.
    fn overflow(&self, record: UsageRecord) -> Result<(), UsageError> {
        let c = &self.shared.counters;
        c.overflow.fetch_add(1, Ordering::Relaxed);
        match self.spill_tx.try_send(SpillMsg::Record(record)) {
            Ok(()) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                self.shared.publish_depth();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(SpillMsg::Record(record))) => {
                c.overflow.fetch_sub(1, Ordering::Relaxed);
                c.rejected.fetch_add(1, Ordering::Relaxed);
                Err(UsageError::Overloaded(format!(
                    "usage queue ({}) and spill queue ({}) are both full; refused {}",
                    self.shared.config.queue_capacity,
                    self.shared.config.spill_queue_capacity,
                    record.idempotency_key()
                )))
            }
            Err(_) => {
                c.overflow.fetch_sub(1, Ordering::Relaxed);
                Err(UsageError::Closed)
            }
        }
    }
}

impl DynamoDbUsageSinkBuilder {
    /// Builds the client (standard credential chain unless
    /// [`credentials`](Self::credentials) was set; the SDK's own retries off) and starts
    /// the sink. Does not create the table.
    pub async fn build(self) -> Result<DynamoDbUsageSink, DynamoDbError> {
        let client = self.build_client().await?;
        DynamoDbUsageSink::from_client(client, self.config)
    }

    /// Only the client, configured as [`build`](Self::build) does.
    pub async fn build_client(&self) -> Result<Client, DynamoDbError> {
        self.config.validate()?;
        let config = &self.config;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(credentials) = &self.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        let sdk = loader.load().await;
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_millis(config.attempt_timeout_ms))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint_url {
            builder = builder.endpoint_url(endpoint);
            if sdk.region().is_none() {
                builder = builder.region(Region::new("us-east-1"));
            }
        }
        Ok(Client::from_conf(builder.build()))
    }
}

impl fmt::Debug for DynamoDbUsageSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbUsageSink")
            .field("config", &self.shared.config)
            .field("health", &self.dynamodb_health())
            .finish()
    }
}

#[async_trait::async_trait]
impl UsageSink for DynamoDbUsageSink {
    fn name(&self) -> &str {
        BACKEND
    }

    /// Enqueues without blocking and without I/O. When the queue is full the record goes
    /// to the background spill writer's queue (which appends to the spill file in
    /// batches, off this thread); only when that is full too is it refused with
    /// [`UsageError::Overloaded`]. After `shutdown`: [`UsageError::Closed`].
    fn record(&self, record: UsageRecord) -> Result<(), UsageError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(UsageError::Closed);
        }
        let c = &self.shared.counters;
        c.in_memory.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                // A handle call (no allocation, no lookup): see `Shared::publish_depth`.
                self.shared.publish_depth();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(Msg::Record(record))) => {
                c.in_memory.fetch_sub(1, Ordering::Relaxed);
                self.overflow(record)
            }
            Err(_) => {
                // The writer has stopped: only shutdown does that.
                c.in_memory.fetch_sub(1, Ordering::Relaxed);
                Err(UsageError::Closed)
            }
        }
    }

    /// Waits until every record accepted before the call is in DynamoDB (the spill file
    /// replayed too). `Err` if records remain in the spill file: they are durable there and
    /// replayed when DynamoDB accepts them.
    async fn flush(&self) -> Result<(), UsageError> {
        if self.closed.load(Ordering::Acquire) {
            return writer::spill_left(&self.shared, None).map_err(UsageError::Store);
        }
        // The overflow first: once on disk, the writer's replay takes it to DynamoDB.
        let (ack, acked) = oneshot::channel();
        if self.spill_tx.send(SpillMsg::Sync(ack)).await.is_ok() {
            let _ = acked.await;
        }
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_err() {
            // The writer is gone (shut down): only the spill file can hold anything.
            return writer::spill_left(&self.shared, None).map_err(UsageError::Store);
        }
        done.await
            .unwrap_or_else(|_| writer::spill_left(&self.shared, None))
            .map_err(UsageError::Store)
    }

    /// Statistics of what is **stored** in DynamoDB. Read-your-writes without a flush:
    /// it first waits (at most `spill_after_ms`) until the records accepted before the call
    /// have been written or spilled, but it never replays the spill file and never fails
    /// because records are spilled. Records waiting in the spill file are **not counted**
    /// until replayed; [`SinkHealth::queued`] and [`SinkHealth::degraded`] say how many
    /// there are. Call [`UsageSink::flush`] first for a count that includes them (it fails
    /// while DynamoDB cannot take them).
    ///
    /// Tenant queries without an agent are served from the daily aggregates (plus the raw
    /// records of partial days at the edges of the range); everything else from the raw
    /// records.
    async fn stats(&self, query: &UsageQuery) -> Result<UsageStats, UsageError> {
        self.read_barrier().await;
        Ok(reader::stats(
            &self.shared.store,
            query,
            self.shared.config.consistent_reads,
        )
        .await?)
    }

    /// `queued` = in memory + waiting for the spill writer + in the spill file;
    /// `degraded` names every reason the ledger is not fully healthy: DynamoDB unreachable
    /// (the last write failed), records spilled and waiting for replay, the queue above
    /// 80 % of its capacity, or the sink shut down.
    fn health(&self) -> SinkHealth {
        let h = self.dynamodb_health();
        SinkHealth {
            backend: BACKEND.to_owned(),
            accepted: h.accepted,
            written: h.written,
            queued: h.queued + h.spill_queued + h.spill_pending,
            rejected: h.rejected,
            degraded: self.degraded(&h),
            last_error: h.last_error,
        }
    }

    /// Stops accepting (`record` fails with [`UsageError::Closed`] from the first moment),
    /// writes what is queued to DynamoDB within `shutdown_timeout_ms`, spills what is left
    /// (fsync'd), replays the spill file while time is left, stops the writer and releases
    /// the spill file's lock. Returns once nothing accepted can be lost: `Ok` when
    /// everything is in DynamoDB, `Err` naming the spill file when records wait there (a
    /// new sink on the same path replays them). Idempotent: later (or concurrent) calls
    /// wait for the first and return its result.
    async fn shutdown(&self) -> Result<(), UsageError> {
        self.shutdown
            .get_or_init(|| self.shut_down_once())
            .await
            .clone()
            .map_err(UsageError::Store)
    }
}

impl Drop for DynamoDbUsageSink {
    fn drop(&mut self) {
        // Dropping the senders (with `self`) lets the writer drain the queue, write or spill
        // it within the shutdown bound and stop on its own while the runtime lives; the
        // spill writer thread does the same with its queue.
        let c = &self.shared.counters;
        let pending = c.in_memory.load(Ordering::Relaxed) + c.overflow.load(Ordering::Relaxed);
        if pending > 0 && self.shutdown.get().is_none() {
            tracing::warn!(
                pending,
                "DynamoDbUsageSink dropped with queued records; call shutdown() to wait for them"
            );
        }
    }
}
