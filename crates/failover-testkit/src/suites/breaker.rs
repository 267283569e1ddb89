//! The [`Breaker`] behaviour suite: contract-level checks any breaker must pass.
//!
//! Each check takes a factory building the breaker under test from a [`BreakerConfig`] and a
//! [`ManualClock`] (the breaker must read time only from that clock). Run them all, one
//! `#[test]` per check, with [`breaker_behaviour_suite!`](crate::breaker_behaviour_suite):
//!
//! ```ignore
//! mod circuit_breaker {
//!     use std::sync::Arc;
//!     use failover_breaker::{Breaker, CircuitBreaker};
//!     failover_testkit::breaker_behaviour_suite!(|config, clock| {
//!         Arc::new(CircuitBreaker::with_clock(config, Arc::new(clock))) as Arc<dyn Breaker>
//!     });
//! }
//! ```

use std::sync::Arc;
use std::time::Duration;

use failover_breaker::{Breaker, BreakerConfig, BreakerState, ManualClock, Outcome, Permit};

/// The configuration every check starts from: a count window of 10, minimum 4 calls, rate
/// 0.5, 3 consecutive failures, open 10 s doubling up to 60 s, no jitter, 2 probes, 2
/// successes to close, no tenant cap, a 10 min hold after a configuration fault.
pub fn suite_config() -> BreakerConfig {
    BreakerConfig {
        failure_rate_threshold: 0.5,
        window_size: 10,
        minimum_calls: 4,
        consecutive_failures: 3,
        open_duration: OPEN,
        max_open_duration: Duration::from_secs(60),
        backoff_multiplier: 2.0,
        jitter: 0.0,
        jitter_seed: Some(7),
        half_open_max_probes: 2,
        half_open_successes_to_close: 2,
        window_duration: None,
        max_failures_per_tenant: 0,
        config_fault_open_duration: CONFIG_FAULT_HOLD,
    }
}

/// The suite config's hold after a configuration fault trips the breaker.
const CONFIG_FAULT_HOLD: Duration = Duration::from_secs(600);

const OPEN: Duration = Duration::from_secs(10);

fn failure() -> Outcome {
    Outcome::Failure {
        kind: "suite_failure",
        retry_after: None,
    }
}

fn acquire(breaker: &dyn Breaker) -> Permit {
    match breaker.try_acquire() {
        Ok(permit) => permit,
        Err(rejected) => panic!(
            "expected a permit, got {rejected:?}: {:?}",
            breaker.snapshot()
        ),
    }
}

fn call(breaker: &dyn Breaker, outcome: Outcome) {
    acquire(breaker).record(outcome);
}

fn assert_state(breaker: &dyn Breaker, state: BreakerState) {
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, state, "{snapshot:?}");
}

fn assert_rejected(breaker: &dyn Breaker, state: BreakerState) {
    match breaker.try_acquire() {
        Ok(permit) => panic!(
            "expected {state} to reject, got {permit:?}: {:?}",
            breaker.snapshot()
        ),
        Err(rejected) => assert_eq!(rejected.state, state),
    }
}

/// Trips with the suite config's consecutive failures and returns the breaker, OPEN.
fn tripped<F>(factory: &F, config: BreakerConfig, clock: &ManualClock) -> Arc<dyn Breaker>
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let breaker = factory(config, clock.clone());
    for _ in 0..3 {
        call(&*breaker, failure());
    }
    assert_state(&*breaker, BreakerState::Open);
    breaker
}

/// Trips, waits out the first open period and returns the breaker, still OPEN on paper
/// (the next `try_acquire` moves it to HALF_OPEN).
fn due_for_probe<F>(factory: &F, clock: &ManualClock) -> Arc<dyn Breaker>
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let breaker = tripped(factory, suite_config(), clock);
    clock.advance(OPEN);
    breaker
}

/// A new breaker is CLOSED and admits calls.
pub fn starts_closed<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let breaker = factory(suite_config(), ManualClock::new());
    assert_state(&*breaker, BreakerState::Closed);
    call(&*breaker, Outcome::Success);
    assert_state(&*breaker, BreakerState::Closed);
}

/// The configured number of consecutive failures trips it; one fewer does not.
pub fn trips_on_consecutive_failures<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    // A rate threshold of 1.0 keeps the rate rule out of the way.
    let config = BreakerConfig {
        failure_rate_threshold: 1.0,
        ..suite_config()
    };
    let breaker = factory(config, ManualClock::new());
    for _ in 0..5 {
        call(&*breaker, Outcome::Success);
    }
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Closed);
    call(&*breaker, Outcome::Success);
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Closed);
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Open);
}

