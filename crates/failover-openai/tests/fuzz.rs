//! Properties: no upstream input panics a parser of this crate — arbitrary bytes and
//! near-valid JSON as a completion body, as an error body with any status and headers, and
//! as a stream cut into arbitrary chunks (through the same decoder and mapper the
//! provider's stream runs), and arbitrary retry-hint header values. Each property runs
//! 100 000 cases by default (`PROPTEST_CASES` overrides; see the README for timings).

use std::time::Duration;

use failover_openai::mapping::parse_response;
use failover_openai::stream::read_sse_body;
use failover_openai::{ApiError, classify_stream_error, from_response, retry_after};
use failover_provider::{JsonContract, ProviderEvent};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Pieces of the chat completion wire format, so that generated bodies get deep into the
/// parsers instead of failing at the first byte.
#[rustfmt::skip]
const PIECES: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "null", "true", "0", "-1", "1e999", "18446744073709551616",
    "\"model\"", "\"choices\"", "\"message\"", "\"delta\"", "\"content\"", "\"refusal\"",
    "\"finish_reason\"", "\"stop\"", "\"length\"", "\"content_filter\"", "\"usage\"",
    "\"prompt_tokens\"", "\"completion_tokens\"", "\"prompt_tokens_details\"",
    "\"cached_tokens\"", "\"error\"", "\"code\"", "\"type\"", "\"param\"", "\"insufficient_quota\"",
    "\"rate_limit_exceeded\"", "\"context_length_exceeded\"", "\"x\"", "\"\\u0000\"", "é", " ",
    "\\", "\"\\ud800\"", "data: ", "event: error\n", "[DONE]", "\n", "\r\n", "\r", ":", "\u{feff}",
];

/// Bytes made of wire-format pieces, or plain arbitrary bytes.
fn wire_bytes(max_pieces: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(PIECES), 0..max_pieces)
            .prop_map(|pieces| pieces.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..max_pieces * 4),
    ]
}

/// A well-formed completion with arbitrary values where the server chooses them.
fn completion_json() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::option::of(any::<u64>()),
        prop::sample::select(&["stop", "length", "content_filter", "tool_calls", "", "x"][..]),
        prop::option::of(prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter)),
    )
        .prop_map(|(prompt, completion, cached, finish, content)| {
            serde_json::json!({
                "model": "m",
                "choices": [{"message": {"content": content}, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "prompt_tokens_details": {"cached_tokens": cached},
                },
            })
            .to_string()
            .into_bytes()
        })
}

/// A body cut into chunks at arbitrary points.
fn chunked(body: Vec<u8>, cuts: Vec<usize>) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.into_iter().map(|cut| cut % (body.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(body[start..point].to_vec());
        start = point;
    }
    chunks.push(body[start..].to_vec());
    chunks
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn completion_bodies_never_panic(
        body in prop_oneof![wire_bytes(40), completion_json()],
    ) {
        if let Ok(response) = parse_response(&body, "requested") {
            prop_assert!(!response.model.is_empty());
        }
    }

    #[test]
    fn error_responses_never_panic(
        status in 0_u16..=999,
        body in wire_bytes(40),
        hint in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&hint) {
            headers.insert(HeaderName::from_static("retry-after"), value.clone());
            headers.insert(HeaderName::from_static("retry-after-ms"), value);
        }
        let max = Duration::from_secs(300);
        let error = from_response(status, &headers, &body, max);
        prop_assert!(error.retry_after().is_none_or(|wait| wait <= max));
        prop_assert!(error.message().len() <= 600, "messages are cut");
        if let Some(api_error) = ApiError::from_body(&body) {
            let _ = classify_stream_error(&api_error);
        }
    }

    #[test]
    fn streams_never_panic_and_end_once(
        body in wire_bytes(60),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        json_mode in any::<bool>(),
    ) {
        let chunks = chunked(body, cuts);
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let contract = json_mode.then(JsonContract::object);
        let items = read_sse_body(&chunks, contract, 256, 256);
        let (last, deltas) = items.split_last().expect("a stream always ends with an item");
        prop_assert!(deltas.iter().all(|item| matches!(item, Ok(ProviderEvent::Delta(_)))));
        prop_assert!(!matches!(last, Ok(ProviderEvent::Delta(_))), "the last item is terminal");
    }

    #[test]
    fn retry_hints_never_panic_or_exceed_the_maximum(
        ms in prop::collection::vec(any::<u8>(), 0..32),
        seconds in prop::collection::vec(any::<u8>(), 0..32),
        max_secs in 1_u64..=600,
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("retry-after-ms", &ms), ("retry-after", &seconds)] {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        let max = Duration::from_secs(max_secs);
        prop_assert!(retry_after(&headers, max).is_none_or(|wait| wait <= max));
    }
}
