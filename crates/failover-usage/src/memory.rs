//! The in-process usage sink: records in bounded, chunked storage behind a short mutex.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{SinkHealth, UsageError, UsageQuery, UsageRecord, UsageSink, UsageStats};

/// An in-process [`UsageSink`] for tests, demos and single-process deployments that do not
/// need usage to outlive the process.
///
/// - `record` stores immediately (nothing is queued, so `flush` returns at once) under a
///   short `std::sync::Mutex` critical section: one hash-set probe and one push.
/// - Recording the same record (same `call_id`) again is accepted and ignored.
/// - Bounded: once `capacity` distinct records are held, `record` returns
///   [`UsageError::Overloaded`] (counted in `rejected`) rather than dropping anything.
/// - `stats` aggregates under the lock (O(records)); recording waits meanwhile, which is
///   fine for the sizes this sink is meant for.
/// - Health: `accepted` counts every `Ok` of `record` (duplicates included), `written` the
///   distinct records held, `queued` is always 0; `degraded` says when the sink is full
///   (refusing new records) or shut down.
/// - `shutdown` has nothing to write: it only makes later `record` calls fail with
///   [`UsageError::Closed`]; the records held stay readable.
pub struct MemoryUsageSink {
    state: Mutex<State>,
    capacity: usize,
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Records in fixed-size chunks, so growing never copies the records already held
    /// while the lock is taken (a plain `Vec` would move every record on reallocation).
    chunks: Vec<Vec<UsageRecord>>,
    len: usize,
    seen: HashSet<String>,
    accepted: u64,
    rejected: u64,
}

const CHUNK: usize = 4_096;

impl State {
    fn push(&mut self, record: UsageRecord) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(record),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(record);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &UsageRecord> {
        self.chunks.iter().flatten()
    }
}

