//! Many threads at once: the probe bound holds exactly and closed-state counts are exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use failover_breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, ManualClock, Outcome,
};

const THREADS: usize = 64;

fn fail() -> Outcome {
    Outcome::Failure {
        kind: "stress",
        retry_after: None,
    }
}

/// 64 threads race on `try_acquire` of a breaker whose open period has just ended (so they
/// also race on the lazy OPEN → HALF_OPEN move): exactly `probes` permits are granted.
#[test]
fn exactly_the_probe_bound_is_admitted_under_a_stampede() {
    for probes in [1u32, 2, 3, 7] {
        for _round in 0..20 {
            let clock = ManualClock::new();
            let config = BreakerConfig::default()
                .with_jitter(0.0)
                .with_consecutive_failures(1)
                .with_half_open_max_probes(probes)
                .with_half_open_successes_to_close(1);
            let breaker = CircuitBreaker::with_clock(config, Arc::new(clock.clone()));
            breaker.try_acquire().unwrap().record(fail());
            assert_eq!(breaker.state(), BreakerState::Open);
            clock.advance(Duration::from_secs(30));

            let barrier = Arc::new(Barrier::new(THREADS));
            let done = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (breaker, barrier, done) =
                        (breaker.clone(), Arc::clone(&barrier), Arc::clone(&done));
                    thread::spawn(move || {
                        barrier.wait();
                        let permit = breaker.try_acquire();
                        // Hold every permit until all threads have tried.
                        done.wait();
                        permit.is_ok()
                    })
                })
                .collect();
            let granted = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&ok| ok)
                .count();
            assert_eq!(granted, probes as usize);
            let snapshot = breaker.snapshot();
            assert_eq!(snapshot.state, BreakerState::HalfOpen);
            assert_eq!(snapshot.rejected, (THREADS - probes as usize) as u64);
            // The slots were released when the permits dropped: probes can be taken again.
            let held: Vec<_> = (0..probes)
                .map(|_| breaker.try_acquire().unwrap())
                .collect();
            assert!(breaker.try_acquire().is_err());
            drop(held);
        }
    }
}

/// Closed-state hammer with a window larger than the number of calls: the window's counts
/// equal exactly what the threads reported.
#[test]
fn closed_state_counts_are_exact_under_contention() {
    const PER_THREAD: u64 = 2_000;
    let threads = 16u64;
    let config = BreakerConfig::default()
        .with_window_size((threads * PER_THREAD) as u32)
        .with_minimum_calls((threads * PER_THREAD) as u32)
        .with_failure_rate_threshold(1.0)
        .with_consecutive_failures(0);
    let breaker = CircuitBreaker::with_clock(config, Arc::new(ManualClock::new()));
    let (successes, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let barrier = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let breaker = breaker.clone();
            let (successes, failures, barrier) = (
                Arc::clone(&successes),
                Arc::clone(&failures),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                barrier.wait();
                for _ in 0..PER_THREAD {
                    let permit = breaker.try_acquire().unwrap();
                    match rng.u8(0..10) {
                        0..=5 => {
                            permit.record(Outcome::Success);
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        6..=7 => {
                            permit.record(fail());
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        8 => permit.record(Outcome::Ignored),
                        _ => drop(permit),
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.successes, successes.load(Ordering::Relaxed));
    assert_eq!(snapshot.failures, failures.load(Ordering::Relaxed));
}

/// Closed-state hammer on a small window with trips, probes and resets going on: no panic,
/// no deadlock, and the counts stay consistent with the window size.
#[test]
fn mixed_hammer_keeps_the_window_consistent() {
    let threads = 8;
    let clock = ManualClock::new();
    let config = BreakerConfig::default()
        .with_window_size(16)
        .with_minimum_calls(8)
        .with_open_duration(Duration::from_millis(1))
        .with_max_open_duration(Duration::from_millis(4));
    let breaker = CircuitBreaker::with_clock(config, Arc::new(clock.clone()));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (breaker, clock, barrier) = (breaker.clone(), clock.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t as u64);
                barrier.wait();
                for i in 0..20_000u32 {
                    if let Ok(permit) = breaker.try_acquire() {
                        let outcome = if rng.u8(0..10) < 3 {
                            fail()
                        } else {
                            Outcome::Success
                        };
                        permit.record(outcome);
                    }
                    if i % 64 == 0 {
                        clock.advance(Duration::from_millis(1));
                    }
                    if t == 0 && i % 5_000 == 4_999 {
                        breaker.reset();
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    for _ in 0..200 {
        let s = breaker.snapshot();
        assert!(s.successes + s.failures <= 16, "{s:?}");
        thread::yield_now();
    }
    for handle in handles {
        handle.join().unwrap();
    }
    let s = breaker.snapshot();
    assert!(s.successes + s.failures <= 16, "{s:?}");
    breaker.reset();
    let s = breaker.snapshot();
    assert_eq!(
        (s.state, s.successes, s.failures),
        (BreakerState::Closed, 0, 0)
    );
}

/// A time window and the tenant cap under contention: every counted outcome is counted once,
/// and no tenant gets more than its cap of failures in, however the threads interleave.
#[test]
fn time_window_and_tenant_cap_counts_are_exact_under_contention() {
    const PER_THREAD: u64 = 2_000;
    const CAP: u64 = 5;
    let threads = 8u64;
    let config = BreakerConfig::default()
        .with_window_duration(Some(Duration::from_secs(60)))
        .with_max_failures_per_tenant(CAP as u32)
        .with_failure_rate_threshold(1.0)
        .with_minimum_calls(u32::MAX)
        .with_consecutive_failures(0);
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::with_clock(config, Arc::new(clock.clone()));
    let successes = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (breaker, successes, barrier) = (
                breaker.clone(),
                Arc::clone(&successes),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                barrier.wait();
                for _ in 0..PER_THREAD {
                    // Four tenants shared by every thread.
                    let tenant = format!("tenant-{}", rng.u8(0..4));
                    let permit = breaker.try_acquire_for(&tenant).unwrap();
                    if rng.bool() {
                        permit.record(Outcome::Success);
                        successes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        permit.record(fail());
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(snapshot.successes, successes.load(Ordering::Relaxed));
    assert_eq!(snapshot.failures, 4 * CAP);
    let all_failures = threads * PER_THREAD - snapshot.successes;
    assert_eq!(snapshot.tenant_capped_failures, all_failures - 4 * CAP);
    // A minute later all of it has left the window.
    clock.advance(Duration::from_secs(60));
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.successes, snapshot.failures), (0, 0));
}
