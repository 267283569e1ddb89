//! Streams through the adapter with scripted providers: the cases a wire stand-in does not
//! script — an empty stream, a model error after the first chunk, an empty JSON-mode stream,
//! a content-filtered answer. (Streams on the real clients are in the scenario suite.)

mod common;

use common::{BEDROCK, OPENAI, World, request};
use failover_core::FailoverError;
use failover_provider::{ErrorKind, FinishReason, ResponseFormat, StreamChunk, TokenUsage};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step, StreamStep};
use failover_usage::UsageOutcome;
use futures::StreamExt;

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
