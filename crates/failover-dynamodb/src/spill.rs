//! The durable local spill file: records DynamoDB could not take, one JSON line each,
//! fsync'd before the append returns; replayed when DynamoDB recovers.
//!
//! Replay renames the file to `{path}.replaying` (under the lock, so concurrent appends go
//! to a fresh file), writes its records, and deletes it only after every record is stored.
//! A crash or failure in between leaves `.replaying` in place; it is replayed first next
//! time. Writes are idempotent, so a record replayed twice is stored once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use failover_usage::UsageRecord;

use crate::error::DynamoDbError;

#[derive(Debug)]
pub(crate) struct Spill {
    path: PathBuf,
    replaying: PathBuf,
    file: Mutex<Option<File>>,
    /// Records in the spill and replay files.
    pending: AtomicU64,
    /// Lines that did not parse (a torn final line after a crash); kept aside.
    corrupt: AtomicU64,
}

impl Spill {
    /// Opens (without creating) the spill at `path`, counting what an earlier run left.
    pub(crate) fn open(path: PathBuf) -> Result<Self, DynamoDbError> {
        let mut replaying = path.clone().into_os_string();
        replaying.push(".replaying");
        let spill = Self {
            replaying: PathBuf::from(replaying),
            path,
            file: Mutex::new(None),
            pending: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        };
        let left = count_lines(&spill.path).map_err(|e| spill.error(&spill.path, e))?
            + count_lines(&spill.replaying).map_err(|e| spill.error(&spill.replaying, e))?;
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

    fn error(&self, path: &Path, source: io::Error) -> DynamoDbError {
        DynamoDbError::Spill {
            path: path.display().to_string(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<File>> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `records` and fsyncs; returns once they are on disk.
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
        let mut guard = self.lock();
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

    /// The records to replay: the leftover `.replaying` file, else the spill file moved
    /// aside. `None` when there is nothing.
    pub(crate) fn take_for_replay(&self) -> Result<Option<Vec<UsageRecord>>, DynamoDbError> {
        let mut guard = self.lock();
        if !self.replaying.exists() {
            match fs::metadata(&self.path) {
                Ok(meta) if meta.len() > 0 => {}
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.error(&self.path, e)),
            }
            // Close our handle, then move the file aside; appends reopen a fresh one.
            *guard = None;
            fs::rename(&self.path, &self.replaying).map_err(|e| self.error(&self.path, e))?;
            sync_dir(&self.path);
        }
        drop(guard);
        let file = File::open(&self.replaying).map_err(|e| self.error(&self.replaying, e))?;
        let mut records = Vec::new();
        let mut bad = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| self.error(&self.replaying, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<UsageRecord>(&line) {
                Ok(record) => records.push(record),
                Err(error) => {
                    tracing::error!(path = %self.replaying.display(), %error, "unreadable line in the usage spill file; kept in .corrupt");
                    bad.push(line);
                }
            }
        }
        if !bad.is_empty() {
            let mut corrupt = self.path.clone().into_os_string();
            corrupt.push(".corrupt");
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(&corrupt))
                .map_err(|e| self.error(&self.path, e))?;
            for line in &bad {
                writeln!(file, "{line}").map_err(|e| self.error(&self.path, e))?;
            }
            file.sync_data().map_err(|e| self.error(&self.path, e))?;
            self.corrupt.fetch_add(bad.len() as u64, Ordering::Relaxed);
            let _ = self
                .pending
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    Some(p.saturating_sub(bad.len() as u64))
                });
            // Rewrite the replay file without them, so they are not counted twice.
            let mut text = Vec::new();
            for record in &records {
                serde_json::to_writer(&mut text, record)
                    .map_err(|e| self.error(&self.replaying, io::Error::other(e)))?;
                text.push(b'\n');
            }
            let mut file =
                File::create(&self.replaying).map_err(|e| self.error(&self.replaying, e))?;
            file.write_all(&text)
                .and_then(|()| file.sync_data())
                .map_err(|e| self.error(&self.replaying, e))?;
        }
        Ok(Some(records))
    }

