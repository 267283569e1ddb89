//! Benchmarks of the CLOSED hot path: `try_acquire` + `record(Success)`.
//!
//! - `closed/acquire_record_success`: one thread, uncontended (target ≤ 100 ns).
//! - `closed/acquire_for_tenant_record_success`: the same through `try_acquire_for` with the
//!   tenant cap on (the tenant is hashed into the permit).
//! - `closed/time_window_acquire_record_success`: the same on a 60 s time window (every
//!   outcome takes the lock).
//! - `closed_throughput/threads/{1,2}`: every thread performs the measured number of
//!   iterations on one shared breaker; throughput is in operations per second (target:
//!   2 threads ≥ 1.5 × 1 thread).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use failover_breaker::{Breaker, BreakerConfig, CircuitBreaker, Outcome};

fn breaker() -> CircuitBreaker {
    healthy(BreakerConfig::default())
}

fn healthy(config: BreakerConfig) -> CircuitBreaker {
    let breaker = CircuitBreaker::new(config);
    // A healthy provider: the window is full of successes.
    for _ in 0..BreakerConfig::default().window_size {
        breaker.try_acquire().unwrap().record(Outcome::Success);
    }
    breaker
}

#[inline]
fn one_call(breaker: &CircuitBreaker) {
    let permit = breaker.try_acquire().unwrap();
    black_box(&permit);
    permit.record(Outcome::Success);
}

fn uncontended(c: &mut Criterion) {
    let breaker = breaker();
    let mut group = c.benchmark_group("closed");
    group.throughput(Throughput::Elements(1));
    group.bench_function("acquire_record_success", |b| b.iter(|| one_call(&breaker)));
    let capped = healthy(BreakerConfig::default().with_max_failures_per_tenant(3));
    group.bench_function("acquire_for_tenant_record_success", |b| {
        b.iter(|| {
            let permit = capped.try_acquire_for(black_box("tenant-0042")).unwrap();
            black_box(&permit);
            permit.record(Outcome::Success);
        })
    });
    let timed =
        healthy(BreakerConfig::default().with_window_duration(Some(Duration::from_secs(60))));
    group.bench_function("time_window_acquire_record_success", |b| {
        b.iter(|| one_call(&timed))
    });
    // A degraded provider: alternating failures (locked path) and successes (ring writes),
    // with thresholds that never trip.
    let degraded = CircuitBreaker::new(
        BreakerConfig::default()
            .with_consecutive_failures(0)
            .with_failure_rate_threshold(1.0),
    );
    let mut failing = true;
    group.bench_function("acquire_record_alternating_failure_success", |b| {
        b.iter(|| {
            let permit = degraded.try_acquire().unwrap();
            if failing {
                permit.record(Outcome::Failure {
                    kind: "bench",
                    retry_after: None,
                });
            } else {
                permit.record(Outcome::Success);
            }
            failing = !failing;
        })
    });
    group.finish();
}

/// Runs `op` `iters` times on each of `threads` threads started together; the time from the
/// start signal until every thread has finished.
fn run_threads(threads: usize, iters: u64, op: &(dyn Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let barrier = &barrier;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            });
        }
        barrier.wait();
        // `scope` joins every thread before returning: the elapsed time is taken after that.
        Instant::now()
    })
    .elapsed()
}

/// Work of similar cost that shares nothing between threads.
fn private_work() {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..12 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x);
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_throughput");
    for threads in [1usize, 2] {
        let breaker = breaker();
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("threads/{threads}"), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &|| one_call(&breaker)));
        });
    }
    for threads in [1usize, 2] {
        let breaker =
            healthy(BreakerConfig::default().with_window_duration(Some(Duration::from_secs(60))));
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("time_window/threads/{threads}"), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &|| one_call(&breaker)));
        });
    }
    group.finish();

    // What the machine itself scales to right now (shared CI boxes are rarely idle): the same
    // harness around work that shares no memory at all.
    let mut group = c.benchmark_group("baseline_throughput");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("threads/{threads}"), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &private_work));
        });
    }
    group.finish();
}

criterion_group!(benches, uncontended, throughput);
criterion_main!(benches);
