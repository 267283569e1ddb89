//! The seed's five scenarios, run through the adapter one after the other, each checked
//! against what the seed expects and against the requests the stand-ins received.

use failover_breaker::BreakerState;
use failover_core::{FailoverAdapter, FailoverError};
use failover_provider::{
    AttemptOutcome, AttemptRecord, Completion, CompletionRequest, ErrorKind, ResponseFormat, Usd,
};
use failover_standin::{Fault, StandIns, Vendor};
use failover_usage::UsageStats;

use failover_standin::seed::{AGENT, MODEL, seed_breaker_config};

use super::providers::{BEDROCK, OPENAI};

/// Scenario 1's prompt, asked again in scenario 4.
const CACHED_PROMPT: &str = "What is 2+2? Answer with just the number.";

/// Requests the two stand-ins received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Requests {
    /// Requests the Bedrock stand-in received.
    pub(crate) bedrock: usize,
    /// Requests the OpenAI stand-in received.
    pub(crate) openai: usize,
}

impl Requests {
    /// What was received since `before`.
    fn since(self, before: Requests) -> Requests {
        Requests {
            bedrock: self.bedrock - before.bedrock,
            openai: self.openai - before.openai,
        }
    }
}

/// One breaker as it stood after a scenario.
#[derive(Debug, Clone)]
pub(crate) struct BreakerView {
    /// The provider's name.
    pub(crate) provider: String,
    /// Its breaker's state.
    pub(crate) state: BreakerState,
    /// The failures it counted so far.
    pub(crate) failures: u64,
}

/// What one scenario did.
#[derive(Debug)]
pub(crate) struct Row {
    /// The scenario's name.
    pub(crate) scenario: &'static str,
    /// What the seed expects, in a few words.
    pub(crate) expected: &'static str,
    /// The adapter's answer (scenario 5: to its last request).
    pub(crate) outcome: Result<Completion, FailoverError>,
    /// How many requests the scenario sent through the adapter.
    pub(crate) sent: usize,
    /// What the stand-ins received during the scenario.
    pub(crate) requests: Requests,
    /// The breakers afterwards.
    pub(crate) breakers: Vec<BreakerView>,
    /// Each way the scenario differs from the seed's expectation; empty when it does not.
    pub(crate) problems: Vec<String>,
}

/// The facts a scenario checks; each one that does not hold is a problem.
#[derive(Debug, Default)]
struct Checks(Vec<String>);

impl Checks {
    fn expect(&mut self, holds: bool, fact: impl Into<String>) {
        if !holds {
            self.0.push(fact.into());
        }
    }

    /// The outcome is an answer by `provider`, from the cache or not.
    fn answered_by(
        &mut self,
        outcome: &Result<Completion, FailoverError>,
        provider: &str,
        cached: bool,
    ) {
        let what = if cached {
            "a cached answer"
        } else {
            "an answer"
        };
        match outcome {
            Ok(c) if c.provider == provider && c.cached == cached => {}
            Ok(c) => self.0.push(format!(
                "expected {what} from {provider}, got one from {} (cached: {})",
                c.provider, c.cached
            )),
            Err(error) => self
                .0
                .push(format!("expected {what} from {provider}, got: {error}")),
        }
    }

    fn requests(&mut self, got: Requests, bedrock: usize, openai: usize) {
        self.expect(
            got == Requests { bedrock, openai },
            format!(
                "expected {bedrock} request(s) at the Bedrock stand-in and {openai} at the \
                 OpenAI one, they received {} and {}",
                got.bedrock, got.openai
            ),
        );
    }
}

fn first_attempt(outcome: &Result<Completion, FailoverError>) -> Option<&AttemptRecord> {
    outcome.as_ref().ok().and_then(|c| c.attempts.first())
}

fn failed_unavailable(attempt: &AttemptRecord, provider: &str) -> bool {
    attempt.provider == provider
        && matches!(
            attempt.outcome,
            AttemptOutcome::Failed {
                kind: ErrorKind::Unavailable,
                ..
            }
        )
}

/// Scenario 5's error: all providers failed, Bedrock skipped (its breaker open) and OpenAI
/// failed as unavailable, both named in the message.
fn names_every_attempt(outcome: &Result<Completion, FailoverError>) -> bool {
    let Err(error @ FailoverError::AllProvidersFailed { attempts, .. }) = outcome else {
        return false;
    };
    let message = error.to_string();
    attempts.len() == 2
        && attempts[0].provider == BEDROCK
        && matches!(
            attempts[0].outcome,
            AttemptOutcome::SkippedBreakerOpen { .. }
        )
        && failed_unavailable(&attempts[1], OPENAI)
        && message.contains(&format!("{BEDROCK} ("))
        && message.contains(&format!("{OPENAI} ("))
}

