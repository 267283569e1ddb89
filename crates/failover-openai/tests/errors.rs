//! Every error class against wiremock, and the retry policy: what is retried, how often,
//! after how long, and never past the deadline.

mod common;

use std::time::{Duration, Instant};

use common::{config, provider, request};
use failover_openai::OpenAiProvider;
use failover_provider::{ErrorKind, Provider, ProviderError};
use failover_standin::openai_fixtures::{
    base_url, chat_completion, context_length_error, context_length_error_without_code,
    error_response_with_hint, insufficient_quota_error, invalid_api_key_error,
    invalid_request_error, json_response, model_not_found_error, mount_chat, permission_error,
    rate_limit_error, server_error,
};
use serde_json::Value;
use wiremock::{MockServer, ResponseTemplate};

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// Answers every call with `status`/`body`; a provider allowed 3 attempts calls it.
async fn error_case(status: u16, body: Value) -> (ProviderError, usize) {
    let server = MockServer::start().await;
    mount_chat(&server, json_response(status, &body), None).await;
    let provider = OpenAiProvider::new(config(&base_url(&server)).max_attempts(3).build()).unwrap();
    let error = provider.complete(request()).await.unwrap_err();
    (error, calls(&server).await)
}

#[tokio::test]
async fn every_http_error_class_is_classified_and_retried_only_when_temporary() {
    let cases: Vec<(u16, Value, ErrorKind, usize, Option<&str>)> = vec![
        (
            429,
            rate_limit_error(),
            ErrorKind::Throttled,
            3,
            Some("rate_limit_exceeded"),
        ),
        (
            429,
            insufficient_quota_error(),
            ErrorKind::AuthOrConfig,
            1,
            Some("insufficient_quota"),
        ),
        (
            400,
            context_length_error(),
            ErrorKind::ContextTooLong,
            1,
            Some("context_length_exceeded"),
        ),
        (
            400,
            context_length_error_without_code(),
            ErrorKind::ContextTooLong,
            1,
            Some("invalid_request_error"),
        ),
        (
            400,
            invalid_request_error(),
            ErrorKind::InvalidRequest,
            1,
            Some("invalid_value"),
        ),
        (
            401,
            invalid_api_key_error(),
            ErrorKind::AuthOrConfig,
            1,
            Some("invalid_api_key"),
        ),
        (
            403,
            permission_error(),
            ErrorKind::AuthOrConfig,
            1,
            Some("unsupported_country_region_territory"),
        ),
        (
            404,
            model_not_found_error("gpt-5-nope"),
            ErrorKind::AuthOrConfig,
            1,
            Some("model_not_found"),
        ),
        (
            408,
            server_error(),
            ErrorKind::Timeout,
            3,
            Some("server_error"),
        ),
        (
            409,
            server_error(),
            ErrorKind::Unavailable,
            3,
            Some("server_error"),
        ),
        (
            500,
            server_error(),
            ErrorKind::Unavailable,
            3,
            Some("server_error"),
        ),
        (
            502,
            server_error(),
            ErrorKind::Unavailable,
            3,
            Some("server_error"),
        ),
        (
            503,
            server_error(),
            ErrorKind::Unavailable,
            3,
            Some("server_error"),
        ),
    ];
    for (status, body, kind, expected_calls, code) in cases {
        let (error, made) = error_case(status, body.clone()).await;
        assert_eq!(error.kind(), kind, "{status} {body}");
        assert_eq!(made, expected_calls, "calls for {status} {body}");
        assert_eq!(error.http_status(), Some(status));
        assert_eq!(error.provider_code(), code, "{status} {body}");
        assert_eq!(
            error.message(),
            body["error"]["message"].as_str().unwrap(),
            "the provider's message is kept"
        );
    }
}

#[tokio::test]
async fn non_json_error_bodies_are_classified_by_status() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        ResponseTemplate::new(502).set_body_string("<html><body>502 Bad Gateway</body></html>"),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(config(&base_url(&server)).max_attempts(1).build()).unwrap();
    let error = provider.complete(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.message().contains("502 Bad Gateway"), "{error}");
}

