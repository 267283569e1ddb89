//! The call's deadline through the real client: the request's own deadline running out is
//! the request-deadline marker (never this provider's fault), this provider's share of it
//! running out is its own time-out, and no attempt, retry or backoff outlives the call's
//! deadline. Hung upstreams are the chunked server holding its answer at a gate; nothing
//! here waits for a guessed duration.

mod common;

use std::time::{Duration, Instant};

use common::{config, request};
use failover_openai::OpenAiProvider;
use failover_provider::{ErrorKind, Provider, ProviderError, ProviderRequest};
use failover_standin::bedrock_server::{ChunkedServer, Gate};
use failover_standin::openai_fixtures::{
    base_url, error_response_with_hint, mount_chat, server_error, sse_chunked, sse_events,
};
use futures::StreamExt;
use wiremock::MockServer;

fn chunked_base(server: &ChunkedServer) -> String {
    format!("{}/v1", server.uri())
}

/// A provider with long limits of its own, so only the call's deadline can end a call.
fn patient(base: &str) -> OpenAiProvider {
    OpenAiProvider::new(
        config(base)
            .attempt_timeout(Duration::from_secs(60))
            .first_token_timeout(Duration::from_secs(60))
            .stall_timeout(Duration::from_secs(60))
            .max_attempts(3)
            .build(),
    )
    .unwrap()
}

/// A server that reads every request and never answers (until the gate opens).
async fn hung() -> (ChunkedServer, Gate) {
    let gate = Gate::new();
    let response = sse_chunked(&sse_events(&["late"], None)).hold_head(&gate);
    (ChunkedServer::start(response).await.unwrap(), gate)
}

fn with_deadlines(deadline: Duration, share: Option<Duration>) -> ProviderRequest {
    let now = Instant::now();
    ProviderRequest {
        deadline: Some(now + deadline),
        attempt_deadline: share.map(|share| now + share),
        ..request()
    }
}

fn assert_request_deadline(error: &ProviderError) {
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        error.is_request_deadline(),
        "{error}: the caller's deadline"
    );
}

fn assert_provider_timeout(error: &ProviderError) {
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        !error.is_request_deadline(),
        "{error}: the provider's share ran out, not the caller's deadline"
    );
}

#[tokio::test]
async fn a_hung_upstream_at_the_request_deadline_is_the_request_deadline() {
    let (server, _gate) = hung().await;
    let provider = patient(&chunked_base(&server));
    let error = provider
        .complete(with_deadlines(Duration::from_millis(300), None))
        .await
        .unwrap_err();
    assert_request_deadline(&error);
    assert_eq!(server.requests().len(), 1, "no retry past the deadline");
}

#[tokio::test]
async fn a_hung_upstream_past_its_share_is_the_providers_timeout_at_the_share() {
    let (server, _gate) = hung().await;
    let provider = patient(&chunked_base(&server));
    let request = with_deadlines(Duration::from_secs(60), Some(Duration::from_millis(300)));
    let share_ends = request.attempt_deadline.unwrap();
    let error = provider.complete(request).await.unwrap_err();
    assert_provider_timeout(&error);
    assert!(Instant::now() >= share_ends, "not before its share ran out");
    assert!(
        Instant::now() < share_ends + Duration::from_secs(20),
        "returned at its share, long before the request's deadline"
    );
    assert_eq!(server.requests().len(), 1, "no retry past the share");
}

#[tokio::test]
async fn a_stream_without_its_first_token_at_the_request_deadline_is_the_request_deadline() {
    let gate = Gate::new();
    // The head and the role chunk are sent; the first text chunk is held.
    let response = sse_chunked(&sse_events(&["late"], None)).hold_before(1, &gate);
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = patient(&chunked_base(&server));
    let mut stream = provider
        .stream(with_deadlines(Duration::from_millis(400), None))
        .await
        .expect("the head arrives before the deadline");
    let error = stream.next().await.unwrap().unwrap_err();
    assert_request_deadline(&error);
    assert!(stream.next().await.is_none(), "the error ends the stream");
    assert!(!gate.is_open());
}

#[tokio::test]
async fn a_stream_stalled_past_its_share_is_the_providers_timeout() {
    let gate = Gate::new();
    let events = sse_events(&["a", "b"], None);
    // Role chunk and "a" sent, then held.
    let response = sse_chunked(&events).hold_before(2, &gate);
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = patient(&chunked_base(&server));
    let started = Instant::now();
    let mut stream = provider
        .stream(with_deadlines(
            Duration::from_secs(60),
            Some(Duration::from_millis(400)),
        ))
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok(), "the first delta");
    let error = stream.next().await.unwrap().unwrap_err();
    assert_provider_timeout(&error);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ended at its share, not at the 60 s stall limit"
    );
}

#[tokio::test]
async fn a_hung_stream_head_at_the_request_deadline_is_the_request_deadline() {
    let (server, _gate) = hung().await;
    let provider = patient(&chunked_base(&server));
    let error = provider
        .stream(with_deadlines(Duration::from_millis(300), None))
        .await
        .err()
        .expect("no head, no stream");
    assert_request_deadline(&error);
}

#[tokio::test]
async fn retries_never_outlive_the_call_deadline() {
    let server = MockServer::start().await;
    // Every answer a 503 asking for 200 ms: a provider with 50 attempts would retry for
    // ten seconds.
    mount_chat(
        &server,
        error_response_with_hint(503, &server_error(), Duration::from_millis(200)),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(
        config(&base_url(&server))
            .max_attempts(50)
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .build(),
    )
    .unwrap();
    let request = with_deadlines(Duration::from_secs(60), Some(Duration::from_millis(900)));
    let share_ends = request.attempt_deadline.unwrap();
    let error = provider.complete(request).await.unwrap_err();
    let returned = Instant::now();
    // Either the last 503 (no retry fits in what is left), or, if the machine is slow
    // enough that an attempt is still running when the share ends, the provider's own
    // time-out at the share: never a sleep or an attempt past it.
    match error.kind() {
        ErrorKind::Unavailable => assert!(returned <= share_ends, "no backoff past the share"),
        ErrorKind::Timeout => assert_provider_timeout(&error),
        other => panic!("unexpected {other}: {error}"),
    }
    assert!(
        returned < share_ends + Duration::from_secs(5),
        "returned at its share, not after 50 attempts"
    );
    let calls = server.received_requests().await.unwrap().len();
    assert!(
        (1..=5).contains(&calls),
        "{calls} calls in 900 ms at 200 ms apart"
    );
}
