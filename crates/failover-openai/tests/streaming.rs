//! SSE streams: complete, with and without the usage chunk, an error frame mid-stream, a
//! stream cut before `[DONE]`, no first token in time, a stall between chunks. wiremock
//! sends bodies at once; the timing cases use failover-standin's chunked server, which writes
//! each event as its own HTTP chunk with pauses in between.

mod common;

use std::time::Duration;

use common::{config, provider, request, request_as};
use failover_openai::OpenAiProvider;
use failover_provider::{
    ErrorKind, FinishReason, Provider, ProviderError, ProviderEvent, ProviderStream,
    ResponseFormat, TokenUsage,
};
use failover_standin::bedrock_server::ChunkedServer;
use failover_standin::openai_fixtures::{
    base_url, json_response, mount_chat, rate_limit_error, sse_chunked, sse_done, sse_error_frame,
    sse_events, sse_finish_chunk, sse_response, sse_role_chunk, sse_text_chunk, sse_usage_chunk,
};
use futures::StreamExt;
use serde_json::json;
use wiremock::MockServer;

async fn collect(stream: ProviderStream) -> Vec<Result<ProviderEvent, ProviderError>> {
    stream.collect().await
}

fn delta(text: &str) -> ProviderEvent {
    ProviderEvent::Delta(text.to_owned())
}

fn events_of(items: &[Result<ProviderEvent, ProviderError>]) -> Vec<ProviderEvent> {
    items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .collect()
}

fn last_error(items: &[Result<ProviderEvent, ProviderError>]) -> &ProviderError {
    items
        .last()
        .expect("the stream yielded nothing")
        .as_ref()
        .expect_err("the stream should end with an error")
}

async fn stream_from_wiremock(
    events: Vec<String>,
) -> (MockServer, Vec<Result<ProviderEvent, ProviderError>>) {
    let server = MockServer::start().await;
    mount_chat(&server, sse_response(&events), None).await;
    let stream = provider(&base_url(&server))
        .stream(request())
        .await
        .unwrap();
    let items = collect(stream).await;
    (server, items)
}

fn chunked_base(server: &ChunkedServer) -> String {
    format!("{}/v1", server.uri())
}