/// The failure rate trips it once the window holds the minimum number of calls, not before.
pub fn trips_on_failure_rate_after_minimum_calls<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let config = BreakerConfig {
        consecutive_failures: 0,
        minimum_calls: 6,
        ..suite_config()
    };
    let breaker = factory(config, ManualClock::new());
    // 5 calls, 3 failing (60 %): below the minimum.
    for outcome in [
        failure(),
        Outcome::Success,
        failure(),
        failure(),
        Outcome::Success,
    ] {
        call(&*breaker, outcome);
    }
    assert_state(&*breaker, BreakerState::Closed);
    // The 6th call makes 4 of 6: trips.
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Open);
}

/// An OPEN breaker rejects with its state and the time of the next probe.
pub fn rejects_while_open<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = tripped(&factory, suite_config(), &clock);
    let before = breaker.snapshot().rejected;
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state, BreakerState::Open);
    let snapshot = breaker.snapshot();
    assert!(rejected.next_probe_at.is_some());
    assert_eq!(rejected.next_probe_at, snapshot.next_probe_at);
    assert_eq!(snapshot.rejected, before + 1);
    clock.advance(OPEN - Duration::from_millis(1));
    assert_rejected(&*breaker, BreakerState::Open);
}

/// The open period is at least a failure's `retry_after` when that is longer.
pub fn honours_retry_after<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = factory(suite_config(), clock.clone());
    call(&*breaker, failure());
    call(&*breaker, failure());
    let hint = Duration::from_secs(45);
    call(
        &*breaker,
        Outcome::Failure {
            kind: "rate_limited",
            retry_after: Some(hint),
        },
    );
    assert_state(&*breaker, BreakerState::Open);
    clock.advance(hint - Duration::from_millis(1));
    assert_rejected(&*breaker, BreakerState::Open);
    clock.advance(Duration::from_millis(1));
    let _probe = acquire(&*breaker);
    assert_state(&*breaker, BreakerState::HalfOpen);
}

/// After the open period the next `try_acquire` admits a probe and the breaker is HALF_OPEN.
pub fn half_open_after_open_period<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = due_for_probe(&factory, &clock);
    let probe = acquire(&*breaker);
    assert_state(&*breaker, BreakerState::HalfOpen);
    drop(probe);
}

/// HALF_OPEN admits at most the configured number of probes at once.
pub fn half_open_bounds_probes<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = due_for_probe(&factory, &clock);
    let first = acquire(&*breaker);
    let second = acquire(&*breaker);
    assert_rejected(&*breaker, BreakerState::HalfOpen);
    assert_rejected(&*breaker, BreakerState::HalfOpen);
    assert_state(&*breaker, BreakerState::HalfOpen);
    drop((first, second));
}

/// A probe dropped (or recorded as ignored) frees its slot without judging.
pub fn dropped_probe_frees_its_slot<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = due_for_probe(&factory, &clock);
    let first = acquire(&*breaker);
    let second = acquire(&*breaker);
    assert_rejected(&*breaker, BreakerState::HalfOpen);
    drop(first);
    let third = acquire(&*breaker);
    second.record(Outcome::Ignored);
    let fourth = acquire(&*breaker);
    assert_state(&*breaker, BreakerState::HalfOpen);
    drop((third, fourth));
}

/// The configured number of probe successes closes the breaker with a fresh window.
pub fn probe_successes_close<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = due_for_probe(&factory, &clock);
    let first = acquire(&*breaker);
    let second = acquire(&*breaker);
    first.record(Outcome::Success);
    assert_state(&*breaker, BreakerState::HalfOpen);
    second.record(Outcome::Success);
    assert_state(&*breaker, BreakerState::Closed);
    let snapshot = breaker.snapshot();
    assert_eq!(
        (
            snapshot.successes,
            snapshot.failures,
            snapshot.consecutive_failures
        ),
        (0, 0, 0)
    );
    // A fresh count: two failures do not trip it again.
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Closed);
}

/// A probe failure reopens the breaker for a longer period.
pub fn probe_failure_reopens_for_longer<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = due_for_probe(&factory, &clock);
    let first = acquire(&*breaker);
    let second = acquire(&*breaker);
    first.record(Outcome::Success);
    second.record(failure());
    assert_state(&*breaker, BreakerState::Open);
    clock.advance(OPEN);
    assert_rejected(&*breaker, BreakerState::Open);
    clock.advance(OPEN);
    let _probe = acquire(&*breaker);
    assert_state(&*breaker, BreakerState::HalfOpen);
}

