//! Seed class 8, `TestStreamingCompletion`, and streams with the cache: chunk-by-chunk
//! delivery through the real clients (AWS event stream from Bedrock, SSE from OpenAI),
//! fallback to OpenAI streaming before the first chunk, an explicit error — never a silent
//! end — after it; a clean stream is cached and replayed to streams and plain calls, a cut
//! stream never is.

use failover_core::{FailoverAdapter, FailoverError};
use failover_provider::{
    AttemptOutcome, CompletionRequest, ErrorKind, ResponseFormat, StreamChunk, StreamSummary,
};
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{BEDROCK, CACHE_TTL, OPENAI, stored_cache_entries, stored_usage};
use failover_scenarios::{Harness, HarnessOptions};
use failover_standin::{Fault, Vendor};
use failover_usage::UsageOutcome;
use futures::StreamExt;

pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            chunks_arrive_in_order_then_a_summary_with_usage_and_cost,
            streaming_falls_back_to_openai_before_the_first_chunk,
            a_clean_stream_is_cached_and_replayed_to_streams_and_plain_calls,
            a_json_mode_stream_delivers_one_json_object,
            dropping_a_stream_settles_its_call_once_and_blames_nobody,
        ],
        offline_only("scripts a Bedrock stream cut after its first chunk"): [
            a_stream_cut_after_content_ends_with_an_error_and_is_never_cached,
        ],
        offline_only("scripts Bedrock throttling a stream request"): [
            a_throttled_stream_request_falls_back_to_openai_streaming,
        ],
    }
}

type Item = Result<StreamChunk, FailoverError>;

async fn collect(adapter: &FailoverAdapter, request: CompletionRequest) -> Vec<Item> {
    adapter
        .stream_completion(request)
        .await
        .unwrap()
        .collect()
        .await
}

fn text(items: &[Item]) -> String {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(StreamChunk::Delta { text }) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn summary(items: &[Item]) -> &StreamSummary {
    match items.last() {
        Some(Ok(StreamChunk::Done(summary))) => summary,
        _ => panic!("the stream did not end with its summary: {items:?}"),
    }
}

async fn chunks_arrive_in_order_then_a_summary_with_usage_and_cost() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let items = collect(&adapter, harness.request("Count from one to five.")).await;
    let deltas = items
        .iter()
        .filter(|item| matches!(item, Ok(StreamChunk::Delta { .. })))
        .count();
    assert!(deltas >= 1, "{items:?}");
    // Only deltas before the summary, and the summary last.
    assert!(
        items[..items.len() - 1]
            .iter()
            .all(|item| matches!(item, Ok(StreamChunk::Delta { .. })))
    );
    let summary = summary(&items);
    assert_eq!(summary.provider, BEDROCK);
    assert!(!summary.cached);
    assert!(summary.usage.input_tokens > 0 && summary.usage.output_tokens > 0);
    assert!(summary.estimated_cost.amount() > rust_decimal::Decimal::ZERO);
    if let Some(standins) = harness.standins() {
        // The stand-in sends the reply word by word: the deltas are its words, in order.
        assert_eq!(text(&items), failover_standin::BEDROCK_REPLY);
        assert_eq!(deltas, 7);
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
    }
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].usage, summary.usage);
    assert_eq!(stored[0].cost, summary.estimated_cost);
    assert_eq!(stored[0].outcome, UsageOutcome::Success);
}

async fn streaming_falls_back_to_openai_before_the_first_chunk() {
    let harness = Harness::start_with(HarnessOptions::default().bedrock_unreachable()).await;
    let adapter = harness.adapter();
    let items = collect(&adapter, harness.request("Say hello")).await;
    assert!(!text(&items).is_empty());
    let summary = summary(&items);
    assert_eq!(summary.provider, OPENAI);
    assert!(summary.usage.input_tokens > 0 && summary.usage.output_tokens > 0);
    assert!(matches!(
        summary.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Network,
            ..
        }
    ));
    // The model that served the stream, as OpenAI's chunks name it; the attempt keeps the
    // routed model (what the price list knows).
    let routed = &summary.attempts[1].model;
    if harness.standins().is_some() {
        // The stand-in's chunks name this model whatever was asked.
        assert_eq!(summary.model, "gpt-4o-2024-08-06");
    } else {
        assert!(
            summary.model.starts_with(routed.as_str()),
            "{} for {routed}",
            summary.model
        );
    }
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1].provider, OPENAI);
    assert!(stored[1].fallback_used);
    assert_eq!(stored[1].usage, summary.usage);
    if let Some(standins) = harness.standins() {
        let body = &standins.bodies(Vendor::OpenAi).await[0];
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}

