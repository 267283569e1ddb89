//! The background writer: batches queued records, retries with backoff and jitter, spills
//! what DynamoDB will not take within the bound, and replays the spill file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use failover_usage::UsageRecord;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until};

use crate::config::DynamoDbConfig;
use crate::error::DynamoDbError;
use crate::spill::Spill;
use crate::store::{Store, dedup};
use crate::telemetry::SinkMetrics;

/// What `record`, `flush`, `stats` and shutdown send to the writer, in one FIFO queue: a
/// marker is received after every record sent before it.
#[derive(Debug)]
// Records are the hot, common variant: boxing them would add an allocation per `record`
// call to save a few bytes on the rare control messages.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Record(UsageRecord),
    /// Everything before is in DynamoDB, the spill file replayed too (or an error saying
    /// what is left in the spill file).
    Flush(oneshot::Sender<Result<(), String>>),
    /// `stats`' read barrier: every record before is written or spilled; no replay, and
    /// no error for what is spilled.
    Barrier(oneshot::Sender<()>),
    /// Stop: write what is queued until the shutdown deadline, spill the rest, stop.
    Shutdown(oneshot::Sender<Result<(), String>>),
}

/// What `record` (the overflow of a full queue), `flush` and shutdown send to the
/// background spill writer.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // as for `Msg`
pub(crate) enum SpillMsg {
    Record(UsageRecord),
    /// Every record sent before is on disk.
    Sync(oneshot::Sender<()>),
    /// Write every record sent before, then stop.
    Close(oneshot::Sender<()>),
}

/// The sink's counters, and its metric handles: each metric is updated beside the counter it
/// mirrors, so the exported numbers and [`DynamoDbHealth`](crate::DynamoDbHealth) agree.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    /// Records in the queue or in a write in flight.
    pub(crate) in_memory: AtomicU64,
    /// Records handed to the background spill writer, not yet on disk.
    pub(crate) overflow: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) spilled: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) requests: AtomicU64,
    /// Whether the last write request to DynamoDB failed (cleared by the next success).
    pub(crate) store_failing: AtomicBool,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) metrics: SinkMetrics,
}

impl Counters {
    pub(crate) fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
        self.metrics.written(n);
    }

    pub(crate) fn add_spilled(&self, n: u64) {
        self.spilled.fetch_add(n, Ordering::Relaxed);
        self.metrics.spilled(n);
    }

    pub(crate) fn add_replayed(&self, n: u64) {
        self.replayed.fetch_add(n, Ordering::Relaxed);
        self.metrics.replayed(n);
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
    /// Set by shutdown: every write still running is cut at this instant (and its records
    /// spilled), so shutdown returns within its bound.
    pub(crate) shutdown_deadline: watch::Sender<Option<Instant>>,
}

