//! The durable local spill file: records DynamoDB could not take, one JSON line each,
//! fsync'd before the append returns; replayed when DynamoDB recovers.
//!
//! - **One owner.** Opening a spill takes an exclusive OS lock (`flock` on Unix, a share
//!   lock on Windows) on `{path}.lock`, held for the spill's life: a second sink on the
//!   same path — in this process or another — fails to build with
//!   [`DynamoDbError::SpillLocked`]. The lock dies with the process, so a crash never
//!   leaves a stale lock behind.
//! - **Replay in bounded batches.** A replay renames the file to `{path}.replaying` (under
//!   the append mutex, so concurrent appends go to a fresh file) and streams it, at most
//!   `batch` records in memory at once. After each batch is stored, the byte offset of the
//!   first record not yet stored is written to `{path}.replaying.pos` (temp file, fsync,
//!   rename): a replay stopped part way — in this process or after a crash — resumes
//!   there. A batch stored only in part is kept precisely: the replay file is rewritten to
//!   hold the batch's unstored records and the unread rest (streamed, bounded memory).
//!   The file is deleted once every record is stored. Writes are idempotent, so a record
//!   replayed twice (a crash between a write and the position update) is stored once.
//! - A line that does not parse (a torn final line after a crash) is set aside in
//!   `{path}.corrupt`, counted in `corrupt`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use failover_usage::UsageRecord;

use crate::error::DynamoDbError;

#[derive(Debug)]
pub(crate) struct Spill {
    path: PathBuf,
    replaying: PathBuf,
    position: PathBuf,
    corrupt_path: PathBuf,
    /// The append handle; also the mutex that orders appends against the replay's rename.
    file: Mutex<Option<File>>,
    /// The open, exclusively locked `{path}.lock`; `None` once released at shutdown. The
    /// OS releases the lock when the handle closes (the file itself stays: removing it
    /// would race with a new owner that has just locked it).
    lock: Mutex<Option<File>>,
    /// Records in the spill and replay files (not yet stored).
    pending: AtomicU64,
    /// Lines that did not parse; kept aside.
    corrupt: AtomicU64,
}

