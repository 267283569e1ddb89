//! Deterministic tests of `CircuitBreaker` on a `ManualClock`.

use std::sync::Arc;
use std::time::Duration;

use failover_breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, Clock, ManualClock, Outcome, Permit,
    RECENT_TRANSITIONS,
};

const OPEN: Duration = Duration::from_secs(10);

fn config() -> BreakerConfig {
    BreakerConfig::default()
        .with_window_size(10)
        .with_minimum_calls(4)
        .with_consecutive_failures(3)
        .with_open_duration(OPEN)
        .with_max_open_duration(Duration::from_secs(60))
        .with_jitter(0.0)
        .with_half_open_max_probes(2)
        .with_half_open_successes_to_close(2)
}

fn breaker(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    (
        CircuitBreaker::with_clock(config, Arc::new(clock.clone())),
        clock,
    )
}

fn fail() -> Outcome {
    Outcome::Failure {
        kind: "boom",
        retry_after: None,
    }
}

fn fail_after(retry_after: Duration) -> Outcome {
    Outcome::Failure {
        kind: "rate_limited",
        retry_after: Some(retry_after),
    }
}

fn call(b: &CircuitBreaker, outcome: Outcome) {
    b.try_acquire().expect("admitted").record(outcome);
}

fn calls(b: &CircuitBreaker, outcomes: &[Outcome]) {
    for &o in outcomes {
        call(b, o);
    }
}

/// The open period of the current trip.
fn period(b: &CircuitBreaker) -> Duration {
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open, "{s:?}");
    s.next_probe_at.unwrap() - s.opened_at.unwrap()
}

fn trip(b: &CircuitBreaker) {
    calls(b, &[fail(), fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Open);
}

/// From OPEN: wait out the period, take a probe, fail it.
fn reopen(b: &CircuitBreaker, clock: &ManualClock) {
    clock.advance(period(b));
    b.try_acquire().expect("probe").record(fail());
    assert_eq!(b.state(), BreakerState::Open);
}

const S: Outcome = Outcome::Success;

#[test]
fn trips_by_rate_once_minimum_calls_are_in() {
    let (b, _) = breaker(config().with_consecutive_failures(0).with_minimum_calls(6));
    calls(&b, &[fail(), S, fail(), fail(), S]);
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.successes, s.failures),
        (BreakerState::Closed, 2, 3)
    );
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().trips, 1);
}

#[test]
fn no_trip_below_minimum_calls_even_at_full_failure_rate() {
    let (b, _) = breaker(config().with_consecutive_failures(0).with_minimum_calls(8));
    calls(&b, &[fail(); 7]);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().failure_rate, 1.0);
}