/// Outcomes of permits issued before a transition change nothing after it.
pub fn late_results_are_ignored<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = factory(suite_config(), clock.clone());
    let late_closed: Vec<Permit> = (0..3).map(|_| acquire(&*breaker)).collect();
    for _ in 0..3 {
        call(&*breaker, failure());
    }
    assert_state(&*breaker, BreakerState::Open);
    let before = breaker.snapshot();
    for permit in late_closed {
        permit.record(failure());
    }
    let after = breaker.snapshot();
    assert_eq!(after.state, BreakerState::Open);
    assert_eq!(after.trips, before.trips);
    assert_eq!(after.next_probe_at, before.next_probe_at);
    assert_eq!(
        (after.successes, after.failures),
        (before.successes, before.failures)
    );

    // A probe of an earlier HALF_OPEN neither closes nor reopens a later one.
    clock.advance(OPEN);
    let stale_probe = acquire(&*breaker);
    let failing_probe = acquire(&*breaker);
    failing_probe.record(failure());
    assert_state(&*breaker, BreakerState::Open);
    clock.advance(OPEN * 2);
    let probe = acquire(&*breaker);
    assert_state(&*breaker, BreakerState::HalfOpen);
    stale_probe.record(Outcome::Success);
    probe.record(Outcome::Success);
    assert_state(&*breaker, BreakerState::HalfOpen);
    let second_probe = acquire(&*breaker);
    second_probe.record(Outcome::Success);
    assert_state(&*breaker, BreakerState::Closed);
}

/// `Ignored` outcomes (and permits dropped unrecorded) count neither way.
pub fn ignored_outcomes_are_neutral<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let breaker = factory(suite_config(), ManualClock::new());
    call(&*breaker, failure());
    call(&*breaker, failure());
    for _ in 0..20 {
        call(&*breaker, Outcome::Ignored);
        drop(acquire(&*breaker));
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!((snapshot.successes, snapshot.failures), (0, 2));
    assert_eq!(snapshot.consecutive_failures, 2);
    // The ignored calls did not break the run of failures.
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Open);
}

/// `force_open` rejects everything until `reset`, whatever the clock and the outcomes.
pub fn forced_open_holds_until_reset<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = factory(suite_config(), clock.clone());
    let in_flight = acquire(&*breaker);
    breaker.force_open();
    assert_rejected(&*breaker, BreakerState::ForcedOpen);
    in_flight.record(Outcome::Success);
    clock.advance(Duration::from_secs(3600));
    assert_rejected(&*breaker, BreakerState::ForcedOpen);
    assert_state(&*breaker, BreakerState::ForcedOpen);
    breaker.reset();
    assert_state(&*breaker, BreakerState::Closed);
    call(&*breaker, Outcome::Success);
}

/// `force_close` admits everything and trips on nothing until `reset`.
pub fn forced_closed_holds_until_reset<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = tripped(&factory, suite_config(), &clock);
    breaker.force_close();
    assert_state(&*breaker, BreakerState::ForcedClosed);
    for _ in 0..50 {
        call(&*breaker, failure());
    }
    assert_state(&*breaker, BreakerState::ForcedClosed);
    breaker.reset();
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(
        (snapshot.successes, snapshot.failures, snapshot.trips),
        (0, 0, 0)
    );
    // Fresh: it takes the full run of failures to trip again.
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Closed);
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Open);
}

/// The snapshot reports counts, trips, the last error and the transitions in order.
pub fn snapshot_reports_history<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = factory(suite_config(), clock.clone());
    call(&*breaker, Outcome::Success);
    call(
        &*breaker,
        Outcome::Failure {
            kind: "timeout",
            retry_after: None,
        },
    );
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.successes, snapshot.failures), (1, 1));
    assert_eq!(snapshot.consecutive_failures, 1);
    assert!((snapshot.failure_rate - 0.5).abs() < 1e-9);
    assert_eq!(snapshot.last_error_kind, Some("timeout"));
    assert_eq!(snapshot.trips, 0);
    call(&*breaker, failure());
    call(&*breaker, failure());
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert_eq!(snapshot.trips, 1);
    assert_eq!(snapshot.last_error_kind, Some("suite_failure"));
    let opened_at = snapshot.opened_at.unwrap();
    assert_eq!(snapshot.next_probe_at, Some(opened_at + OPEN));
    clock.advance(OPEN);
    let probe = acquire(&*breaker);
    probe.record(Outcome::Success);
    call(&*breaker, Outcome::Success);
    let states: Vec<_> = breaker
        .snapshot()
        .recent_transitions
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    use BreakerState::{Closed, HalfOpen, Open};
    assert_eq!(
        states,
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
}

