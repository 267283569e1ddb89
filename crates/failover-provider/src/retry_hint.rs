//! Server retry hints (`Retry-After`, `retry-after-ms`, `x-amzn-retry-after`), read once
//! for every provider: never panicking on any input, and clamped to a configured maximum.
//!
//! A hint is upstream input like any other: a server (or anything between it and us) may
//! send `retry-after: 1e400`, `99999999999999999999`, `-3`, `NaN` or a date in the year
//! 9999. The readers here accept delta seconds (an integer or a decimal fraction, as
//! OpenAI and Bedrock send them), OpenAI's `retry-after-ms`, and HTTP dates (RFC 9110);
//! anything else is no hint (`None`), and any hint longer than the maximum is the maximum.
//! A hint feeds the breaker's open period and the providers' retry decisions, so an absurd
//! one must not keep a provider out of rotation for days.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};

/// The default largest retry hint a provider reports: five minutes.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The largest value `max_retry_after` may be configured to: ten minutes.
pub const MAX_RETRY_AFTER_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The longest header value read; a longer value is no hint (a real one is a few bytes,
/// an HTTP date 29).
const MAX_HINT_CHARS: usize = 64;

/// A `max_retry_after` outside `(0, 10 min]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "max_retry_after must be more than zero and at most {} s, not {} ms",
    MAX_RETRY_AFTER_LIMIT.as_secs(),
    .0.as_millis()
)]
pub struct InvalidMaxRetryAfter(pub Duration);

/// Checks a configured `max_retry_after`: more than zero, at most [`MAX_RETRY_AFTER_LIMIT`].
pub fn check_max_retry_after(max: Duration) -> Result<Duration, InvalidMaxRetryAfter> {
    if max.is_zero() || max > MAX_RETRY_AFTER_LIMIT {
        Err(InvalidMaxRetryAfter(max))
    } else {
        Ok(max)
    }
}

/// The serde default of a `max_retry_after` field ([`DEFAULT_MAX_RETRY_AFTER`]).
pub fn default_max_retry_after() -> Duration {
    DEFAULT_MAX_RETRY_AFTER
}

/// Deserializes a `max_retry_after` field (a [`Duration`] in serde's format), refusing a
/// value [`check_max_retry_after`] refuses, so a bad configuration fails when it is read.
pub fn deserialize_max_retry_after<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let max = Duration::deserialize(deserializer)?;
    check_max_retry_after(max).map_err(serde::de::Error::custom)
}

/// Clamps a hint (or a `max` above the limit) so no hint exceeds `max` nor the limit.
fn clamp(hint: Duration, max: Duration) -> Duration {
    hint.min(max).min(MAX_RETRY_AFTER_LIMIT)
}

/// Reads a non-negative decimal number (`12`, `1.5`, `.5`, `3.`) as that many `unit`s:
/// only ASCII digits and at most one point, no sign, no exponent, no `inf`/`NaN` (which
/// Rust's float parser would otherwise accept).
fn decimal(value: &str, unit_secs: f64, max: Duration) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_HINT_CHARS {
        return None;
    }
    let mut points = 0_u8;
    let mut digits = 0_usize;
    for byte in value.bytes() {
        match byte {
            b'0'..=b'9' => digits = digits.saturating_add(1),
            b'.' => points = points.saturating_add(1),
            _ => return None,
        }
    }
    if digits == 0 || points > 1 {
        return None;
    }
    // Digits and one point always parse; 64 digits at most cannot overflow to infinity,
    // but a non-finite result would still be clamped, never converted.
    let number: f64 = value.parse().ok()?;
    let seconds = number * unit_secs;
    let max = clamp(max, max);
    if !seconds.is_finite() || seconds >= max.as_secs_f64() {
        return Some(max);
    }
    Some(clamp(Duration::try_from_secs_f64(seconds).ok()?, max))
}

/// A delta-seconds hint (`Retry-After: 3`, `x-amzn-retry-after: 1.5`), at most `max`.
pub fn parse_seconds(value: &str, max: Duration) -> Option<Duration> {
    decimal(value, 1.0, max)
}

/// OpenAI's `retry-after-ms` (milliseconds, possibly fractional), at most `max`.
pub fn parse_millis(value: &str, max: Duration) -> Option<Duration> {
    decimal(value, 0.001, max)
}

/// A `Retry-After` value: delta seconds, else an HTTP date (the time from `now` until it;
/// zero for a date in the past), at most `max`.
pub fn parse_retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    if let Some(wait) = parse_seconds(value, max) {
        return Some(wait);
    }
    let value = value.trim();
    if value.len() > MAX_HINT_CHARS {
        return None;
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Some(clamp(wait, max))
}