/// The five scenarios over one adapter, its stand-ins and a tenant.
pub(crate) struct Scenarios<'a> {
    adapter: &'a FailoverAdapter,
    standins: &'a StandIns,
    tenant: &'a str,
}

impl<'a> Scenarios<'a> {
    /// Scenarios for `tenant` through `adapter`, whose providers talk to `standins`.
    pub(crate) fn new(
        adapter: &'a FailoverAdapter,
        standins: &'a StandIns,
        tenant: &'a str,
    ) -> Self {
        Self {
            adapter,
            standins,
            tenant,
        }
    }

    /// The seed's manual-test request: `gpt-4`, temperature 0.1, ten tokens, text.
    fn request(&self, prompt: &str) -> CompletionRequest {
        CompletionRequest::prompt(self.tenant, AGENT, MODEL, prompt)
            .temperature(0.1)
            .max_tokens(10)
            .response_format(ResponseFormat::Text)
    }

    async fn ask(&self, prompt: &str) -> Result<Completion, FailoverError> {
        self.adapter.generate_completion(self.request(prompt)).await
    }

    async fn received(&self) -> Requests {
        Requests {
            bedrock: self.standins.calls(Vendor::Bedrock).await,
            openai: self.standins.calls(Vendor::OpenAi).await,
        }
    }

    fn breakers(&self) -> Vec<BreakerView> {
        self.adapter
            .health()
            .providers
            .into_iter()
            .map(|p| BreakerView {
                provider: p.name,
                state: p.breaker.state,
                failures: p.breaker.failures,
            })
            .collect()
    }

    fn breaker_state(&self, provider: &str) -> Option<(BreakerState, u64)> {
        self.adapter.breaker(provider).map(|b| {
            let snapshot = b.snapshot();
            (snapshot.state, snapshot.failures)
        })
    }

    /// Runs the five scenarios in order.
    pub(crate) async fn run(&self) -> Vec<Row> {
        let mut rows = Vec::with_capacity(5);
        rows.push(self.normal_operation().await);
        rows.push(self.bedrock_failure().await);
        rows.push(self.breaker_open().await);
        let first_answer = rows[0].outcome.as_ref().ok().map(|c| c.content.clone());
        rows.push(self.cache_hit(first_answer).await);
        rows.push(self.all_providers_fail().await);
        rows
    }

    /// The row of a scenario that sent `sent` requests, started when the stand-ins had
    /// received `before`, and ended in `outcome`; `checks` records what does not hold.
    async fn row(
        &self,
        scenario: &'static str,
        expected: &'static str,
        before: Requests,
        sent: usize,
        outcome: Result<Completion, FailoverError>,
        checks: impl FnOnce(&mut Checks, &Result<Completion, FailoverError>, Requests),
    ) -> Row {
        let requests = self.received().await.since(before);
        let mut found = Checks::default();
        checks(&mut found, &outcome, requests);
        Row {
            scenario,
            expected,
            outcome,
            sent,
            requests,
            breakers: self.breakers(),
            problems: found.0,
        }
    }

    /// 1: Bedrock answers; the answer is cached.
    async fn normal_operation(&self) -> Row {
        let before = self.received().await;
        let outcome = self.ask(CACHED_PROMPT).await;
        self.row(
            "1. Normal operation",
            "Bedrock answers; cached",
            before,
            1,
            outcome,
            |checks, outcome, requests| {
                checks.answered_by(outcome, BEDROCK, false);
                checks.requests(requests, 1, 0);
            },
        )
        .await
    }

    /// 2: Bedrock's stand-in answers 503 once; OpenAI answers; Bedrock's breaker counts it.
    async fn bedrock_failure(&self) -> Row {
        self.standins
            .inject(Vendor::Bedrock, Fault::Unavailable, 1)
            .await;
        let before = self.received().await;
        let outcome = self.ask("What is 3+1? Answer with just the number.").await;
        let bedrock = self.breaker_state(BEDROCK);
        self.row(
            "2. Bedrock failure",
            "Bedrock 503, OpenAI answers; failure counted",
            before,
            1,
            outcome,
            |checks, outcome, requests| {
                checks.answered_by(outcome, OPENAI, false);
                checks.expect(
                    first_attempt(outcome).is_some_and(|a| failed_unavailable(a, BEDROCK)),
                    "the first attempt should be Bedrock's, failed as unavailable",
                );
                checks.expect(
                    bedrock == Some((BreakerState::Closed, 1)),
                    format!("Bedrock's breaker should be closed with 1 failure, is {bedrock:?}"),
                );
                checks.requests(requests, 1, 1);
            },
        )
        .await
    }