#[test]
fn a_success_completing_minimum_calls_of_a_failing_window_trips() {
    let (b, _) = breaker(config().with_consecutive_failures(0).with_minimum_calls(5));
    calls(&b, &[fail(), fail(), fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, S); // 4 of 5 failing
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn rate_just_below_threshold_does_not_trip() {
    let (b, _) = breaker(
        config()
            .with_consecutive_failures(0)
            .with_failure_rate_threshold(0.5),
    );
    // 4 failures in 10, evenly spread.
    calls(&b, &[S, fail(), S, S, fail(), S, fail(), S, S, fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().failure_rate, 0.4);
}

#[test]
fn window_slides_over_the_last_n_outcomes() {
    let (b, _) = breaker(config().with_window_size(4).with_consecutive_failures(0));
    calls(&b, &[S, fail(), S, S]);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (3, 1));
    calls(&b, &[S, S]); // the failure slides out
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (4, 0));
    // Many successes on a window full of successes (the write-free path), then a failure:
    // it takes exactly 4 more outcomes to slide it out again.
    calls(&b, &[S; 37]);
    call(&b, fail());
    calls(&b, &[S, S, S]);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (3, 1));
    call(&b, S);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (4, 0));
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn trips_on_consecutive_failures_regardless_of_rate() {
    let (b, _) = breaker(config().with_window_size(20).with_minimum_calls(20));
    calls(&b, &[S; 15]);
    calls(&b, &[fail(), fail(), S, fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().consecutive_failures, 3);
}

#[test]
fn zero_consecutive_failures_disables_that_rule() {
    let (b, _) = breaker(config().with_consecutive_failures(0).with_minimum_calls(10));
    calls(&b, &[fail(); 9]);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn open_period_honours_a_longer_retry_after() {
    let (b, clock) = breaker(config());
    calls(&b, &[fail(), fail(), fail_after(Duration::from_secs(25))]);
    assert_eq!(period(&b), Duration::from_secs(25));
    clock.advance(Duration::from_secs(24));
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(rejected.state, BreakerState::Open);
    assert_eq!(rejected.next_probe_at, b.snapshot().next_probe_at);
    clock.advance(Duration::from_secs(1));
    assert!(b.try_acquire().is_ok());
}

#[test]
fn retry_after_above_the_cap_still_wins_and_shorter_ones_do_not_shorten() {
    let (b, _) = breaker(config());
    calls(&b, &[fail(), fail(), fail_after(Duration::from_secs(600))]);
    assert_eq!(period(&b), Duration::from_secs(600));

    let (b, _) = breaker(config());
    calls(&b, &[fail(), fail(), fail_after(Duration::from_secs(1))]);
    assert_eq!(period(&b), OPEN);
}

#[test]
fn retry_after_of_an_earlier_failure_counts_from_when_it_arrived() {
    let (b, clock) = breaker(config());
    call(&b, fail_after(Duration::from_secs(40)));
    clock.advance(Duration::from_secs(15));
    calls(&b, &[fail(), fail()]);
    assert_eq!(period(&b), Duration::from_secs(25));
}

#[test]
fn a_failing_probes_retry_after_counts_when_it_reopens() {
    let (b, clock) = breaker(config());
    trip(&b);
    clock.advance(OPEN);
    b.try_acquire()
        .unwrap()
        .record(fail_after(Duration::from_secs(55)));
    assert_eq!(period(&b), Duration::from_secs(55));
}

#[test]
fn backoff_grows_across_repeated_trips_and_caps() {
    let (b, clock) = breaker(config());
    trip(&b);
    let mut periods = vec![period(&b)];
    for _ in 0..5 {
        reopen(&b, &clock);
        periods.push(period(&b));
    }
    let secs: Vec<u64> = periods.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [10, 20, 40, 60, 60, 60]);
    assert_eq!(b.snapshot().trips, 6);
}

#[test]
fn closing_resets_the_backoff() {
    let (b, clock) = breaker(config());
    trip(&b);
    reopen(&b, &clock);
    assert_eq!(period(&b), 2 * OPEN);
    clock.advance(2 * OPEN);
    let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    p1.record(S);
    p2.record(S);
    assert_eq!(b.state(), BreakerState::Closed);
    trip(&b);
    assert_eq!(period(&b), OPEN);
    assert_eq!(b.snapshot().trips, 3);
}

#[test]
fn jitter_stays_within_bounds_and_is_reproducible_with_a_seed() {
    let periods = |seed| {
        let (b, clock) = breaker(config().with_jitter(0.2).with_jitter_seed(Some(seed)));
        let mut out = Vec::new();
        for _ in 0..200 {
            trip(&b);
            out.push(period(&b));
            reopen(&b, &clock); // streak 2: 20 s ± 20 %
            out.push(period(&b));
            for _ in 0..3 {
                reopen(&b, &clock); // capped: 60 s − 20 %, never above
            }
            out.push(period(&b));
            b.reset();
        }
        out
    };
    let a = periods(1);
    assert_eq!(a, periods(1));
    assert_ne!(a, periods(2));
    let ms = |d: &Duration| d.as_millis();
    for chunk in a.chunks(3) {
        assert!((8_000..=12_000).contains(&ms(&chunk[0])), "{chunk:?}");
        assert!((16_000..=24_000).contains(&ms(&chunk[1])), "{chunk:?}");
        assert!((48_000..=60_000).contains(&ms(&chunk[2])), "{chunk:?}");
    }
    // The jitter actually spreads the periods over most of the range.
    let first: Vec<u128> = a.chunks(3).map(|c| ms(&c[0])).collect();
    assert!(first.iter().any(|&m| m < 8_800) && first.iter().any(|&m| m > 11_200));
}

#[test]
fn half_open_is_entered_lazily_by_try_acquire() {
    let (b, clock) = breaker(config());
    trip(&b);
    clock.advance(OPEN - Duration::from_nanos(1));
    assert_eq!(b.try_acquire().unwrap_err().state, BreakerState::Open);
    clock.advance(Duration::from_secs(1000));
    // No timer: still OPEN on paper until someone asks.
    assert_eq!(b.snapshot().state, BreakerState::Open);
    let probe = b.try_acquire().unwrap();
    assert!(probe.token().probe);
    assert_eq!(b.snapshot().state, BreakerState::HalfOpen);
    assert_eq!(b.snapshot().next_probe_at, None);
}

#[test]
fn half_open_admits_at_most_the_probe_bound() {
    let (b, clock) = breaker(config().with_half_open_max_probes(3));
    trip(&b);
    clock.advance(OPEN);
    let probes: Vec<Permit> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    let before = b.snapshot().rejected;
    for _ in 0..10 {
        let r = b.try_acquire().unwrap_err();
        assert_eq!((r.state, r.next_probe_at), (BreakerState::HalfOpen, None));
    }
    assert_eq!(b.snapshot().rejected, before + 10);
    drop(probes);
}

#[test]
fn probe_successes_close_with_a_fresh_window() {
    let (b, clock) = breaker(config());
    call(&b, S);
    trip(&b);
    clock.advance(OPEN);
    let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    p1.record(S);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // A freed slot admits another probe; successes count across probes.
    let p3 = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    p3.record(S);
    assert_eq!(b.state(), BreakerState::Closed);
    p2.record(fail()); // late: from the HALF_OPEN generation
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.successes, s.failures, s.consecutive_failures),
        (BreakerState::Closed, 0, 0, 0)
    );
    assert!(!b.try_acquire().unwrap().token().probe);
}