impl Shared {
    /// Returns once the shutdown deadline has passed (never, until shutdown sets one).
    async fn shutdown_cut(&self) {
        let mut deadline = self.shutdown_deadline.subscribe();
        loop {
            let at = *deadline.borrow_and_update();
            if let Some(at) = at {
                sleep_until(at).await;
                return;
            }
            if deadline.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Sets the shutdown deadline (`shutdown_timeout_ms` from now) unless it is set.
    pub(crate) fn start_shutdown_clock(&self) {
        let at = Instant::now() + self.config.shutdown_timeout();
        self.shutdown_deadline.send_if_modified(|deadline| {
            if deadline.is_some() {
                return false;
            }
            *deadline = Some(at);
            true
        });
    }

    /// The earliest of `at` and the shutdown deadline.
    fn bounded(&self, at: Instant) -> Instant {
        match *self.shutdown_deadline.borrow() {
            Some(cut) => at.min(cut),
            None => at,
        }
    }

    /// Sets the queue-depth gauge to what [`SinkHealth::queued`] reports: records in memory,
    /// waiting for the spill writer, or in the spill file — accepted and not yet stored.
    /// Called after every change of those counts. The gauge is set, not incremented, so it
    /// is exact whenever the sink is quiet (an earlier run's spill file included); under
    /// concurrent updates a set computed from slightly older counts can land last, and the
    /// next change or the writer's periodic tick (`replay_interval_ms`) corrects it.
    ///
    /// [`SinkHealth::queued`]: failover_usage::SinkHealth::queued
    pub(crate) fn publish_depth(&self) {
        let c = &self.counters;
        let depth = c.in_memory.load(Ordering::Relaxed)
            + c.overflow.load(Ordering::Relaxed)
            + self.spill.pending();
        c.metrics.queue_depth.set(depth as f64);
    }

    /// Appends to the spill file off the async threads.
    async fn spill(&self, records: Vec<UsageRecord>) -> Result<(), DynamoDbError> {
        let spill = self.spill.clone();
        let n = records.len() as u64;
        tokio::task::spawn_blocking(move || spill.append(&records))
            .await
            .map_err(|e| DynamoDbError::Config(format!("spill task failed: {e}")))??;
        self.counters.add_spilled(n);
        Ok(())
    }
}

/// Writes `records` with retries until done, a permanent error, or `spill_after` (or the
/// shutdown deadline) has passed; returns what is left undone with the error.
async fn write_with_retry(
    shared: &Shared,
    records: Vec<UsageRecord>,
) -> Result<(), (DynamoDbError, Vec<UsageRecord>)> {
    let mut pending = records;
    let duplicates = dedup(&mut pending);
    shared.counters.add_duplicates(duplicates as u64);
    let spill_at = Instant::now() + shared.config.spill_after();
    let mut attempt = 0u32;
    loop {
        // Cancelling a write at the shutdown deadline is safe: `pending` only loses records
        // once DynamoDB has acknowledged them, and a write that was applied but not
        // acknowledged is found stored (or overwritten identically) on replay.
        let written = tokio::select! {
            written = async {
                let _permit = shared
                    .write_permits
                    .acquire()
                    .await
                    .expect("the write semaphore is never closed");
                shared.store.write(&mut pending).await
            } => written,
            () = shared.shutdown_cut() => Err(DynamoDbError::Sdk {
                operation: "shutdown",
                code: None,
                retryable: false,
                message: "the shutdown deadline passed before DynamoDB took the records".into(),
            }),
        };
        match written {
            Ok(()) => {
                shared
                    .counters
                    .store_failing
                    .store(false, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(%error, left = pending.len(), "usage write failed");
                // A cut at the shutdown deadline says nothing about DynamoDB.
                if !matches!(
                    &error,
                    DynamoDbError::Sdk {
                        operation: "shutdown",
                        ..
                    }
                ) {
                    shared.counters.store_failing.store(true, Ordering::Relaxed);
                }
                shared.counters.set_error(&error);
                let now = Instant::now();
                let deadline = shared.bounded(spill_at);
                if !error.is_retryable() || now >= deadline {
                    return Err((error, pending));
                }
                attempt += 1;
                shared.counters.retried.fetch_add(1, Ordering::Relaxed);
                let delay = shared.config.backoff(attempt);
                tokio::select! {
                    () = sleep_until((now + delay).min(deadline)) => {}
                    () = shared.shutdown_cut() => {}
                }
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
    shared.publish_depth();
}

fn blocking_failed(error: tokio::task::JoinError) -> DynamoDbError {
    DynamoDbError::Spill {
        path: String::new(),
        source: std::io::Error::other(format!("spill file task failed: {error}")),
    }
}

/// Replays the spill file, `replay_batch_size` records at a time, until it is empty or a
/// write fails (the progress is kept: the next replay resumes where this one stopped).
pub(crate) async fn replay_spill(shared: &Shared) -> Result<(), DynamoDbError> {
    // A few rounds: records spilled while replaying are picked up by the next round.
    for _ in 0..4 {
        let spill = shared.spill.clone();
        let started = tokio::task::spawn_blocking(move || spill.start_replay())
            .await
            .map_err(blocking_failed)??;
        let Some(mut replay) = started else {
            return Ok(());
        };
        let mut replayed = 0u64;
        loop {
            let spill = shared.spill.clone();
            let max = shared.config.replay_batch_size;
            let (back, batch) = tokio::task::spawn_blocking(move || {
                let batch = spill.next_batch(&mut replay, max);
                (replay, batch)
            })
            .await
            .map_err(blocking_failed)?;
            replay = back;
            let batch = batch?;
            // Unreadable lines set aside on the way left the spill's count.
            shared.publish_depth();
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match write_with_retry(shared, batch).await {
                Ok(()) => {
                    let spill = shared.spill.clone();
                    let (back, stored) = tokio::task::spawn_blocking(move || {
                        let stored = spill.batch_stored(&replay, n);
                        (replay, stored)
                    })
                    .await
                    .map_err(blocking_failed)?;
                    replay = back;
                    stored?;
                    replayed += n as u64;
                    shared.counters.add_replayed(n as u64);
                    shared.publish_depth();
                }
                Err((error, left)) => {
                    tracing::warn!(%error, records = n, left = left.len(), "usage spill replay failed; will resume");
                    let stored = n.saturating_sub(left.len());
                    let spill = shared.spill.clone();
                    tokio::task::spawn_blocking(move || spill.keep_for_replay(replay, &left, n))
                        .await
                        .map_err(blocking_failed)??;
                    shared.counters.add_replayed(stored as u64);
                    shared.publish_depth();
                    return Err(error);
                }
            }
        }
        let spill = shared.spill.clone();
        tokio::task::spawn_blocking(move || spill.finish_replay(replay))
            .await
            .map_err(blocking_failed)??;
        tracing::info!(records = replayed, "usage spill replayed");
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

/// Every record received so far is written or spilled.
async fn settle(shared: &Arc<Shared>, batch: &mut Vec<UsageRecord>, inflight: &mut JoinSet<()>) {
    dispatch(shared, batch, inflight).await;
    while inflight.join_next().await.is_some() {}
}

/// Writes everything received so far and replays the spill file; `Ok` when nothing is
/// left outside DynamoDB.
async fn drain(
    shared: &Arc<Shared>,
    batch: &mut Vec<UsageRecord>,
    inflight: &mut JoinSet<()>,
    replay: &mut Option<JoinHandle<()>>,
) -> Result<(), String> {
    settle(shared, batch, inflight).await;
    if let Some(handle) = replay.take() {
        let _ = handle.await;
    }
    let replayed = replay_spill(shared).await;
    spill_left(shared, replayed.err())
}

/// `Ok` when the spill file is empty, else the error naming it.
pub(crate) fn spill_left(shared: &Shared, why: Option<DynamoDbError>) -> Result<(), String> {
    let left = shared.spill.pending();
    if left == 0 {
        return Ok(());
    }
    let why = match why {
        Some(error) => error.to_string(),
        None => shared
            .counters
            .last_error()
            .unwrap_or_else(|| "spill file not yet replayed".into()),
    };
    Err(format!(
        "{left} usage records are held in the spill file {} and will be replayed when DynamoDB accepts them: {why}",
        shared.spill.path().display()
    ))
}

/// Shutdown: no more records are taken; what is queued is written until the shutdown
/// deadline, what DynamoDB has not taken by then is spilled, and the spill file is replayed
/// while time is left.
async fn shut_down(
    rx: &mut mpsc::Receiver<Msg>,
    shared: &Arc<Shared>,
    batch: &mut Vec<UsageRecord>,
    inflight: &mut JoinSet<()>,
    replay: &mut Option<JoinHandle<()>>,
) -> Result<(), String> {
    shared.start_shutdown_clock();
    // `record` fails with `Closed` from here on; what is already queued is still received.
    rx.close();
    let mut waiting = Vec::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Record(record) => {
                batch.push(record);
                if batch.len() >= shared.config.batch_size {
                    dispatch(shared, batch, inflight).await;
                }
            }
            Msg::Flush(reply) | Msg::Shutdown(reply) => waiting.push(reply),
            Msg::Barrier(reply) => {
                let _ = reply.send(());
            }
        }
    }
    settle(shared, batch, inflight).await;
    if let Some(handle) = replay.take() {
        let _ = handle.await;
    }
    let replayed = replay_spill(shared).await;
    let result = spill_left(shared, replayed.err());
    for reply in waiting {
        let _ = reply.send(result.clone());
    }
    result
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
                Some(Msg::Barrier(reply)) => {
                    settle(&shared, &mut batch, &mut inflight).await;
                    let _ = reply.send(());
                }
                Some(Msg::Shutdown(reply)) => {
                    let result = shut_down(&mut rx, &shared, &mut batch, &mut inflight, &mut replay).await;
                    let _ = reply.send(result);
                    break;
                }
                None => {
                    // Every sender is gone (the sink was dropped without shutdown): write
                    // what was queued, as a shutdown would, then stop.
                    let _ = shut_down(&mut rx, &shared, &mut batch, &mut inflight, &mut replay).await;
                    break;
                }
            },
            () = sleep_until(deadline), if !batch.is_empty() => {
                dispatch(&shared, &mut batch, &mut inflight).await;
            }
            _ = tick.tick() => {
                // Corrects a stale value left by concurrent updates (see `publish_depth`).
                shared.publish_depth();
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

/// The background spill writer (a thread of its own): appends the overflow of a full
/// queue to the spill file in batches, one fsync per batch, so `record` never touches the
/// disk. A batch the file does not take stays in memory and is tried again: an accepted
/// record is never dropped (the channel's bound holds meanwhile, and `record` refuses
/// when it is full).
pub(crate) fn run_spill_writer(mut rx: mpsc::Receiver<SpillMsg>, shared: Arc<Shared>) {
    const MAX_BATCH: usize = 4_096;
    let mut batch: Vec<UsageRecord> = Vec::with_capacity(MAX_BATCH);
    let mut synced: Vec<oneshot::Sender<()>> = Vec::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut failures = 0u32;
    loop {
        if batch.is_empty() && synced.is_empty() {
            match next_message(&mut rx) {
                Some(msg) => take(msg, &mut rx, &mut batch, &mut synced, &mut closing),
                None => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut rx, &mut batch, &mut synced, &mut closing),
                Err(_) => break,
            }
        }
        match shared.spill.append(&batch) {
            Ok(()) => {
                let n = batch.len() as u64;
                batch.clear();
                failures = 0;
                shared.counters.add_spilled(n);
                shared.counters.overflow.fetch_sub(n, Ordering::Relaxed);
                shared.publish_depth();
                // A marker is answered only once every record before it is on disk.
                if batch.is_empty() {
                    for reply in synced.drain(..) {
                        let _ = reply.send(());
                    }
                }
            }
            Err(error) => {
                failures += 1;
                tracing::error!(%error, records = batch.len(), "usage spill failed; keeping the records in memory and trying again");
                shared.counters.set_error(&error);
                std::thread::sleep(shared.config.backoff(failures));
            }
        }
    }
    if let Some(reply) = closing {
        let _ = reply.send(());
    }
}

/// The next message, `None` once the channel is closed and empty. While records keep
/// coming it polls (`try_recv`, short sleeps) rather than parking: a parked thread has to
/// be woken by the sender, a syscall on `record`'s thread — the request path. It parks
/// only after a quiet spell, so a wake-up is paid once per burst of overflow, not per
/// batch.
fn next_message(rx: &mut mpsc::Receiver<SpillMsg>) -> Option<SpillMsg> {
    const POLL: std::time::Duration = std::time::Duration::from_micros(200);
    const QUIET_POLLS: u32 = 500; // 100 ms
    for _ in 0..QUIET_POLLS {
        match rx.try_recv() {
            Ok(msg) => return Some(msg),
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(POLL),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
        }
    }
    rx.blocking_recv()
}

fn take(
    msg: SpillMsg,
    rx: &mut mpsc::Receiver<SpillMsg>,
    batch: &mut Vec<UsageRecord>,
    synced: &mut Vec<oneshot::Sender<()>>,
    closing: &mut Option<oneshot::Sender<()>>,
) {
    match msg {
        SpillMsg::Record(record) => batch.push(record),
        SpillMsg::Sync(reply) => synced.push(reply),
        SpillMsg::Close(reply) => {
            // What is already in the channel is still received; nothing new gets in.
            rx.close();
            *closing = Some(reply);
        }
    }
}
