//! `ConverseStream` through the real SDK client: bodies are real AWS event-stream frames,
//! served at once by wiremock or frame by frame, with gaps, by failover-standin's chunked server.

mod common;

use std::time::{Duration, Instant};

use common::{GPT4_MODEL, bedrock, local_config, world};
use failover_bedrock::BedrockProvider;
use failover_breaker::BreakerConfig;
use failover_core::{CompletionStream, FailoverError};
use failover_provider::{
    AttemptOutcome, CompletionRequest, ErrorKind, FinishReason, Message, Provider, ProviderError,
    ProviderEvent, ProviderRequest, RequestId, ResponseFormat, StreamChunk, StreamSummary,
    TokenUsage, Usd,
};
use failover_standin::bedrock_server::{ChunkedResponse, ChunkedServer};
use failover_standin::eventstream::{ConverseStreamBody, converse_stream_path};
use failover_testkit::{ScriptedProvider, Step};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::json;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer};

fn provider_request(format: ResponseFormat) -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("test"),
        model: GPT4_MODEL.to_owned(),
        messages: vec![Message::user("Tell me.")],
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: format,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

fn request() -> CompletionRequest {
    CompletionRequest::prompt("t", "a", "gpt-4", "Tell me.")
}

/// Every item of a provider stream.
async fn provider_events(
    provider: &BedrockProvider,
    format: ResponseFormat,
) -> Vec<Result<ProviderEvent, ProviderError>> {
    provider
        .stream(provider_request(format))
        .await
        .expect("the stream opens")
        .collect()
        .await
}

/// The chunks of an adapter stream: texts, then the summary or the error that ended it.
async fn drain(stream: CompletionStream) -> (Vec<String>, Result<StreamSummary, FailoverError>) {
    let items: Vec<_> = stream.collect().await;
    let mut texts = Vec::new();
    let mut end = None;
    for item in items {
        assert!(end.is_none(), "nothing may follow the terminal item");
        match item {
            Ok(StreamChunk::Delta { text }) => texts.push(text),
            Ok(StreamChunk::Done(summary)) => end = Some(Ok(summary)),
            Ok(call) => panic!("a text answer streamed {call:?}"),
            Err(error) => end = Some(Err(error)),
        }
    }
    (
        texts,
        end.expect("a stream always ends with Done or an error"),
    )
}

async fn stream_server(body: &ConverseStreamBody) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_stream_path(GPT4_MODEL)))
        .respond_with(body.response())
        .mount(&server)
        .await;
    server
}

fn failed_kind(outcome: &AttemptOutcome) -> Option<ErrorKind> {
    match outcome {
        AttemptOutcome::Failed { kind, .. } => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn chunks_arrive_in_order_and_finished_carries_the_metadata_usage() {
    let body = ConverseStreamBody::text_reply(&["The ", "answer ", "is 4."], 18, 6);
    let server = stream_server(&body).await;
    let provider = bedrock(&server.uri()).await;
    let events: Vec<ProviderEvent> = provider_events(&provider, ResponseFormat::Text)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        vec![
            ProviderEvent::Delta("The ".into()),
            ProviderEvent::Delta("answer ".into()),
            ProviderEvent::Delta("is 4.".into()),
            ProviderEvent::Finished {
                finish_reason: FinishReason::Stop,
                usage: Some(TokenUsage::new(18, 6)),
                model: None,
            },
        ]
    );

    let world = world(
        provider,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let stream = world.adapter.stream_completion(request()).await.unwrap();
    let (texts, end) = drain(stream).await;
    assert_eq!(texts, vec!["The ", "answer ", "is 4."]);
    let summary = end.unwrap();
    assert_eq!(summary.provider, "bedrock");
    assert_eq!(summary.usage, TokenUsage::new(18, 6));
    // 18 × $3/M + 6 × $15/M
    assert_eq!(summary.estimated_cost, Usd::new(Decimal::new(144, 6)));
    world.adapter.flush_usage().await.unwrap();
    let records = world.sink.records();
    assert_eq!(records.len(), 1);
    assert!(records[0].streamed && !records[0].usage_estimated);
    assert_eq!(records[0].usage, TokenUsage::new(18, 6));
}

#[tokio::test]
async fn json_mode_streams_the_forced_tool_input() {
    let body = ConverseStreamBody::new()
        .message_start()
        .tool_use_start("tooluse_1", "json_response")
        .tool_input("")
        .tool_input("{\"answer\"")
        .tool_input(": 4}")
        .block_stop()
        .message_stop("tool_use")
        .metadata(30, 11);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_stream_path(GPT4_MODEL)))
        .and(body_partial_json(
            json!({"toolConfig": {"toolChoice": {"tool": {"name": "json_response"}}}}),
        ))
        .respond_with(body.response())
        .expect(1)
        .mount(&server)
        .await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let stream = world
        .adapter
        .stream_completion(request().response_format(ResponseFormat::JsonObject))
        .await
        .unwrap();
    let (texts, end) = drain(stream).await;
    let content: String = texts.concat();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&content).unwrap(),
        json!({"answer": 4})
    );
    let summary = end.unwrap();
    assert_eq!(summary.finish_reason, FinishReason::Stop);
    assert_eq!(summary.usage, TokenUsage::new(30, 11));
}

