//! One attempt on one provider: admission by the provider layers and then the breaker, and
//! on every terminal path (success, failure, or the caller dropping the call) the
//! breaker's outcome, the usage record and every admitting layer's `after_call` — in that
//! order, so layers observe a call the breaker and the ledger already know about.

use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_breaker::{BreakerState, Outcome, Permit};
use failover_provider::{
    AttemptOutcome, AttemptRecord, BreakerEffect, ErrorKind, JsonContract, ProviderError,
    ProviderRequest, ResponseFormat, TokenUsage, ToolCall, Usd,
};
use failover_usage::UsageOutcome;
use tracing::Span;

use crate::accounting::{CallFacts, RequestContext};
use crate::engine::Engine;
use crate::layers::{CallInfo, CallOutcome, RequestInfo, Spent, Ticket};
use crate::prepare::Prepared;
use crate::telemetry::{AttemptEnd, CallMetrics, end_attempt_span};

/// The breaker outcome an error stands for.
///
/// The request's own deadline is the caller's budget, not the provider's fault: like a
/// cancellation it judges nobody (a client sending 50 ms deadlines must not trip a healthy
/// provider), whichever layer noticed it. A call that ran past its share of the deadline,
/// and the providers' own per-attempt, first-token and stall time-outs, do count. A
/// configuration fault (credentials, an unknown model, an exhausted account) is a failure
/// that needs an operator: the breaker holds open longer when it trips on one.
pub(crate) fn breaker_outcome(error: &ProviderError) -> Outcome {
    if error.is_request_deadline() {
        return Outcome::Ignored;
    }
    match error.kind().breaker_effect() {
        BreakerEffect::Failure if error.kind() == ErrorKind::AuthOrConfig => {
            Outcome::NeedsOperator {
                kind: error.kind().as_str(),
            }
        }
        BreakerEffect::Failure => Outcome::Failure {
            kind: error.kind().as_str(),
            retry_after: error.retry_after(),
        },
        BreakerEffect::Ignored => Outcome::Ignored,
    }
}

/// JSON mode is a contract: content that is not JSON (or not an object when an object was
/// asked for) is a malformed response, never handed back as if it were fine. Schema
/// conformance is checked by providers, which know their own structured-output guarantees.
/// An answer that calls tools is not the JSON answer yet (the model asks for a tool's
/// result first), so it is not held to the contract.
pub(crate) fn check_json(
    format: &ResponseFormat,
    content: &str,
    tool_calls: &[ToolCall],
) -> Result<(), ProviderError> {
    if !format.is_json() || !tool_calls.is_empty() {
        return Ok(());
    }
    JsonContract::object().check_text(content)
}

/// A failed call: the error, and the usage the provider reported with an answer that was
/// rejected (a non-JSON answer in JSON mode was still billed).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: ProviderError,
    pub(crate) reported: Option<TokenUsage>,
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Self {
            error,
            reported: None,
        }
    }
}

/// What admission decided for an attempt.
pub(crate) enum Verdict {
    /// The provider may be called.
    Call,
    /// Not this provider; the walk goes on (the outcome is the attempt's record).
    Skip(AttemptOutcome),
    /// The deadline passed while a layer was deciding: the walk ends.
    Stop,
}

enum Phase {
    /// Provider layers are deciding; the provider has not been called.
    Admitting,
    /// The breaker admitted the call: it owes a permit outcome (until a stream commits, when
    /// the permit reports its success and is gone) and a usage record.
    Calling {
        permit: Option<Permit>,
        /// The call's number among this request's calls (the usage record's `attempt`).
        number: u32,
        started: Instant,
    },
    Finished,
}

/// One attempt on one provider, from the first provider layer asked to the last told.
///
/// Dropping it unfinished means the caller went away: a call in flight reports `Ignored`
/// to the breaker, writes a `Cancelled` usage record with what was consumed so far
/// (estimated when the provider did not say) and tells the layers
/// [`CallOutcome::Cancelled`]; an attempt still being admitted tells the layers that
/// admitted it [`CallOutcome::Abandoned`].
pub(crate) struct Attempt {
    engine: Arc<Engine>,
    context: Arc<RequestContext>,
    deadline: Option<Instant>,
    /// The provider's index in the chain.
    slot: usize,
    model: String,
    fallback_used: bool,
    /// One per provider layer that admitted the attempt, in registration order.
    tickets: Vec<Ticket>,
    phase: Phase,
    /// Bytes of text already received (streams).
    pub(crate) received_bytes: usize,
    metrics: Arc<CallMetrics>,
    span: Span,
}

impl Attempt {
    /// `fallback_used`: an earlier provider of the chain was tried (or skipped) for this
    /// request, so this one is standing in for it.
    pub(crate) fn new(
        engine: &Arc<Engine>,
        prepared: &Prepared,
        slot: usize,
        model: &str,
        fallback_used: bool,
    ) -> Self {
        let provider = &engine.chain[slot].provider;
        let metrics = engine.metrics.call(provider.as_ref(), slot, model);
        let span = metrics.span(fallback_used);
        Self {
            metrics,
            span,
            engine: Arc::clone(engine),
            context: Arc::clone(&prepared.context),
            deadline: prepared.deadline,
            slot,
            model: model.to_owned(),
            fallback_used,
            // Allocates only when layers are registered.
            tickets: Vec::with_capacity(engine.provider_layers.len()),
            phase: Phase::Admitting,
            received_bytes: 0,
        }
    }

