//! The testkit's breaker behaviour suite, run on [`SharedBreaker`] against a real
//! `redis-server`, the script reading time from the suite's manual clock.
//!
//! The suite's checks are synchronous; each runs on a blocking thread, and the breaker is
//! wrapped so that every call first waits for the outcomes sent in the background and
//! reads the record (what a replica's background read does within one refresh interval),
//! then asks the way the engine does (`acquire_for`). Two checks are left out because a
//! shared breaker refuses their configuration: the time-based window and the per-tenant
//! failure cap (`SharedBreaker::new` says so).

mod common;

use common::factory;
use failover_testenv::harness::AsyncTest;
use failover_testenv::services::redis;

macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        vec![$(
            AsyncTest::new(stringify!($check), || async {
                let url = redis::shared().expect("checked by the harness").url().to_owned();
                tokio::task::spawn_blocking(move || {
                    failover_testkit::suites::breaker::$check(factory(url))
                })
                .await
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
            }),
        )*]
    };
}

fn main() -> std::process::ExitCode {
    let tests = checks![
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
    ];
    failover_testenv::harness::run("redis-server", redis::shared().map(|_| ()), tests)
}
