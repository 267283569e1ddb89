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

// Configuration faults (`Outcome::NeedsOperator`).

const HOLD: Duration = Duration::from_secs(600);

fn config_fault() -> Outcome {
    Outcome::NeedsOperator {
        kind: "access_denied",
    }
}

#[test]
fn one_configuration_fault_does_not_trip_by_itself() {
    let (b, _) = breaker(config());
    call(&b, config_fault());
    call(&b, S);
    call(&b, config_fault());
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!((s.successes, s.failures, s.consecutive_failures), (1, 2, 1));
    assert!(!s.needs_operator, "only a trip marks the breaker");
    assert_eq!(s.last_error_kind, Some("access_denied"));
}

#[test]
fn a_trip_on_a_configuration_fault_holds_open_and_needs_an_operator() {
    let (b, clock) = breaker(config());
    calls(&b, &[fail(), fail(), config_fault()]);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert!(s.needs_operator);
    assert_eq!(s.needs_operator_kind, Some("access_denied"));
    assert_eq!(period(&b), HOLD);
    clock.advance(HOLD - Duration::from_millis(1));
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(rejected.next_probe_at, s.next_probe_at);
    // After the hold, the HALF_OPEN still needs an operator until probes succeed.
    clock.advance(Duration::from_millis(1));
    let (first, second) = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    assert!(b.snapshot().needs_operator);
    first.record(S);
    second.record(S);
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert!(!s.needs_operator);
    assert_eq!(s.needs_operator_kind, None);
}

#[test]
fn a_probe_failing_with_a_configuration_fault_holds_and_an_ordinary_failure_clears_the_mark() {
    let (b, clock) = breaker(config());
    trip(&b);
    assert!(!b.snapshot().needs_operator);
    clock.advance(OPEN);
    b.try_acquire().unwrap().record(config_fault());
    assert!(b.snapshot().needs_operator);
    assert_eq!(period(&b), HOLD);
    clock.advance(HOLD);
    b.try_acquire().unwrap().record(fail());
    // The provider answered past the configuration fault: an ordinary, backed-off trip.
    assert!(!b.snapshot().needs_operator);
    assert_eq!(period(&b), OPEN * 4);
}

#[test]
fn the_configuration_fault_hold_never_shortens_a_retry_hint_or_the_backoff() {
    let (b, _) = breaker(config());
    calls(&b, &[fail_after(HOLD * 2), fail(), config_fault()]);
    assert_eq!(period(&b), HOLD * 2);

    let short = config().with_config_fault_open_duration(Duration::from_secs(1));
    let (b, _) = breaker(short);
    calls(&b, &[fail(), fail(), config_fault()]);
    assert_eq!(
        period(&b),
        OPEN,
        "the normal period is longer than the hold"
    );
    assert!(b.snapshot().needs_operator);
}

#[test]
fn reset_clears_the_configuration_fault_mark() {
    let (b, _) = breaker(config());
    calls(&b, &[fail(), fail(), config_fault()]);
    assert!(b.snapshot().needs_operator);
    b.force_open();
    assert!(b.snapshot().needs_operator, "forcing does not clear it");
    b.reset();
    let s = b.snapshot();
    assert!(!s.needs_operator);
    assert_eq!(s.needs_operator_kind, None);
}

#[test]
fn a_success_completing_a_failing_window_is_no_configuration_fault_trip() {
    let (b, _) = breaker(config().with_consecutive_failures(0).with_minimum_calls(4));
    calls(&b, &[config_fault(), config_fault(), config_fault()]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, S);
    assert_eq!(period(&b), OPEN);
    assert!(!b.snapshot().needs_operator);
}

// Rejections tell when to come back.

