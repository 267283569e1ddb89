//! Tool calls and capabilities through the adapter with scripted providers: the commit
//! point counts a tool call as content; a stream cut or disordered inside a call ends with
//! the explicit error item; a request with tools, images or `top_p` goes only to providers
//! that take them, and when none does it is refused before any call, each reason named;
//! invalid tool requests reach no provider.

mod common;

use common::{BEDROCK, OPENAI, World};
use failover_core::{FailoverError, Unsupported, ValidationError};
use failover_provider::{
    AttemptOutcome, Capabilities, CompletionRequest, ContentPart, ErrorKind, FinishReason,
    ImageMediaType, ImagePart, Message, StreamChunk, TokenUsage, ToolCall, ToolChoice,
    ToolDefinition,
};
use failover_testkit::{ErrorSpec, ScriptedProvider, Step, StreamStep};
use failover_usage::UsageOutcome;
use futures::StreamExt;
use serde_json::json;

fn tool() -> ToolDefinition {
    ToolDefinition::new(
        "lookup",
        "Looks a word up",
        json!({"type": "object", "properties": {"word": {"type": "string"}}}),
    )
}

fn with_tools(prompt: &str) -> CompletionRequest {
    CompletionRequest::prompt("t", "a", "gpt-4", prompt).tools(vec![tool()])
}

fn call(id: &str) -> ToolCall {
    ToolCall::new(id, "lookup", r#"{"word":"failover"}"#)
}

fn start(index: u32, id: &str) -> StreamStep {
    StreamStep::ToolCallStart {
        index,
        id: id.into(),
        name: "lookup".into(),
    }
}

fn args(index: u32, arguments: &str) -> StreamStep {
    StreamStep::ToolCallDelta {
        index,
        arguments: arguments.into(),
    }
}

fn finish() -> StreamStep {
    StreamStep::Finish {
        usage: Some(TokenUsage::new(10, 5)),
        finish_reason: FinishReason::ToolUse,
    }
}

type Item = Result<StreamChunk, FailoverError>;

async fn collect(world: &World, request: CompletionRequest) -> Vec<Item> {
    world
        .adapter
        .stream_completion(request)
        .await
        .unwrap()
        .collect()
        .await
}

#[tokio::test]
async fn a_plain_tool_call_answer_comes_back_with_its_calls() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::call_tools(vec![call("c1"), call("c2")])),
        ScriptedProvider::new(OPENAI),
    );
    let done = world
        .adapter
        .generate_completion(with_tools("look up two words"))
        .await
        .unwrap();
    assert_eq!(done.tool_calls, vec![call("c1"), call("c2")]);
    assert_eq!(done.finish_reason, FinishReason::ToolUse);
    assert!(done.content.is_empty());
    let sent = &world.bedrock.requests()[0];
    assert_eq!(sent.tools.tools, vec![tool()]);
}

#[tokio::test]
async fn a_streamed_tool_call_commits_and_its_items_arrive_in_order() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::call_tools(vec![call("c1")])),
        ScriptedProvider::new(OPENAI),
    );
    let items = collect(&world, with_tools("look it up")).await;
    let chunks: Vec<_> = items.into_iter().map(Result::unwrap).collect();
    // The scripted provider streams the arguments in two halves.
    assert_eq!(
        chunks[..chunks.len() - 1],
        [
            StreamChunk::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "lookup".into()
            },
            StreamChunk::ToolCallDelta {
                index: 0,
                arguments: r#"{"word":""#.into()
            },
            StreamChunk::ToolCallDelta {
                index: 0,
                arguments: r#"failover"}"#.into()
            },
            StreamChunk::ToolCallEnd { index: 0 },
        ]
    );
    let StreamChunk::Done(summary) = chunks.last().unwrap() else {
        panic!("{chunks:?}");
    };
    assert_eq!(summary.tool_calls, vec![call("c1")]);
    assert_eq!(summary.finish_reason, FinishReason::ToolUse);
}

#[tokio::test]
async fn a_failure_before_a_tool_call_starts_fails_over() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![StreamStep::Fail(ErrorSpec::new(
            ErrorKind::Unavailable,
        ))])),
        ScriptedProvider::new(OPENAI).then(Step::call_tools(vec![call("c9")])),
    );
    let items = collect(&world, with_tools("look it up")).await;
    let Some(Ok(StreamChunk::Done(summary))) = items.last() else {
        panic!("{items:?}");
    };
    assert_eq!(summary.provider, OPENAI);
    assert_eq!(summary.tool_calls, vec![call("c9")]);
}