#[tokio::test]
async fn a_complete_stream_yields_deltas_then_finished_with_usage() {
    let (server, items) =
        stream_from_wiremock(sse_events(&["Hel", "lo", "!"], Some((30, 10, 3)))).await;
    assert_eq!(
        events_of(&items),
        vec![
            delta("Hel"),
            delta("lo"),
            delta("!"),
            ProviderEvent::Finished {
                finish_reason: FinishReason::Stop,
                usage: Some(TokenUsage {
                    input_tokens: 20,
                    output_tokens: 3,
                    cache_read_tokens: 10,
                    cache_write_tokens: 0
                }),
                model: Some("gpt-4o-2024-08-06".into()),
            }
        ]
    );
    assert!(items.iter().all(Result::is_ok));
    let body: serde_json::Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn a_server_without_the_usage_chunk_finishes_without_usage() {
    let (_server, items) = stream_from_wiremock(sse_events(&["4"], None)).await;
    assert_eq!(
        events_of(&items),
        vec![
            delta("4"),
            ProviderEvent::Finished {
                finish_reason: FinishReason::Stop,
                usage: None,
                model: Some("gpt-4o-2024-08-06".into()),
            }
        ]
    );
}

#[tokio::test]
async fn an_error_frame_mid_stream_ends_it_with_an_error() {
    let events = vec![
        sse_role_chunk(),
        sse_text_chunk("Hel"),
        sse_error_frame(),
        sse_text_chunk("never read"),
        sse_done(),
    ];
    let (_server, items) = stream_from_wiremock(events).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(events_of(&items), vec![delta("Hel")]);
    let error = last_error(&items);
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(error.provider_code(), Some("server_error"));
}

#[tokio::test]
async fn a_named_error_event_is_an_error_too() {
    let events = vec![
        sse_text_chunk("a"),
        "event: error\ndata: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n".to_owned(),
    ];
    let (_server, items) = stream_from_wiremock(events).await;
    assert_eq!(last_error(&items).kind(), ErrorKind::Throttled);
}

#[tokio::test]
async fn a_stream_without_done_is_cut_even_after_finish_and_usage() {
    let events = vec![
        sse_role_chunk(),
        sse_text_chunk("4"),
        sse_finish_chunk("stop"),
        sse_usage_chunk(10, 0, 1),
    ];
    let (_server, items) = stream_from_wiremock(events).await;
    assert_eq!(events_of(&items), vec![delta("4")]);
    let error = last_error(&items);
    assert_eq!(error.kind(), ErrorKind::StreamCut);
    assert!(error.message().contains("[DONE]"), "{error}");
}

#[tokio::test]
async fn a_connection_dropped_mid_body_is_a_cut() {
    let events = vec![
        sse_role_chunk(),
        sse_text_chunk("Hel"),
        sse_text_chunk("lo"),
    ];
    let server = ChunkedServer::start(sse_chunked(&events).abort())
        .await
        .unwrap();
    let stream = provider(&chunked_base(&server))
        .stream(request())
        .await
        .unwrap();
    let items = collect(stream).await;
    assert_eq!(events_of(&items), vec![delta("Hel"), delta("lo")]);
    assert_eq!(last_error(&items).kind(), ErrorKind::StreamCut);
}

#[tokio::test]
async fn events_written_with_pauses_shorter_than_the_stall_limit_complete() {
    let events = sse_events(&["a", "b"], Some((3, 0, 2)));
    let response = sse_chunked(&events)
        .pause_before(2, Duration::from_millis(100))
        .pause_before(4, Duration::from_millis(100));
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = OpenAiProvider::new(
        config(&chunked_base(&server))
            .stall_timeout(Duration::from_millis(800))
            .build(),
    )
    .unwrap();
    let items = collect(provider.stream(request()).await.unwrap()).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(items.len(), 3);
    let body: serde_json::Value = serde_json::from_slice(&server.requests()[0].body).unwrap();
    assert_eq!(body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn no_response_head_within_the_first_token_limit_is_a_timeout() {
    let events = sse_events(&["late"], None);
    let server = ChunkedServer::start(sse_chunked(&events).head_delay(Duration::from_secs(3)))
        .await
        .unwrap();
    let provider = OpenAiProvider::new(
        config(&chunked_base(&server))
            .first_token_timeout(Duration::from_millis(200))
            .max_attempts(1)
            .build(),
    )
    .unwrap();
    let Err(error) = provider.stream(request()).await else {
        panic!("the stream should not open")
    };
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("first token"), "{error}");
}

#[tokio::test]
async fn no_first_token_after_the_head_is_a_timeout() {
    // Headers and the role chunk arrive at once; the first content never comes in time.
    let events = sse_events(&["late"], None);
    let response = sse_chunked(&events).pause_before(1, Duration::from_secs(3));
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = OpenAiProvider::new(
        config(&chunked_base(&server))
            .first_token_timeout(Duration::from_millis(250))
            .build(),
    )
    .unwrap();
    let items = collect(provider.stream(request()).await.unwrap()).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let error = last_error(&items);
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("no first token"), "{error}");
}

#[tokio::test]
async fn a_stall_between_chunks_is_a_timeout() {
    let events = sse_events(&["one ", "two"], Some((3, 0, 2)));
    // role, "one ", <pause>, "two", …
    let response = sse_chunked(&events).pause_before(2, Duration::from_secs(3));
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = OpenAiProvider::new(
        config(&chunked_base(&server))
            .stall_timeout(Duration::from_millis(250))
            .build(),
    )
    .unwrap();
    let items = collect(provider.stream(request()).await.unwrap()).await;
    assert_eq!(events_of(&items), vec![delta("one ")]);
    let error = last_error(&items);
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("stalled"), "{error}");
}

