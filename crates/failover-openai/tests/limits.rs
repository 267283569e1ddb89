//! Upstream bytes are read with a cap: a body, an error body or a stream event larger than
//! its limit is refused (or cut, for error bodies) instead of being buffered whole.

mod common;

use common::{config, request};
use failover_openai::OpenAiProvider;
use failover_provider::{ErrorKind, Provider};
use failover_standin::openai_fixtures::{
    base_url, chat_completion, json_response, mount_chat, sse_event, sse_response,
};
use futures::StreamExt;
use wiremock::{MockServer, ResponseTemplate};

async fn server_with(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    mount_chat(&server, response, None).await;
    server
}

fn capped(server: &MockServer) -> OpenAiProvider {
    OpenAiProvider::new(
        config(&base_url(server))
            .max_attempts(1)
            .max_response_bytes(4 * 1024)
            .max_error_body_bytes(1024)
            .max_stream_event_bytes(2 * 1024)
            .build(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_response_above_the_cap_is_malformed() {
    let long = "x".repeat(8 * 1024);
    let server = server_with(json_response(200, &chat_completion("gpt-4o", &long, 1, 1))).await;
    let error = capped(&server).complete(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{error}");
    assert!(error.message().contains("4096 bytes"), "{error}");
    let fits = server_with(json_response(200, &chat_completion("gpt-4o", "4", 1, 1))).await;
    assert_eq!(
        capped(&fits).complete(request()).await.unwrap().content,
        "4"
    );
}

#[tokio::test]
async fn an_error_body_above_the_cap_is_cut_and_classified_by_its_status() {
    let body = format!("<html>{}</html>", "overloaded ".repeat(10_000));
    let server = server_with(ResponseTemplate::new(503).set_body_string(body)).await;
    let error = capped(&server).complete(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.message().len() < 1024, "the message is cut too");
}

#[tokio::test]
async fn a_stream_event_above_the_cap_is_malformed() {
    let huge = format!(
        r#"{{"choices":[{{"delta":{{"content":"{}"}}}}]}}"#,
        "x".repeat(4 * 1024)
    );
    let server = server_with(sse_response(&[sse_event(&huge)])).await;
    let stream = capped(&server).stream(request()).await.unwrap();
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 1, "{items:?}");
    let error = items[0].as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{error}");
}

#[tokio::test]
async fn an_invalid_limit_is_refused_when_the_provider_is_built() {
    let error = OpenAiProvider::new(
        config("http://127.0.0.1:9/v1")
            .max_retry_after(std::time::Duration::from_secs(3600))
            .build(),
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AuthOrConfig);
    assert!(error.message().contains("max_retry_after"), "{error}");
}
