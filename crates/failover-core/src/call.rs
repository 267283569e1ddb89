//! One provider call: admission through the breaker, the deadline, and its usage record on
//! every terminal path (success, failure, or the caller dropping the call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_breaker::{Outcome, Permit};
use failover_provider::{
    AttemptOutcome, AttemptRecord, BreakerEffect, ErrorKind, JsonContract, ProviderError,
    ResponseFormat, TokenUsage, Usd,
};
use failover_usage::UsageOutcome;

use crate::accounting::{CallFacts, RequestContext};
use crate::adapter::Inner;

/// The provider code marking a time-out that is the request's own deadline running out,
/// not the provider's slowness.
const REQUEST_DEADLINE_CODE: &str = "request_deadline";

/// Whether `error` is the request's deadline running out.
fn is_request_deadline(error: &ProviderError) -> bool {
    error.kind() == ErrorKind::Timeout && error.provider_code() == Some(REQUEST_DEADLINE_CODE)
}

/// The breaker outcome an error stands for.
///
/// The request's own deadline is the caller's budget, not the provider's fault: like a
/// cancellation it judges nobody (a client sending 50 ms deadlines must not trip a healthy
/// provider). Providers enforce their own per-attempt, first-token and stall time-outs,
/// which do count.
pub(crate) fn breaker_outcome(error: &ProviderError) -> Outcome {
    if is_request_deadline(error) {
        return Outcome::Ignored;
    }
    match error.kind().breaker_effect() {
        BreakerEffect::Failure => Outcome::Failure {
            kind: error.kind().as_str(),
            retry_after: error.retry_after(),
        },
        BreakerEffect::Ignored => Outcome::Ignored,
    }
}

/// Runs `call` until `deadline`; running out is a [`ErrorKind::Timeout`].
pub(crate) async fn before_deadline<T>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match deadline {
        None => call.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or_else(|_| {
                Err(
                    ProviderError::new(ErrorKind::Timeout, "the request's deadline passed")
                        .with_provider_code(REQUEST_DEADLINE_CODE),
                )
            }),
    }
}

/// JSON mode is a contract: content that is not JSON (or not an object when an object was
/// asked for) is a malformed response, never handed back as if it were fine. Schema
/// conformance is checked by providers, which know their own structured-output guarantees.
pub(crate) fn check_json(format: &ResponseFormat, content: &str) -> Result<(), ProviderError> {
    if !format.is_json() {
        return Ok(());
    }
    JsonContract::object().check_text(content)
}

/// An admitted call in flight: holds the breaker permit and owes one usage record.
///
/// Dropping it before [`succeeded`](Self::succeeded) or [`failed`](Self::failed) means the
/// caller went away: the permit reports `Ignored` and a `Cancelled` usage record is written
/// with what was consumed so far (estimated when the provider did not say).
pub(crate) struct Call {
    inner: Arc<Inner>,
    context: Arc<RequestContext>,
    permit: Option<Permit>,
    pub(crate) attempt: u32,
    pub(crate) provider: String,
    pub(crate) model: String,
    pub(crate) fallback_used: bool,
    started: Instant,
    /// Bytes of text already received (streams).
    pub(crate) received_bytes: usize,
    finished: bool,
}

impl Call {
    pub(crate) fn new(
        inner: Arc<Inner>,
        context: Arc<RequestContext>,
        permit: Permit,
        attempt: u32,
        provider: &str,
        model: &str,
        fallback_used: bool,
    ) -> Self {
        Self {
            inner,
            context,
            permit: Some(permit),
            attempt,
            provider: provider.to_owned(),
            model: model.to_owned(),
            fallback_used,
            started: Instant::now(),
            received_bytes: 0,
            finished: false,
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records a success with the provider's usage and returns its cost.
    pub(crate) fn succeeded(
        mut self,
        usage: TokenUsage,
        usage_estimated: bool,
    ) -> (Usd, AttemptRecord) {
        self.finished = true;
        if let Some(permit) = self.permit.take() {
            permit.record(Outcome::Success);
        }
        let cost = self.inner.ledger.cost(&self.provider, &self.model, &usage);
        self.write_usage(usage, usage_estimated, cost, UsageOutcome::Success);
        (cost, self.attempt_record(AttemptOutcome::Succeeded))
    }

    /// Records a failure; `reported` is the usage the provider reported with the failed
    /// answer, if any (a non-JSON answer in JSON mode was still billed).
    pub(crate) fn failed(
        mut self,
        error: &ProviderError,
        reported: Option<TokenUsage>,
    ) -> AttemptRecord {
        self.finished = true;
        if let Some(permit) = self.permit.take() {
            permit.record(breaker_outcome(error));
        }
        let (usage, estimated) = self.consumed(reported, is_request_deadline(error));
        let cost = self.inner.ledger.cost(&self.provider, &self.model, &usage);
        self.write_usage(
            usage,
            estimated,
            cost,
            UsageOutcome::Failed { kind: error.kind() },
        );
        self.attempt_record(AttemptOutcome::Failed {
            kind: error.kind(),
            message: error.detail(),
        })
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

    fn attempt_record(&self, outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            provider: self.provider.clone(),
            model: self.model.clone(),
            outcome,
            latency: self.elapsed(),
        }
    }

    fn write_usage(
        &self,
        usage: TokenUsage,
        usage_estimated: bool,
        cost: Usd,
        outcome: UsageOutcome,
    ) {
        let record = self.context.usage_record(CallFacts {
            attempt: self.attempt,
            provider: &self.provider,
            model: &self.model,
            usage,
            usage_estimated,
            cost,
            latency: self.elapsed(),
            outcome,
            fallback_used: self.fallback_used,
        });
        self.inner.ledger.record(record);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The permit's own drop reports `Ignored`: a cancellation judges nobody.
        self.permit.take();
        let (usage, estimated) = self.consumed(None, true);
        let cost = self.inner.ledger.cost(&self.provider, &self.model, &usage);
        self.write_usage(usage, estimated, cost, UsageOutcome::Cancelled);
    }
}
