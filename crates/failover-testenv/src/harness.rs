//! A test harness for tests that need a real service (Redis, a DynamoDB endpoint).
//!
//! libtest decides `#[ignore]` at compile time and has no run-time skip: a `#[tokio::test]`
//! that returns early when its server is missing is counted as *passed* — the silent-pass
//! anti-pattern. So test binaries that need a service run under this harness instead
//! (`harness = false` in their `[[test]]` section, built on `libtest-mimic`): before any
//! test runs, the binary checks that its service is available, and then
//!
//! - every test runs, each on its own multi-threaded tokio runtime; or
//! - when the service is unavailable, every test is reported as **ignored**, with the
//!   reason in the test line (`ignored (redis unavailable: …)`) and in the summary's ignored
//!   count; or
//! - under `FAILOVER_REQUIRE_SERVICES=1` (CI), every test **fails** with the reason.
//!
//! The usual libtest arguments (filters, `--test-threads`, `--nocapture`, `--ignored`,
//! `--list`) work as with the built-in harness.
//!
//! ```ignore
//! // tests/redis_semantics.rs, with `[[test]] name = "redis_semantics", harness = false`
//! failover_testenv::service_test_main! {
//!     service: "redis",
//!     available: failover_testenv::services::redis::shared(),
//!     tests: [ttl_is_set_on_every_write, purge_leaves_other_tenants],
//! }
//!
//! async fn ttl_is_set_on_every_write() { /* … */ }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

pub use libtest_mimic;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::recorded::TestRecorder;
use crate::services::{REQUIRE_SERVICES_ENV, services_required};

/// The future of one test body.
pub type TestFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One async test of a service-backed test binary.
pub struct AsyncTest {
    name: String,
    body: Box<dyn FnOnce() -> TestFuture + Send + 'static>,
}

impl AsyncTest {
    /// A test named `name` whose body is the future `body` returns.
    pub fn new<F, Fut>(name: impl Into<String>, body: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name: name.into(),
            body: Box::new(move || Box::pin(body())),
        }
    }

    /// The test's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for AsyncTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Runs one test on a runtime of its own, with a metrics recorder of its own (see
/// [`recorded`](crate::recorded)).
fn run_body(body: Box<dyn FnOnce() -> TestFuture + Send>) -> Result<(), Failed> {
    let recorder = TestRecorder::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || recorder.install_for_thread())
        .build()
        .map_err(|error| Failed::from(format!("cannot start a tokio runtime: {error}")))?;
    recorder.run(|| runtime.block_on(body()));
    Ok(())
}

/// The trials for `tests`: each runs when `availability` is `Ok`; otherwise each is
/// ignored with the reason — or, when `required`, fails with it. `service` names the
/// service in the reason (`"redis"`).
pub fn trials<E: std::fmt::Display>(
    service: &str,
    availability: Result<(), E>,
    tests: Vec<AsyncTest>,
    required: bool,
) -> Vec<Trial> {
    match availability {
        Ok(()) => tests.into_iter().map(runnable_trial).collect(),
        Err(reason) if required => {
            let reason = format!("{service} unavailable: {reason} ({REQUIRE_SERVICES_ENV}=1)");
            tests
                .into_iter()
                .map(|test| {
                    let reason = reason.clone();
                    Trial::test(test.name, move || Err(Failed::from(reason)))
                })
                .collect()
        }
        Err(reason) => ignored_trials(tests, &format!("{service} unavailable: {reason}")),
    }
}

/// A trial that runs `test`.
pub fn runnable_trial(test: AsyncTest) -> Trial {
    let AsyncTest { name, body } = test;
    Trial::test(name, move || run_body(body))
}

/// Trials that report each of `tests` as ignored, with `reason` in the test line.
pub fn ignored_trials(tests: Vec<AsyncTest>, reason: &str) -> Vec<Trial> {
    tests
        .into_iter()
        .map(|test| {
            let reason = reason.to_owned();
            Trial::ignorable_test(test.name, move || Ok(Completion::ignored_with(reason)))
        })
        .collect()
}

/// Runs `tests` with the process's libtest arguments (see [`trials`]); services are
/// required when `FAILOVER_REQUIRE_SERVICES=1`. Returns the process's exit code.
pub fn run<E: std::fmt::Display>(
    service: &str,
    availability: Result<(), E>,
    tests: Vec<AsyncTest>,
) -> ExitCode {
    let arguments = Arguments::from_args();
    libtest_mimic::run(
        &arguments,
        trials(service, availability, tests, services_required()),
    )
    .exit_code()
}

/// Declares the `main` of a service-backed test binary (`harness = false`): checks
/// `available` (a `Result<_, impl Display>`) once, then runs the listed `async fn` tests and
/// the checks of any behaviour suites (`failover_testkit::cache_behaviour_tests!` and
/// the like) through [`run`].
#[macro_export]
macro_rules! service_test_main {
    (
        service: $service:expr,
        available: $available:expr,
        tests: [$($test:path),* $(,)?]
        $(, suites: [$($suite:expr),* $(,)?])?
        $(,)?
    ) => {
        fn main() -> ::std::process::ExitCode {
            #[allow(unused_mut)]
            let mut tests: ::std::vec::Vec<$crate::harness::AsyncTest> = ::std::vec![
                $($crate::harness::AsyncTest::new(
                    ::core::stringify!($test).rsplit("::").next().unwrap_or(::core::stringify!($test)),
                    || $test(),
                )),*
            ];
            // A behaviour suite's checks (`failover_testkit::suites::Check`: a name and a
            // boxed body), taken by shape so this crate needs no testkit.
            $($(tests.extend(($suite).into_iter().map(|check| {
                $crate::harness::AsyncTest::new(check.name, check.body)
            }));)*)?
            $crate::harness::run($service, ($available).map(|_| ()), tests)
        }
    };
}
