//! One provider call: admission through the breaker, the deadline, and its usage record on
//! every terminal path (success, failure, or the caller dropping the call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_breaker::{Outcome, Permit};
use failover_provider::{
    AttemptOutcome, AttemptRecord, BreakerEffect, ErrorKind, ProviderError, ProviderResponse,
    ResponseFormat, TokenUsage, Usd,
};
use failover_usage::UsageOutcome;

use crate::accounting::{CallFacts, RequestContext};
use crate::adapter::Inner;

/// The breaker outcome an error stands for.
pub(crate) fn breaker_outcome(error: &ProviderError) -> Outcome {
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
                Err(ProviderError::new(
                    ErrorKind::Timeout,
                    "the request's deadline passed",
                ))
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
    match serde_json::from_str::<serde_json::Value>(content) {
        Ok(value) if value.is_object() => Ok(()),
        Ok(_) => Err(ProviderError::new(
            ErrorKind::MalformedResponse,
            "JSON mode content is not a JSON object",
        )),
        Err(error) => Err(ProviderError::new(
            ErrorKind::MalformedResponse,
            format!("JSON mode content is not valid JSON: {error}"),
        )),
    }
}

/// Validates a non-streaming answer against the request's format.
pub(crate) fn check_response(
    format: &ResponseFormat,
    response: ProviderResponse,
) -> Result<ProviderResponse, ProviderError> {
    check_json(format, &response.content).map(|()| response)
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

    /// Records a failure; `reported` is the provider's usage if a stream reported any.
    pub(crate) fn failed(
        mut self,
        error: &ProviderError,
        reported: Option<TokenUsage>,
    ) -> AttemptRecord {
        self.finished = true;
        if let Some(permit) = self.permit.take() {
            permit.record(breaker_outcome(error));
        }
        let (usage, estimated) = if self.received_bytes == 0 && reported.is_none() {
            // Nothing was generated: providers do not bill a refused or failed request.
            (TokenUsage::default(), false)
        } else {
            self.context.partial_usage(reported, self.received_bytes)
        };
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
        let (usage, estimated) = self.context.partial_usage(None, self.received_bytes);
        let cost = self.inner.ledger.cost(&self.provider, &self.model, &usage);
        self.write_usage(usage, estimated, cost, UsageOutcome::Cancelled);
    }
}
