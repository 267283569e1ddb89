//! The shared cache behaviour suite, unchanged, on `ElastiCacheCache` against a real Redis
//! (`REDIS_URL`, else a `redis-server` this binary spawns on a free port), under the service
//! harness: without a server every check is reported as ignored (failed under
//! `FAILOVER_REQUIRE_SERVICES=1`), never as passed. Each check gets a fresh cache with its
//! own key prefix and encryption key.

mod common;

use failover_testenv::require_service;
use failover_testenv::services::redis as redis_service;

failover_testenv::service_test_main! {
    service: "redis",
    available: redis_service::shared(),
    tests: [],
    suites: [failover_testkit::cache_behaviour_tests!({
        let url = require_service!(redis_service::shared()).url().to_owned();
        move || common::suite_cache(url)
    })],
}