/// A replay in progress: the open replay file and how far it has been read.
#[derive(Debug)]
pub(crate) struct Replay {
    reader: BufReader<File>,
    /// Byte offset of the first record of the batch being written (what the position file
    /// says once that batch is stored: everything before it is stored).
    stored_up_to: u64,
    /// Byte offset just past the last line read.
    read_up_to: u64,
    /// Unreadable lines in the batch being written (already set aside in `.corrupt`).
    batch_corrupt: usize,
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl Spill {
    /// Locks and opens (without creating) the spill at `path`, counting what an earlier run
    /// left. [`DynamoDbError::SpillLocked`] when another live sink holds it.
    pub(crate) fn open(path: PathBuf) -> Result<Self, DynamoDbError> {
        let lock_path = with_suffix(&path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| DynamoDbError::Spill {
                path: lock_path.display().to_string(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DynamoDbError::SpillLocked {
                    path: path.display().to_string(),
                });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(DynamoDbError::Spill {
                    path: lock_path.display().to_string(),
                    source,
                });
            }
        }
        // For an operator looking at the lock file: who holds it (the lock is the OS's,
        // not this text).
        let _ = lock.set_len(0);
        let _ = writeln!(&lock, "{}", std::process::id());
        let spill = Self {
            replaying: with_suffix(&path, ".replaying"),
            position: with_suffix(&path, ".replaying.pos"),
            corrupt_path: with_suffix(&path, ".corrupt"),
            path,
            file: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
            pending: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        };
        let start = spill.read_position()?;
        let left = count_lines(&spill.path, 0).map_err(|e| spill.error(&spill.path, e))?
            + count_lines(&spill.replaying, start).map_err(|e| spill.error(&spill.replaying, e))?;
        spill.pending.store(left, Ordering::Relaxed);
        Ok(spill)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn corrupt(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    /// Gives the lock up (after shutdown: nothing is appended or replayed any more), so a
    /// new sink on the same path can start in this process.
    pub(crate) fn release_lock(&self) {
        let lock = self
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(file) = lock {
            let _ = file.unlock();
        }
    }

    fn error(&self, path: &Path, source: io::Error) -> DynamoDbError {
        DynamoDbError::Spill {
            path: path.display().to_string(),
            source,
        }
    }

    fn lock_file(&self) -> MutexGuard<'_, Option<File>> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subtract_pending(&self, n: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// Appends `records` and fsyncs once; returns once they are on disk.
    pub(crate) fn append(&self, records: &[UsageRecord]) -> Result<(), DynamoDbError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::with_capacity(records.len() * 512);
        for record in records {
            serde_json::to_writer(&mut buffer, record)
                .map_err(|e| self.error(&self.path, io::Error::other(e)))?;
            buffer.push(b'\n');
        }
        let mut guard = self.lock_file();
        if guard.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| self.error(&self.path, e))?;
            *guard = Some(file);
        }
        let file = guard.as_mut().expect("opened above");
        let result = file.write_all(&buffer).and_then(|()| file.sync_data());
        if let Err(error) = result {
            // Reopen next time: the handle may be in a bad state.
            *guard = None;
            return Err(self.error(&self.path, error));
        }
        self.pending
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Where the last replay stopped in the replay file (0 without a position file).
    fn read_position(&self) -> Result<u64, DynamoDbError> {
        match fs::read_to_string(&self.position) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.error(&self.position, e)),
        }
    }

    fn write_position(&self, offset: u64) -> Result<(), DynamoDbError> {
        let temp = with_suffix(&self.position, ".tmp");
        let mut file = File::create(&temp).map_err(|e| self.error(&temp, e))?;
        file.write_all(offset.to_string().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| self.error(&temp, e))?;
        fs::rename(&temp, &self.position).map_err(|e| self.error(&self.position, e))?;
        sync_dir(&self.position);
        Ok(())
    }

    fn remove_position(&self) -> Result<(), DynamoDbError> {
        match fs::remove_file(&self.position) {
            Ok(()) => {
                sync_dir(&self.position);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(&self.position, e)),
        }
    }

    /// Starts (or resumes) a replay: the leftover `.replaying` file from where the last
    /// replay stopped, else the spill file moved aside. `None` when there is nothing.
    pub(crate) fn start_replay(&self) -> Result<Option<Replay>, DynamoDbError> {
        let guard = self.lock_file();
        if !self.replaying.exists() {
            match fs::metadata(&self.path) {
                Ok(meta) if meta.len() > 0 => {}
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.error(&self.path, e)),
            }
            // A position file without its replay file belongs to nothing.
            self.remove_position()?;
            // Close our handle, then move the file aside; appends reopen a fresh one.
            let mut guard = guard;
            *guard = None;
            fs::rename(&self.path, &self.replaying).map_err(|e| self.error(&self.path, e))?;
            sync_dir(&self.path);
        } else {
            drop(guard);
        }
        let start = self.read_position()?;
        let mut file = File::open(&self.replaying).map_err(|e| self.error(&self.replaying, e))?;
        let len = file
            .metadata()
            .map_err(|e| self.error(&self.replaying, e))?
            .len();
        // A position past the end (a file rewritten under a stale position) restarts at 0:
        // a record sent twice is stored once; one skipped would be lost.
        let start = if start > len { 0 } else { start };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| self.error(&self.replaying, e))?;
        Ok(Some(Replay {
            reader: BufReader::new(file),
            stored_up_to: start,
            read_up_to: start,
            batch_corrupt: 0,
        }))
    }

    /// The next at most `max` records of `replay` (empty at the end of the file).
    /// Unreadable lines are set aside in `.corrupt` on the way.
    pub(crate) fn next_batch(
        &self,
        replay: &mut Replay,
        max: usize,
    ) -> Result<Vec<UsageRecord>, DynamoDbError> {
        replay.stored_up_to = replay.read_up_to;
        replay.batch_corrupt = 0;
        let mut records = Vec::with_capacity(max.min(1_024));
        let mut bad = Vec::new();
        let mut line = String::new();
        while records.len() < max {
            line.clear();
            let n = replay
                .reader
                .read_line(&mut line)
                .map_err(|e| self.error(&self.replaying, e))?;
            if n == 0 {
                break;
            }
            replay.read_up_to += n as u64;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<UsageRecord>(text) {
                Ok(record) => records.push(record),
                Err(error) => {
                    tracing::error!(path = %self.replaying.display(), %error, "unreadable line in the usage spill file; kept in .corrupt");
                    bad.push(text.to_owned());
                }
            }
        }
        if !bad.is_empty() {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.corrupt_path)
                .map_err(|e| self.error(&self.corrupt_path, e))?;
            for line in &bad {
                writeln!(file, "{line}").map_err(|e| self.error(&self.corrupt_path, e))?;
            }
            file.sync_data()
                .map_err(|e| self.error(&self.corrupt_path, e))?;
            self.corrupt.fetch_add(bad.len() as u64, Ordering::Relaxed);
            self.subtract_pending(bad.len() as u64);
            replay.batch_corrupt = bad.len();
        }
        Ok(records)
    }

    /// The batch last returned by [`Spill::next_batch`] (`stored` records) is stored: the
    /// next replay starts after it.
    pub(crate) fn batch_stored(&self, replay: &Replay, stored: usize) -> Result<(), DynamoDbError> {
        self.write_position(replay.read_up_to)?;
        self.subtract_pending(stored as u64);
        Ok(())
    }

    /// The replay stopped in the batch last returned by [`Spill::next_batch`] (`taken`
    /// records): `left` (a subset of it) is not stored yet. When part of the batch was
    /// stored (or unreadable lines were set aside), the replay file is rewritten to hold
    /// `left` and the unread rest, so the next replay sends no stored record again;
    /// otherwise the position already says where to resume.
    ///
    /// Crash-safe: the new contents go to a temporary file, fsync'd; the position file is
    /// removed, then the temporary file renamed over the replay file. A crash leaves the
    /// old file (replayed from its start: duplicates are stored once) or the new one.
    pub(crate) fn keep_for_replay(
        &self,
        replay: Replay,
        left: &[UsageRecord],
        taken: usize,
    ) -> Result<(), DynamoDbError> {
        let stored = taken.saturating_sub(left.len());
        if stored == 0 && replay.batch_corrupt == 0 {
            return Ok(());
        }
        let temp = with_suffix(&self.replaying, ".tmp");
        let mut out = io::BufWriter::new(File::create(&temp).map_err(|e| self.error(&temp, e))?);
        for record in left {
            serde_json::to_writer(&mut out, record)
                .map_err(|e| self.error(&temp, io::Error::other(e)))?;
            out.write_all(b"\n").map_err(|e| self.error(&temp, e))?;
        }
        let mut rest = replay.reader;
        io::copy(&mut rest, &mut out).map_err(|e| self.error(&temp, e))?;
        let file = out
            .into_inner()
            .map_err(|e| self.error(&temp, e.into_error()))?;
        file.sync_data().map_err(|e| self.error(&temp, e))?;
        drop(file);
        self.remove_position()?;
        fs::rename(&temp, &self.replaying).map_err(|e| self.error(&self.replaying, e))?;
        sync_dir(&self.replaying);
        self.subtract_pending(stored as u64);
        Ok(())
    }

    /// Every record of the replay file is stored: delete it and its position.
    pub(crate) fn finish_replay(&self, replay: Replay) -> Result<(), DynamoDbError> {
        drop(replay);
        let _guard = self.lock_file();
        match fs::remove_file(&self.replaying) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.error(&self.replaying, e)),
        }
        sync_dir(&self.replaying);
        self.remove_position()
    }
}