    /// 3: Bedrock's breaker forced open; OpenAI answers and Bedrock's server hears nothing.
    async fn breaker_open(&self) -> Row {
        if let Some(breaker) = self.adapter.breaker(BEDROCK) {
            breaker.force_open();
        }
        let before = self.received().await;
        let outcome = self.ask("Test fallback").await;
        self.row(
            "3. Circuit breaker open",
            "OpenAI at once; no request to Bedrock",
            before,
            1,
            outcome,
            |checks, outcome, requests| {
                checks.answered_by(outcome, OPENAI, false);
                checks.expect(
                    first_attempt(outcome).is_some_and(|a| {
                        a.provider == BEDROCK
                            && matches!(a.outcome, AttemptOutcome::SkippedBreakerOpen { .. })
                    }),
                    "Bedrock should be skipped, its breaker open",
                );
                checks.requests(requests, 0, 1);
            },
        )
        .await
    }

    /// 4: scenario 1's request again: the cache answers, no server hears anything, nothing
    /// is billed.
    async fn cache_hit(&self, first_answer: Option<String>) -> Row {
        let before = self.received().await;
        let outcome = self.ask(CACHED_PROMPT).await;
        self.row(
            "4. Cache hit",
            "cached; no request to any server; no cost",
            before,
            1,
            outcome,
            |checks, outcome, requests| {
                checks.answered_by(outcome, BEDROCK, true);
                if let Ok(completion) = outcome {
                    checks.expect(
                        Some(&completion.content) == first_answer.as_ref(),
                        "the cached answer should be scenario 1's",
                    );
                    checks.expect(
                        completion.estimated_cost == Usd::ZERO && completion.attempts.is_empty(),
                        "a cache hit should try no provider and cost nothing",
                    );
                }
                checks.requests(requests, 0, 0);
            },
        )
        .await
    }

    /// 5: Bedrock's breaker still open, OpenAI's stand-in answering 503 until OpenAI's
    /// breaker opens: each request ends in one error naming both attempts.
    async fn all_providers_fail(&self) -> Row {
        // As many failures as open a breaker.
        let failures_to_open = seed_breaker_config().consecutive_failures;
        let times = failures_to_open as usize;
        self.standins
            .inject(
                Vendor::OpenAi,
                Fault::Unavailable,
                u64::from(failures_to_open),
            )
            .await;
        let before = self.received().await;
        let mut outcome = self.ask("Everything is down").await;
        let mut errors_as_expected = usize::from(names_every_attempt(&outcome));
        for _ in 1..times {
            outcome = self.ask("Everything is down").await;
            errors_as_expected += usize::from(names_every_attempt(&outcome));
        }
        let openai = self.breaker_state(OPENAI).map(|(state, _)| state);
        self.row(
            "5. All providers fail",
            "OpenAI 503s open its breaker; error names every attempt",
            before,
            times,
            outcome,
            |checks, _, requests| {
                checks.expect(
                    errors_as_expected == times,
                    format!(
                        "each of the {times} requests should fail with one error naming Bedrock \
                         (skipped, breaker open) and OpenAI (unavailable); {errors_as_expected} did"
                    ),
                );
                checks.expect(
                    openai == Some(BreakerState::Open),
                    format!("OpenAI's breaker should be open, is {openai:?}"),
                );
                checks.requests(requests, 0, times);
            },
        )
        .await
    }
}

/// How the ledger differs from the calls the stand-ins received: one record per provider
/// call (successes for the answers, failures for the 503s), none for the cache hit.
pub(crate) fn ledger_problems(rows: &[Row], stats: &UsageStats) -> Vec<String> {
    let calls: usize = rows
        .iter()
        .map(|row| row.requests.bedrock + row.requests.openai)
        .sum();
    let answered = rows
        .iter()
        .filter(|row| row.outcome.as_ref().is_ok_and(|c| !c.cached))
        .count();
    let mut checks = Checks::default();
    checks.expect(
        stats.records == calls as u64,
        format!(
            "expected one record per provider call ({calls}), found {}",
            stats.records
        ),
    );
    checks.expect(
        stats.successes == answered as u64 && stats.failures == (calls - answered) as u64,
        format!(
            "expected {answered} successes and {} failures, found {} and {}",
            calls.saturating_sub(answered),
            stats.successes,
            stats.failures
        ),
    );
    checks.expect(stats.cache_hits == 0, "a cache hit should not be recorded");
    checks.0
}