/// A rejection tells when to come back: OPEN carries the end of its open period (the
/// snapshot's `next_probe_at`), FORCED_OPEN carries nothing (it holds until an operator
/// resets it), and neither does a HALF_OPEN whose probe slots are all taken.
pub fn rejections_carry_the_next_probe<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = tripped(&factory, suite_config(), &clock);
    let opened_at = breaker.snapshot().opened_at.unwrap();
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.next_probe_at, Some(opened_at + OPEN));
    let rejected = breaker.try_acquire_for("suite-tenant").unwrap_err();
    assert_eq!(rejected.next_probe_at, Some(opened_at + OPEN));
    clock.advance(OPEN);
    let probes = (acquire(&*breaker), acquire(&*breaker));
    let full = breaker.try_acquire().unwrap_err();
    assert_eq!(
        (full.state, full.next_probe_at),
        (BreakerState::HalfOpen, None)
    );
    drop(probes);
    breaker.force_open();
    let forced = breaker.try_acquire().unwrap_err();
    assert_eq!(
        (forced.state, forced.next_probe_at),
        (BreakerState::ForcedOpen, None)
    );
}

fn config_fault() -> Outcome {
    Outcome::NeedsOperator {
        kind: "suite_config_fault",
    }
}

/// A configuration fault counts as one failure (it does not trip by itself), but a trip on
/// one holds OPEN for `config_fault_open_duration` and marks the snapshot `needs_operator`
/// until probe successes close the breaker.
pub fn configuration_fault_holds_open_until_an_operator<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = factory(suite_config(), clock.clone());
    call(&*breaker, config_fault());
    let snapshot = breaker.snapshot();
    assert_eq!(
        (snapshot.state, snapshot.failures, snapshot.needs_operator),
        (BreakerState::Closed, 1, false)
    );
    call(&*breaker, failure());
    call(&*breaker, config_fault());
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert!(snapshot.needs_operator, "{snapshot:?}");
    assert_eq!(snapshot.needs_operator_kind, Some("suite_config_fault"));
    let opened_at = snapshot.opened_at.unwrap();
    assert_eq!(snapshot.next_probe_at, Some(opened_at + CONFIG_FAULT_HOLD));
    clock.advance(CONFIG_FAULT_HOLD - Duration::from_millis(1));
    assert_rejected(&*breaker, BreakerState::Open);
    clock.advance(Duration::from_millis(1));
    let first = acquire(&*breaker);
    let second = acquire(&*breaker);
    assert!(breaker.snapshot().needs_operator);
    first.record(Outcome::Success);
    second.record(Outcome::Success);
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(
        (snapshot.needs_operator, snapshot.needs_operator_kind),
        (false, None)
    );
}

/// A probe failing with a configuration fault holds for the fault period too; `reset`
/// clears the mark.
pub fn configuration_fault_probe_holds_and_reset_clears<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let clock = ManualClock::new();
    let breaker = due_for_probe(&factory, &clock);
    assert!(!breaker.snapshot().needs_operator);
    acquire(&*breaker).record(config_fault());
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Open);
    assert!(snapshot.needs_operator);
    assert_eq!(
        snapshot.next_probe_at,
        Some(snapshot.opened_at.unwrap() + CONFIG_FAULT_HOLD)
    );
    breaker.reset();
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed);
    assert_eq!(
        (snapshot.needs_operator, snapshot.needs_operator_kind),
        (false, None)
    );
}

/// In a time window, outcomes older than the window no longer count: failures from before
/// a quiet period neither trip the breaker nor make up its minimum number of calls, for
/// the rate rule and the consecutive rule alike.
pub fn time_window_forgets_after_a_quiet_period<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let window = Duration::from_secs(60);
    let quiet = Duration::from_secs(3600);
    // The consecutive rule alone (a rate of 1.0 needs every call failing).
    let config = BreakerConfig {
        window_duration: Some(window),
        failure_rate_threshold: 1.0,
        ..suite_config()
    };
    let clock = ManualClock::new();
    let breaker = factory(config, clock.clone());
    call(&*breaker, Outcome::Success);
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_eq!(breaker.snapshot().failures, 2);
    clock.advance(quiet);
    let snapshot = breaker.snapshot();
    assert_eq!(
        (
            snapshot.successes,
            snapshot.failures,
            snapshot.consecutive_failures
        ),
        (0, 0, 0)
    );
    // Hours-old failures would have made this the third in a row.
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Closed);
    clock.advance(window / 2);
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Open);

    // The rate rule alone: old failures neither count nor make up the minimum of 4 calls.
    let config = BreakerConfig {
        window_duration: Some(window),
        consecutive_failures: 0,
        ..suite_config()
    };
    let clock = ManualClock::new();
    let breaker = factory(config, clock.clone());
    for _ in 0..3 {
        call(&*breaker, failure());
    }
    clock.advance(quiet);
    call(&*breaker, failure());
    call(&*breaker, failure());
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Closed);
    call(&*breaker, failure());
    assert_state(&*breaker, BreakerState::Open);
}

