//! The call's deadline through the real SDK client: the request's own deadline running out
//! is the request-deadline marker (never this provider's fault), this provider's share of
//! it running out is its own time-out, and the SDK's retries stop at the call's deadline.
//! Hung upstreams are the chunked server holding its answer at a gate; nothing here waits
//! for a guessed duration.

mod common;

use std::time::{Duration, Instant};

use common::{GPT4_MODEL, local_config};
use failover_bedrock::{BedrockConfigBuilder, BedrockProvider};
use failover_provider::{
    ErrorKind, Message, Provider, ProviderError, ProviderEvent, ProviderRequest, RequestId,
    ResponseFormat,
};
use failover_standin::bedrock_server::{ChunkedResponse, ChunkedServer, Gate};
use failover_standin::eventstream::ConverseStreamBody;
use futures::StreamExt;

fn with_deadlines(deadline: Duration, share: Option<Duration>) -> ProviderRequest {
    let now = Instant::now();
    ProviderRequest {
        request_id: RequestId::new("deadlines"),
        model: GPT4_MODEL.to_owned(),
        messages: vec![Message::user("Tell me.")],
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: ResponseFormat::Text,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: Some(now + deadline),
        attempt_deadline: share.map(|share| now + share),
    }
}

/// Long limits of the provider's own, so only the call's deadline can end a call.
fn patient(endpoint: &str) -> BedrockConfigBuilder {
    local_config(endpoint)
        .attempt_timeout(Duration::from_secs(60))
        .first_token_timeout(Duration::from_secs(60))
        .stall_timeout(Duration::from_secs(60))
}

async fn provider(config: BedrockConfigBuilder) -> BedrockProvider {
    BedrockProvider::new(config.build()).await
}

fn text_body() -> ConverseStreamBody {
    ConverseStreamBody::text_reply(&["Hel", "lo"], 4, 2)
}

/// A server that reads every request and never answers (until the gate opens).
async fn hung() -> (ChunkedServer, Gate) {
    let gate = Gate::new();
    let response = ChunkedResponse::event_stream(text_body().frames()).hold_head(&gate);
    (ChunkedServer::start(response).await.unwrap(), gate)
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
async fn a_hung_converse_at_the_request_deadline_is_the_request_deadline() {
    let (server, _gate) = hung().await;
    let provider = provider(patient(server.uri())).await;
    let error = provider
        .complete(with_deadlines(Duration::from_millis(400), None))
        .await
        .unwrap_err();
    assert_request_deadline(&error);
}

#[tokio::test]
async fn a_hung_converse_past_its_share_is_the_providers_timeout_at_the_share() {
    let (server, _gate) = hung().await;
    let provider = provider(patient(server.uri())).await;
    let request = with_deadlines(Duration::from_secs(60), Some(Duration::from_millis(400)));
    let share_ends = request.attempt_deadline.unwrap();
    let error = provider.complete(request).await.unwrap_err();
    assert_provider_timeout(&error);
    assert!(Instant::now() >= share_ends, "not before its share ran out");
    assert!(
        Instant::now() < share_ends + Duration::from_secs(20),
        "at its share, long before the 60 s attempt time-out"
    );
}

#[tokio::test]
async fn sdk_retries_stop_at_the_call_deadline() {
    let (server, _gate) = hung().await;
    // 20 attempts of 300 ms each would take six seconds; the deadline is two.
    let provider = provider(
        local_config(server.uri())
            .attempt_timeout(Duration::from_millis(300))
            .max_attempts(20)
            .backoff(Duration::from_millis(1), Duration::from_millis(1)),
    )
    .await;
    let request = with_deadlines(Duration::from_secs(2), None);
    let deadline = request.deadline.unwrap();
    let error = provider.complete(request).await.unwrap_err();
    assert_request_deadline(&error);
    assert!(
        Instant::now() < deadline + Duration::from_secs(3),
        "the SDK's retries were cancelled at the deadline"
    );
    let attempts = server.requests().len();
    assert!(
        (2..20).contains(&attempts),
        "{attempts} attempts: the SDK retried, and its retries stopped with the call"
    );
}

#[tokio::test]
async fn a_hung_converse_stream_at_the_request_deadline_is_the_request_deadline() {
    let (server, _gate) = hung().await;
    let provider = provider(patient(server.uri())).await;
    let error = provider
        .stream(with_deadlines(Duration::from_millis(400), None))
        .await
        .err()
        .expect("no head, no stream");
    assert_request_deadline(&error);
}

#[tokio::test]
async fn no_first_token_at_the_request_deadline_is_the_request_deadline() {
    let gate = Gate::new();
    // messageStart is sent, the first delta is held.
    let response = ChunkedResponse::event_stream(text_body().frames()).hold_before(1, &gate);
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = provider(patient(server.uri())).await;
    let mut stream = provider
        .stream(with_deadlines(Duration::from_millis(500), None))
        .await
        .expect("the head arrives before the deadline");
    let error = stream.next().await.unwrap().unwrap_err();
    assert_request_deadline(&error);
    assert!(stream.next().await.is_none(), "the error ends the stream");
}

#[tokio::test]
async fn a_stream_stalled_past_its_share_is_the_providers_timeout() {
    let gate = Gate::new();
    // messageStart and "Hel" are sent, then held.
    let response = ChunkedResponse::event_stream(text_body().frames()).hold_before(2, &gate);
    let server = ChunkedServer::start(response).await.unwrap();
    let provider = provider(patient(server.uri())).await;
    let started = Instant::now();
    let mut stream = provider
        .stream(with_deadlines(
            Duration::from_secs(60),
            Some(Duration::from_millis(500)),
        ))
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        ProviderEvent::Delta("Hel".into())
    );
    let error = stream.next().await.unwrap().unwrap_err();
    assert_provider_timeout(&error);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "ended at its share, not at the 60 s stall limit"
    );
}