#[tokio::test]
async fn the_deadline_ends_a_slow_stream() {
    let events = sse_events(&["one ", "two"], None);
    let response = sse_chunked(&events).pause_before(2, Duration::from_secs(3));
    let server = ChunkedServer::start(response).await.unwrap();
    let mut request = request();
    request.deadline = Some(std::time::Instant::now() + Duration::from_millis(300));
    let items = collect(
        provider(&chunked_base(&server))
            .stream(request)
            .await
            .unwrap(),
    )
    .await;
    let error = last_error(&items);
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("deadline"), "{error}");
}

#[tokio::test]
async fn http_errors_before_the_stream_are_returned_and_retried() {
    let server = MockServer::start().await;
    mount_chat(&server, json_response(429, &rate_limit_error()), Some(1)).await;
    mount_chat(
        &server,
        sse_response(&sse_events(&["ok"], Some((2, 0, 1)))),
        None,
    )
    .await;
    let items = collect(
        provider(&base_url(&server))
            .stream(request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events_of(&items)[0], delta("ok"));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    let refusing = MockServer::start().await;
    mount_chat(
        &refusing,
        json_response(
            401,
            &failover_standin::openai_fixtures::invalid_api_key_error(),
        ),
        None,
    )
    .await;
    let Err(error) = provider(&base_url(&refusing)).stream(request()).await else {
        panic!("the stream should not open")
    };
    assert_eq!(error.kind(), ErrorKind::AuthOrConfig);
    assert_eq!(refusing.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn json_mode_streams_are_validated_at_the_end() {
    let schema = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}),
    };
    let server = MockServer::start().await;
    mount_chat(
        &server,
        sse_response(&sse_events(&["{\"answer\"", ": 4}"], Some((5, 0, 4)))),
        Some(1),
    )
    .await;
    mount_chat(
        &server,
        sse_response(&sse_events(
            &["{\"answer\"", ": \"four\"}"],
            Some((5, 0, 4)),
        )),
        None,
    )
    .await;
    let provider = provider(&base_url(&server));
    let good = collect(provider.stream(request_as(schema.clone())).await.unwrap()).await;
    assert!(matches!(
        good.last(),
        Some(Ok(ProviderEvent::Finished { .. }))
    ));
    let bad = collect(provider.stream(request_as(schema)).await.unwrap()).await;
    assert_eq!(last_error(&bad).kind(), ErrorKind::MalformedResponse);
}

#[tokio::test]
async fn keep_alive_comments_and_blank_events_are_ignored() {
    let events = vec![
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        sse_role_chunk(),
        ": keep-alive\n\n".to_owned(),
        sse_text_chunk("4"),
        "data: \n\n".to_owned(),
        sse_finish_chunk("length"),
        sse_usage_chunk(4, 0, 1),
        sse_done(),
    ];
    let (_server, items) = stream_from_wiremock(events).await;
    assert_eq!(
        events_of(&items),
        vec![
            delta("4"),
            ProviderEvent::Finished {
                finish_reason: FinishReason::Length,
                usage: Some(TokenUsage::new(4, 1)),
                model: Some("gpt-4o-2024-08-06".into()),
            }
        ]
    );
}

#[tokio::test]
async fn events_split_at_any_byte_even_inside_a_character_are_reassembled() {
    let events = sse_events(&["héllo ", "wörld ", "😀"], Some((3, 0, 3)));
    let body = events.concat().into_bytes();
    for size in [1, 3, 7, 64] {
        let mut response = sse_chunked(&[]);
        response.parts = body
            .chunks(size)
            .map(|part| failover_standin::bedrock_server::Part::Bytes(part.to_vec()))
            .collect();
        let server = ChunkedServer::start(response).await.unwrap();
        let items = collect(
            provider(&chunked_base(&server))
                .stream(request())
                .await
                .unwrap(),
        )
        .await;
        assert!(items.iter().all(Result::is_ok), "split {size}: {items:?}");
        let text: String = events_of(&items)
            .into_iter()
            .filter_map(|e| match e {
                ProviderEvent::Delta(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(text, "héllo wörld 😀", "split {size}");
    }
}
