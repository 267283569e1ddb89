//! The count-based sliding window of the last N outcomes, built on atomics.
//!
//! A ring of `N` one-byte slots is written at `cursor % N` (the cursor is an atomic counter),
//! each write an atomic `swap` whose returned old value tells the writer how to adjust the
//! running counts. Both counts live in one atomic word so a single load reads a consistent
//! pair. Every change of a slot's value is seen by exactly one swapper, so the counts always
//! converge to the slots' contents, whatever the interleaving.
//!
//! Hot-path shortcut: when the window is full of successes (`successes == N`,
//! `failures == 0`), recording another success would replace a success by a success, so it
//! writes nothing at all, not even the cursor. That is exact, not an approximation: every
//! rotation of an all-success ring is the same ring. A healthy provider's successes therefore
//! only read shared memory.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

const EMPTY: u8 = 0;
pub(crate) const SUCCESS: u8 = 1;
pub(crate) const FAILURE: u8 = 2;

/// Each count is stored biased by 2^31 in its own 32-bit half, so that a transiently
/// negative count (a decrement applied before the matching increment) never borrows from
/// the other half.
const BIAS: u64 = 1 << 31;
const LOW: u64 = 0xFFFF_FFFF;

fn weight(slot: u8) -> u64 {
    match slot {
        SUCCESS => 1,
        FAILURE => 1 << 32,
        _ => 0,
    }
}

pub(crate) struct Window {
    slots: Box<[AtomicU8]>,
    cursor: CachePadded<AtomicUsize>,
    /// `(failures + BIAS) << 32 | (successes + BIAS)`.
    counts: CachePadded<AtomicU64>,
    full_of_successes: u64,
}

impl Window {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        let slots = (0..size).map(|_| AtomicU8::new(EMPTY)).collect();
        Self {
            slots,
            cursor: CachePadded::new(AtomicUsize::new(0)),
            counts: CachePadded::new(AtomicU64::new(BIAS << 32 | BIAS)),
            full_of_successes: (BIAS << 32) | (BIAS + u64::from(size)),
        }
    }

    /// Whether the window holds only successes and is full (one load).
    #[inline]
    pub(crate) fn is_full_of_successes(&self) -> bool {
        self.counts.load(Ordering::Acquire) == self.full_of_successes
    }

    /// Appends an outcome, evicting the oldest once full; returns the counts after it.
    pub(crate) fn push(&self, outcome: u8) -> (u32, u32) {
        let index = self.cursor.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let old = self.slots[index].swap(outcome, Ordering::AcqRel);
        if old == outcome {
            return self.counts();
        }
        let delta = weight(outcome).wrapping_sub(weight(old));
        self.clamp(decode(
            self.counts
                .fetch_add(delta, Ordering::AcqRel)
                .wrapping_add(delta),
        ))
    }

    /// The write sequence number the next outcome will take: an outcome written at sequence
    /// `p` is still in the window while `p + N > cursor()`.
    pub(crate) fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire) as u64
    }

    /// The window's length N.
    pub(crate) fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Empties the window.
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(EMPTY, Ordering::AcqRel);
            if old != EMPTY {
                self.counts.fetch_sub(weight(old), Ordering::AcqRel);
            }
        }
    }

    /// `(successes, failures)`, clamped to `0..=N` (they may lag the slots by in-flight
    /// writes under concurrency; exact when quiescent).
    pub(crate) fn counts(&self) -> (u32, u32) {
        self.clamp(decode(self.counts.load(Ordering::Acquire)))
    }

    // An interleaving of two in-flight pushes on one slot can leave a field one past the
    // window for an instant; never report more outcomes than the window holds.
    fn clamp(&self, (successes, failures): (u32, u32)) -> (u32, u32) {
        let size = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        (successes.min(size), failures.min(size))
    }
}

fn decode(word: u64) -> (u32, u32) {
    let field = |v: u64| u32::try_from(v.saturating_sub(BIAS)).unwrap_or(u32::MAX);
    (field(word & LOW), field(word >> 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_over_the_last_n() {
        let w = Window::new(3);
        assert_eq!(w.push(FAILURE), (0, 1));
        assert_eq!(w.push(SUCCESS), (1, 1));
        assert_eq!(w.push(SUCCESS), (2, 1));
        assert!(!w.is_full_of_successes());
        assert_eq!(w.push(SUCCESS), (3, 0));
        assert!(w.is_full_of_successes());
        assert_eq!(w.push(FAILURE), (2, 1));
        w.clear();
        assert_eq!(w.counts(), (0, 0));
        assert_eq!(w.push(SUCCESS), (1, 0));
    }

    #[test]
    fn transient_negative_counts_do_not_corrupt_the_other_half() {
        let w = Window::new(4);
        // A decrement of the successes before the matching increment.
        let delta = weight(FAILURE).wrapping_sub(weight(SUCCESS));
        w.counts.fetch_add(delta, Ordering::AcqRel);
        assert_eq!(w.counts(), (0, 1));
        w.counts.fetch_add(weight(SUCCESS), Ordering::AcqRel);
        assert_eq!(w.counts(), (0, 1));
    }
}
