//! The runner of the scenario suite: one test binary (`harness = false`) whose tests each
//! assemble a [`Harness`](crate::Harness), run in either mode, in two tiers.
//!
//! - **Offline**: every test runs twice. The `memory::` tier keeps the cache and the ledger
//!   in `MemoryCache` and `MemoryUsageSink` and needs no server, so every seed class runs on
//!   any machine. The `services::` tier keeps them in Redis and DynamoDB: the runner checks
//!   once that Redis and a DynamoDB endpoint are available; its tests run, or — when a
//!   service is missing — are *ignored* with the reason, or *fail* under
//!   `FAILOVER_REQUIRE_SERVICES=1`.
//! - **Live**: `SKIP_AWS_INTEGRATION_TESTS=1` reports every test as ignored (skipped, and
//!   said so); otherwise it names every missing variable and stops, or prints the estimated
//!   cost of the run, runs the tests that work live (tests that need scripted stand-in
//!   faults are ignored, with that reason) and fails when no live test ran. The memory tier
//!   is ignored: a live run is for the real stores.

use std::process::ExitCode;

use failover_provider::{TokenUsage, Usd};
use failover_standin::seed::{BEDROCK, BEDROCK_MODEL, MODEL, OPENAI};
use failover_testenv::harness::libtest_mimic::{self, Arguments, Trial};
use failover_testenv::harness::{AsyncTest, TestFuture, ignored_trials, runnable_trial, trials};
use failover_testenv::live;
use failover_testenv::services::services_required;
use failover_usage::PricingTable;

use crate::harness::{Mode, Stores, in_tier};

/// At most this many provider calls per live test (the suite's tests stay under it).
pub const MAX_CALLS_PER_LIVE_TEST: u64 = 8;
/// At most this many input tokens per Bedrock call: a short seed prompt, plus — in JSON
/// mode — Anthropic's tool-use system prompt and the forced tool's schema.
const MAX_BEDROCK_INPUT_TOKENS: u64 = 1_000;
/// At most this many input tokens per OpenAI call (short seed prompts, no tool prompt).
const MAX_OPENAI_INPUT_TOKENS: u64 = 300;
/// At most this many output tokens per call (the suite asks for ≤ 50).
const MAX_OUTPUT_TOKENS_PER_CALL: u64 = 50;

/// One test of the suite and where it can run.
#[derive(Debug)]
pub struct SuiteTest {
    name: String,
    run: fn() -> TestFuture,
    offline_only: Option<&'static str>,
}

impl SuiteTest {
    /// A test named `name` (`<class>::<fn>`) that runs in both modes.
    pub fn both(name: String, run: fn() -> TestFuture) -> Self {
        Self {
            name,
            run,
            offline_only: None,
        }
    }

    /// A test that needs the offline stand-ins (scripted faults, exact server call
    /// counts); in live mode it is ignored with `reason`.
    pub fn offline_only(name: String, run: fn() -> TestFuture, reason: &'static str) -> Self {
        Self {
            name,
            run,
            offline_only: Some(reason),
        }
    }

    /// The test in tier `stores`: named `<tier>::<class>::<fn>`, its harnesses keeping
    /// their stores there.
    fn in_tier(&self, stores: Stores) -> AsyncTest {
        let run = self.run;
        AsyncTest::new(format!("{}::{}", stores.name(), self.name), move || {
            in_tier(stores, run())
        })
    }
}

/// Declares a suite module's tests: `suite_tests! { both: [a, b], offline_only("why"): [c] }`.
/// Names are `<tier>::<module>::<fn>`, so `cargo test --test suite caching::` runs one seed
/// class in both tiers, and `-- memory::caching::` in one.
#[macro_export]
macro_rules! suite_tests {
    (
        both: [$($both:ident),* $(,)?]
        $(, offline_only($reason:expr): [$($offline:ident),* $(,)?])*
        $(,)?
    ) => {{
        let module = ::core::module_path!().rsplit("::").next().unwrap_or("suite");
        #[allow(unused_mut)]
        let mut tests: ::std::vec::Vec<$crate::runner::SuiteTest> = ::std::vec![
            $($crate::runner::SuiteTest::both(
                ::std::format!("{module}::{}", ::core::stringify!($both)),
                || ::std::boxed::Box::pin($both()),
            )),*
        ];
        $($(tests.push($crate::runner::SuiteTest::offline_only(
            ::std::format!("{module}::{}", ::core::stringify!($offline)),
            || ::std::boxed::Box::pin($offline()),
            $reason,
        ));)*)*
        tests
    }};
}

/// An upper bound of a live run's provider cost: `tests` × [`MAX_CALLS_PER_LIVE_TEST`] calls,
/// each priced as the dearer of the largest call the suite sends to either routed model.
pub fn estimated_live_cost(tests: u64, pricing: &PricingTable) -> Option<Usd> {
    let bedrock = TokenUsage::new(MAX_BEDROCK_INPUT_TOKENS, MAX_OUTPUT_TOKENS_PER_CALL);
    let openai = TokenUsage::new(MAX_OPENAI_INPUT_TOKENS, MAX_OUTPUT_TOKENS_PER_CALL);
    let per_call = [
        pricing.cost(BEDROCK, BEDROCK_MODEL, &bedrock)?,
        pricing.cost(OPENAI, MODEL, &openai)?,
    ]
    .into_iter()
    .max_by_key(Usd::amount)?;
    Some(Usd::new(
        per_call.amount() * rust_decimal::Decimal::from(tests * MAX_CALLS_PER_LIVE_TEST),
    ))
}

