//! The background writer: batches queued records, retries with backoff and jitter, spills
//! what DynamoDB will not take within the bound, and replays the spill file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use failover_usage::UsageRecord;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until};

use crate::config::DynamoDbConfig;
use crate::error::DynamoDbError;
use crate::spill::Spill;
use crate::store::{Store, dedup};

/// What `record`, `flush` and shutdown send to the writer, in one FIFO queue: a flush
/// marker is received after every record sent before it.
#[derive(Debug)]
// Records are the hot, common variant: boxing them would add an allocation per `record`
// call to save a few bytes on the rare control messages.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Record(UsageRecord),
    Flush(oneshot::Sender<Result<(), String>>),
    Shutdown(oneshot::Sender<Result<(), String>>),
}

/// The sink's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    /// Records in the queue or in a write in flight.
    pub(crate) in_memory: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) spilled: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Counters {
    pub(crate) fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, error: &dyn std::fmt::Display) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the writer task and the sink share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) spill: Arc<Spill>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) config: DynamoDbConfig,
    /// `max_in_flight` permits, taken by every write — batches and spill replays alike —
    /// so the bound holds for all requests together. It matters for emulators: moto
    /// snapshots the whole table when a transaction starts and restores the snapshot when
    /// it is cancelled (a replay's duplicates cancel it), wiping items a concurrent
    /// transaction committed meanwhile. A loaded CI run lost 5 of 600 items that way while
    /// replays ran beside batches; the tests use one write in flight.
    pub(crate) write_permits: tokio::sync::Semaphore,
}

impl Shared {
    /// Appends to the spill file off the async threads.
    async fn spill(&self, records: Vec<UsageRecord>) -> Result<(), DynamoDbError> {
        let spill = self.spill.clone();
        let n = records.len() as u64;
        tokio::task::spawn_blocking(move || spill.append(&records))
            .await
            .map_err(|e| DynamoDbError::Config(format!("spill task failed: {e}")))??;
        self.counters.spilled.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes `records` with retries until done, a permanent error, or `spill_after` has
/// passed; returns what is left undone with the error.
async fn write_with_retry(
    shared: &Shared,
    records: Vec<UsageRecord>,
) -> Result<(), (DynamoDbError, Vec<UsageRecord>)> {
    let mut pending = records;
    let duplicates = dedup(&mut pending);
    shared.counters.add_duplicates(duplicates as u64);
    let deadline = Instant::now() + shared.config.spill_after();
    let mut attempt = 0u32;
    loop {
        let written = {
            let _permit = shared
                .write_permits
                .acquire()
                .await
                .expect("the write semaphore is never closed");
            shared.store.write(&mut pending).await
        };
        match written {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, left = pending.len(), "usage write failed");
                shared.counters.set_error(&error);
                let now = Instant::now();
                if !error.is_retryable() || now >= deadline {
                    return Err((error, pending));
                }
                attempt += 1;
                shared.counters.retried.fetch_add(1, Ordering::Relaxed);
                let delay = shared.config.backoff(attempt);
                sleep_until((now + delay).min(deadline)).await;
            }
        }
    }
}

/// Writes one batch; what DynamoDB does not take within the bound goes to the spill
/// file. If even the spill file fails, the records stay in memory and the cycle repeats:
/// they are never dropped.
async fn write_or_spill(shared: Arc<Shared>, records: Vec<UsageRecord>) {
    let n = records.len() as u64;
    let mut records = records;
    loop {
        match write_with_retry(&shared, records).await {
            Ok(()) => break,
            Err((error, left)) => {
                tracing::error!(%error, records = left.len(), path = %shared.spill.path().display(), "DynamoDB did not take usage records; spilling them");
                match shared.spill(left.clone()).await {
                    Ok(()) => break,
                    Err(spill_error) => {
                        tracing::error!(error = %spill_error, "usage spill failed; keeping the records in memory");
                        shared.counters.set_error(&spill_error);
                        records = left;
                        sleep(shared.config.backoff(u32::MAX)).await;
                    }
                }
            }
        }
    }
    shared.counters.in_memory.fetch_sub(n, Ordering::Relaxed);
}

