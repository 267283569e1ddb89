//! The adapter's error: what a caller gets when no provider could answer.

use std::fmt;
use std::time::Duration;

use failover_provider::{AttemptOutcome, AttemptRecord, ErrorKind, RequestId};

use crate::layers::RejectionKind;
use crate::validate::ValidationError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverError {
    /// The request was refused before any cache or provider was touched.
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    /// The adapter was shut down ([`FailoverAdapter::shutdown`](crate::FailoverAdapter::shutdown)):
    /// it takes no new requests.
    #[error("the adapter is shut down and takes no new requests")]
    ShutDown,
    /// A request layer rejected the request (a budget, a rate limit) before the cache and
    /// any provider were touched.
    #[error("request {request_id} rejected by {layer}: {reason}")]
    Rejected {
        /// The request's id.
        request_id: RequestId,
        /// The rejecting layer's name.
        layer: String,
        /// Why, in the layer's words.
        reason: String,
        /// When trying again may succeed, if the layer knows.
        retry_after: Option<Duration>,
        /// What kind of limit the layer enforces.
        kind: RejectionKind,
    },
    /// Every provider was tried or skipped, and none answered.
    #[error(
        "all providers failed for request {request_id}: {}",
        Attempts(attempts)
    )]
    AllProvidersFailed {
        /// The request's id.
        request_id: RequestId,
        /// Every provider tried or skipped, in order.
        attempts: Vec<AttemptRecord>,
    },
    /// No provider could be called: each was skipped (its breaker open, a layer's refusal,
    /// no support for the request), at least one because its breaker is open.
    #[error(
        "no provider is available for request {request_id}{}: {}",
        RetryIn(*retry_after),
        Attempts(attempts)
    )]
    Unavailable {
        /// The request's id.
        request_id: RequestId,
        /// The earliest time any skipped provider may be tried again, from when the request
        /// failed; `None` when none will reopen by itself (every one forced open by an
        /// operator, or refused without a hint).
        retry_after: Option<Duration>,
        /// Every provider skipped, in order.
        attempts: Vec<AttemptRecord>,
    },
    /// A provider refused the request for a reason another provider would not cure
    /// (invalid request, content filter): returned at once, without failover.
    #[error("{provider} refused request {request_id}: {kind}: {message}")]
    Refused {
        /// The request's id.
        request_id: RequestId,
        /// The provider that refused.
        provider: String,
        /// The error's kind.
        kind: ErrorKind,
        /// The provider's message.
        message: String,
        /// Every provider tried or skipped, in order.
        attempts: Vec<AttemptRecord>,
    },
    /// The request's deadline passed before any provider answered.
    #[error("deadline exceeded for request {request_id}: {}", Attempts(attempts))]
    DeadlineExceeded {
        /// The request's id.
        request_id: RequestId,
        /// Every provider tried or skipped before the deadline.
        attempts: Vec<AttemptRecord>,
    },
    /// A stream failed after its first chunk reached the caller: the text received so far
    /// is incomplete. Never a silent clean end.
    #[error("stream from {provider} interrupted after {delivered_bytes} bytes: {kind}: {message}")]
    StreamInterrupted {
        /// The request's id.
        request_id: RequestId,
        /// The provider that was streaming.
        provider: String,
        /// The error's kind.
        kind: ErrorKind,
        /// The error's message.
        message: String,
        /// Bytes of text delivered before the failure.
        delivered_bytes: usize,
    },
}

impl FailoverError {
    /// The attempts made, where the error carries them.
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            FailoverError::AllProvidersFailed { attempts, .. }
            | FailoverError::Unavailable { attempts, .. }
            | FailoverError::Refused { attempts, .. }
            | FailoverError::DeadlineExceeded { attempts, .. } => attempts,
            FailoverError::Invalid(_)
            | FailoverError::ShutDown
            | FailoverError::Rejected { .. }
            | FailoverError::StreamInterrupted { .. } => &[],
        }
    }

    /// When trying again may succeed, where the error knows: the earliest reopening of a
    /// breaker ([`Unavailable`](FailoverError::Unavailable)), or a rejecting layer's hint.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FailoverError::Unavailable { retry_after, .. }
            | FailoverError::Rejected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// ` (retry in 12.3 s)` or nothing.
struct RetryIn(Option<Duration>);

impl fmt::Display for RetryIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(wait) => write!(f, " (retry in {:.1} s)", wait.as_secs_f64()),
            None => Ok(()),
        }
    }
}

/// Formats attempts as `bedrock (model-id): throttled: slow down; openai (gpt-4): breaker open`.
struct Attempts<'a>(&'a [AttemptRecord]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no provider serves this request");
        }
        for (index, attempt) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} ({}): ", attempt.provider, attempt.model)?;
            match &attempt.outcome {
                AttemptOutcome::Succeeded => f.write_str("succeeded")?,
                AttemptOutcome::Failed { kind, message } => write!(f, "{kind}: {message}")?,
                AttemptOutcome::SkippedBreakerOpen { forced: true, .. } => f.write_str(
                    "skipped, circuit breaker forced open by an operator (open until reset)",
                )?,
                AttemptOutcome::SkippedBreakerOpen {
                    retry_in: Some(wait),
                    ..
                } => write!(
                    f,
                    "skipped, circuit breaker open (next probe in {:.1} s)",
                    wait.as_secs_f64()
                )?,
                AttemptOutcome::SkippedBreakerOpen { retry_in: None, .. } => {
                    f.write_str("skipped, circuit breaker open")?
                }
                AttemptOutcome::SkippedUnsupported { reason } => write!(f, "skipped, {reason}")?,
                AttemptOutcome::SkippedRejected { layer, reason } => {
                    write!(f, "skipped, rejected by {layer}: {reason}")?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn all_failed_names_every_attempt() {
        let error = FailoverError::AllProvidersFailed {
            request_id: RequestId::new("r1"),
            attempts: vec![
                AttemptRecord {
                    provider: "bedrock".into(),
                    model: "claude".into(),
                    outcome: AttemptOutcome::SkippedBreakerOpen {
                        retry_in: None,
                        forced: false,
                    },
                    latency: Duration::ZERO,
                },
                AttemptRecord {
                    provider: "openai".into(),
                    model: "gpt-4".into(),
                    outcome: AttemptOutcome::Failed {
                        kind: ErrorKind::Unavailable,
                        message: "HTTP 503".into(),
                    },
                    latency: Duration::from_millis(3),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "all providers failed for request r1: bedrock (claude): skipped, circuit breaker open; \
             openai (gpt-4): unavailable: HTTP 503"
        );
    }
}