/// The hint of a response's headers, each looked up by its lowercase name through
/// `header` (`None` when absent or not text): `retry-after-ms` first (the most precise),
/// then `retry-after`, then `x-amzn-retry-after`. The first header that holds a valid hint
/// wins; at most `max`.
pub fn from_headers<'a>(
    header: impl Fn(&str) -> Option<&'a str>,
    now: SystemTime,
    max: Duration,
) -> Option<Duration> {
    header("retry-after-ms")
        .and_then(|value| parse_millis(value, max))
        .or_else(|| header("retry-after").and_then(|value| parse_retry_after(value, now, max)))
        .or_else(|| {
            header("x-amzn-retry-after").and_then(|value| parse_retry_after(value, now, max))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = DEFAULT_MAX_RETRY_AFTER;

    #[test]
    fn seconds_integer_and_fractional() {
        assert_eq!(parse_seconds("3", MAX), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_seconds(" 1.5 ", MAX),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_seconds(".5", MAX), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0", MAX), Some(Duration::ZERO));
        for junk in [
            "", "-1", "+1", "1e3", "inf", "NaN", "infinity", "1.2.3", ".", "soon",
        ] {
            assert_eq!(parse_seconds(junk, MAX), None, "{junk:?}");
        }
    }

    #[test]
    fn huge_hints_are_clamped_not_a_panic() {
        // `Duration::from_secs_f64` panics on each of these.
        for huge in [
            "18446744073709551616",
            "99999999999999999999999999999999999999999999",
            "1".repeat(64).as_str(),
        ] {
            assert_eq!(parse_seconds(huge, MAX), Some(MAX), "{huge}");
            assert_eq!(parse_millis(huge, MAX), Some(MAX), "{huge}");
        }
        assert_eq!(
            parse_seconds(&"1".repeat(65), MAX),
            None,
            "too long to be a hint"
        );
        assert_eq!(parse_seconds("301", MAX), Some(MAX));
        assert_eq!(
            parse_seconds("20", Duration::from_secs(3600)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_seconds("4000", Duration::from_secs(3600)),
            Some(MAX_RETRY_AFTER_LIMIT),
            "a max above the limit is the limit"
        );
    }

    #[test]
    fn millis() {
        assert_eq!(parse_millis("1500", MAX), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse_millis("20.5", MAX),
            Some(Duration::from_micros(20_500))
        );
        assert_eq!(parse_millis("-4", MAX), None);
    }

    #[test]
    fn http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let soon = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&soon, now, MAX),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now, MAX), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now, MAX),
            Some(MAX)
        );
        assert_eq!(
            parse_retry_after("Wed, 99 Oct 2015 07:28:00 GMT", now, MAX),
            None
        );
    }

    #[test]
    fn headers_in_order_of_precision() {
        let now = SystemTime::now();
        let headers = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| *value)
            }
        };
        let both = headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]);
        assert_eq!(
            from_headers(both, now, MAX),
            Some(Duration::from_millis(1500))
        );
        let bad_ms = headers(&[("retry-after-ms", "-4"), ("retry-after", "2")]);
        assert_eq!(from_headers(bad_ms, now, MAX), Some(Duration::from_secs(2)));
        let amazon = headers(&[("x-amzn-retry-after", "7")]);
        assert_eq!(from_headers(amazon, now, MAX), Some(Duration::from_secs(7)));
        assert_eq!(from_headers(headers(&[]), now, MAX), None);
    }

    #[test]
    fn max_retry_after_is_checked_and_deserialized_with_the_check() {
        assert!(check_max_retry_after(DEFAULT_MAX_RETRY_AFTER).is_ok());
        assert!(check_max_retry_after(MAX_RETRY_AFTER_LIMIT).is_ok());
        assert!(check_max_retry_after(Duration::ZERO).is_err());
        let error = check_max_retry_after(Duration::from_secs(601)).unwrap_err();
        assert!(error.to_string().contains("at most 600 s"), "{error}");

        #[derive(Deserialize)]
        struct Config {
            #[serde(
                default = "default_max_retry_after",
                deserialize_with = "deserialize_max_retry_after"
            )]
            max_retry_after: Duration,
        }
        let parsed: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed.max_retry_after, DEFAULT_MAX_RETRY_AFTER);
        let parsed: Config =
            serde_json::from_str(r#"{"max_retry_after": {"secs": 60, "nanos": 0}}"#).unwrap();
        assert_eq!(parsed.max_retry_after, Duration::from_secs(60));
        assert!(
            serde_json::from_str::<Config>(r#"{"max_retry_after": {"secs": 3600, "nanos": 0}}"#)
                .is_err()
        );
    }
}
