//! A plain completion, start to end: prepare, request layers, cache and flights, the chain
//! walk, then price, remember and answer. The order of these steps, and of the layers in
//! them, is documented in [`crate::layers`].

use std::sync::Arc;

use failover_cache::CachedCompletion;
use failover_provider::{Completion, CompletionRequest, RequestId, Usd};
use tracing::Instrument;

use crate::attempt::{Failure, check_json};
use crate::chain::{self, Answered};
use crate::engine::Engine;
use crate::error::FailoverError;
use crate::layers::RequestOutcome;
use crate::prepare::{Prepared, prepare};
use crate::request_scope::RequestScope;
use crate::reuse::{self, Lookup};
use crate::telemetry::{RequestEnd, RequestFacts, RequestTrace};

/// Answers one request (see
/// [`FailoverAdapter::generate_completion`](crate::FailoverAdapter::generate_completion)).
pub(crate) async fn generate(
    engine: &Arc<Engine>,
    request: CompletionRequest,
) -> Result<Completion, FailoverError> {
    let id = request.request_id.clone().unwrap_or_else(RequestId::random);
    let mut trace = RequestTrace::start(&engine.metrics, &RequestFacts::of(&request, &id, false));
    // Entered on every poll only when a subscriber wants the span: the hot path pays
    // nothing for a disabled one.
    let result = if trace.span().is_disabled() {
        run(engine, request, id).await
    } else {
        run(engine, request, id)
            .instrument(trace.span().clone())
            .await
    };
    trace.finish_with(&result, |completion| {
        (
            if completion.cached {
                RequestEnd::Cached
            } else {
                RequestEnd::Success
            },
            Some((&completion.provider, completion.attempts.len())),
        )
    });
    result
}

async fn run(
    engine: &Arc<Engine>,
    request: CompletionRequest,
    id: RequestId,
) -> Result<Completion, FailoverError> {
    let mut prepared = prepare(engine, request, id, false)?;
    let mut scope = RequestScope::enter(engine, &prepared).await?;
    let result = answer(engine, &mut prepared).await;
    scope.finish_with(result, |completion| RequestOutcome::Completed(completion))
}

async fn answer(
    engine: &Arc<Engine>,
    prepared: &mut Prepared,
) -> Result<Completion, FailoverError> {
    let leader = match reuse::lookup(engine, prepared).await {
        Lookup::Answered(hit) => return Ok(from_cache(prepared, hit)),
        Lookup::Missed { leader } => leader,
    };
    let prepared = &*prepared;
    let format = &prepared.request.response_format;
    let Answered {
        attempt,
        value: response,
        mut attempts,
    } = chain::walk(engine, prepared, |provider, request, limits| async move {
        let response = limits.run(provider.complete(request)).await?;
        if let Err(error) = check_json(format, &response.content, &response.tool_calls) {
            return Err(Failure {
                error,
                reported: Some(response.usage),
            });
        }
        Ok(response)
    })
    .await?;

    if !response.model.is_empty() {
        attempt.served_by(&response.model);
    }
    let (cost, record) = attempt.succeeded(response.usage, false);
    // The model that served the answer, as the provider reports it (`gpt-4o-2024-08-06`
    // for a route to `gpt-4o`); the attempt and its usage record keep the routed model,
    // which is what the price list knows.
    let provider = record.provider.clone();
    let model = if response.model.is_empty() {
        record.model.clone()
    } else {
        response.model.clone()
    };
    attempts.push(record);
    if reuse::wanted(prepared) {
        let answer = reuse::fresh_answer(
            &provider,
            &model,
            response.content.clone(),
            response.tool_calls.clone(),
            response.finish_reason.clone(),
            response.usage,
            cost,
        );
        reuse::remember(engine, prepared, answer, leader).await;
    }
    Ok(Completion {
        request_id: prepared.request_id().clone(),
        provider,
        model,
        content: response.content,
        tool_calls: response.tool_calls,
        finish_reason: response.finish_reason,
        usage: response.usage,
        estimated_cost: cost,
        cached: false,
        latency: prepared.started.elapsed(),
        attempts,
    })
}

/// A completion served without a provider call of its own.
fn from_cache(prepared: &Prepared, hit: CachedCompletion) -> Completion {
    Completion {
        request_id: prepared.request_id().clone(),
        provider: hit.provider,
        model: hit.model,
        content: hit.content,
        tool_calls: hit.tool_calls,
        finish_reason: hit.finish_reason,
        usage: hit.usage,
        estimated_cost: Usd::ZERO,
        cached: true,
        latency: prepared.started.elapsed(),
        attempts: Vec::new(),
    }
}