#[tokio::test]
async fn an_exception_before_the_first_chunk_is_classified_and_fails_over() {
    for (exception, kind) in [
        ("throttlingException", ErrorKind::Throttled),
        ("modelStreamErrorException", ErrorKind::ModelError),
        ("internalServerException", ErrorKind::Unavailable),
        ("serviceUnavailableException", ErrorKind::Unavailable),
    ] {
        let body = ConverseStreamBody::new()
            .message_start()
            .exception(exception, "in-stream failure");
        let server = stream_server(&body).await;
        let provider = bedrock(&server.uri()).await;
        let events = provider_events(&provider, ResponseFormat::Text).await;
        assert_eq!(events.len(), 1, "{exception}: {events:?}");
        let error = events[0].as_ref().unwrap_err();
        assert_eq!(error.kind(), kind, "{exception}: {error}");
        assert_eq!(error.message(), "in-stream failure");

        let world = world(
            provider,
            ScriptedProvider::new("openai").then(Step::reply("from openai")),
            BreakerConfig::default(),
        );
        let stream = world.adapter.stream_completion(request()).await.unwrap();
        let (texts, end) = drain(stream).await;
        assert_eq!(texts.concat(), "from openai");
        let summary = end.unwrap();
        assert_eq!(summary.provider, "openai");
        assert_eq!(
            failed_kind(&summary.attempts[0].outcome),
            Some(kind),
            "{exception}"
        );
    }
}

#[tokio::test]
async fn an_exception_after_the_first_chunk_ends_the_stream_with_an_error_item() {
    let body = ConverseStreamBody::new()
        .message_start()
        .text("Hello")
        .exception("modelStreamErrorException", "The model stream failed.");
    let server = stream_server(&body).await;
    let world = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::always("openai", "must not be spliced in"),
        BreakerConfig::default(),
    );
    let stream = world.adapter.stream_completion(request()).await.unwrap();
    let (texts, end) = drain(stream).await;
    assert_eq!(texts, vec!["Hello"]);
    match end {
        Err(FailoverError::StreamInterrupted {
            provider,
            kind,
            delivered_bytes,
            ..
        }) => {
            assert_eq!(
                (provider.as_str(), kind, delivered_bytes),
                ("bedrock", ErrorKind::ModelError, 5)
            );
        }
        other => panic!("expected an interruption: {other:?}"),
    }
    assert_eq!(world.openai.call_count(), 0);
}