    pub(crate) fn provider(&self) -> &str {
        &self.engine.chain[self.slot].name
    }

    /// Asks the provider layers in registration order, then the breaker. `calls_made`
    /// counts the request's admitted calls, for the usage record's `attempt`.
    pub(crate) async fn admit(
        &mut self,
        request: &ProviderRequest,
        calls_made: &mut u32,
    ) -> Verdict {
        if !self.engine.provider_layers.is_empty()
            && let Some(stopped) = self.ask_layers(request).await
        {
            return stopped;
        }
        match self.engine.chain[self.slot]
            .breaker
            .acquire_for(&self.context.tenant_id)
            .decide()
            .await
        {
            Err(rejected) => {
                self.tell_layers(&CallOutcome::BreakerOpen);
                self.phase = Phase::Finished;
                let retry_in = rejected
                    .next_probe_at
                    .map(|at| at.saturating_duration_since(self.engine.breaker_clock.now()));
                self.skipped(AttemptEnd::SkippedBreakerOpen, retry_in);
                Verdict::Skip(AttemptOutcome::SkippedBreakerOpen {
                    retry_in,
                    forced: rejected.state == BreakerState::ForcedOpen,
                })
            }
            Ok(permit) => {
                *calls_made += 1;
                self.span
                    .record("failover.attempt", crate::telemetry::as_i64(*calls_made));
                self.phase = Phase::Calling {
                    permit: Some(permit),
                    number: *calls_made,
                    started: Instant::now(),
                };
                Verdict::Call
            }
        }
    }

    /// Runs every provider layer's `before_call`; `Some` when one stopped the attempt.
    async fn ask_layers(&mut self, request: &ProviderRequest) -> Option<Verdict> {
        let engine = Arc::clone(&self.engine);
        let provider = &engine.chain[self.slot].name;
        for layer in &engine.provider_layers {
            let call = CallInfo::new(
                RequestInfo::new(&self.context, self.deadline),
                provider,
                &self.model,
                self.fallback_used,
            );
            match layer.before_call(call, request).decide(self.deadline).await {
                Some(Ok(ticket)) => self.tickets.push(ticket),
                Some(Err(rejection)) => {
                    self.tell_layers(&CallOutcome::Rejected {
                        layer: layer.name(),
                        rejection: &rejection,
                    });
                    self.phase = Phase::Finished;
                    let end = if rejection.is_breaker_open() {
                        AttemptEnd::SkippedBreakerOpen
                    } else {
                        AttemptEnd::SkippedRejected
                    };
                    self.skipped(end, rejection.retry_after());
                    return Some(Verdict::Skip(if rejection.is_breaker_open() {
                        AttemptOutcome::SkippedBreakerOpen {
                            retry_in: rejection.retry_after(),
                            forced: false,
                        }
                    } else {
                        AttemptOutcome::SkippedRejected {
                            layer: layer.name().to_owned(),
                            reason: rejection.to_string(),
                        }
                    }));
                }
                None => {
                    self.tell_layers(&CallOutcome::Abandoned);
                    self.phase = Phase::Finished;
                    return Some(Verdict::Stop);
                }
            }
        }
        None
    }

    /// The attempt's span: the provider call runs in it.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The provider named `model` as the one that served the answer.
    pub(crate) fn served_by(&self, model: &str) {
        self.span.record("gen_ai.response.model", model);
    }

    /// A stream's first chunk of content arrived `after` the call started.
    pub(crate) fn first_chunk(&self, after: Duration) {
        self.metrics.first_chunk(after);
    }

    /// A stream is ending; `gap` was its longest wait between two chunks.
    pub(crate) fn longest_gap(&self, gap: Duration) {
        self.metrics.longest_gap(gap);
    }

    fn skipped(&self, end: AttemptEnd, retry_after: Option<Duration>) {
        self.metrics.skipped(end);
        end_attempt_span(&self.span, end, None, retry_after);
    }

    /// Tells the metrics and the span how a call ended.
    fn called(&self, end: AttemptEnd, spent: &Spent, retry_after: Option<Duration>) {
        self.metrics.called(
            end,
            spent.latency,
            &spent.usage,
            spent.cost,
            self.context.tenant_label.clone(),
        );
        end_attempt_span(&self.span, end, Some(&spent.usage), retry_after);
    }

    /// A stream reached its commit point: the provider answered, and its breaker hears so
    /// now. The rest of the stream is only accounting, so one slow or abandoned stream
    /// never holds a half-open provider's probe slot.
    pub(crate) fn commit(&mut self) {
        if let Phase::Calling { permit, .. } = &mut self.phase
            && let Some(permit) = permit.take()
        {
            permit.record(Outcome::Success);
        }
    }

