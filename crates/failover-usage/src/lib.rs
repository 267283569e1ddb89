#![doc = include_str!("../README.md")]

mod memory;
mod pricing;
mod record;
mod stats;

pub use memory::MemoryUsageSink;
pub use pricing::{ModelPrice, PricingError, PricingTable};
pub use record::{UsageOutcome, UsageRecord};
pub use stats::{UsageBucket, UsageQuery, UsageStats};

use std::fmt::Debug;

use serde::Serialize;

/// Why a usage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The sink's queue is full and it could not keep the record durably.
    #[error("usage sink is full: {0}")]
    Overloaded(String),
    /// The sink is shut down.
    #[error("usage sink is closed")]
    Closed,
    /// The backing store failed.
    #[error("usage store failed: {0}")]
    Store(String),
}

/// Counters and status of a usage sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkHealth {
    /// The backend's name (`"memory"`, `"dynamodb"`).
    pub backend: String,
    /// Records accepted by `record`.
    pub accepted: u64,
    /// Records durably written.
    pub written: u64,
    /// Records waiting to be written.
    pub queued: u64,
    /// Records refused (never silently dropped: every refusal is an error to the caller).
    pub rejected: u64,
    /// The last store error, if any.
    pub last_error: Option<String>,
    /// Why the ledger is not fully healthy (the store unreachable, records spilled and
    /// waiting, a growing backlog); `None` when it is.
    pub degraded: Option<String>,
}

/// Where usage records go.
///
/// # Contract
/// - `record` never blocks on I/O: it accepts the record (queued or stored) or returns an
///   error; a record it accepted is never lost, and recording the same
///   (request id, attempt) twice counts it once.
/// - `flush` returns once every record accepted before the call is durably stored.
/// - `stats` aggregates the stored records matching the query.
#[async_trait::async_trait]
pub trait UsageSink: Send + Sync + Debug {
    /// A short name of the backend.
    fn name(&self) -> &str;

    /// Accepts one record without blocking.
    fn record(&self, record: UsageRecord) -> Result<(), UsageError>;

    /// Waits until every accepted record is stored.
    async fn flush(&self) -> Result<(), UsageError>;

    /// Aggregates stored records.
    async fn stats(&self, query: &UsageQuery) -> Result<UsageStats, UsageError>;

    /// Counters and status.
    fn health(&self) -> SinkHealth;

    /// Stops accepting records and keeps every one already accepted: flushes what the
    /// store takes, keeps the rest durably (a spill) for the next start, and returns once
    /// nothing accepted can be lost at exit. `record` fails with [`UsageError::Closed`]
    /// afterwards.
    async fn shutdown(&self) -> Result<(), UsageError> {
        self.flush().await
    }
}
