//! Property: no header value, however absurd, panics the retry-hint readers, and no hint
//! they return exceeds the maximum. 100 000 cases by default (`PROPTEST_CASES` overrides).

use std::time::{Duration, SystemTime};

use failover_provider::retry_hint::{
    DEFAULT_MAX_RETRY_AFTER, MAX_RETRY_AFTER_LIMIT, from_headers, parse_millis, parse_retry_after,
    parse_seconds,
};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

/// Text from an alphabet (regex strategies are much slower per case in debug builds).
fn text_of(alphabet: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), len)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

/// Header-like values: numbers of every size and sign, float syntax, dates, and noise.
fn hint_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:e}")),
        text_of(b"0123456789", 1..80),
        text_of(b"0123456789.", 1..80),
        text_of(b" \t+-.0123456789eEinfINFaN", 0..24),
        (0_u64..253_402_300_000).prop_map(|secs| {
            // httpdate formats (and panics beyond) years up to 9999 only.
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        }),
        text_of(b"0123456789 :,ADFJMNOSTWacbdefghilnoprstuvyGMT", 20..34),
        prop::collection::vec(any::<char>(), 0..70).prop_map(String::from_iter),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_hint_panics_or_exceeds_the_maximum(
        value in hint_value(),
        other in hint_value(),
        max_secs in 0_u64..=2 * MAX_RETRY_AFTER_LIMIT.as_secs(),
        now_secs in 0_u64..=8_000_000_000,
    ) {
        let max = Duration::from_secs(max_secs);
        let ceiling = max.min(MAX_RETRY_AFTER_LIMIT);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
        for hint in [
            parse_seconds(&value, max),
            parse_millis(&value, max),
            parse_retry_after(&value, now, max),
            from_headers(
                |name| match name {
                    "retry-after-ms" => Some(value.as_str()),
                    "retry-after" => Some(other.as_str()),
                    _ => Some(value.as_str()),
                },
                now,
                max,
            ),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(hint <= ceiling, "{hint:?} > {ceiling:?} for {value:?}");
        }
        let _ = DEFAULT_MAX_RETRY_AFTER;
    }
}
