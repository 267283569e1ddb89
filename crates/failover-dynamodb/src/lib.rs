#![doc = include_str!("../README.md")]

mod config;
mod error;
mod item;
mod reader;
mod spill;
mod store;
mod table;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
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
use crate::writer::{Counters, Msg, Shared};

/// The backend name in [`SinkHealth::backend`].
pub const BACKEND: &str = "dynamodb";

/// A [`UsageSink`] on a DynamoDB table: `record` enqueues, a background task writes
/// batches idempotently, a durable local file holds what DynamoDB will not take.
///
/// Create it inside a Tokio runtime (it spawns its writer). Call
/// [`DynamoDbUsageSink::shutdown`] (or at least [`UsageSink::flush`]) before the process
/// exits: records still in the in-memory queue are not on disk yet.
pub struct DynamoDbUsageSink {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The sink's own counters, beyond [`SinkHealth`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DynamoDbHealth {
    /// Records accepted by `record` (queued or spilled).
    pub accepted: u64,
    /// Records in the in-memory queue or in a write in flight.
    pub queued: u64,
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
    /// Records refused by `record` (queue full and the spill file failing too).
    pub rejected: u64,
    /// Write requests sent (`TransactWriteItems` or `BatchWriteItem`).
    pub write_requests: u64,
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
        let counters = Arc::new(Counters::default());
        let spill = Arc::new(Spill::open(config.spill_path())?);
        let shared = Arc::new(Shared {
            store: Store::new(client, &config, counters.clone()),
            spill,
            counters,
            write_permits: tokio::sync::Semaphore::new(config.max_in_flight),
            config,
        });
        let (tx, rx) = mpsc::channel(shared.config.queue_capacity);
        let task = tokio::spawn(writer::run(rx, shared.clone()));
        Ok(Self {
            tx,
            shared,
            task: Mutex::new(Some(task)),
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

    /// The raw records matching `query` (after a flush of what was recorded before).
    pub async fn records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, UsageError> {
        self.flush().await?;
        Ok(reader::records(
            &self.shared.store,
            query,
            self.shared.config.consistent_reads,
        )
        .await?)
    }

    /// Statistics from the raw records only, never the aggregates: the reconciliation
    /// check of the aggregates, and what `stats` serves when they cannot answer.
    pub async fn stats_from_records(&self, query: &UsageQuery) -> Result<UsageStats, UsageError> {
        self.flush().await?;
        Ok(reader::stats_from_records(
            &self.shared.store,
            query,
            self.shared.config.consistent_reads,
        )
        .await?)
    }

    /// Writes everything, replays the spill file, and stops the writer. `Err` when records
    /// remain in the spill file (they are safe there and replayed by the next sink on the
    /// same file). Records recorded afterwards go to the spill file.
    pub async fn shutdown(&self) -> Result<(), UsageError> {
        let (reply, done) = oneshot::channel();
        let result = if self.tx.send(Msg::Shutdown(reply)).await.is_ok() {
            done.await.unwrap_or(Err("usage writer stopped".into()))
        } else {
            Ok(())
        };
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        result.map_err(UsageError::Store)
    }

    /// The full counters.
    pub fn dynamodb_health(&self) -> DynamoDbHealth {
        let c = &self.shared.counters;
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        DynamoDbHealth {
            accepted: load(&c.accepted),
            queued: load(&c.in_memory),
            written: load(&c.written),
            duplicates: load(&c.duplicates),
            retried: load(&c.retried),
            spilled: load(&c.spilled),
            replayed: load(&c.replayed),
            spill_pending: self.shared.spill.pending(),
            spill_corrupt: self.shared.spill.corrupt(),
            rejected: load(&c.rejected),
            write_requests: load(&c.requests),
            last_error: c.last_error(),
        }
    }

    fn spill_now(&self, record: UsageRecord, why: &str) -> Result<(), UsageError> {
        let c = &self.shared.counters;
        match self.shared.spill.append(std::slice::from_ref(&record)) {
            Ok(()) => {
                c.spilled.fetch_add(1, Ordering::Relaxed);
                c.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                c.set_error(&error);
                Err(UsageError::Overloaded(format!(
                    "usage queue {why} and the spill file failed ({error}); refused {}",
                    record.idempotency_key()
                )))
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

    /// Enqueues without blocking. When the queue is full (or the writer has stopped) the
    /// record is appended to the spill file at once — a synchronous, fsync'd write on the
    /// caller's thread, the price of never dropping it; only if that fails too is it
    /// refused with [`UsageError::Overloaded`].
    fn record(&self, record: UsageRecord) -> Result<(), UsageError> {
        let c = &self.shared.counters;
        c.in_memory.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => {
                c.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(Msg::Record(record))) => {
                c.in_memory.fetch_sub(1, Ordering::Relaxed);
                self.spill_now(record, "is full")
            }
            Err(mpsc::error::TrySendError::Closed(Msg::Record(record))) => {
                c.in_memory.fetch_sub(1, Ordering::Relaxed);
                self.spill_now(record, "is closed")
            }
            Err(_) => unreachable!("only records are sent by record()"),
        }
    }

    /// Waits until every record accepted before the call is in DynamoDB (the spill file
    /// replayed too). `Err` if records remain in the spill file: they are durable there and
    /// replayed when DynamoDB accepts them.
    async fn flush(&self) -> Result<(), UsageError> {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_err() {
            // The writer is gone (shut down): only the spill file can hold anything.
            let pending = self.shared.spill.pending();
            return if pending == 0 {
                Ok(())
            } else {
                Err(UsageError::Store(format!(
                    "the sink is shut down with {pending} records in the spill file {}",
                    self.shared.spill.path().display()
                )))
            };
        }
        done.await
            .unwrap_or(Err("usage writer stopped".into()))
            .map_err(UsageError::Store)
    }

    /// Flushes, then aggregates: tenant queries without an agent are served from the
    /// daily aggregates (plus the raw records of partial days at the edges of the
    /// range); everything else from the raw records.
    async fn stats(&self, query: &UsageQuery) -> Result<UsageStats, UsageError> {
        self.flush().await?;
        Ok(reader::stats(
            &self.shared.store,
            query,
            self.shared.config.consistent_reads,
        )
        .await?)
    }

    fn health(&self) -> SinkHealth {
        let h = self.dynamodb_health();
        SinkHealth {
            backend: BACKEND.to_owned(),
            accepted: h.accepted,
            written: h.written,
            queued: h.queued + h.spill_pending,
            rejected: h.rejected,
            last_error: h.last_error,
            degraded: None,
        }
    }
}

impl Drop for DynamoDbUsageSink {
    fn drop(&mut self) {
        // Dropping the sender (with `self`) lets the writer drain the queue and stop on its
        // own while the runtime lives.
        let pending = self.shared.counters.in_memory.load(Ordering::Relaxed);
        if pending > 0 {
            tracing::warn!(
                pending,
                "DynamoDbUsageSink dropped with queued records; call shutdown() to wait for them"
            );
        }
    }
}
