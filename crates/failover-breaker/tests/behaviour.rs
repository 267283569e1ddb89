//! The testkit's breaker behaviour suite, run on [`CircuitBreaker`].

use std::sync::Arc;

use failover_breaker::{Breaker, CircuitBreaker};

failover_testkit::breaker_behaviour_suite!(|config, clock| {
    Arc::new(CircuitBreaker::with_clock(config, Arc::new(clock))) as Arc<dyn Breaker>
});