#[tokio::test]
async fn a_stream_cut_inside_a_tool_call_ends_with_the_error_item_and_no_second_provider() {
    let world = World::new(
        ScriptedProvider::new(BEDROCK).then(Step::Stream(vec![
            start(0, "c1"),
            args(0, r#"{"wo"#),
            // The stream ends here: no end of the call, no finish.
        ])),
        ScriptedProvider::always(OPENAI, "never asked"),
    );
    let items = collect(&world, with_tools("look it up")).await;
    assert!(
        matches!(items[0], Ok(StreamChunk::ToolCallStart { .. })),
        "{items:?}"
    );
    match items.last().unwrap() {
        Err(FailoverError::StreamInterrupted {
            kind,
            delivered_bytes,
            ..
        }) => {
            assert_eq!(*kind, ErrorKind::StreamCut);
            assert_eq!(*delivered_bytes, 4, "the argument bytes delivered");
        }
        other => panic!("expected the interruption, got {other:?}"),
    }
    assert!(
        !items
            .iter()
            .any(|item| matches!(item, Ok(StreamChunk::Done(_)))),
        "{items:?}"
    );
    assert_eq!(world.openai.call_count(), 0);
    let records = world.usage_records();
    assert_eq!(records.len(), 1);
    assert!(
        matches!(records[0].outcome, UsageOutcome::Failed { .. }),
        "{records:?}"
    );
}

#[tokio::test]
async fn tool_call_items_out_of_order_are_a_malformed_stream_not_a_wrong_call() {
    for steps in [
        // A fragment for a call that never started.
        vec![start(0, "c1"), args(1, "{}"), finish()],
        // A second call while the first is open.
        vec![start(0, "c1"), start(1, "c2"), finish()],
        // Finished with a call still open.
        vec![start(0, "c1"), args(0, "{}"), finish()],
    ] {
        let world = World::new(
            ScriptedProvider::new(BEDROCK).then(Step::Stream(steps.clone())),
            ScriptedProvider::new(OPENAI),
        );
        let items = collect(&world, with_tools("look it up")).await;
        match items.last().unwrap() {
            Err(FailoverError::StreamInterrupted { kind, message, .. }) => {
                assert_eq!(*kind, ErrorKind::MalformedResponse, "{steps:?}");
                assert!(message.contains("out of order"), "{message}");
            }
            other => panic!("{steps:?}: expected the interruption, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn requests_with_tools_images_or_top_p_go_only_to_providers_that_take_them() {
    let image = ContentPart::Image(ImagePart::new(ImageMediaType::Png, vec![1, 2, 3]));
    let cases: [(Capabilities, CompletionRequest, &str); 3] = [
        (
            Capabilities::FULL.with_tools(None),
            with_tools("tools"),
            "tools unsupported",
        ),
        (
            Capabilities::FULL.with_images(None),
            CompletionRequest::messages(
                "t",
                "a",
                "gpt-4o",
                vec![Message::user_parts(vec![ContentPart::text("see"), image])],
            ),
            "images unsupported",
        ),
        (
            Capabilities::FULL.with_sampling(false, true, true),
            CompletionRequest::prompt("t", "a", "gpt-4", "nucleus").top_p(0.5),
            "top_p unsupported",
        ),
    ];
    for (capabilities, request, reason) in cases {
        let world = World::new(
            ScriptedProvider::always(BEDROCK, "primary").with_capabilities(capabilities),
            ScriptedProvider::always(OPENAI, "fallback"),
        );
        let done = world
            .adapter
            .generate_completion(request.clone())
            .await
            .unwrap();
        assert_eq!(done.provider, OPENAI, "{reason}");
        assert_eq!(
            done.attempts[0].outcome,
            AttemptOutcome::SkippedUnsupported {
                reason: reason.into()
            }
        );
        assert_eq!(world.bedrock.call_count(), 0);

        // When no provider takes it, the request is refused before any call.
        let world = World::new(
            ScriptedProvider::always(BEDROCK, "primary").with_capabilities(capabilities),
            ScriptedProvider::always(OPENAI, "fallback").with_capabilities(capabilities),
        );
        let error = world
            .adapter
            .generate_completion(request)
            .await
            .unwrap_err();
        let FailoverError::Invalid(ValidationError::NoCapableRoute { unserved, .. }) = &error
        else {
            panic!("{reason}: {error:?}");
        };
        assert_eq!(unserved.len(), 2);
        assert!(error.to_string().contains(reason), "{error}");
        assert_eq!(world.bedrock.call_count() + world.openai.call_count(), 0);
    }
}

#[tokio::test]
async fn an_image_too_large_for_one_provider_goes_to_the_other() {
    let small = Capabilities::FULL.with_images(Some(failover_provider::ImageLimits {
        max_bytes: 2,
        max_images: 20,
        media_types: failover_provider::MediaTypeSet::ALL,
    }));
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "primary").with_capabilities(small),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    let request = CompletionRequest::messages(
        "t",
        "a",
        "gpt-4o",
        vec![Message::user_parts(vec![ContentPart::Image(
            ImagePart::new(ImageMediaType::Jpeg, vec![0; 3]),
        )])],
    );
    let done = world.adapter.generate_completion(request).await.unwrap();
    assert_eq!(done.provider, OPENAI);
    assert_eq!(
        done.attempts[0].outcome,
        AttemptOutcome::SkippedUnsupported {
            reason: Unsupported::ImageTooLarge { bytes: 3, max: 2 }.to_string()
        }
    );
}

#[tokio::test]
async fn invalid_tool_requests_reach_no_provider() {
    let unknown_choice = with_tools("x").tool_choice(ToolChoice::Tool("missing".into()));
    let orphan_result = CompletionRequest::messages(
        "t",
        "a",
        "gpt-4",
        vec![
            Message::user("hi"),
            Message::tool_result(
                "nobody",
                failover_provider::ToolResultContent::Text("x".into()),
            ),
        ],
    );
    let bad_schema =
        CompletionRequest::prompt("t", "a", "gpt-4", "x").tools(vec![ToolDefinition {
            input_schema: json!({"type": "string"}),
            ..tool()
        }]);
    let world = World::new(
        ScriptedProvider::always(BEDROCK, "primary"),
        ScriptedProvider::always(OPENAI, "fallback"),
    );
    for request in [unknown_choice, orphan_result, bad_schema] {
        let error = world
            .adapter
            .generate_completion(request)
            .await
            .unwrap_err();
        assert!(matches!(error, FailoverError::Invalid(_)), "{error:?}");
    }
    assert_eq!(world.bedrock.call_count() + world.openai.call_count(), 0);
}
