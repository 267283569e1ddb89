//! One classified error type for every provider.
//!
//! Backends classify once, at their boundary, into an [`ErrorKind`]; the kind alone decides
//! what the adapter does next. The table is also in `docs/error-taxonomy.md`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms that decide retry, breaker and failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Rate limited or over a request/token quota that refills (HTTP 429, Bedrock
    /// `ThrottlingException`, `ServiceQuotaExceededException`).
    Throttled,
    /// The service or model cannot serve now (5xx, `ServiceUnavailable`, `ModelNotReady`,
    /// `InternalServerException`).
    Unavailable,
    /// No answer in time: our own per-attempt, first-token or stall time-out, or the
    /// provider's (`ModelTimeoutException`, HTTP 408).
    Timeout,
    /// Connecting, TLS or I/O failed before a response was read.
    Network,
    /// A stream ended before its terminal event (no `[DONE]`, no `messageStop`).
    StreamCut,
    /// The provider answered with something we cannot parse, or content that breaks the
    /// requested JSON contract.
    MalformedResponse,
    /// The model itself failed on this input (`ModelErrorException`,
    /// `ModelStreamErrorException`).
    ModelError,
    /// The request is wrong for this provider and would be wrong on a retry (HTTP 400,
    /// `ValidationException` about the content).
    InvalidRequest,
    /// The input does not fit the model's context window.
    ContextTooLong,
    /// The provider's safety system refused the request or cut the answer.
    ContentFiltered,
    /// Credentials, permissions, a missing model or an exhausted account — the provider is
    /// unusable until an operator acts (401, 403, 404, `insufficient_quota`).
    AuthOrConfig,
    /// The caller went away (the future or stream was dropped).
    Cancelled,
}

/// How a failed call may be retried on the same provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPolicy {
    /// The same call can succeed later (after `retry_after` when given).
    Temporary,
    /// Repeating the same call on the same provider will fail the same way.
    Permanent,
}

/// What an error means for the provider's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerEffect {
    /// The provider is at fault: counts towards opening the breaker.
    Failure,
    /// The caller caused it (bad input, cancellation): neither success nor failure.
    Ignored,
}

