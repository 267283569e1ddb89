//! The drain: 50 open streams and 200 plain requests in flight when shutdown begins. None
//! is cut silently — each completes, or its stream ends with the error frame — and every
//! usage record is in the ledger afterwards.

mod common;

use std::time::Duration;

use common::*;
use failover_server::Limits;
use failover_standin::{Fault, Vendor};
use futures::StreamExt;
use serde_json::Value;

const STREAMS: usize = 50;
const PLAIN: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_with_streams_and_plain_requests_in_flight_cuts_nothing_silently() {
    // Streams go to Bedrock, whose answer stops after its first text delta: they are
    // committed and open when the drain begins. Plain requests go to OpenAI, which answers
    // after a pause shorter than the drain deadline.
    let limits = Limits {
        drain_timeout_ms: 3_000,
        ..Limits::default()
    };
    let mut setup = StalledStreams::start(limits).await;
    setup
        .standins
        .inject(
            Vendor::OpenAi,
            Fault::Slow(Duration::from_millis(500)),
            PLAIN as u64,
        )
        .await;
    let base = setup.base.clone();
    let http = reqwest::Client::new();

    let mut streams = Vec::new();
    for index in 0..STREAMS {
        streams.push(setup.open_stream(&http, format!("stream {index}")));
    }
    let opened = futures::future::join_all(streams).await;
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
    while setup.standins.calls(Vendor::OpenAi).await < PLAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.drain();
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
    assert_eq!(setup.bedrock.requests().len(), STREAMS);
    let report = setup.wait().await;
    assert!(report.cut, "the streams were still open at the deadline");
    assert!(report.all_closed);
    report.ledger.unwrap();
    assert_eq!(
        setup.sink.records().len(),
        STREAMS + PLAIN,
        "every call is in the ledger"
    );
}
