//! The retry policy: which errors are retried, how long to wait, and when to stop.
//!
//! This provider is the one owner of retries for its calls. A retry happens only when all
//! of these hold:
//!
//! 1. the error's kind is temporary ([`ErrorKind::retry`]) — except `stream_cut` and
//!    `model_error`, which a request/response call never produces before its answer;
//! 2. attempts are left (`max_attempts`);
//! 3. the server's hint, if any, is at most `max_hint_wait`;
//! 4. the wait ends before the call's deadline (the earlier of the request's deadline
//!    and this provider's share of it), with time left for the next attempt.
//!
//! Otherwise the last error is returned with its hint, and the adapter fails over.

use std::time::{Duration, Instant};

use failover_provider::{ErrorKind, ProviderError, RetryPolicy};

use crate::config::RetrySettings;

/// The least time an attempt is worth starting with; a retry that would leave less before
/// the deadline is not made.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(50);

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Give up and return the error.
    GiveUp(GiveUpReason),
}

/// Why no retry is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The error is permanent.
    Permanent,
    /// Every attempt was used.
    AttemptsExhausted,
    /// The server asked for a longer wait than this provider accepts.
    HintTooLong,
    /// The wait would end past the request's deadline.
    Deadline,
}

impl GiveUpReason {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::Permanent => "permanent",
            GiveUpReason::AttemptsExhausted => "attempts_exhausted",
            GiveUpReason::HintTooLong => "retry_after_too_long",
            GiveUpReason::Deadline => "deadline",
        }
    }
}

/// Whether a kind is retried by this provider.
pub fn retryable(kind: ErrorKind) -> bool {
    kind.retry() == RetryPolicy::Temporary
        && !matches!(kind, ErrorKind::StreamCut | ErrorKind::ModelError)
}

/// The exponential backoff before retry number `retry` (1-based), before jitter.
pub fn backoff(settings: &RetrySettings, retry: u32) -> Duration {
    let factor = 2_u32.saturating_pow(retry.saturating_sub(1));
    settings
        .initial_backoff
        .saturating_mul(factor)
        .min(settings.max_backoff)
}

/// Decides what follows the failed attempt number `attempt` (1-based). `jitter` is a
/// number in `[0, 1)`; the backoff is "full jitter" (`backoff × jitter`), never below the
/// server's hint.
pub fn decide(
    settings: &RetrySettings,
    attempt: u32,
    error: &ProviderError,
    deadline: Option<Instant>,
    now: Instant,
    jitter: f64,
) -> Decision {
    if !retryable(error.kind()) {
        return Decision::GiveUp(GiveUpReason::Permanent);
    }
    if attempt >= settings.max_attempts {
        return Decision::GiveUp(GiveUpReason::AttemptsExhausted);
    }
    if error
        .retry_after()
        .is_some_and(|hint| hint > settings.max_hint_wait)
    {
        return Decision::GiveUp(GiveUpReason::HintTooLong);
    }
    let jittered = backoff(settings, attempt).mul_f64(jitter.clamp(0.0, 1.0));
    let wait = error.retry_after().unwrap_or_default().max(jittered);
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(now);
        if wait + MIN_ATTEMPT_TIME >= left {
            return Decision::GiveUp(GiveUpReason::Deadline);
        }
    }
    Decision::RetryAfter(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RetrySettings {
        RetrySettings {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_hint_wait: Duration::from_secs(5),
        }
    }

    fn error(kind: ErrorKind) -> ProviderError {
        ProviderError::new(kind, "x")
    }

    #[test]
    fn only_temporary_transport_kinds_are_retried() {
        for kind in ErrorKind::ALL {
            let expected = matches!(
                kind,
                ErrorKind::Throttled
                    | ErrorKind::Unavailable
                    | ErrorKind::Timeout
                    | ErrorKind::Network
            );
            assert_eq!(retryable(kind), expected, "{kind}");
        }
        let now = Instant::now();
        assert_eq!(
            decide(
                &settings(),
                1,
                &error(ErrorKind::AuthOrConfig),
                None,
                now,
                0.5
            ),
            Decision::GiveUp(GiveUpReason::Permanent)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = settings();
        assert_eq!(backoff(&s, 1), Duration::from_millis(100));
        assert_eq!(backoff(&s, 2), Duration::from_millis(200));
        assert_eq!(backoff(&s, 3), Duration::from_millis(350));
        assert_eq!(backoff(&s, 40), Duration::from_millis(350));
    }

    #[test]
    fn attempts_are_bounded() {
        let now = Instant::now();
        let e = error(ErrorKind::Unavailable);
        assert_eq!(
            decide(&settings(), 3, &e, None, now, 1.0),
            Decision::RetryAfter(Duration::from_millis(350))
        );
        assert_eq!(
            decide(&settings(), 4, &e, None, now, 1.0),
            Decision::GiveUp(GiveUpReason::AttemptsExhausted)
        );
    }

    #[test]
    fn the_server_hint_is_a_floor_and_has_a_ceiling() {
        let now = Instant::now();
        let hinted = error(ErrorKind::Throttled).with_retry_after(Duration::from_millis(1200));
        assert_eq!(
            decide(&settings(), 1, &hinted, None, now, 0.0),
            Decision::RetryAfter(Duration::from_millis(1200))
        );
        let too_long = error(ErrorKind::Throttled).with_retry_after(Duration::from_secs(60));
        assert_eq!(
            decide(&settings(), 1, &too_long, None, now, 0.0),
            Decision::GiveUp(GiveUpReason::HintTooLong)
        );
    }

    #[test]
    fn no_wait_ends_past_the_deadline() {
        let now = Instant::now();
        let hinted = error(ErrorKind::Throttled).with_retry_after(Duration::from_millis(500));
        assert_eq!(
            decide(
                &settings(),
                1,
                &hinted,
                Some(now + Duration::from_millis(400)),
                now,
                0.0
            ),
            Decision::GiveUp(GiveUpReason::Deadline)
        );
        assert_eq!(
            decide(
                &settings(),
                1,
                &hinted,
                Some(now + Duration::from_secs(2)),
                now,
                0.0
            ),
            Decision::RetryAfter(Duration::from_millis(500))
        );
    }
}