impl ErrorKind {
    /// Every kind, in table order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Throttled,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Network,
        ErrorKind::StreamCut,
        ErrorKind::MalformedResponse,
        ErrorKind::ModelError,
        ErrorKind::InvalidRequest,
        ErrorKind::ContextTooLong,
        ErrorKind::ContentFiltered,
        ErrorKind::AuthOrConfig,
        ErrorKind::Cancelled,
    ];

    /// A stable snake_case name for logs, metrics and usage records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::StreamCut => "stream_cut",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::ModelError => "model_error",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ContextTooLong => "context_too_long",
            ErrorKind::ContentFiltered => "content_filtered",
            ErrorKind::AuthOrConfig => "auth_or_config",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// Whether repeating the call on the same provider may succeed. Retry is opt-in per
    /// kind: anything not listed as temporary is permanent.
    pub fn retry(self) -> RetryPolicy {
        match self {
            ErrorKind::Throttled
            | ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::Network
            | ErrorKind::StreamCut
            | ErrorKind::ModelError => RetryPolicy::Temporary,
            _ => RetryPolicy::Permanent,
        }
    }

    /// What the error means for the provider's breaker.
    pub fn breaker_effect(self) -> BreakerEffect {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::ContextTooLong
            | ErrorKind::ContentFiltered
            | ErrorKind::Cancelled => BreakerEffect::Ignored,
            _ => BreakerEffect::Failure,
        }
    }

    /// Whether the adapter should try the next provider in the chain.
    ///
    /// Provider faults fail over. A request the provider judged wrong (`InvalidRequest`)
    /// or unsafe (`ContentFiltered`) is returned to the caller: another provider is no
    /// cure, and routing around a safety refusal is a policy decision we do not make
    /// silently. `ContextTooLong` fails over because the next model's window may be
    /// larger. `Cancelled` stops everything.
    pub fn fails_over(self) -> bool {
        !matches!(
            self,
            ErrorKind::InvalidRequest | ErrorKind::ContentFiltered | ErrorKind::Cancelled
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from one provider call, classified at the backend boundary.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {}", self.detail())]
pub struct ProviderError {
    kind: ErrorKind,
    message: String,
    provider_code: Option<String>,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

fn code_suffix(code: Option<&str>, status: Option<u16>) -> String {
    match (code, status) {
        (Some(code), Some(status)) => format!(" (HTTP {status}, {code})"),
        (Some(code), None) => format!(" ({code})"),
        (None, Some(status)) => format!(" (HTTP {status})"),
        (None, None) => String::new(),
    }
}

/// The provider code marking a time-out that is the request's own deadline running out.
const REQUEST_DEADLINE_CODE: &str = "request_deadline";
/// The provider code marking a call that used up its share of the request's deadline.
const ATTEMPT_DEADLINE_CODE: &str = "attempt_deadline";

impl ProviderError {
    /// The request's own deadline ran out: an [`ErrorKind::Timeout`] that is the caller's
    /// budget, not the provider's slowness. Whichever layer notices it first (the adapter,
    /// or a provider enforcing [`ProviderRequest::deadline`](crate::ProviderRequest::deadline))
    /// returns this, so the breaker never counts it and the call is billed by estimate.
    pub fn request_deadline() -> Self {
        Self::new(ErrorKind::Timeout, "the request's deadline passed")
            .with_provider_code(REQUEST_DEADLINE_CODE)
    }

    /// Whether this is [`request_deadline`](Self::request_deadline).
    pub fn is_request_deadline(&self) -> bool {
        self.kind == ErrorKind::Timeout && self.provider_code() == Some(REQUEST_DEADLINE_CODE)
    }

    /// The call used up its share of the request's deadline
    /// ([`ProviderRequest::attempt_deadline`](crate::ProviderRequest::attempt_deadline)) and
    /// was abandoned so a later provider still has time: an [`ErrorKind::Timeout`] that is
    /// the provider's (it counts against its breaker).
    pub fn attempt_deadline() -> Self {
        Self::new(
            ErrorKind::Timeout,
            "no answer within the provider's share of the request's deadline",
        )
        .with_provider_code(ATTEMPT_DEADLINE_CODE)
    }

    /// Whether the caller stopped waiting for this call at a deadline —
    /// [`request_deadline`](Self::request_deadline) or
    /// [`attempt_deadline`](Self::attempt_deadline). The provider may still be working on
    /// it, and bill for it, so such a call is accounted by estimate.
    pub fn is_deadline_cut(&self) -> bool {
        self.kind == ErrorKind::Timeout
            && matches!(
                self.provider_code(),
                Some(REQUEST_DEADLINE_CODE | ATTEMPT_DEADLINE_CODE)
            )
    }

    /// A new error of `kind`. The message must never contain a secret.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            provider_code: None,
            http_status: None,
            retry_after: None,
            source: None,
        }
    }

    /// Attaches the provider's own error code (`ThrottlingException`,
    /// `insufficient_quota`, …).
    pub fn with_provider_code(mut self, code: impl Into<String>) -> Self {
        self.provider_code = Some(code.into());
        self
    }

    /// Attaches the HTTP status.
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// Attaches the provider's retry hint (`Retry-After`).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The classified kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message with the provider's code and HTTP status, without the kind:
    /// `slow down (HTTP 429, ThrottlingException)`.
    pub fn detail(&self) -> String {
        format!(
            "{}{}",
            self.message,
            code_suffix(self.provider_code.as_deref(), self.http_status)
        )
    }

    /// The provider's raw error code, when it gave one.
    pub fn provider_code(&self) -> Option<&str> {
        self.provider_code.as_deref()
    }

    /// The HTTP status, when the error came from an HTTP response.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// How long the provider asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_faults_never_count_against_the_breaker() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::Cancelled,
            ErrorKind::ContentFiltered,
        ] {
            assert_eq!(kind.breaker_effect(), BreakerEffect::Ignored, "{kind}");
            assert!(!kind.fails_over(), "{kind}");
        }
    }

    #[test]
    fn configuration_faults_are_permanent_failures_that_fail_over() {
        let kind = ErrorKind::AuthOrConfig;
        assert_eq!(kind.retry(), RetryPolicy::Permanent);
        assert_eq!(kind.breaker_effect(), BreakerEffect::Failure);
        assert!(kind.fails_over());
    }

    #[test]
    fn display_names_kind_code_and_status() {
        let error = ProviderError::new(ErrorKind::Throttled, "slow down")
            .with_provider_code("ThrottlingException")
            .with_http_status(429)
            .with_retry_after(Duration::from_secs(3));
        assert_eq!(
            error.to_string(),
            "throttled: slow down (HTTP 429, ThrottlingException)"
        );
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn taxonomy_table_matches_the_code() {
        let doc = include_str!("../../../docs/error-taxonomy.md");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter(|line| line.starts_with("| `"))
            .take_while(|line| !line.contains("ValidationError"))
            .map(|line| line.split('|').map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), ErrorKind::ALL.len(), "one row per kind");
        for (row, kind) in rows.iter().zip(ErrorKind::ALL) {
            assert_eq!(row[1], format!("`{kind}`"));
            let retry = match kind.retry() {
                RetryPolicy::Temporary => "temporary",
                RetryPolicy::Permanent => "permanent",
            };
            let breaker = match kind.breaker_effect() {
                BreakerEffect::Failure => "failure",
                BreakerEffect::Ignored => "ignored",
            };
            let failover = if kind.fails_over() { "yes" } else { "no" };
            assert_eq!(
                (row[3], row[4], row[5]),
                (retry, breaker, failover),
                "row of {kind}"
            );
        }
    }

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