/// With `max_failures_per_tenant`, one tenant's failures alone cannot open the breaker
/// (failures over its cap count neither way), while failures spread over tenants still do;
/// `try_acquire()` callers are not capped.
pub fn tenant_cap_keeps_one_tenant_from_opening_it<F>(factory: F)
where
    F: Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>,
{
    let config = BreakerConfig {
        max_failures_per_tenant: 2,
        ..suite_config()
    };
    let breaker = factory(config.clone(), ManualClock::new());
    for _ in 0..20 {
        breaker
            .try_acquire_for("noisy-tenant")
            .unwrap()
            .record(failure());
    }
    let snapshot = breaker.snapshot();
    assert_eq!(snapshot.state, BreakerState::Closed, "{snapshot:?}");
    assert_eq!(snapshot.failures, 2);
    assert_eq!(snapshot.tenant_capped_failures, 18);
    breaker
        .try_acquire_for("another-tenant")
        .unwrap()
        .record(failure());
    assert_state(&*breaker, BreakerState::Open);

    let anonymous = factory(config, ManualClock::new());
    for _ in 0..3 {
        call(&*anonymous, failure());
    }
    assert_state(&*anonymous, BreakerState::Open);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __breaker_checks {
    // The checks every breaker passes, a count window and no tenant cap being enough.
    (count_window: $callback:ident, $($args:tt)*) => {
        $crate::$callback!(@checks $($args)*;
            starts_closed,
            trips_on_consecutive_failures,
            trips_on_failure_rate_after_minimum_calls,
            rejects_while_open,
            honours_retry_after,
            half_open_after_open_period,
            half_open_bounds_probes,
            dropped_probe_frees_its_slot,
            probe_successes_close,
            probe_failure_reopens_for_longer,
            late_results_are_ignored,
            ignored_outcomes_are_neutral,
            forced_open_holds_until_reset,
            forced_closed_holds_until_reset,
            snapshot_reports_history,
            rejections_carry_the_next_probe,
            configuration_fault_holds_open_until_an_operator,
            configuration_fault_probe_holds_and_reset_clears,
        );
    };
    // The checks of a time window and of the per-tenant failure cap.
    (windows: $callback:ident, $($args:tt)*) => {
        $crate::$callback!(@checks $($args)*;
            time_window_forgets_after_a_quiet_period,
            tenant_cap_keeps_one_tenant_from_opening_it,
        );
    };
}

/// Expands to one `#[test]` per breaker check, each building its breaker with `$factory`
/// (a `Fn(BreakerConfig, ManualClock) -> Arc<dyn Breaker>`).
#[macro_export]
macro_rules! breaker_behaviour_suite {
    ($factory:expr) => {
        $crate::__breaker_checks!(count_window: breaker_behaviour_suite, $factory);
        $crate::__breaker_checks!(windows: breaker_behaviour_suite, $factory);
    };
    (@checks $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::suites::breaker::$check($factory);
            }
        )*
    };
}

/// The checks that apply to a breaker with a count window and no tenant cap (a breaker
/// shared through a store refuses the others), as a `Vec<`[`Check`](crate::suites::Check)`>`
/// for a service-backed test binary. `$factory` (no argument) makes the breaker factory,
/// once per check; each check runs on a blocking thread of the harness's runtime, so the
/// factory may block on it (`Handle::current().block_on`).
#[macro_export]
macro_rules! breaker_behaviour_tests {
    ($factory:expr) => {{
        let mut tests = ::std::vec::Vec::new();
        $crate::__breaker_checks!(count_window: breaker_behaviour_tests, tests, $factory);
        tests
    }};
    (@checks $tests:ident, $factory:expr; $($check:ident),* $(,)?) => {
        $(
            $tests.push($crate::suites::Check {
                name: ::std::string::String::from(::core::stringify!($check)),
                body: ::std::boxed::Box::new(move || {
                    ::std::boxed::Box::pin(async move {
                        let factory = ($factory)();
                        ::tokio::task::spawn_blocking(move || {
                            $crate::suites::breaker::$check(factory)
                        })
                        .await
                        .unwrap_or_else(|failed| ::std::panic::resume_unwind(failed.into_panic()));
                    })
                }),
            });
        )*
    };
}
