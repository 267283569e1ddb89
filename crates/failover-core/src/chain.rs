//! The walk down the provider chain for one request: which provider to try next, one
//! [`Attempt`] each (layers, breaker, call), whether an error fails over or stops, and the
//! record of every provider tried or skipped. Plain and streaming completions share it and
//! differ only in what trying a provider means, so both apply the same rules — and a new
//! concern is a layer, not a branch here.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use failover_provider::{
    AttemptOutcome, AttemptRecord, ErrorKind, Provider, ProviderError, ProviderRequest, TokenUsage,
    Usd,
};
use failover_usage::UsageOutcome;
use futures::FutureExt;
use tracing::Instrument;

use crate::accounting::CallFacts;
use crate::attempt::{Attempt, Failure, Verdict};
use crate::deadline::{self, CallLimits};
use crate::engine::{Engine, ProviderSlot};
use crate::error::FailoverError;
use crate::prepare::Prepared;
use crate::routing::Route;
use crate::telemetry::AttemptEnd;

/// The provider that answered: its attempt, still open (the caller records the success
/// once the answer is complete), what trying it produced, and every attempt before it.
pub(crate) struct Answered<T> {
    pub(crate) attempt: Attempt,
    pub(crate) value: T,
    pub(crate) attempts: Vec<AttemptRecord>,
}

/// Tries each provider in chain order with `try_provider` until one answers.
///
/// Providers without a route are passed over; unsupported ones, those a provider layer
/// rejects and those whose breaker is open are recorded as skipped. A failure whose kind
/// fails over moves on to the next provider; any other ends the request with
/// [`FailoverError::Refused`]. The walk stops when the deadline has passed.
///
/// A call that a later provider could take over from gets only its share of the time left
/// (see [`crate::deadline`]); `try_provider` must hold it to the [`CallLimits`] it is
/// given. A provider that panics is a failed call (and fails over), not a crash of the
/// caller's task.
pub(crate) async fn walk<'a, T, F, Fut>(
    engine: &'a Arc<Engine>,
    prepared: &'a Prepared,
    mut try_provider: F,
) -> Result<Answered<T>, FailoverError>
where
    F: FnMut(&'a dyn Provider, ProviderRequest, CallLimits) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let streaming = prepared.context.streamed;
    let mut attempts = Vec::new();
    let mut calls_made = 0;
    for (index, slot) in engine.chain.iter().enumerate() {
        if prepared.deadline_passed() {
            break;
        }
        let Some(route) = candidate(engine, prepared, slot) else {
            continue;
        };
        let model = route.model.as_str();
        if let Some(reason) = prepared.needs.unmet(&slot.capabilities, route) {
            engine
                .metrics
                .call(slot.provider.as_ref(), index, model)
                .skipped(AttemptEnd::SkippedUnsupported);
            attempts.push(skipped(
                slot,
                model,
                AttemptOutcome::SkippedUnsupported {
                    reason: reason.to_string(),
                },
            ));
            continue;
        }
        let mut request = prepared.provider_request(model);
        if let Some(deadline) = prepared.deadline
            && later_candidate(engine, prepared, index)
        {
            request.attempt_deadline =
                Some(deadline::share_of(deadline, engine.config.attempt_share));
        }
        let mut attempt = Attempt::new(engine, prepared, index, model, !attempts.is_empty());
        match attempt.admit(&request, &mut calls_made).await {
            Verdict::Call => {}
            Verdict::Skip(outcome) => {
                attempts.push(skipped(slot, model, outcome));
                continue;
            }
            Verdict::Stop => break,
        }
        let limits = CallLimits::of(&request);
        let call = try_provider(slot.provider.as_ref(), request, limits)
            .instrument(attempt.span().clone());
        let result = match AssertUnwindSafe(call).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(Failure::from(panicked(&slot.name, &*panic))),
        };
        match result {
            Ok(value) => {
                return Ok(Answered {
                    attempt,
                    value,
                    attempts,
                });
            }
            Err(Failure { error, reported }) => {
                let provider = slot.name.clone();
                attempts.push(attempt.failed(&error, reported));
                tracing::warn!(
                    request_id = %prepared.request_id(),
                    provider = %provider,
                    kind = %error.kind(),
                    streaming,
                    %error,
                    "provider call failed"
                );
                if !error.kind().fails_over() {
                    return Err(FailoverError::Refused {
                        request_id: prepared.request_id().clone(),
                        provider,
                        kind: error.kind(),
                        message: error.detail(),
                        attempts,
                    });
                }
            }
        }
    }
    Err(exhausted(engine, prepared, attempts, calls_made))
}