impl MemoryUsageSink {
    /// The default bound: 1 000 000 records.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// A sink holding up to [`MemoryUsageSink::DEFAULT_CAPACITY`] records.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A sink holding up to `capacity` distinct records.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity,
            closed: AtomicBool::new(false),
        }
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Distinct records held.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every record held, in the order first recorded.
    pub fn records(&self) -> Vec<UsageRecord> {
        self.lock().iter().cloned().collect()
    }

    /// Aggregates the records matching `query` (what [`UsageSink::stats`] returns).
    pub fn stats_now(&self, query: &UsageQuery) -> UsageStats {
        UsageStats::from_records(self.lock().iter(), query)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` inconsistent beyond one
        // record, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryUsageSink {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryUsageSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryUsageSink")
            .field("records", &state.len)
            .field("capacity", &self.capacity)
            .field("accepted", &state.accepted)
            .field("rejected", &state.rejected)
            .finish()
    }
}

#[async_trait::async_trait]
impl UsageSink for MemoryUsageSink {
    fn name(&self) -> &str {
        "memory"
    }

    fn record(&self, record: UsageRecord) -> Result<(), UsageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(UsageError::Closed);
        }
        let mut state = self.lock();
        if state.seen.contains(record.idempotency_key()) {
            state.accepted += 1;
            return Ok(());
        }
        if state.len >= self.capacity {
            state.rejected += 1;
            return Err(UsageError::Overloaded(format!(
                "memory usage sink holds its capacity of {} records; refused {}",
                self.capacity,
                record.idempotency_key()
            )));
        }
        state.seen.insert(record.call_id.clone());
        state.push(record);
        state.accepted += 1;
        Ok(())
    }

    async fn flush(&self) -> Result<(), UsageError> {
        Ok(())
    }

    async fn stats(&self, query: &UsageQuery) -> Result<UsageStats, UsageError> {
        Ok(self.stats_now(query))
    }

    async fn shutdown(&self) -> Result<(), UsageError> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }

    fn health(&self) -> SinkHealth {
        let state = self.lock();
        let degraded = if self.closed.load(Ordering::Acquire) {
            Some("shut down: records are refused".to_owned())
        } else if state.len >= self.capacity {
            Some(format!(
                "full: holds its capacity of {} records and refuses new ones",
                self.capacity
            ))
        } else {
            None
        };
        SinkHealth {
            backend: "memory".to_owned(),
            accepted: state.accepted,
            written: state.len as u64,
            queued: 0,
            rejected: state.rejected,
            last_error: None,
            degraded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UsageOutcome;
    use failover_provider::RequestId;
    use failover_provider::{TokenUsage, Usd};
    use rust_decimal::Decimal;

    fn record(id: &str, attempt: u32) -> UsageRecord {
        UsageRecord {
            request_id: RequestId::new(id),
            call_id: format!("{id}#{attempt}"),
            attempt,
            tenant_id: "t".into(),
            agent_id: "a".into(),
            timestamp_unix_ms: 1,
            provider: "bedrock".into(),
            model: "m".into(),
            logical_model: "gpt-4".into(),
            usage: TokenUsage::new(3, 4),
            usage_estimated: false,
            cost: Usd::new(Decimal::new(1, 2)),
            latency_ms: 1,
            outcome: UsageOutcome::Success,
            cached: false,
            fallback_used: false,
            streamed: false,
        }
    }

    #[tokio::test]
    async fn duplicates_count_once() {
        let sink = MemoryUsageSink::new();
        sink.record(record("r", 1)).unwrap();
        sink.record(record("r", 1)).unwrap();
        sink.record(record("r", 2)).unwrap();
        assert_eq!(sink.len(), 2);
        let stats = sink.stats(&UsageQuery::all()).await.unwrap();
        assert_eq!(stats.records, 2);
        assert_eq!(stats.cost, Usd::new(Decimal::new(2, 2)));
        let health = sink.health();
        assert_eq!(
            (health.accepted, health.written, health.rejected),
            (3, 2, 0)
        );
    }

    #[tokio::test]
    async fn full_sink_refuses_with_overloaded_and_never_drops() {
        let sink = MemoryUsageSink::with_capacity(2);
        sink.record(record("a", 1)).unwrap();
        sink.record(record("b", 1)).unwrap();
        let error = sink.record(record("c", 1)).unwrap_err();
        assert!(matches!(error, UsageError::Overloaded(_)), "{error}");
        assert!(error.to_string().contains("c#1"), "{error}");
        // A duplicate of a held record is still fine when full.
        sink.record(record("a", 1)).unwrap();
        assert_eq!(sink.health().rejected, 1);
        let held: Vec<_> = sink.records().into_iter().map(|r| r.call_id).collect();
        assert_eq!(held, ["a#1", "b#1"]);
        sink.flush().await.unwrap();
        assert!(format!("{sink:?}").contains("rejected: 1"));
        let degraded = sink.health().degraded.expect("full");
        assert!(degraded.contains("capacity of 2"), "{degraded}");
    }

    #[tokio::test]
    async fn shutdown_refuses_later_records_and_keeps_the_held_ones() {
        let sink = MemoryUsageSink::new();
        sink.record(record("a", 1)).unwrap();
        assert_eq!(sink.health().degraded, None);
        sink.shutdown().await.unwrap();
        sink.shutdown().await.unwrap();
        assert!(matches!(
            sink.record(record("b", 1)),
            Err(UsageError::Closed)
        ));
        assert_eq!(sink.stats(&UsageQuery::all()).await.unwrap().records, 1);
        assert!(sink.health().degraded.unwrap().contains("shut down"));
    }

    #[test]
    fn concurrent_records_are_all_kept() {
        let sink = std::sync::Arc::new(MemoryUsageSink::new());
        let handles: Vec<_> = (0..4)
            .map(|thread| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        sink.record(record(&format!("{thread}-{i}"), 1)).unwrap();
                        sink.record(record(&format!("{thread}-{i}"), 1)).unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(sink.len(), 2_000);
        assert_eq!(sink.health().accepted, 4_000);
    }

    #[test]
    fn records_span_chunks_in_order() {
        let sink = MemoryUsageSink::with_capacity(CHUNK * 2 + 1);
        for i in 0..=CHUNK * 2 {
            sink.record(record(&i.to_string(), 1)).unwrap();
        }
        assert!(sink.record(record("one too many", 1)).is_err());
        let held = sink.records();
        assert_eq!(held.len(), CHUNK * 2 + 1);
        assert!(
            held.iter()
                .enumerate()
                .all(|(i, r)| r.request_id.as_str() == i.to_string())
        );
        assert_eq!(
            sink.stats_now(&UsageQuery::all()).records,
            CHUNK as u64 * 2 + 1
        );
    }

    #[test]
    fn a_reused_request_id_is_a_new_call_when_its_call_id_differs() {
        let sink = MemoryUsageSink::new();
        let first = record("req-1", 1);
        let retry = UsageRecord {
            call_id: "another call".into(),
            ..first.clone()
        };
        sink.record(first).unwrap();
        sink.record(retry).unwrap();
        assert_eq!(sink.len(), 2);
    }
}
