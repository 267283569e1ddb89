//! Properties: no upstream input panics a parser of this crate — arbitrary bytes and
//! near-valid JSON as a completion body (with or without tool calls), as an error body with
//! any status and headers, and as a stream cut into arbitrary chunks (through the same
//! decoder and mapper the provider's stream runs), tool-call fragments in any order and
//! shape (whose items must still come out in the neutral order), and arbitrary retry-hint
//! header values. Each property runs 100 000 cases by default (`PROPTEST_CASES`
//! overrides; see the README for timings).

use std::time::Duration;

use failover_openai::mapping::parse_response;
use failover_openai::stream::{is_terminal, read_sse_body};
use failover_openai::{ApiError, classify_stream_error, from_response, retry_after};
use failover_provider::{FinishReason, JsonContract, ProviderEvent, ToolCallAssembler};
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
    "\"tool_calls\"", "\"index\"", "\"id\"", "\"function\"", "\"name\"", "\"arguments\"",
    "\"{}\"", "\"{\\\"a\\\":1}\"", "1", "2",
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
        prop::option::of(prop::collection::vec(
            (
                prop::sample::select(&["", "call_1", "é"][..]),
                prop::sample::select(&["function", "custom", ""][..]),
                prop::sample::select(&["", "f"][..]),
                prop::sample::select(&["", "{}", "{\"a\":[1]}", "[]", "{", "null", " {} "][..]),
            ),
            0..3,
        )),
    )
        .prop_map(|(prompt, completion, cached, finish, content, calls)| {
            let calls = calls.map(|calls| {
                calls
                    .into_iter()
                    .map(|(id, kind, name, arguments)| serde_json::json!({
                        "id": id, "type": kind, "function": {"name": name, "arguments": arguments}
                    }))
                    .collect::<Vec<_>>()
            });
            serde_json::json!({
                "model": "m",
                "choices": [{
                    "message": {"content": content, "tool_calls": calls},
                    "finish_reason": finish
                }],
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
            for call in &response.tool_calls {
                prop_assert!(!call.id.is_empty() && !call.name.is_empty());
                prop_assert!(call.arguments_json().is_ok_and(|value| value.is_object()));
            }
            // ToolUse only with calls to run; `stop` with calls reads ToolUse.
            let reason = &response.finish_reason;
            if *reason == FinishReason::ToolUse {
                prop_assert!(!response.tool_calls.is_empty());
            }
            if !response.tool_calls.is_empty() {
                prop_assert_ne!(reason, &FinishReason::Stop);
            }
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
        let (last, rest) = items.split_last().expect("a stream always ends with an item");
        prop_assert!(is_terminal(last), "the last item is terminal");
        // Every item before it is an event, and the tool-call items are in the order the
        // neutral contract asks for.
        let mut calls = ToolCallAssembler::new();
        for item in rest {
            let order = match item {
                Ok(ProviderEvent::Delta(_)) => Ok(()),
                Ok(ProviderEvent::ToolCallStart { index, id, name }) => calls.start(*index, id, name),
                Ok(ProviderEvent::ToolCallDelta { index, arguments }) => calls.delta(*index, arguments),
                Ok(ProviderEvent::ToolCallEnd { index }) => calls.end(*index),
                other => panic!("a terminal item before the end: {other:?}"),
            };
            prop_assert!(order.is_ok(), "{:?}", order);
        }
        if matches!(last, Ok(ProviderEvent::Finished { .. })) {
            prop_assert!(calls.finish().is_ok(), "no call is left open at Finished");
        }
    }

    #[test]
    fn tool_call_streams_never_panic_and_stay_in_order(
        fragments in prop::collection::vec(
            (
                prop::option::of(0_u32..4),
                prop::option::of(prop::sample::select(&["", "c1", "c2"][..])),
                prop::option::of(prop::sample::select(&["", "f", "g"][..])),
                prop::option::of(prop::sample::select(&["", "{", "}", "{}", "\"a\":1", "[", "x"][..])),
                prop::option::of(prop::sample::select(&["stop", "tool_calls", "length"][..])),
            ),
            0..10,
        ),
        done in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut body = String::new();
        for (index, id, name, arguments, finish) in fragments {
            let mut call = serde_json::json!({"function": {}});
            if let Some(index) = index { call["index"] = index.into(); }
            if let Some(id) = id { call["id"] = id.into(); }
            if let Some(name) = name { call["function"]["name"] = name.into(); }
            if let Some(arguments) = arguments { call["function"]["arguments"] = arguments.into(); }
            let chunk = serde_json::json!({"choices": [{"delta": {"tool_calls": [call]}, "finish_reason": finish}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        if done { body.push_str("data: [DONE]\n\n"); }
        let chunks = chunked(body.into_bytes(), cuts);
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let items = read_sse_body(&chunks, None, 4096, 4096);
        let (last, rest) = items.split_last().expect("a stream always ends with an item");
        prop_assert!(is_terminal(last));
        let mut calls = ToolCallAssembler::new();
        for item in rest {
            let order = match item {
                Ok(ProviderEvent::ToolCallStart { index, id, name }) => calls.start(*index, id, name),
                Ok(ProviderEvent::ToolCallDelta { index, arguments }) => calls.delta(*index, arguments),
                Ok(ProviderEvent::ToolCallEnd { index }) => calls.end(*index),
                other => panic!("not a tool-call item: {other:?}"),
            };
            prop_assert!(order.is_ok(), "{:?}", order);
        }
        if matches!(last, Ok(ProviderEvent::Finished { .. })) {
            prop_assert!(done, "Finished only after [DONE]");
            let calls = calls.finish();
            prop_assert!(calls.is_ok(), "{:?}", calls);
            for call in calls.unwrap_or_default() {
                prop_assert!(call.arguments_json().is_ok_and(|value| value.is_object()));
            }
        }
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
