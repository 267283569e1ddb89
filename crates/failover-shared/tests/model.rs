//! The shared breaker against the testkit's reference model
//! ([`failover_testkit::suites::breaker_model`]), on a real `redis-server`, the script
//! reading time from the model's manual clock: random sequences of acquisitions, outcomes,
//! drops, time passing and operator actions, compared step by step. Configurations have a
//! count window and no tenant cap (a shared breaker refuses the others).

mod common;

use failover_breaker::{Clock, ManualClock};
use failover_testenv::harness::AsyncTest;
use failover_testenv::services::redis;
use failover_testkit::suites::breaker_model::{
    ModelFeatures, config_strategy, follows_the_reference_model, op_strategy,
};
use proptest::test_runner::{Config, TestRunner};

/// Each step is a few Redis round trips: fewer cases than the local breaker's 512.
const CASES: u32 = 256;

async fn shared_breaker_follows_the_reference_model() {
    let url = redis::shared()
        .expect("checked by the harness")
        .url()
        .to_owned();
    tokio::task::spawn_blocking(move || {
        let make = common::factory(url);
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            config_strategy(ModelFeatures::COUNT_WINDOW_ONLY),
            proptest::collection::vec(op_strategy(), 1..150),
        );
        runner
            .run(&strategy, |(config, ops)| {
                let clock = ManualClock::new();
                let base = clock.now();
                let breaker = make(config.0.clone(), clock.clone());
                follows_the_reference_model(&*breaker, &clock, base, config, ops)
            })
            .unwrap_or_else(|failure| panic!("{failure}"));
    })
    .await
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
}

fn main() -> std::process::ExitCode {
    failover_testenv::harness::run(
        "redis-server",
        redis::shared().map(|_| ()),
        vec![AsyncTest::new(
            "shared_breaker_follows_the_reference_model",
            shared_breaker_follows_the_reference_model,
        )],
    )
}
