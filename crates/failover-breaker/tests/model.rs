//! The local [`CircuitBreaker`] against the testkit's reference model
//! ([`failover_testkit::suites::breaker_model`]), with every feature the model knows.

use std::sync::Arc;

use failover_breaker::{CircuitBreaker, Clock, ManualClock};
use failover_testkit::suites::breaker_model::{
    ModelFeatures, config_strategy, follows_the_reference_model, op_strategy,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_follows_the_reference_model(
        config in config_strategy(ModelFeatures::ALL),
        ops in proptest::collection::vec(op_strategy(), 1..200),
    ) {
        let clock = ManualClock::new();
        let base = clock.now();
        let breaker = CircuitBreaker::with_clock(config.0.clone(), Arc::new(clock.clone()));
        follows_the_reference_model(&breaker, &clock, base, config, ops)?;
    }
}
