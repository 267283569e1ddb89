//! The API key never appears in logs, error messages or `Debug` output — even when a
//! server echoes it back. The tracing output of every code path here is captured at TRACE
//! level and searched.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{TEST_KEY, config, provider, request};
use failover_breaker::BreakerConfig;
use failover_core::FailoverAdapter;
use failover_openai::OpenAiProvider;
use failover_provider::{CompletionRequest, ErrorKind, Provider};
use failover_standin::openai_fixtures::{
    base_url, error_body, json_response, mount_chat, server_error, sse_event, sse_response,
    sse_text_chunk,
};
use failover_testkit::{ScriptedProvider, Step};
use futures::StreamExt;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::MockServer;

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn assert_no_key(what: &str, text: &str) {
    assert!(!text.contains(TEST_KEY), "{what} leaks the key: {text}");
    assert!(
        !text.contains("SECRET-7f3a"),
        "{what} leaks part of the key: {text}"
    );
}

// current_thread: every task of the test runs on this thread, under the default subscriber.
#[tokio::test(flavor = "current_thread")]
async fn the_key_never_reaches_logs_errors_or_debug() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut seen = Vec::new();

    // A retried 503, then a 401 whose message echoes the full key (a careless proxy).
    let server = MockServer::start().await;
    mount_chat(&server, json_response(503, &server_error()), Some(2)).await;
    let echo = error_body(
        &format!("Incorrect API key provided: {TEST_KEY}."),
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    );
    mount_chat(&server, json_response(401, &echo), None).await;
    let provider = provider(&base_url(&server));
    let error = provider.complete(request()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AuthOrConfig);
    assert!(
        error.message().contains("Incorrect API key provided: ***"),
        "{error}"
    );
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 3);
    assert_eq!(
        received[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("Bearer {TEST_KEY}"),
        "the key is used, so its absence below means something"
    );
    seen.push(("error Display", error.to_string()));
    seen.push(("error Debug", format!("{error:?}")));

    // A stream whose error frame echoes the key.
    let streaming = MockServer::start().await;
    let frame = error_body(&format!("bad key {TEST_KEY}"), "server_error", None, None);
    mount_chat(
        &streaming,
        sse_response(&[sse_text_chunk("a"), sse_event(&frame.to_string())]),
        None,
    )
    .await;
    let items: Vec<_> = common::provider(&base_url(&streaming))
        .stream(request())
        .await
        .unwrap()
        .collect()
        .await;
    let stream_error = items.last().unwrap().as_ref().unwrap_err();
    seen.push(("stream error", format!("{stream_error} {stream_error:?}")));

    // A refused connection (reqwest's own error text).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let unreachable = OpenAiProvider::new(
        config(&format!("http://{address}/v1"))
            .max_attempts(2)
            .build(),
    )
    .unwrap();
    let network = unreachable.complete(request()).await.unwrap_err();
    assert_eq!(network.kind(), ErrorKind::Network);
    seen.push(("network error", format!("{network} {network:?}")));

    // Through the adapter, which logs every failed attempt with its error.
    let adapter = FailoverAdapter::builder()
        .provider(
            Arc::new(ScriptedProvider::new("bedrock").then(Step::fail(ErrorKind::Unavailable))),
            BreakerConfig::default(),
        )
        .provider(
            Arc::new(common::provider(&base_url(&server))),
            BreakerConfig::default(),
        )
        .build()
        .unwrap();
    let failed = adapter
        .generate_completion(CompletionRequest::prompt("t", "a", "gpt-4", "hi"))
        .await
        .unwrap_err();
    seen.push(("adapter error", format!("{failed} {failed:?}")));
    seen.push(("adapter Debug", format!("{adapter:?}")));

    seen.push(("provider Debug", format!("{provider:?} {provider:#?}")));
    seen.push(("config Debug", format!("{:?}", provider.config())));
    seen.push((
        "config JSON",
        serde_json::to_string(provider.config()).unwrap(),
    ));

    let logs = capture.text();
    assert!(
        logs.contains("retrying chat completion") && logs.contains("provider call failed"),
        "the capture must hold the provider's and the adapter's logs: {logs}"
    );
    seen.push(("tracing output", logs));
    for (what, text) in &seen {
        assert_no_key(what, text);
    }
}