#[tokio::test]
async fn malformed_success_bodies_are_not_retried() {
    for body in [
        "<html>oops</html>",
        r#"{"object": "chat.completion", "choices": []}"#,
        r#"{"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}"#,
    ] {
        let server = MockServer::start().await;
        mount_chat(
            &server,
            ResponseTemplate::new(200).set_body_raw(body, "application/json"),
            None,
        )
        .await;
        let error = provider(&base_url(&server))
            .complete(request())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MalformedResponse, "{body}");
        assert_eq!(calls(&server).await, 1, "{body}");
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_per_attempt() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", "late", 1, 1))
            .set_delay(Duration::from_secs(3)),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(
        config(&base_url(&server))
            .attempt_timeout(Duration::from_millis(150))
            .max_attempts(2)
            .build(),
    )
    .unwrap();
    let error = provider.complete(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("attempt time-out"), "{error}");
    assert_eq!(calls(&server).await, 2, "a time-out is retried");
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let provider = OpenAiProvider::new(
        config(&format!("http://{address}/v1"))
            .max_attempts(2)
            .build(),
    )
    .unwrap();
    let error = provider.complete(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Network, "{error}");
    assert!(error.message().contains("connecting failed"), "{error}");
}

#[tokio::test]
async fn a_bad_base_url_is_a_configuration_error() {
    for url in ["not a url", "ftp://127.0.0.1/v1"] {
        let error = OpenAiProvider::new(config(url).build()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AuthOrConfig, "{url}");
    }
}

#[tokio::test]
async fn throttling_is_retried_after_the_servers_hint() {
    let server = MockServer::start().await;
    let hint = Duration::from_millis(300);
    mount_chat(
        &server,
        error_response_with_hint(429, &rate_limit_error(), hint),
        Some(1),
    )
    .await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", "4", 5, 1)),
        None,
    )
    .await;
    let started = Instant::now();
    let response = provider(&base_url(&server))
        .complete(request())
        .await
        .unwrap();
    assert_eq!(response.content, "4");
    assert_eq!(calls(&server).await, 2);
    assert!(
        started.elapsed() >= hint,
        "the retry waited {:?}, less than the server's {hint:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_in_seconds_is_read() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(429, &rate_limit_error()).insert_header("retry-after", "1"),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(config(&base_url(&server)).max_attempts(1).build()).unwrap();
    let error = provider.complete(request()).await.unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        error_response_with_hint(503, &server_error(), Duration::from_millis(100)),
        None,
    )
    .await;
    let provider =
        OpenAiProvider::new(config(&base_url(&server)).max_attempts(1_000).build()).unwrap();
    let budget = Duration::from_millis(700);
    let mut request = request();
    let started = Instant::now();
    request.deadline = Some(started + budget);
    let error = provider.complete(request).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{error}"
    );
    // The last attempt may be cut at the deadline itself; nothing runs past it.
    assert!(
        elapsed < budget + Duration::from_millis(50),
        "gave up after {elapsed:?}, past the deadline"
    );
    let made = calls(&server).await;
    // 100 ms between attempts within 700 ms: at most 7, and at least 2 (the hint fits).
    assert!((2..=7).contains(&made), "{made} calls");
}

#[tokio::test]
async fn a_hint_past_the_deadline_returns_at_once_with_the_hint() {
    let server = MockServer::start().await;
    let hint = Duration::from_secs(5);
    mount_chat(
        &server,
        error_response_with_hint(429, &rate_limit_error(), hint),
        None,
    )
    .await;
    let provider = provider(&base_url(&server));
    let mut request = request();
    request.deadline = Some(Instant::now() + Duration::from_secs(2));
    let started = Instant::now();
    let error = provider.complete(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(error.retry_after(), Some(hint), "the breaker gets the hint");
    assert_eq!(calls(&server).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "it did not sleep"
    );
}

#[tokio::test]
async fn a_hint_above_the_ceiling_is_not_waited_for() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        error_response_with_hint(429, &rate_limit_error(), Duration::from_secs(30)),
        None,
    )
    .await;
    let provider = OpenAiProvider::new(
        config(&base_url(&server))
            .max_hint_wait(Duration::from_secs(2))
            .build(),
    )
    .unwrap();
    let mut request = request();
    request.deadline = Some(Instant::now() + Duration::from_secs(120));
    let error = provider.complete(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Throttled);
    assert_eq!(calls(&server).await, 1);
}

#[tokio::test]
async fn an_attempt_is_cut_at_the_deadline() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4o", "late", 1, 1))
            .set_delay(Duration::from_secs(3)),
        None,
    )
    .await;
    let provider = provider(&base_url(&server));
    let mut request = request();
    let started = Instant::now();
    request.deadline = Some(started + Duration::from_millis(300));
    let error = provider.complete(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.message().contains("deadline"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(calls(&server).await, 1, "no retry past the deadline");
}