async fn a_throttled_stream_request_falls_back_to_openai_streaming() {
    let harness = Harness::start().await;
    harness
        .offline()
        .inject(
            Vendor::Bedrock,
            Fault::Throttled {
                retry_after_secs: 2,
            },
            1,
        )
        .await;
    let adapter = harness.adapter();
    let items = collect(&adapter, harness.request("Say hello")).await;
    assert_eq!(text(&items), failover_standin::OPENAI_REPLY);
    let summary = summary(&items);
    assert_eq!(summary.provider, OPENAI);
    assert!(matches!(
        summary.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Throttled,
            ..
        }
    ));
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(
        stored[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::Throttled
        }
    );
    assert_eq!(
        (stored[1].provider.as_str(), stored[1].attempt),
        (OPENAI, 2)
    );
    let entries =
        stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &["Say hello"]).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 1);
    assert_eq!(harness.offline().calls(Vendor::OpenAi).await, 1);
}

async fn a_clean_stream_is_cached_and_replayed_to_streams_and_plain_calls() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "Name three primary colours.";
    let first = collect(&adapter, harness.request(prompt)).await;
    assert!(!summary(&first).cached);
    let replay = collect(&adapter, harness.request(prompt)).await;
    assert_eq!(text(&replay), text(&first));
    assert!(summary(&replay).cached);
    let plain = adapter
        .generate_completion(harness.request(prompt))
        .await
        .unwrap();
    assert!(plain.cached);
    assert_eq!(plain.content, text(&first));

    let tenant = harness.tenant();
    let entries = stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let stored = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(stored.len(), 1, "one provider call: {stored:?}");
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 1);
    }
}

async fn a_stream_cut_after_content_ends_with_an_error_and_is_never_cached() {
    let harness = Harness::start().await;
    harness
        .offline()
        .inject(Vendor::Bedrock, Fault::CutStream, 1)
        .await;
    let adapter = harness.adapter();
    let prompt = "Tell me a long story.";
    let items = collect(&adapter, harness.request(prompt)).await;
    // The first word arrived, then the stream ended without its end: an explicit error item,
    // no summary, and OpenAI never spliced in after content was delivered.
    assert_eq!(text(&items), "Four,");
    let Some(Err(FailoverError::StreamInterrupted {
        provider,
        kind,
        delivered_bytes,
        ..
    })) = items.last()
    else {
        panic!("{items:?}")
    };
    assert_eq!(
        (provider.as_str(), *kind, *delivered_bytes),
        (BEDROCK, ErrorKind::StreamCut, 5)
    );
    assert_eq!(harness.offline().calls(Vendor::OpenAi).await, 0);

    let tenant = harness.tenant();
    assert!(
        stored_cache_entries(&harness, &tenant, CACHE_TTL, &[prompt])
            .await
            .is_empty(),
        "a cut stream is never cached"
    );
    let stored = stored_usage(&harness, &adapter, &tenant).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::StreamCut
        }
    );
    assert!(
        stored[0].usage_estimated,
        "tokens estimated from the delivered text"
    );

    // The same request again is a fresh provider call that completes, and is cached.
    let again = collect(&adapter, harness.request(prompt)).await;
    assert!(!summary(&again).cached);
    assert_eq!(text(&again), failover_standin::BEDROCK_REPLY);
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 2);
}

async fn a_json_mode_stream_delivers_one_json_object() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let request = harness
        .request("Reply with a JSON object with one key, answer, holding 2+2 as a string.")
        .max_tokens(50)
        .response_format(ResponseFormat::JsonObject);
    let items = collect(&adapter, request).await;
    let content = text(&items);
    let value: serde_json::Value = serde_json::from_str(&content)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {content}"));
    assert!(value.is_object(), "{value}");
    assert_eq!(summary(&items).provider, BEDROCK);
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].usage, summary(&items).usage);
    let entries = stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &[]).await;
    assert_eq!(
        entries.len(),
        1,
        "a clean JSON stream is cached: {entries:?}"
    );
    if let Some(standins) = harness.standins() {
        // JSON mode on Bedrock is a forced tool call.
        let body = &standins.bodies(Vendor::Bedrock).await[0];
        assert!(body["toolConfig"]["toolChoice"]["tool"]["name"].is_string());
    }
}

/// A caller that drops a stream after its first chunk: the call is settled exactly once.
/// The stream's own reader may have read the provider's whole answer by then (the offline
/// stand-in writes it at once; a gated stand-in holding the rest is in the provider crates'
/// tests): then the call succeeded with the provider's own count. Otherwise it is cancelled,
/// billed by estimate. Either way the breaker heard one success, at the commit point, and
/// nothing half-read is cached.
async fn dropping_a_stream_settles_its_call_once_and_blames_nobody() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let mut stream = adapter
        .stream_completion(harness.request("Write a long poem about the sea."))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    drop(stream);
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    match stored[0].outcome {
        UsageOutcome::Cancelled => {
            assert!(stored[0].usage_estimated);
            assert!(stored[0].usage.output_tokens >= 1);
            assert!(
                stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &[])
                    .await
                    .is_empty(),
                "a cancelled stream is not cached"
            );
        }
        UsageOutcome::Success => assert!(!stored[0].usage_estimated, "{stored:?}"),
        other => panic!("a dropped stream is cancelled or complete, not {other}"),
    }
    let breaker = adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(
        (breaker.failures, breaker.successes),
        (0, 1),
        "the provider answered (the commit point); the caller leaving blames nobody"
    );
}