#[tokio::test]
async fn a_body_ending_before_message_stop_is_a_cut() {
    // Before the first chunk: fails over.
    let empty = ConverseStreamBody::new().message_start();
    let server = stream_server(&empty).await;
    let world_before = world(
        bedrock(&server.uri()).await,
        ScriptedProvider::new("openai").then(Step::reply("fallback")),
        BreakerConfig::default(),
    );
    let (texts, end) = drain(
        world_before
            .adapter
            .stream_completion(request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(texts.concat(), "fallback");
    let summary = end.unwrap();
    assert_eq!(
        failed_kind(&summary.attempts[0].outcome),
        Some(ErrorKind::StreamCut)
    );

    // After it: an error item, never a clean end.
    let partial = ConverseStreamBody::new()
        .message_start()
        .text("Half an ans");
    let server = stream_server(&partial).await;
    let provider = bedrock(&server.uri()).await;
    let events = provider_events(&provider, ResponseFormat::Text).await;
    assert_eq!(
        events[0].as_ref().unwrap(),
        &ProviderEvent::Delta("Half an ans".into())
    );
    assert_eq!(events[1].as_ref().unwrap_err().kind(), ErrorKind::StreamCut);
    let world_after = world(
        provider,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let (texts, end) = drain(
        world_after
            .adapter
            .stream_completion(request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(texts, vec!["Half an ans"]);
    assert!(
        matches!(
            end,
            Err(FailoverError::StreamInterrupted {
                kind: ErrorKind::StreamCut,
                ..
            })
        ),
        "{end:?}"
    );
}

#[tokio::test]
async fn a_frame_cut_in_the_middle_is_a_cut() {
    let body = ConverseStreamBody::text_reply(&["one ", "two"], 5, 2);
    // Drop the tail of the last frames: the body ends inside a frame before messageStop.
    let frames = body.frames();
    let keep: usize = frames[..3].iter().map(Vec::len).sum::<usize>() + frames[3].len() / 2;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(
            body.to_bytes()[..keep].to_vec(),
            "application/vnd.amazon.eventstream",
        ))
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let events = provider_events(&provider, ResponseFormat::Text).await;
    assert_eq!(
        events[0].as_ref().unwrap(),
        &ProviderEvent::Delta("one ".into())
    );
    assert_eq!(
        events[1].as_ref().unwrap(),
        &ProviderEvent::Delta("two".into())
    );
    let error = events[2].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StreamCut, "{error}");
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn a_dropped_connection_mid_body_is_a_cut() {
    let body = ConverseStreamBody::new()
        .message_start()
        .text("Hello")
        .text(" wor");
    let server = ChunkedServer::start(ChunkedResponse::event_stream(body.frames()).abort())
        .await
        .unwrap();
    let provider = bedrock(server.uri()).await;
    let events = provider_events(&provider, ResponseFormat::Text).await;
    assert_eq!(events.len(), 3, "{events:?}");
    let error = events[2].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StreamCut, "{error}");
}

#[tokio::test]
async fn a_missing_metadata_event_still_finishes_without_usage() {
    let body = ConverseStreamBody::new()
        .message_start()
        .text("done")
        .block_stop()
        .message_stop("max_tokens");
    let server = stream_server(&body).await;
    let provider = bedrock(&server.uri()).await;
    let events = provider_events(&provider, ResponseFormat::Text).await;
    assert_eq!(
        events.last().unwrap().as_ref().unwrap(),
        &ProviderEvent::Finished {
            finish_reason: FinishReason::Length,
            usage: None,
            model: None
        }
    );
}

#[tokio::test]
async fn events_are_yielded_as_they_arrive_across_gaps_shorter_than_the_stall_limit() {
    let body = ConverseStreamBody::text_reply(&["first", " second"], 4, 2);
    // Frames: messageStart, "first", " second", …: a 600 ms gap after "first".
    let response =
        ChunkedResponse::event_stream(body.frames()).pause_before(2, Duration::from_millis(600));
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = bedrock(server.uri()).await;
    let started = Instant::now();
    let mut stream = provider
        .stream(provider_request(ResponseFormat::Text))
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        ProviderEvent::Delta("first".into())
    );
    let first_at = started.elapsed();
    let rest: Vec<_> = stream.collect().await;
    let done_at = started.elapsed();
    assert!(
        first_at < Duration::from_millis(500),
        "first delta came at {first_at:?}"
    );
    assert!(done_at >= Duration::from_millis(600), "{done_at:?}");
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(matches!(
        rest[1],
        Ok(ProviderEvent::Finished { usage: Some(_), .. })
    ));
    let sent = &server.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
}

async fn timed_provider(
    server: &ChunkedServer,
    first_token: Duration,
    stall: Duration,
) -> BedrockProvider {
    BedrockProvider::new(
        local_config(server.uri())
            .first_token_timeout(first_token)
            .stall_timeout(stall)
            .build(),
    )
    .await
}

#[tokio::test]
async fn no_first_token_in_time_is_a_timeout_that_fails_over() {
    let body = ConverseStreamBody::text_reply(&["late"], 4, 1);
    // messageStart comes at once, the first delta 2 s later. The stall limit (5 s) is not
    // what trips: the first-token limit (300 ms) is.
    let response =
        ChunkedResponse::event_stream(body.frames()).pause_before(1, Duration::from_secs(2));
    let server = ChunkedServer::start(response).await.unwrap();
    let provider =
        timed_provider(&server, Duration::from_millis(300), Duration::from_secs(5)).await;
    let started = Instant::now();
    let events = provider_events(&provider, ResponseFormat::Text).await;
    let error = events[0].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("first-token"), "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let world = world(
        timed_provider(&server, Duration::from_millis(300), Duration::from_secs(5))
            .await
            .into(),
        ScriptedProvider::new("openai").then(Step::reply("fallback")),
        BreakerConfig::default(),
    );
    let (texts, end) = drain(world.adapter.stream_completion(request()).await.unwrap()).await;
    assert_eq!(texts.concat(), "fallback");
    assert_eq!(
        failed_kind(&end.unwrap().attempts[0].outcome),
        Some(ErrorKind::Timeout)
    );
}

#[tokio::test]
async fn response_headers_later_than_the_first_token_limit_are_a_timeout() {
    let body = ConverseStreamBody::text_reply(&["late"], 4, 1);
    let response = ChunkedResponse::event_stream(body.frames()).head_delay(Duration::from_secs(2));
    let server = ChunkedServer::start(response).await.unwrap();
    let provider =
        timed_provider(&server, Duration::from_millis(300), Duration::from_secs(5)).await;
    let started = Instant::now();
    let error = match provider
        .stream(provider_request(ResponseFormat::Text))
        .await
    {
        Ok(_) => panic!("the stream should not open"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stall_after_the_first_chunk_ends_the_stream_with_a_timeout_item() {
    let body = ConverseStreamBody::text_reply(&["Hello", " world"], 4, 2);
    // messageStart, "Hello", then 2 s of silence before " world".
    let response =
        ChunkedResponse::event_stream(body.frames()).pause_before(2, Duration::from_secs(2));
    let server = ChunkedServer::start(response).await.unwrap();
    let world = world(
        timed_provider(&server, Duration::from_secs(5), Duration::from_millis(300))
            .await
            .into(),
        ScriptedProvider::always("openai", "must not be spliced in"),
        BreakerConfig::default(),
    );
    let started = Instant::now();
    let (texts, end) = drain(world.adapter.stream_completion(request()).await.unwrap()).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(texts, vec!["Hello"]);
    match end {
        Err(FailoverError::StreamInterrupted { kind, message, .. }) => {
            assert_eq!(kind, ErrorKind::Timeout);
            assert!(message.contains("stalled"), "{message}");
        }
        other => panic!("expected a stall: {other:?}"),
    }
    assert_eq!(world.openai.call_count(), 0);
}

#[tokio::test]
async fn a_stall_before_the_first_chunk_fails_over() {
    let body = ConverseStreamBody::text_reply(&["late"], 4, 1);
    // messageStart at once, then nothing for 2 s: the stall limit (300 ms) trips before
    // the first-token limit (5 s).
    let response =
        ChunkedResponse::event_stream(body.frames()).pause_before(1, Duration::from_secs(2));
    let server = ChunkedServer::start(response).await.unwrap();
    let world = world(
        timed_provider(&server, Duration::from_secs(5), Duration::from_millis(300))
            .await
            .into(),
        ScriptedProvider::new("openai").then(Step::reply("fallback")),
        BreakerConfig::default(),
    );
    let (texts, end) = drain(world.adapter.stream_completion(request()).await.unwrap()).await;
    assert_eq!(texts.concat(), "fallback");
    let summary = end.unwrap();
    let AttemptOutcome::Failed { kind, message } = &summary.attempts[0].outcome else {
        panic!("{:?}", summary.attempts)
    };
    assert_eq!(*kind, ErrorKind::Timeout);
    assert!(message.contains("stalled"), "{message}");
}

#[tokio::test]
async fn an_event_that_cannot_be_unmarshalled_is_malformed() {
    // A `contentBlockStart` whose `start` union names no variant.
    let body = ConverseStreamBody::new()
        .message_start()
        .event(
            "contentBlockStart",
            json!({"contentBlockIndex": 0, "start": {}}),
        )
        .text("never read");
    let server = stream_server(&body).await;
    let provider = bedrock(&server.uri()).await;
    let events = provider_events(&provider, ResponseFormat::Text).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let error = events[0].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{error}");
}

#[tokio::test]
async fn an_error_status_on_converse_stream_is_classified_before_any_event_and_fails_over() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(converse_stream_path(GPT4_MODEL)))
        .respond_with(
            failover_standin::eventstream::bedrock_error(
                429,
                "ThrottlingException",
                "Too many requests",
            )
            .insert_header("Retry-After", "2"),
        )
        .mount(&server)
        .await;
    let provider = bedrock(&server.uri()).await;
    let error = match provider
        .stream(provider_request(ResponseFormat::Text))
        .await
    {
        Ok(_) => panic!("the stream should not open"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(error.http_status(), Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));

    let world = world(
        provider,
        ScriptedProvider::new("openai").then(Step::reply("fallback")),
        BreakerConfig::default(),
    );
    let (texts, end) = drain(world.adapter.stream_completion(request()).await.unwrap()).await;
    assert_eq!(texts.concat(), "fallback");
    assert_eq!(
        failed_kind(&end.unwrap().attempts[0].outcome),
        Some(ErrorKind::Throttled)
    );
}

#[tokio::test]
async fn the_first_delta_reaches_the_caller_while_the_stand_in_holds_the_rest() {
    use failover_standin::bedrock_server::Gate;

    let gate = Gate::new();
    let body = ConverseStreamBody::text_reply(&["Hel", "lo"], 12, 2);
    // messageStart and "Hel" are written and flushed; "lo", contentBlockStop, messageStop
    // and metadata wait at the gate.
    let response = ChunkedResponse::event_stream(body.frames()).hold_before(2, &gate);
    let server = ChunkedServer::start(response).await.unwrap();
    let world = world(
        bedrock(server.uri()).await,
        ScriptedProvider::always("openai", "unused"),
        BreakerConfig::default(),
    );
    let mut stream = world.adapter.stream_completion(request()).await.unwrap();
    // Not a synchronisation: a bound so that an adapter holding deltas back fails the test
    // instead of hanging it.
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the first delta arrives while the rest is held")
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, StreamChunk::Delta { text } if text == "Hel"),
        "{first:?}"
    );
    assert!(
        !gate.is_open(),
        "the caller has the first delta while the stand-in has not sent the rest"
    );
    gate.open();
    let (texts, end) = drain(stream).await;
    assert_eq!(texts, vec!["lo".to_owned()]);
    let summary = end.unwrap();
    assert_eq!(summary.usage, TokenUsage::new(12, 2));
}