    /// Records a success with the provider's usage; returns its cost and its record.
    pub(crate) fn succeeded(
        mut self,
        usage: TokenUsage,
        usage_estimated: bool,
    ) -> (Usd, AttemptRecord) {
        let (permit, number, started) = self.take_call();
        if let Some(permit) = permit {
            permit.record(Outcome::Success);
        }
        let spent = self.spend(usage, usage_estimated, started);
        self.called(AttemptEnd::Success, &spent, None);
        if self.fallback_used {
            self.metrics.fell_back();
        }
        self.write_usage(number, spent, UsageOutcome::Success);
        self.tell_layers(&CallOutcome::Succeeded(spent));
        (spent.cost, self.record(AttemptOutcome::Succeeded, started))
    }

    /// Records a failure; `reported` is the usage the provider reported with an answer
    /// that was rejected.
    pub(crate) fn failed(
        mut self,
        error: &ProviderError,
        reported: Option<TokenUsage>,
    ) -> AttemptRecord {
        let (permit, number, started) = self.take_call();
        // After a stream's commit point the breaker already heard the call succeed.
        if let Some(permit) = permit {
            permit.record(breaker_outcome(error));
        }
        let (usage, estimated) = self.consumed(reported, error.is_deadline_cut());
        let spent = self.spend(usage, estimated, started);
        self.called(
            AttemptEnd::Failure(error.kind()),
            &spent,
            error.retry_after(),
        );
        self.write_usage(number, spent, UsageOutcome::Failed { kind: error.kind() });
        self.tell_layers(&CallOutcome::Failed { error, spent });
        self.record(
            AttemptOutcome::Failed {
                kind: error.kind(),
                message: error.detail(),
            },
            started,
        )
    }

    fn take_call(&mut self) -> (Option<Permit>, u32, Instant) {
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Calling {
                permit,
                number,
                started,
            } => (permit, number, started),
            Phase::Admitting | Phase::Finished => {
                unreachable!("only an admitted call succeeds or fails")
            }
        }
    }

    /// What an unsuccessful call consumed — one rule for failures and cancellations:
    /// - the provider's figures when it reported them;
    /// - an estimate from the input and the text received when text was received, or when
    ///   we walked away (`abandoned`: cancelled, or the deadline ran out) — the provider
    ///   went on processing, and bills for it;
    /// - nothing when the provider answered with an error before generating anything:
    ///   providers do not bill a refused or failed request.
    fn consumed(&self, reported: Option<TokenUsage>, abandoned: bool) -> (TokenUsage, bool) {
        if reported.is_none() && self.received_bytes == 0 && !abandoned {
            return (TokenUsage::default(), false);
        }
        self.context.partial_usage(reported, self.received_bytes)
    }

    fn spend(&self, usage: TokenUsage, usage_estimated: bool, started: Instant) -> Spent {
        Spent {
            usage,
            usage_estimated,
            cost: self
                .engine
                .ledger
                .cost(self.provider(), &self.model, &usage),
            latency: started.elapsed(),
        }
    }

    fn record(&mut self, outcome: AttemptOutcome, started: Instant) -> AttemptRecord {
        AttemptRecord {
            provider: self.provider().to_owned(),
            // Finished: the model is not needed any more.
            model: std::mem::take(&mut self.model),
            outcome,
            latency: started.elapsed(),
        }
    }

    fn write_usage(&self, number: u32, spent: Spent, outcome: UsageOutcome) {
        let record = self.context.usage_record(CallFacts {
            attempt: number,
            provider: self.provider(),
            model: &self.model,
            usage: spent.usage,
            usage_estimated: spent.usage_estimated,
            cost: spent.cost,
            latency: spent.latency,
            outcome,
            fallback_used: self.fallback_used,
        });
        self.engine.ledger.record(record);
    }

    /// Tells every layer that admitted the attempt how it ended, innermost first.
    fn tell_layers(&mut self, outcome: &CallOutcome<'_>) {
        if self.tickets.is_empty() {
            return;
        }
        let call = CallInfo::new(
            RequestInfo::new(&self.context, self.deadline),
            &self.engine.chain[self.slot].name,
            &self.model,
            self.fallback_used,
        );
        let layers = &self.engine.provider_layers[..self.tickets.len()];
        for (layer, ticket) in layers.iter().zip(self.tickets.drain(..)).rev() {
            layer.after_call(call, ticket, outcome);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Finished => {}
            Phase::Admitting => self.tell_layers(&CallOutcome::Abandoned),
            Phase::Calling {
                permit,
                number,
                started,
            } => {
                // The permit's own drop reports `Ignored`: a cancellation judges nobody.
                drop(permit);
                let (usage, estimated) = self.consumed(None, true);
                let spent = self.spend(usage, estimated, started);
                self.called(AttemptEnd::Cancelled, &spent, None);
                self.write_usage(number, spent, UsageOutcome::Cancelled);
                self.tell_layers(&CallOutcome::Cancelled(spent));
            }
        }
    }
}