#[test]
fn rejections_carry_the_next_probe_only_when_it_is_known() {
    let (b, clock) = breaker(config());
    trip(&b);
    let at = b.snapshot().next_probe_at.unwrap();
    assert_eq!(b.try_acquire().unwrap_err().next_probe_at, Some(at));
    assert_eq!(
        b.try_acquire_for("acme").unwrap_err().next_probe_at,
        Some(at)
    );
    clock.advance(OPEN);
    let probes = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    let full = b.try_acquire().unwrap_err();
    assert_eq!(
        (full.state, full.next_probe_at),
        (BreakerState::HalfOpen, None)
    );
    drop(probes);
    b.force_open();
    let forced = b.try_acquire().unwrap_err();
    assert_eq!(
        (forced.state, forced.next_probe_at),
        (BreakerState::ForcedOpen, None)
    );
}

// The time-based window.

const SECOND: Duration = Duration::from_secs(1);

fn timed(seconds: u64) -> BreakerConfig {
    config()
        .with_window_duration(Some(Duration::from_secs(seconds)))
        .with_consecutive_failures(0)
}

#[test]
fn a_time_window_forgets_failures_after_a_quiet_period() {
    let (b, clock) = breaker(timed(60));
    calls(&b, &[fail(), fail(), fail()]);
    clock.advance(Duration::from_secs(3600));
    let s = b.snapshot();
    assert_eq!((s.successes, s.failures), (0, 0));
    // An hour-old failure would have made this the 4th of 4.
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Closed);
    calls(&b, &[fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_time_window_slides_one_second_bucket_at_a_time() {
    let (b, clock) = breaker(timed(3).with_failure_rate_threshold(0.6));
    let counts = |b: &CircuitBreaker| (b.snapshot().successes, b.snapshot().failures);
    call(&b, fail());
    clock.advance(SECOND);
    calls(&b, &[fail(), S]);
    clock.advance(SECOND);
    call(&b, S);
    assert_eq!(counts(&b), (2, 2));
    // Second 3: second 0's failure has left.
    clock.advance(SECOND);
    assert_eq!(counts(&b), (2, 1));
    call(&b, S);
    // Second 4: second 1's failure and success have left.
    clock.advance(SECOND);
    assert_eq!(counts(&b), (2, 0));
    calls(&b, &[fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, fail());
    assert_eq!(counts(&b), (2, 3));
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_time_windows_minimum_calls_may_exceed_the_count_window_size() {
    let config = timed(10).with_window_size(5).with_minimum_calls(8);
    let (b, _) = breaker(config);
    calls(&b, &[fail(); 7]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_time_windows_run_of_consecutive_failures_expires_with_it() {
    let config = timed(10)
        .with_consecutive_failures(3)
        .with_failure_rate_threshold(1.0)
        .with_minimum_calls(100);
    let (b, clock) = breaker(config);
    calls(&b, &[fail(), fail()]);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    clock.advance(Duration::from_secs(10));
    assert_eq!(b.snapshot().consecutive_failures, 0);
    calls(&b, &[fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, S);
    calls(&b, &[fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Closed);
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_time_window_closes_fresh_and_survives_long_jumps() {
    let (b, clock) = breaker(timed(3600));
    calls(&b, &[fail(), fail(), fail(), fail()]);
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(OPEN);
    b.try_acquire().unwrap().record(S);
    b.try_acquire().unwrap().record(S);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (0, 0));
    clock.advance(Duration::from_secs(1_000_000_000));
    calls(&b, &[S, fail()]);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (1, 1));
}

// The per-tenant cap.

fn capped(cap: u32) -> BreakerConfig {
    config().with_max_failures_per_tenant(cap)
}

fn call_for(b: &CircuitBreaker, tenant: &str, outcome: Outcome) {
    b.try_acquire_for(tenant).expect("admitted").record(outcome);
}

#[test]
fn one_tenants_failures_alone_cannot_open_the_breaker() {
    let (b, _) = breaker(capped(2));
    for _ in 0..50 {
        call_for(&b, "noisy", fail());
    }
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!((s.failures, s.consecutive_failures), (2, 2));
    assert_eq!(s.tenant_capped_failures, 48);
    // A second tenant's failure completes the run of 3.
    call_for(&b, "other", fail());
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_capped_failure_counts_neither_way() {
    let (b, _) = breaker(capped(1).with_failure_rate_threshold(1.0));
    call_for(&b, "a", fail());
    call_for(&b, "b", fail());
    call_for(&b, "a", fail());
    let s = b.snapshot();
    assert_eq!((s.successes, s.failures, s.consecutive_failures), (0, 2, 2));
    assert_eq!(s.tenant_capped_failures, 1);
    call_for(&b, "c", fail());
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn a_tenants_cap_frees_as_its_failures_leave_the_window() {
    let config = capped(2)
        .with_consecutive_failures(0)
        .with_failure_rate_threshold(1.0)
        .with_window_size(4);
    let (b, _) = breaker(config);
    let capped_count = |b: &CircuitBreaker| b.snapshot().tenant_capped_failures;
    call_for(&b, "a", fail());
    call_for(&b, "a", fail());
    call_for(&b, "a", fail());
    assert_eq!(capped_count(&b), 1);
    calls(&b, &[S, S, S]);
    // [F, S, S, S]: the next failure evicts a's oldest one, so it counts, and so does the
    // one after ([S, S, F, F]); the third is over the cap.
    call_for(&b, "a", fail());
    call_for(&b, "a", fail());
    assert_eq!(capped_count(&b), 1);
    call_for(&b, "a", fail());
    assert_eq!(capped_count(&b), 2);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (2, 2));
}

#[test]
fn the_cap_judges_the_window_as_the_failure_leaves_it() {
    let config = capped(1)
        .with_consecutive_failures(0)
        .with_failure_rate_threshold(1.0)
        .with_window_size(2)
        .with_minimum_calls(2);
    let (b, _) = breaker(config);
    call_for(&b, "a", fail());
    call(&b, S);
    // [F(a), S] → [S, F(a)]: a still has one failure in the window.
    call_for(&b, "a", fail());
    assert_eq!(b.snapshot().tenant_capped_failures, 0);
    assert_eq!((b.snapshot().successes, b.snapshot().failures), (1, 1));
}

#[test]
fn a_tenants_cap_frees_as_the_time_window_slides() {
    let (b, clock) = breaker(capped(1).with_window_duration(Some(Duration::from_secs(5))));
    call_for(&b, "a", fail());
    call_for(&b, "a", fail());
    assert_eq!(b.snapshot().tenant_capped_failures, 1);
    clock.advance(Duration::from_secs(5));
    call_for(&b, "a", fail());
    assert_eq!(b.snapshot().tenant_capped_failures, 1);
    assert_eq!(b.snapshot().failures, 1);
}

#[test]
fn anonymous_callers_and_probes_are_not_capped() {
    let (b, clock) = breaker(capped(1));
    call(&b, fail());
    call_for(&b, "", fail());
    call(&b, fail());
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().tenant_capped_failures, 0);
    clock.advance(OPEN);
    let probe = b.try_acquire_for("a").unwrap();
    assert_eq!(probe.token().tenant, 0);
    probe.record(fail());
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn without_a_cap_tenants_are_not_even_hashed() {
    let (b, _) = breaker(config());
    assert_eq!(b.try_acquire_for("acme").unwrap().token().tenant, 0);
    let (b, _) = breaker(capped(3));
    assert_ne!(b.try_acquire_for("acme").unwrap().token().tenant, 0);
}

#[test]
fn new_options_are_validated_without_panicking() {
    for (bad, field) in [
        (
            config().with_window_duration(Some(Duration::from_millis(500))),
            "window_duration",
        ),
        (
            config().with_window_duration(Some(Duration::from_secs(86_400))),
            "window_duration",
        ),
        (
            config().with_max_failures_per_tenant(u32::MAX),
            "max_failures_per_tenant",
        ),
    ] {
        assert_eq!(CircuitBreaker::try_new(bad).unwrap_err().field, field);
    }
    let huge = config().with_config_fault_open_duration(Duration::MAX);
    let (b, _) = breaker(huge);
    calls(&b, &[fail(), fail(), config_fault()]);
    assert_eq!(b.try_acquire().unwrap_err().state, BreakerState::Open);
}
