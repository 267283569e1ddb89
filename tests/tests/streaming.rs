//! Seed class 8, `TestStreamingCompletion`: chunk-by-chunk delivery, fallback to OpenAI
//! streaming before the first chunk, explicit errors after it, usage on every terminal path,
//! and caching of clean streams only.

use std::time::Duration;

use failover_core::FailoverError;
use failover_provider::{
    CompletionRequest, ErrorKind, FinishReason, ResponseFormat, StreamChunk, TokenUsage,
};
use failover_scenarios::{BEDROCK, OPENAI, World};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step, StreamStep};
use failover_usage::UsageOutcome;
use futures::StreamExt;

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt("t", "a", "gpt-4", prompt)
}

fn delta(text: &str) -> StreamStep {
    StreamStep::Delta(text.to_owned())
}

fn finish(input: u64, output: u64) -> StreamStep {
    StreamStep::Finish {
        usage: Some(TokenUsage::new(input, output)),
        finish_reason: FinishReason::Stop,
    }
}

async fn collect(world: &World, prompt: &str) -> Vec<Result<StreamChunk, FailoverError>> {
    world
        .adapter
        .stream_completion(request(prompt))
        .await
        .unwrap()
        .collect()
        .await
}

fn texts(items: &[Result<StreamChunk, FailoverError>]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(StreamChunk::Delta { text }) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn chunks_arrive_in_order_then_a_summary_with_usage_and_cost() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![
            delta("The "),
            delta("answer "),
            delta("is 4"),
            finish(12, 3),
        ])),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let items = collect(&world, "stream it").await;
    assert_eq!(texts(&items), vec!["The ", "answer ", "is 4"]);
    let Some(Ok(StreamChunk::Done(summary))) = items.last() else {
        panic!("no summary: {items:?}")
    };
    assert_eq!(summary.provider, BEDROCK);
    assert_eq!(summary.usage, TokenUsage::new(12, 3));
    assert!(summary.estimated_cost.amount() > rust_decimal::Decimal::ZERO);
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    assert!(records[0].streamed);
    assert_eq!(records[0].cost, summary.estimated_cost);
}

#[tokio::test]
async fn failure_before_the_first_chunk_falls_back_to_openai_streaming() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![StreamStep::Fail(ErrorSpec::new(
            ErrorKind::Throttled,
        ))])),
        ScriptedProvider::new(OPENAI).then(Step::Stream(vec![
            delta("from "),
            delta("openai"),
            finish(5, 2),
        ])),
    );
    let items = collect(&world, "fallback").await;
    assert_eq!(texts(&items), vec!["from ", "openai"]);
    let Some(Ok(StreamChunk::Done(summary))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(summary.provider, OPENAI);
    assert_eq!(summary.attempts.len(), 2);
    assert_eq!(
        world.adapter.breaker(BEDROCK).unwrap().snapshot().failures,
        1
    );
}

#[tokio::test]
async fn a_stream_cut_before_any_content_fails_over() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![])),
        ScriptedProvider::always(OPENAI, "whole answer"),
    );
    let items = collect(&world, "cut early").await;
    assert_eq!(texts(&items).concat(), "whole answer");
}

#[tokio::test]
async fn failure_after_the_first_chunk_ends_with_an_error_item_not_a_clean_end() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![
            delta("partial "),
            StreamStep::Fail(ErrorSpec::new(ErrorKind::ModelError)),
        ])),
        ScriptedProvider::always(OPENAI, "never spliced in"),
    );
    let items = collect(&world, "mid-stream failure").await;
    assert_eq!(items.len(), 2);
    assert_eq!(texts(&items), vec!["partial "]);
    let Err(FailoverError::StreamInterrupted {
        provider,
        kind,
        delivered_bytes,
        ..
    }) = &items[1]
    else {
        panic!("{items:?}")
    };
    assert_eq!(
        (provider.as_str(), *kind, *delivered_bytes),
        (BEDROCK, ErrorKind::ModelError, 8)
    );
    assert_eq!(world.openai.call_count(), 0);
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].outcome,
        UsageOutcome::Failed {
            kind: ErrorKind::ModelError
        }
    );
    assert!(records[0].usage_estimated && records[0].usage.output_tokens == 2);
}

#[tokio::test]
async fn a_stream_cut_after_content_is_an_error_and_is_not_cached() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .then(Step::Stream(vec![delta("half an ans")]))
            .otherwise(Step::reply("full")),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let items = collect(&world, "cut").await;
    assert!(matches!(
        items.last(),
        Some(Err(FailoverError::StreamInterrupted {
            kind: ErrorKind::StreamCut,
            ..
        }))
    ));
    let again = collect(&world, "cut").await;
    let Some(Ok(StreamChunk::Done(summary))) = again.last() else {
        panic!("{again:?}")
    };
    assert!(!summary.cached, "a cut stream must never be cached");
}

#[tokio::test]
async fn a_clean_stream_is_cached_and_replayed_for_streams_and_plain_calls() {
    let world = World::healthy();
    let first = collect(&world, "cache me").await;
    let replay = collect(&world, "cache me").await;
    assert_eq!(texts(&replay).concat(), texts(&first).concat());
    let Some(Ok(StreamChunk::Done(summary))) = replay.last() else {
        panic!("{replay:?}")
    };
    assert!(summary.cached);
    let plain = world
        .adapter
        .generate_completion(request("cache me"))
        .await
        .unwrap();
    assert!(plain.cached);
    assert_eq!(plain.content, texts(&first).concat());
    assert_eq!(world.bedrock.call_count(), 1);
}

#[tokio::test]
async fn dropping_a_stream_records_a_cancelled_call_with_partial_tokens() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![
            delta("12345678"),
            StreamStep::Pause(Duration::from_secs(3600)),
            finish(1, 1),
        ])),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    let mut stream = world
        .adapter
        .stream_completion(request("cancel me"))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamChunk::Delta { .. }))
    ));
    drop(stream);
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, UsageOutcome::Cancelled);
    assert!(records[0].usage_estimated);
    assert_eq!(records[0].usage.output_tokens, 2);
    let breaker = world.adapter.breaker(BEDROCK).unwrap().snapshot();
    assert_eq!(
        (breaker.failures, breaker.successes),
        (0, 0),
        "a cancellation judges nobody"
    );
}

#[tokio::test]
async fn an_empty_json_mode_stream_fails_over_before_anything_reaches_the_caller() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![finish(3, 0)])),
        ScriptedProvider::always(OPENAI, r#"{"answer": 4}"#),
    );
    let request = request("json please").response_format(ResponseFormat::JsonObject);
    let items: Vec<_> = world
        .adapter
        .stream_completion(request)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(texts(&items).concat(), r#"{"answer": 4}"#);
    let Some(Ok(StreamChunk::Done(summary))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(summary.provider, OPENAI);
    assert!(matches!(
        summary.attempts[0].outcome,
        failover_provider::AttemptOutcome::Failed {
            kind: ErrorKind::MalformedResponse,
            ..
        }
    ));
}

#[tokio::test]
async fn a_content_filtered_stream_is_not_cached() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK)
            .otherwise(Step::reply("I cannot").with_finish_reason(FinishReason::ContentFilter)),
        ScriptedProvider::always(OPENAI, "unused"),
    );
    collect(&world, "filtered").await;
    let again = collect(&world, "filtered").await;
    let Some(Ok(StreamChunk::Done(summary))) = again.last() else {
        panic!("{again:?}")
    };
    assert!(!summary.cached);
    assert_eq!(summary.finish_reason, FinishReason::ContentFilter);
    assert_eq!(world.bedrock.call_count(), 2);
}
