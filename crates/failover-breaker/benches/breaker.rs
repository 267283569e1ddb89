//! Benchmarks of the CLOSED hot path: `try_acquire` + `record(Success)`.
//!
//! - `closed/acquire_record_success`: one thread, uncontended (target ≤ 100 ns).
//! - `closed_throughput/threads/{1,2}`: every thread performs the measured number of
//!   iterations on one shared breaker; throughput is in operations per second (target:
//!   2 threads ≥ 1.5 × 1 thread).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use failover_breaker::{Breaker, BreakerConfig, CircuitBreaker, Outcome};

fn breaker() -> CircuitBreaker {
    let breaker = CircuitBreaker::new(BreakerConfig::default());
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

fn run_threads(breaker: &CircuitBreaker, threads: usize, iters: u64) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let barrier = Arc::clone(&barrier);
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    one_call(breaker);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // `scope` joins every thread before returning; time until then.
        start
    })
    .elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_throughput");
    for threads in [1usize, 2] {
        let breaker = breaker();
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("threads/{threads}"), |b| {
            b.iter_custom(|iters| run_threads(&breaker, threads, iters));
        });
    }
    group.finish();
}

criterion_group!(benches, uncontended, throughput);
criterion_main!(benches);