fn offline_availability() -> Result<(), String> {
    let redis = failover_testenv::services::redis::shared().map(|_| ());
    let dynamodb = failover_testenv::moto::shared().map(|_| ());
    match (redis, dynamodb) {
        (Ok(()), Ok(())) => Ok(()),
        (redis, dynamodb) => Err([redis.err(), dynamodb.err()]
            .into_iter()
            .flatten()
            .map(|unavailable| unavailable.to_string())
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// Runs `tests` in the process's mode with the process's libtest arguments; returns the
/// exit code.
pub fn main(tests: Vec<SuiteTest>) -> ExitCode {
    let arguments = Arguments::from_args();
    match Mode::from_env() {
        Mode::Offline => {
            let mut all: Vec<Trial> = tests
                .iter()
                .map(|test| runnable_trial(test.in_tier(Stores::Memory)))
                .collect();
            all.extend(trials(
                "redis and dynamodb",
                offline_availability(),
                tests
                    .iter()
                    .map(|test| test.in_tier(Stores::Services))
                    .collect(),
                services_required(),
            ));
            libtest_mimic::run(&arguments, all).exit_code()
        }
        Mode::Live => run_live(&arguments, tests),
    }
}

fn run_live(arguments: &Arguments, tests: Vec<SuiteTest>) -> ExitCode {
    let lookup = |name: &str| std::env::var(name).ok();
    if live::skip_requested(lookup) {
        eprintln!(
            "{}=1: the live run is skipped; every test below is reported as ignored",
            live::SKIP_ENV
        );
        let tests = tests
            .iter()
            .map(|test| test.in_tier(Stores::Services))
            .collect();
        let reason = format!("live run skipped: {}=1", live::SKIP_ENV);
        return libtest_mimic::run(arguments, ignored_trials(tests, &reason)).exit_code();
    }
    let missing = live::missing_from_process();
    if !missing.is_empty() {
        eprintln!("{}", live::missing_message(&missing));
        return ExitCode::FAILURE;
    }
    for line in live::endpoint_overrides(lookup) {
        eprintln!("live run: {line}, not to the public service");
    }
    let mut live_tests = Vec::new();
    let mut offline_only = Vec::new();
    for test in &tests {
        match test.offline_only {
            None => live_tests.push(test.in_tier(Stores::Services)),
            Some(reason) => offline_only.push((test.in_tier(Stores::Services), reason)),
        }
    }
    let pricing = PricingTable::embedded();
    let count = u64::try_from(live_tests.len()).unwrap_or(u64::MAX);
    match estimated_live_cost(count, &pricing) {
        Some(cost) => eprintln!(
            "live run: {count} tests, at most {} provider calls of ≤ {MAX_BEDROCK_INPUT_TOKENS} \
             (Bedrock) / {MAX_OPENAI_INPUT_TOKENS} (OpenAI) input + {MAX_OUTPUT_TOKENS_PER_CALL} \
             output tokens; estimated cost ≤ {cost} (pricing.toml as of {})",
            count * MAX_CALLS_PER_LIVE_TEST,
            pricing.as_of().unwrap_or("unknown"),
        ),
        None => eprintln!("live run: {count} tests; the routed models have no price"),
    }
    let mut all: Vec<Trial> = live_tests.into_iter().map(runnable_trial).collect();
    for (test, reason) in offline_only {
        all.extend(ignored_trials(
            vec![test],
            &format!("offline only: {reason}"),
        ));
    }
    all.extend(ignored_trials(
        tests
            .iter()
            .map(|test| test.in_tier(Stores::Memory))
            .collect(),
        "memory tier: offline only (a live run is for the real stores)",
    ));
    let conclusion = libtest_mimic::run(arguments, all);
    if !arguments.list && conclusion.num_passed == 0 && conclusion.num_failed == 0 {
        eprintln!("no live test ran (check the filter): a live run that tests nothing fails");
        return ExitCode::FAILURE;
    }
    conclusion.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_estimate_scales_with_the_tests_and_uses_the_dearer_model() {
        let pricing = PricingTable::embedded();
        let one = estimated_live_cost(1, &pricing).unwrap();
        let ten = estimated_live_cost(10, &pricing).unwrap();
        assert_eq!(ten.amount(), one.amount() * rust_decimal::Decimal::from(10));
        let usage = TokenUsage::new(MAX_BEDROCK_INPUT_TOKENS, MAX_OUTPUT_TOKENS_PER_CALL);
        let bedrock = pricing.cost(BEDROCK, BEDROCK_MODEL, &usage).unwrap();
        assert!(one.amount() >= bedrock.amount() * rust_decimal::Decimal::from(8));
        let usage = TokenUsage::new(MAX_OPENAI_INPUT_TOKENS, MAX_OUTPUT_TOKENS_PER_CALL);
        let openai = pricing.cost(OPENAI, MODEL, &usage).unwrap();
        assert!(one.amount() >= openai.amount() * rust_decimal::Decimal::from(8));
    }
}