/// The route `slot` serves this request with, when it routes it at all.
fn candidate<'e>(
    engine: &'e Engine,
    prepared: &Prepared,
    slot: &ProviderSlot,
) -> Option<&'e Route> {
    engine
        .router
        .resolve_route(&prepared.request.model, &slot.name)
}

/// Whether a provider after `index` could still take the request over (it routes the
/// model and supports the request), so the call at `index` gets only a share of the time.
fn later_candidate(engine: &Engine, prepared: &Prepared, index: usize) -> bool {
    engine.chain.iter().skip(index + 1).any(|slot| {
        candidate(engine, prepared, slot)
            .is_some_and(|route| prepared.needs.unmet(&slot.capabilities, route).is_none())
    })
}

/// A provider's panic as the failure of its call.
pub(crate) fn panicked(provider: &str, panic: &(dyn std::any::Any + Send)) -> ProviderError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    tracing::error!(provider, panic = %what, "provider panicked; treated as a failed call");
    ProviderError::new(
        ErrorKind::Unavailable,
        format!("the provider panicked: {what}"),
    )
    .with_provider_code("panic")
}

fn skipped(slot: &ProviderSlot, model: &str, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        provider: slot.name.clone(),
        model: model.to_owned(),
        outcome,
        latency: std::time::Duration::ZERO,
    }
}

/// The error for a request no provider answered.
///
/// When no provider was called and at least one was skipped for its open breaker, the
/// request is [`FailoverError::Unavailable`], with the earliest time any breaker admits a
/// probe again; it also leaves a usage record (outcome rejected, no cost), so the ledger
/// shows the outage.
fn exhausted(
    engine: &Engine,
    prepared: &Prepared,
    attempts: Vec<AttemptRecord>,
    calls_made: u32,
) -> FailoverError {
    let request_id = prepared.request_id().clone();
    if prepared.deadline_passed() {
        return FailoverError::DeadlineExceeded {
            request_id,
            attempts,
        };
    }
    let first_open = attempts
        .iter()
        .find(|attempt| matches!(attempt.outcome, AttemptOutcome::SkippedBreakerOpen { .. }));
    match first_open {
        Some(open) if calls_made == 0 => {
            record_rejected(engine, prepared, open);
            FailoverError::Unavailable {
                request_id,
                retry_after: earliest_retry(&attempts),
                attempts,
            }
        }
        _ => FailoverError::AllProvidersFailed {
            request_id,
            attempts,
        },
    }
}

/// The soonest any skipped provider may be tried again.
fn earliest_retry(attempts: &[AttemptRecord]) -> Option<Duration> {
    attempts
        .iter()
        .filter_map(|attempt| match attempt.outcome {
            AttemptOutcome::SkippedBreakerOpen { retry_in, .. } => retry_in,
            _ => None,
        })
        .min()
}

fn record_rejected(engine: &Engine, prepared: &Prepared, open: &AttemptRecord) {
    let record = prepared.context.usage_record(CallFacts {
        attempt: 0,
        provider: &open.provider,
        model: &open.model,
        usage: TokenUsage::default(),
        usage_estimated: false,
        cost: Usd::ZERO,
        latency: prepared.started.elapsed(),
        outcome: UsageOutcome::Rejected,
        fallback_used: false,
    });
    engine.ledger.record(record);
}
