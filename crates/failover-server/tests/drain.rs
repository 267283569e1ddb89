//! The drain: 50 open streams and 200 plain requests in flight when shutdown begins. None
//! is cut silently — each completes, or its stream ends with the error frame — and every
//! usage record is in the ledger afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use failover_bedrock::BedrockProvider;
use failover_breaker::BreakerConfig;
use failover_core::{FailoverAdapter, Router};
use failover_openai::OpenAiProvider;
use failover_server::{Gateway, Limits};
use failover_standin::bedrock_server::{ChunkedResponse, ChunkedServer, Gate};
use failover_standin::eventstream::ConverseStreamBody;
use failover_standin::{Fault, StandIns, Vendor};
use failover_usage::MemoryUsageSink;
use futures::StreamExt;
use serde_json::{Value, json};

const STREAMS: usize = 50;
const PLAIN: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_with_streams_and_plain_requests_in_flight_cuts_nothing_silently() {
    // Streams go to Bedrock, whose answer stops after its first text delta (a gate that
    // never opens): they are committed and open when the drain begins. Plain requests go
    // to OpenAI, which answers after a pause shorter than the drain deadline.
    let held = Gate::new();
    let frames = ConverseStreamBody::text_reply(&["Hel", "lo"], 10, 2);
    let bedrock_server =
        ChunkedServer::start(ChunkedResponse::event_stream(frames.frames()).hold_before(2, &held))
            .await
            .unwrap();
    let standins = StandIns::start().await;
    standins
        .inject(
            Vendor::OpenAi,
            Fault::Slow(Duration::from_millis(500)),
            PLAIN as u64,
        )
        .await;
    let bedrock = BedrockProvider::new(
        standins
            .bedrock_config()
            .endpoint_url(bedrock_server.uri())
            .build(),
    )
    .await;
    let openai = OpenAiProvider::new(standins.openai_config().build()).unwrap();
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = FailoverAdapter::builder()
        .provider(Arc::new(bedrock), BreakerConfig::default())
        .provider(Arc::new(openai), BreakerConfig::default())
        .router(
            Router::empty()
                .route(
                    "claude",
                    "bedrock",
                    "anthropic.claude-3-5-sonnet-20240620-v1:0",
                )
                .route("gpt-4", "openai", "gpt-4"),
        )
        .usage_sink(sink.clone())
        .build()
        .unwrap();
    let limits = Limits {
        drain_timeout_ms: 3_000,
        ..Limits::default()
    };
    let running = Gateway::new(adapter, config(limits), None)
        .unwrap()
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", running.local_addr());
    let http = reqwest::Client::new();

    // Each stream is read until its first text has arrived, then handed on still open.
    let mut streams = Vec::new();
    for index in 0..STREAMS {
        let request = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(ACME_KEY)
            .json(&json!({"model": "claude", "stream": true,
                "messages": [{"role": "user", "content": format!("stream {index}")}]}));
        streams.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let mut body = response.bytes_stream();
            let mut text = String::new();
            while !text.contains("Hel") {
                let bytes = body.next().await.expect("the first text arrives").unwrap();
                text.push_str(std::str::from_utf8(&bytes).unwrap());
            }
            (text, body)
        }));
    }
    let mut opened = Vec::new();
    for stream in streams {
        opened.push(stream.await.unwrap());
    }
    let plain: Vec<_> = (0..PLAIN)
        .map(|index| {
            let request = http
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(ACME_KEY)
                .json(&ask("gpt-4", &format!("plain {index}")));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    // Every plain request has reached the provider: all 250 are in flight.
    while standins.calls(Vendor::OpenAi).await < PLAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shutdown = running.shutdown_handle();
    shutdown.drain();
    // Draining: a new request is refused at once with a retryable 503, and /readyz says so.
    let late = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(ACME_KEY)
        .json(&ask("gpt-4", "late"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 503);
    assert_eq!(late.headers()["retry-after"], "1");
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    for request in plain {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200, "a plain request in flight finishes");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
    }
    for (mut text, mut body) in opened {
        while let Some(bytes) = body.next().await {
            text.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
        }
        assert!(
            !text.contains("[DONE]"),
            "a cut stream never says it is complete"
        );
        let last = text
            .split("\n\n")
            .filter(|event| !event.is_empty())
            .last()
            .unwrap();
        let error: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(error["error"]["code"], "shutting_down", "{text}");
    }
    let report = running.wait().await;
    assert!(report.cut, "the streams were still open at the deadline");
    assert!(report.all_closed);
    report.ledger.unwrap();
    let records = sink.records();
    assert_eq!(
        records.len(),
        STREAMS + PLAIN,
        "every call is in the ledger"
    );
    assert_eq!(bedrock_server.requests().len(), STREAMS);
    held.open();
}