    /// A replay stopped part-way: `left` (a subset of what [`Spill::take_for_replay`]
    /// returned, `taken` records) is all that is not yet stored. The replay file is
    /// rewritten to hold only `left`, so the next replay resumes where this one stopped
    /// instead of sending every stored record again — against an endpoint that fails
    /// now and then, a large spill would otherwise never drain.
    ///
    /// Crash-safe: the new contents go to a temporary file, fsync'd, renamed over the
    /// replay file; a crash leaves either file, and a record replayed twice is stored once.
    pub(crate) fn keep_for_replay(
        &self,
        left: &[UsageRecord],
        taken: usize,
    ) -> Result<(), DynamoDbError> {
        let stored = taken.saturating_sub(left.len());
        if stored == 0 {
            return Ok(());
        }
        let mut text = Vec::with_capacity(left.len() * 512);
        for record in left {
            serde_json::to_writer(&mut text, record)
                .map_err(|e| self.error(&self.replaying, io::Error::other(e)))?;
            text.push(b'\n');
        }
        let mut partial = self.replaying.clone().into_os_string();
        partial.push(".tmp");
        let partial = PathBuf::from(partial);
        let _guard = self.lock();
        let mut file = File::create(&partial).map_err(|e| self.error(&partial, e))?;
        file.write_all(&text)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.error(&partial, e))?;
        fs::rename(&partial, &self.replaying).map_err(|e| self.error(&self.replaying, e))?;
        sync_dir(&self.replaying);
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(stored as u64))
            });
        Ok(())
    }

    /// Every record taken by [`Spill::take_for_replay`] is stored: delete the file.
    pub(crate) fn finish_replay(&self, replayed: usize) -> Result<(), DynamoDbError> {
        let _guard = self.lock();
        match fs::remove_file(&self.replaying) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.error(&self.replaying, e)),
        }
        sync_dir(&self.replaying);
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(replayed as u64))
            });
        Ok(())
    }
}

fn count_lines(path: &Path) -> io::Result<u64> {
    match File::open(path) {
        Ok(file) => {
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

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "failover-dynamodb-spill-test-{name}-{}-{}.spill",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    #[test]
    fn append_take_finish_and_reopen() {
        let path = temp_path("cycle");
        let spill = Spill::open(path.clone()).unwrap();
        assert_eq!(spill.take_for_replay().unwrap(), None);
        spill.append(&[record("a"), record("b")]).unwrap();
        spill.append(&[record("c")]).unwrap();
        assert_eq!(spill.pending(), 3);
        // A new process finds what the old one left.
        assert_eq!(Spill::open(path.clone()).unwrap().pending(), 3);
        let taken = spill.take_for_replay().unwrap().unwrap();
        assert_eq!(taken.len(), 3);
        // Appends during a replay go to a fresh file.
        spill.append(&[record("d")]).unwrap();
        // An unfinished replay is offered again first.
        assert_eq!(spill.take_for_replay().unwrap().unwrap(), taken);
        spill.finish_replay(taken.len()).unwrap();
        assert_eq!(spill.pending(), 1);
        let rest = spill.take_for_replay().unwrap().unwrap();
        assert_eq!(rest, vec![record("d")]);
        spill.finish_replay(1).unwrap();
        assert_eq!(spill.pending(), 0);
        assert_eq!(spill.take_for_replay().unwrap(), None);
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn a_replay_stopped_part_way_resumes_where_it_stopped() {
        let path = temp_path("resume");
        let spill = Spill::open(path.clone()).unwrap();
        spill
            .append(&[record("a"), record("b"), record("c")])
            .unwrap();
        let taken = spill.take_for_replay().unwrap().unwrap();
        assert_eq!(taken.len(), 3);
        // "a" and "b" were stored before the replay failed.
        spill.keep_for_replay(&[record("c")], taken.len()).unwrap();
        assert_eq!(spill.pending(), 1);
        // The next replay — in this process or the next — offers only what is left.
        assert_eq!(Spill::open(path.clone()).unwrap().pending(), 1);
        assert_eq!(spill.take_for_replay().unwrap().unwrap(), vec![record("c")]);
        // Nothing stored: nothing to rewrite.
        spill.keep_for_replay(&[record("c")], 1).unwrap();
        assert_eq!(spill.pending(), 1);
        spill.finish_replay(1).unwrap();
        assert_eq!(spill.pending(), 0);
        assert_eq!(spill.take_for_replay().unwrap(), None);
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn a_torn_line_is_set_aside_not_fatal() {
        let path = temp_path("torn");
        let spill = Spill::open(path.clone()).unwrap();
        spill.append(&[record("a")]).unwrap();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"request_id\":\"tor")
            .unwrap();
        let spill = Spill::open(path.clone()).unwrap();
        assert_eq!(spill.pending(), 2);
        let taken = spill.take_for_replay().unwrap().unwrap();
        assert_eq!(taken, vec![record("a")]);
        assert_eq!((spill.corrupt(), spill.pending()), (1, 1));
        spill.finish_replay(1).unwrap();
        let mut corrupt = path.clone().into_os_string();
        corrupt.push(".corrupt");
        assert!(fs::read_to_string(&corrupt).unwrap().contains("tor"));
        let _ = fs::remove_file(PathBuf::from(corrupt));
    }
}