/// Non-empty lines of `path` from byte `start`.
fn count_lines(path: &Path, start: u64) -> io::Result<u64> {
    match File::open(path) {
        Ok(mut file) => {
            if start > file.metadata()?.len() {
                return count_lines(path, 0);
            }
            file.seek(SeekFrom::Start(start))?;
            let mut n = 0;
            for line in BufReader::new(file).lines() {
                if !line?.trim().is_empty() {
                    n += 1;
                }
            }
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Makes a rename or removal durable (best effort: not every platform can fsync a
/// directory).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::{RequestId, TokenUsage, Usd};
    use failover_usage::UsageOutcome;
    use rust_decimal::Decimal;

    fn record(id: &str) -> UsageRecord {
        UsageRecord {
            request_id: RequestId::new(id),
            call_id: format!("{id}-call"),
            attempt: 1,
            tenant_id: "t".into(),
            agent_id: "a".into(),
            timestamp_unix_ms: 5,
            provider: "p".into(),
            model: "m".into(),
            logical_model: "l".into(),
            usage: TokenUsage::new(1, 2),
            usage_estimated: false,
            cost: Usd::new(Decimal::new(123, 5)),
            latency_ms: 3,
            outcome: UsageOutcome::Success,
            cached: false,
            fallback_used: false,
            streamed: false,
        }
    }

    fn records(ids: &[&str]) -> Vec<UsageRecord> {
        ids.iter().map(|id| record(id)).collect()
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "failover-dynamodb-spill-test-{name}-{}-{}.spill",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    fn cleanup(path: &Path) {
        for suffix in ["", ".replaying", ".replaying.pos", ".corrupt", ".lock"] {
            let _ = fs::remove_file(with_suffix(path, suffix));
        }
    }

    /// Every record of a replay, in batches of `max`, each marked stored.
    fn drain(spill: &Spill, max: usize) -> Vec<Vec<UsageRecord>> {
        let mut batches = Vec::new();
        let Some(mut replay) = spill.start_replay().unwrap() else {
            return batches;
        };
        loop {
            let batch = spill.next_batch(&mut replay, max).unwrap();
            if batch.is_empty() {
                break;
            }
            spill.batch_stored(&replay, batch.len()).unwrap();
            batches.push(batch);
        }
        spill.finish_replay(replay).unwrap();
        batches
    }

    #[test]
    fn append_replay_finish_and_reopen() {
        let path = temp_path("cycle");
        let spill = Spill::open(path.clone()).unwrap();
        assert!(spill.start_replay().unwrap().is_none());
        spill.append(&records(&["a", "b"])).unwrap();
        spill.append(&records(&["c"])).unwrap();
        assert_eq!(spill.pending(), 3);
        let mut replay = spill.start_replay().unwrap().unwrap();
        // Appends during a replay go to a fresh file.
        spill.append(&records(&["d"])).unwrap();
        assert_eq!(
            spill.next_batch(&mut replay, 10).unwrap(),
            records(&["a", "b", "c"])
        );
        spill.batch_stored(&replay, 3).unwrap();
        assert!(spill.next_batch(&mut replay, 10).unwrap().is_empty());
        spill.finish_replay(replay).unwrap();
        assert_eq!(spill.pending(), 1);
        assert_eq!(drain(&spill, 10), vec![records(&["d"])]);
        assert_eq!(spill.pending(), 0);
        assert!(spill.start_replay().unwrap().is_none());
        drop(spill);
        cleanup(&path);
    }

    #[test]
    fn replay_streams_in_bounded_batches() {
        let path = temp_path("batches");
        let spill = Spill::open(path.clone()).unwrap();
        let ids: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let all: Vec<UsageRecord> = ids.iter().map(|id| record(id)).collect();
        spill.append(&all).unwrap();
        let batches = drain(&spill, 3);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 3, 1],
            "never more than the bound in memory"
        );
        assert_eq!(batches.concat(), all);
        assert_eq!(spill.pending(), 0);
        drop(spill);
        cleanup(&path);
    }

    #[test]
    fn a_replay_stopped_part_way_resumes_where_it_stopped() {
        let path = temp_path("resume");
        let spill = Spill::open(path.clone()).unwrap();
        spill
            .append(&records(&["a", "b", "c", "d", "e", "f", "g"]))
            .unwrap();
        let mut replay = spill.start_replay().unwrap().unwrap();
        // The first batch is stored.
        let first = spill.next_batch(&mut replay, 3).unwrap();
        spill.batch_stored(&replay, first.len()).unwrap();
        assert_eq!(spill.pending(), 4);
        // Of the second, "d" and "e" are stored before the replay fails.
        let second = spill.next_batch(&mut replay, 3).unwrap();
        assert_eq!(second, records(&["d", "e", "f"]));
        spill.keep_for_replay(replay, &records(&["f"]), 3).unwrap();
        assert_eq!(spill.pending(), 2);
        // The next replay — in this process or the next — offers only what is left.
        drop(spill);
        let spill = Spill::open(path.clone()).unwrap();
        assert_eq!(spill.pending(), 2);
        let mut replay = spill.start_replay().unwrap().unwrap();
        let batch = spill.next_batch(&mut replay, 3).unwrap();
        assert_eq!(batch, records(&["f", "g"]));
        // Nothing stored: nothing to rewrite, the position stays.
        spill.keep_for_replay(replay, &batch, 2).unwrap();
        assert_eq!(spill.pending(), 2);
        assert_eq!(drain(&spill, 1), vec![records(&["f"]), records(&["g"])]);
        assert_eq!(spill.pending(), 0);
        assert!(spill.start_replay().unwrap().is_none());
        drop(spill);
        cleanup(&path);
    }

    #[test]
    fn a_position_survives_a_restart() {
        let path = temp_path("position");
        let spill = Spill::open(path.clone()).unwrap();
        spill.append(&records(&["a", "b", "c", "d"])).unwrap();
        let mut replay = spill.start_replay().unwrap().unwrap();
        let batch = spill.next_batch(&mut replay, 2).unwrap();
        spill.batch_stored(&replay, batch.len()).unwrap();
        // The process stops here.
        drop(replay);
        drop(spill);
        let spill = Spill::open(path.clone()).unwrap();
        assert_eq!(spill.pending(), 2);
        assert_eq!(drain(&spill, 10), vec![records(&["c", "d"])]);
        drop(spill);
        cleanup(&path);
    }

    #[test]
    fn a_torn_line_is_set_aside_not_fatal() {
        let path = temp_path("torn");
        let spill = Spill::open(path.clone()).unwrap();
        spill.append(&records(&["a"])).unwrap();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"request_id\":\"tor")
            .unwrap();
        drop(spill);
        let spill = Spill::open(path.clone()).unwrap();
        assert_eq!(spill.pending(), 2);
        assert_eq!(drain(&spill, 10), vec![records(&["a"])]);
        assert_eq!((spill.corrupt(), spill.pending()), (1, 0));
        let corrupt = with_suffix(&path, ".corrupt");
        assert!(fs::read_to_string(&corrupt).unwrap().contains("tor"));
        drop(spill);
        cleanup(&path);
    }

    #[test]
    fn a_second_owner_is_refused_until_the_first_lets_go() {
        let path = temp_path("lock");
        let first = Spill::open(path.clone()).unwrap();
        let error = Spill::open(path.clone()).unwrap_err();
        assert!(
            matches!(&error, DynamoDbError::SpillLocked { path: p } if *p == path.display().to_string()),
            "{error}"
        );
        assert!(error.to_string().contains("another"), "{error}");
        first.release_lock();
        let second = Spill::open(path.clone()).unwrap();
        drop(first);
        assert!(
            Spill::open(path.clone()).is_err(),
            "still held by the second"
        );
        drop(second);
        Spill::open(path.clone()).unwrap();
        cleanup(&path);
    }
}