#[test]
fn probe_failure_reopens_with_a_longer_period() {
    let (b, clock) = breaker(config());
    trip(&b);
    clock.advance(OPEN);
    let (p1, p2) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    p1.record(fail());
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(period(&b), 2 * OPEN);
    p2.record(S); // late: changes nothing
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().trips, 2);
}

#[test]
fn a_dropped_or_ignored_probe_frees_its_slot_without_judging() {
    let (b, clock) = breaker(
        config()
            .with_half_open_max_probes(1)
            .with_half_open_successes_to_close(1),
    );
    trip(&b);
    clock.advance(OPEN);
    let p = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(p);
    let p = b.try_acquire().unwrap();
    p.record(Outcome::Ignored);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    b.try_acquire().unwrap().record(S);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn ignored_outcomes_count_neither_way() {
    let (b, _) = breaker(config().with_minimum_calls(4));
    calls(&b, &[fail(), fail()]);
    for _ in 0..50 {
        call(&b, Outcome::Ignored);
        drop(b.try_acquire().unwrap());
    }
    let s = b.snapshot();
    assert_eq!((s.successes, s.failures, s.consecutive_failures), (0, 2, 2));
    assert_eq!(s.state, BreakerState::Closed);
}

#[test]
fn late_outcomes_after_a_trip_change_nothing() {
    let (b, clock) = breaker(config());
    let late: Vec<Permit> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    calls(&b, &[fail(), fail(), fail_after(Duration::from_secs(12))]);
    let before = b.snapshot();
    let mut late = late.into_iter();
    late.next()
        .unwrap()
        .record(fail_after(Duration::from_secs(3600)));
    late.next().unwrap().record(S);
    late.next().unwrap().record(fail());
    drop(late);
    let after = b.snapshot();
    assert_eq!(after, before);
    assert_eq!(period(&b), Duration::from_secs(12));

    // And after it closes again, the closed permits of the first generation still count
    // for nothing.
    let stale = b.try_acquire();
    assert!(stale.is_err());
    clock.advance(Duration::from_secs(12));
    calls(&b, &[S, S]);
    assert_eq!(b.state(), BreakerState::Closed);
    let old = b.try_acquire().unwrap();
    trip(&b);
    clock.advance(OPEN);
    calls(&b, &[S, S]);
    old.record(fail());
    assert_eq!(
        (b.snapshot().failures, b.snapshot().consecutive_failures),
        (0, 0)
    );
}

#[test]
fn forced_open_holds_until_reset() {
    let (b, clock) = breaker(config());
    b.force_open();
    for _ in 0..3 {
        let r = b.try_acquire().unwrap_err();
        assert_eq!((r.state, r.next_probe_at), (BreakerState::ForcedOpen, None));
        clock.advance(Duration::from_secs(3600));
    }
    b.force_open(); // idempotent
    assert_eq!(b.snapshot().recent_transitions.len(), 1);
    b.reset();
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().rejected, 3);
}