/// Replays the spill file until it is empty or a write fails.
pub(crate) async fn replay_spill(shared: &Shared) -> Result<(), DynamoDbError> {
    // A few rounds: records spilled while replaying are picked up by the next round.
    for _ in 0..4 {
        let spill = shared.spill.clone();
        let taken = tokio::task::spawn_blocking(move || spill.take_for_replay())
            .await
            .map_err(|e| DynamoDbError::Config(format!("replay task failed: {e}")))??;
        let Some(records) = taken else {
            return Ok(());
        };
        let n = records.len();
        if let Err((error, left)) = write_with_retry(shared, records).await {
            tracing::warn!(%error, records = n, left = left.len(), "usage spill replay failed; will retry");
            // Keep the progress: the next replay resumes with what is left.
            let stored = n.saturating_sub(left.len());
            let spill = shared.spill.clone();
            tokio::task::spawn_blocking(move || spill.keep_for_replay(&left, n))
                .await
                .map_err(|e| DynamoDbError::Config(format!("replay task failed: {e}")))??;
            shared
                .counters
                .replayed
                .fetch_add(stored as u64, Ordering::Relaxed);
            return Err(error);
        }
        let spill = shared.spill.clone();
        tokio::task::spawn_blocking(move || spill.finish_replay(n))
            .await
            .map_err(|e| DynamoDbError::Config(format!("replay task failed: {e}")))??;
        shared
            .counters
            .replayed
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(records = n, "usage spill replayed");
    }
    Ok(())
}

async fn dispatch(shared: &Arc<Shared>, batch: &mut Vec<UsageRecord>, inflight: &mut JoinSet<()>) {
    if batch.is_empty() {
        return;
    }
    while inflight.len() >= shared.config.max_in_flight {
        let _ = inflight.join_next().await;
    }
    let records = std::mem::replace(batch, Vec::with_capacity(shared.config.batch_size));
    inflight.spawn(write_or_spill(shared.clone(), records));
}

/// Writes everything received so far and replays the spill file; `Ok` when nothing is
/// left outside DynamoDB.
async fn drain(
    shared: &Arc<Shared>,
    batch: &mut Vec<UsageRecord>,
    inflight: &mut JoinSet<()>,
    replay: &mut Option<JoinHandle<()>>,
) -> Result<(), String> {
    dispatch(shared, batch, inflight).await;
    while inflight.join_next().await.is_some() {}
    if let Some(handle) = replay.take() {
        let _ = handle.await;
    }
    let replayed = replay_spill(shared).await;
    let left = shared.spill.pending();
    if left == 0 {
        return Ok(());
    }
    let why = match replayed {
        Err(error) => error.to_string(),
        Ok(()) => shared
            .counters
            .last_error()
            .unwrap_or_else(|| "spill file not yet replayed".into()),
    };
    Err(format!(
        "{left} usage records are held in the spill file {} and will be replayed when DynamoDB accepts them: {why}",
        shared.spill.path().display()
    ))
}

/// The writer task.
pub(crate) async fn run(mut rx: mpsc::Receiver<Msg>, shared: Arc<Shared>) {
    let batch_size = shared.config.batch_size;
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(batch_size);
    let mut deadline = Instant::now();
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut replay: Option<JoinHandle<()>> = None;
    // The first tick is immediate: a spill an earlier run left is replayed at start.
    let mut tick = tokio::time::interval(shared.config.replay_interval());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "usage write task panicked");
                }
            }
            msg = rx.recv() => match msg {
                Some(Msg::Record(record)) => {
                    if batch.is_empty() {
                        deadline = Instant::now() + shared.config.linger();
                    }
                    batch.push(record);
                    if batch.len() >= batch_size {
                        dispatch(&shared, &mut batch, &mut inflight).await;
                    }
                }
                Some(Msg::Flush(reply)) => {
                    let result = drain(&shared, &mut batch, &mut inflight, &mut replay).await;
                    let _ = reply.send(result);
                }
                Some(Msg::Shutdown(reply)) => {
                    let result = drain(&shared, &mut batch, &mut inflight, &mut replay).await;
                    let _ = reply.send(result);
                    break;
                }
                None => {
                    let _ = drain(&shared, &mut batch, &mut inflight, &mut replay).await;
                    break;
                }
            },
            () = sleep_until(deadline), if !batch.is_empty() => {
                dispatch(&shared, &mut batch, &mut inflight).await;
            }
            _ = tick.tick() => {
                if shared.spill.pending() > 0 && replay.as_ref().is_none_or(JoinHandle::is_finished) {
                    let shared = shared.clone();
                    replay = Some(tokio::spawn(async move {
                        let _ = replay_spill(&shared).await;
                    }));
                }
            }
        }
    }
}
