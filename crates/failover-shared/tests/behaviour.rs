//! The testkit's breaker behaviour suite, run on [`SharedBreaker`] against a real
//! `redis-server`, the script reading time from the suite's manual clock: every check that
//! applies to a count window without a tenant cap (a shared breaker refuses a time window
//! and the cap: `SharedBreaker::new` says so).
//!
//! The checks are synchronous: the breaker is wrapped ([`common::Blocking`]) so that each
//! call first waits for the outcomes sent in the background and reads the record, then
//! asks the way the engine does (`acquire_for`).
//!
//! [`SharedBreaker`]: failover_shared::SharedBreaker

mod common;

use failover_testenv::services::redis;

failover_testenv::service_test_main! {
    service: "redis-server",
    available: redis::shared(),
    tests: [],
    suites: [failover_testkit::breaker_behaviour_tests!(|| {
        common::factory(redis::shared().expect("checked by the harness").url().to_owned())
    })],
}