#[test]
fn forced_closed_admits_everything_records_nothing_until_reset() {
    let (b, clock) = breaker(config());
    trip(&b);
    b.force_close();
    for _ in 0..100 {
        let p = b.try_acquire().unwrap();
        p.record(fail());
    }
    clock.advance(Duration::from_secs(3600));
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::ForcedClosed);
    assert_eq!(s.trips, 1);
    b.force_open(); // the operator's latest word wins
    assert_eq!(b.state(), BreakerState::ForcedOpen);
    b.force_close();
    b.reset();
    let s = b.snapshot();
    assert_eq!(
        (
            s.state,
            s.successes,
            s.failures,
            s.consecutive_failures,
            s.trips
        ),
        (BreakerState::Closed, 0, 0, 0, 0)
    );
    assert_eq!(
        (s.last_error_kind, s.opened_at, s.next_probe_at),
        (None, None, None)
    );
    // The backoff was cleared too.
    trip(&b);
    assert_eq!(period(&b), OPEN);
}

#[test]
fn reset_makes_outstanding_permits_late() {
    let (b, _) = breaker(config());
    let p = b.try_acquire().unwrap();
    calls(&b, &[fail(), fail()]);
    b.reset();
    p.record(fail());
    assert_eq!(b.snapshot().failures, 0);
}

#[test]
fn snapshot_reports_counts_history_and_rejections() {
    let (b, clock) = breaker(config().with_failure_rate_threshold(1.0));
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.failure_rate, s.rejected, s.trips),
        (BreakerState::Closed, 0.0, 0, 0)
    );
    assert!(s.recent_transitions.is_empty());
    calls(
        &b,
        &[
            S,
            S,
            S,
            Outcome::Failure {
                kind: "timeout",
                retry_after: None,
            },
        ],
    );
    let s = b.snapshot();
    assert_eq!((s.successes, s.failures, s.consecutive_failures), (3, 1, 1));
    assert_eq!(s.failure_rate, 0.25);
    assert_eq!(s.last_error_kind, Some("timeout"));
    let t0 = clock.now();
    calls(&b, &[fail(), fail()]); // the third failure in a row
    assert_eq!(b.state(), BreakerState::Open);
    let s = b.snapshot();
    assert_eq!(s.opened_at, Some(t0));
    assert_eq!(s.next_probe_at, Some(t0 + OPEN));
    assert_eq!(s.last_error_kind, Some("boom"));
    assert!(b.try_acquire().is_err());
    assert!(b.try_acquire().is_err());
    assert_eq!(b.snapshot().rejected, 2);

    // Many transitions: only the last RECENT_TRANSITIONS, oldest first.
    for _ in 0..20 {
        reopen(&b, &clock);
    }
    let transitions = b.snapshot().recent_transitions;
    assert_eq!(transitions.len(), RECENT_TRANSITIONS);
    assert!(transitions.windows(2).all(|w| w[0].at <= w[1].at));
    let last = transitions.last().unwrap();
    assert_eq!(
        (last.from, last.to),
        (BreakerState::HalfOpen, BreakerState::Open)
    );
}

#[test]
fn clones_share_one_breaker_and_debug_shows_the_state() {
    let (b, _) = breaker(config());
    let c = b.clone();
    trip(&c);
    assert_eq!(b.state(), BreakerState::Open);
    let debug = format!("{b:?}");
    assert!(debug.contains("Open"), "{debug}");
    let as_dyn: Arc<dyn Breaker> = Arc::new(b);
    assert_eq!(as_dyn.snapshot().state, BreakerState::Open);
}

#[test]
fn invalid_config_is_refused() {
    let bad = config().with_half_open_successes_to_close(5);
    let err = CircuitBreaker::try_new(bad.clone()).unwrap_err();
    assert_eq!(err.field, "half_open_successes_to_close");
    let panic = std::panic::catch_unwind(|| CircuitBreaker::new(bad)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("half_open_successes_to_close"),
        "{message}"
    );
}

#[test]
fn a_zero_open_duration_probes_at_once_however_often_it_trips() {
    let (b, _) = breaker(
        config()
            .with_open_duration(Duration::ZERO)
            .with_half_open_max_probes(1)
            .with_half_open_successes_to_close(1),
    );
    trip(&b);
    for _ in 0..2_000 {
        assert_eq!(period(&b), Duration::ZERO);
        b.try_acquire().unwrap().record(fail());
    }
    b.try_acquire().unwrap().record(S);
    assert_eq!(b.state(), BreakerState::Closed);
}
