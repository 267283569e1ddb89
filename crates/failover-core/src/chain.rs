//! The walk down the provider chain for one request: which provider to try next, one
//! [`Attempt`] each (layers, breaker, call), whether an error fails over or stops, and the
//! record of every provider tried or skipped. Plain and streaming completions share it and
//! differ only in what trying a provider means, so both apply the same rules — and a new
//! concern is a layer, not a branch here.

use std::sync::Arc;

use failover_provider::{
    AttemptOutcome, AttemptRecord, Capabilities, JsonModeSupport, Provider, ProviderRequest,
    ResponseFormat,
};

use crate::attempt::{Attempt, Failure, Verdict};
use crate::engine::{Engine, ProviderSlot};
use crate::error::FailoverError;
use crate::prepare::Prepared;

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
pub(crate) async fn walk<'a, T, F, Fut>(
    engine: &'a Arc<Engine>,
    prepared: &'a Prepared,
    mut try_provider: F,
) -> Result<Answered<T>, FailoverError>
where
    F: FnMut(&'a dyn Provider, ProviderRequest) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let streaming = prepared.context.streamed;
    let mut attempts = Vec::new();
    let mut calls_made = 0;
    for (index, slot) in engine.chain.iter().enumerate() {
        if prepared.deadline_passed() {
            break;
        }
        let Some(model) = engine.router.resolve(&prepared.request.model, &slot.name) else {
            continue;
        };
        if let Some(reason) = unsupported(
            &slot.capabilities,
            &prepared.request.response_format,
            streaming,
        ) {
            attempts.push(skipped(
                slot,
                model,
                AttemptOutcome::SkippedUnsupported {
                    reason: reason.to_owned(),
                },
            ));
            continue;
        }
        let request = prepared.provider_request(model);
        let mut attempt = Attempt::new(engine, prepared, index, model);
        match attempt.admit(&request, &mut calls_made).await {
            Verdict::Call => {}
            Verdict::Skip(outcome) => {
                attempts.push(skipped(slot, model, outcome));
                continue;
            }
            Verdict::Stop => break,
        }
        match try_provider(slot.provider.as_ref(), request).await {
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
    Err(exhausted(prepared, attempts))
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
fn exhausted(prepared: &Prepared, attempts: Vec<AttemptRecord>) -> FailoverError {
    let request_id = prepared.request_id().clone();
    if prepared.deadline_passed() {
        FailoverError::DeadlineExceeded {
            request_id,
            attempts,
        }
    } else {
        FailoverError::AllProvidersFailed {
            request_id,
            attempts,
        }
    }
}

/// Why a provider cannot serve a request, if it cannot.
fn unsupported(
    capabilities: &Capabilities,
    format: &ResponseFormat,
    streaming: bool,
) -> Option<&'static str> {
    if streaming && !capabilities.streaming {
        return Some("streaming unsupported");
    }
    let json_support = match format {
        ResponseFormat::Text => JsonModeSupport::Native,
        ResponseFormat::JsonObject => capabilities.json_object,
        ResponseFormat::JsonSchema { .. } => capabilities.json_schema,
    };
    (json_support == JsonModeSupport::Unsupported).then_some("JSON mode unsupported")
}
