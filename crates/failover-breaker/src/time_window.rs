//! The time-based window: the outcomes of the last N seconds, in N one-second buckets.
//!
//! Bucket `s % N` holds the outcomes recorded during second `s` (seconds since the breaker's
//! creation, on its clock). Running totals are kept beside the ring, so reading the counts is
//! O(1); moving the window forward recycles one bucket per elapsed second (subtracting its
//! counts from the totals), and at most N buckets however long the quiet period was, so the
//! work is bounded by N and amortised O(1) per second of traffic. Memory is N buckets,
//! independent of the call rate.
//!
//! The window also tracks the run of consecutive failures *within the window*: failures
//! recorded since the last success, in buckets that have not expired. A success starts a new
//! run (a new run id) in O(1): buckets still holding a count of an older run are recognised
//! by their run id and contribute nothing.
//!
//! It is not thread-safe on its own: the breaker keeps it under its lock.

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The second this bucket holds; buckets of other seconds are stale.
    second: u64,
    successes: u64,
    failures: u64,
    /// Failures of run `run_id` recorded in this second.
    run_failures: u32,
    run_id: u64,
}

pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    /// The latest second the window has been moved to.
    now: u64,
    successes: u64,
    failures: u64,
    run_id: u64,
    run_failures: u32,
}

impl TimeWindow {
    pub(crate) fn new(seconds: u64) -> Self {
        let n = usize::try_from(seconds.max(1)).unwrap_or(usize::MAX);
        Self {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            now: 0,
            successes: 0,
            failures: 0,
            run_id: 0,
            run_failures: 0,
        }
    }

    fn len(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn index(&self, second: u64) -> usize {
        // `second % len` < len ≤ usize::MAX.
        (second % self.len()) as usize
    }

    /// Expires the buckets of the seconds that have left the window at `second`.
    pub(crate) fn advance(&mut self, second: u64) {
        if second <= self.now {
            // The clock is monotonic; an earlier second (never expected) counts as now.
            return;
        }
        let first = if second - self.now >= self.len() {
            second + 1 - self.len()
        } else {
            self.now + 1
        };
        for s in first..=second {
            let index = self.index(s);
            let bucket = self.buckets[index];
            // A bucket written in a second before the window is stale: its counts were
            // subtracted when that second expired, or it was never written.
            if bucket.second <= self.now && bucket.second + self.len() > self.now {
                self.successes -= bucket.successes;
                self.failures -= bucket.failures;
                if bucket.run_id == self.run_id {
                    // Saturating: the total saturates at u32::MAX (4 billion failures in a
                    // row), so it may be below the buckets' sum.
                    self.run_failures = self.run_failures.saturating_sub(bucket.run_failures);
                }
            }
            self.buckets[index] = Bucket {
                second: s,
                run_id: self.run_id,
                ..Bucket::default()
            };
        }
        self.now = second;
    }

    /// The bucket of the current second, made current if it is not yet (after a `clear`, or
    /// at second 0).
    fn current(&mut self) -> &mut Bucket {
        let (now, run_id) = (self.now, self.run_id);
        let index = self.index(now);
        let bucket = &mut self.buckets[index];
        if bucket.second != now {
            *bucket = Bucket {
                second: now,
                run_id,
                ..Bucket::default()
            };
        }
        bucket
    }

    /// Records an outcome in `second`'s bucket; returns the window's `(successes, failures)`.
    pub(crate) fn push(&mut self, second: u64, failed: bool) -> (u64, u64) {
        self.advance(second);
        let bucket = self.current();
        if failed {
            bucket.failures += 1;
            self.failures += 1;
        } else {
            bucket.successes += 1;
            self.successes += 1;
        }
        self.counts()
    }

    /// Adds a failure to the run (in `second`'s bucket) and returns the run's length within
    /// the window.
    pub(crate) fn extend_run(&mut self, second: u64) -> u32 {
        self.advance(second);
        let run_id = self.run_id;
        let bucket = self.current();
        if bucket.run_id != run_id {
            bucket.run_id = run_id;
            bucket.run_failures = 0;
        }
        bucket.run_failures = bucket.run_failures.saturating_add(1);
        self.run_failures = self.run_failures.saturating_add(1);
        self.run_failures
    }

    /// Ends the run of failures (a success).
    pub(crate) fn break_run(&mut self) {
        if self.run_failures != 0 {
            self.run_id += 1;
            self.run_failures = 0;
        }
    }

    /// The run's length within the window at `second`.
    pub(crate) fn run(&mut self, second: u64) -> u32 {
        self.advance(second);
        self.run_failures
    }

    /// `(successes, failures)` as of the last `advance`.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.successes, self.failures)
    }

    /// `(successes, failures)` in the window at `second`.
    pub(crate) fn counts_at(&mut self, second: u64) -> (u64, u64) {
        self.advance(second);
        self.counts()
    }

    /// Empties the window (the run too).
    pub(crate) fn clear(&mut self) {
        // A second no bucket can be in the window at: every bucket reads as stale.
        self.buckets.fill(Bucket {
            second: u64::MAX,
            ..Bucket::default()
        });
        self.successes = 0;
        self.failures = 0;
        self.run_id += 1;
        self.run_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_expire_after_the_window() {
        let mut w = TimeWindow::new(3);
        assert_eq!(w.push(0, true), (0, 1));
        assert_eq!(w.push(1, false), (1, 1));
        assert_eq!(w.push(2, true), (1, 2));
        // Second 3: second 0 has left.
        assert_eq!(w.counts_at(3), (1, 1));
        assert_eq!(w.counts_at(4), (0, 1));
        assert_eq!(w.counts_at(5), (0, 0));
        // A long quiet period touches each bucket once.
        assert_eq!(w.push(10_000, true), (0, 1));
        assert_eq!(w.counts_at(10_002), (0, 1));
        assert_eq!(w.counts_at(10_003), (0, 0));
    }

    #[test]
    fn the_run_expires_with_its_buckets_and_breaks_on_success() {
        let mut w = TimeWindow::new(2);
        assert_eq!(w.extend_run(0), 1);
        assert_eq!(w.extend_run(1), 2);
        assert_eq!(w.run(2), 1);
        w.break_run();
        assert_eq!(w.run(2), 0);
        assert_eq!(w.extend_run(2), 1);
        // The bucket of second 1 held a count of the old run: its expiry changes nothing.
        assert_eq!(w.run(3), 1);
        assert_eq!(w.run(4), 0);
    }

    #[test]
    fn clear_empties_everything() {
        let mut w = TimeWindow::new(4);
        w.push(5, true);
        w.extend_run(5);
        w.clear();
        assert_eq!(w.counts_at(5), (0, 0));
        assert_eq!(w.run(6), 0);
        assert_eq!(w.push(6, false), (1, 0));
        assert_eq!(w.counts_at(9), (1, 0));
        assert_eq!(w.counts_at(10), (0, 0));
    }
}
