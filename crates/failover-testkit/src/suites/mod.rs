//! Behaviour suites generic over each trait: every backend runs the same checks.
//!
//! A backend that needs no server runs a suite as `#[tokio::test]`s (the `*_behaviour_suite!`
//! macros); one that needs a server gets the checks as a list of [`Check`]s
//! (`*_behaviour_tests!`) for a runner that reports a missing server as ignored — the
//! `failover-testenv` crate's `service_test_main!` takes them in its `suites:`. The list is
//! made of std types only, so this crate depends on the trait crates and nothing else.

use std::future::Future;
use std::pin::Pin;

pub mod breaker;
pub mod breaker_model;
pub mod cache;
pub mod usage;

/// The future of one check.
pub type CheckFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One check of a behaviour suite, named and ready to run: `body()` builds the backend
/// and runs the check.
pub struct Check {
    /// The check's test name (`cache_tenant_isolation`, …).
    pub name: String,
    /// Runs the check.
    pub body: Box<dyn FnOnce() -> CheckFuture + Send + 'static>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
