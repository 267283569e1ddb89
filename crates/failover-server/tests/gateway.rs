//! The gateway on a free port, through plain HTTP: OpenAI's shapes, keys to tenants, the
//! error contract, streams that never end silently, admin, and the limits.

mod common;

use std::time::Duration;

use common::*;
use failover_server::Limits;
use failover_standin::{Fault, Vendor};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The `data:` payloads of an SSE body, in order.
fn sse_events(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .expect("every event is one data line")
        })
        .collect()
}

#[tokio::test]
async fn a_plain_answer_is_a_chat_completion_with_the_extras_in_headers() {
    let gateway = TestGateway::start().await;
    let response = gateway.chat(ACME_KEY, ask("gpt-4", "What is 2+2?")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-failover-provider"), "bedrock");
    assert_eq!(header(&response, "x-failover-cached"), "false");
    assert_eq!(header(&response, "x-failover-attempts"), "1");
    let request_id = header(&response, "x-request-id").to_owned();
    let cost: f64 = header(&response, "x-failover-cost-usd").parse().unwrap();
    assert!(cost > 0.0);
    let body = json_of(response).await;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], format!("chatcmpl-{request_id}"));
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
    // The ledger holds the call, billed to the key's tenant.
    gateway.adapter.flush_usage().await.unwrap();
    let records = gateway.sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].tenant_id, "acme");
    assert_eq!(records[0].request_id.as_str(), request_id);
}

#[tokio::test]
async fn a_stream_is_openais_sse_and_done_comes_only_after_success() {
    let gateway = TestGateway::start().await;
    let mut body = ask("gpt-4", "Say hello");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = gateway.chat(ACME_KEY, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "x-failover-provider"), "bedrock");
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["object"] == "chat.completion.chunk")
    );
    let content: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.is_empty());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_ends_with_one_error_frame_and_no_done() {
    let gateway = TestGateway::start().await;
    gateway
        .standins
        .inject(Vendor::Bedrock, Fault::CutStream, 1)
        .await;
    let mut body = ask("gpt-4", "Say hello");
    body["stream"] = json!(true);
    let response = gateway.chat(ACME_KEY, body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events = sse_events(&text);
    assert!(!text.contains("[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{text}");
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|event| !event.contains("\"error\""))
    );
    // The cut call is in the ledger.
    gateway.adapter.flush_usage().await.unwrap();
    assert_eq!(gateway.sink.records().len(), 1);
}

#[tokio::test]
async fn two_tenants_sending_identical_requests_never_share_a_cache_entry() {
    let gateway = TestGateway::start().await;
    let request = ask("gpt-4", "The same question, byte for byte");
    let first = gateway.chat(ACME_KEY, request.clone()).await;
    assert_eq!(header(&first, "x-failover-cached"), "false");
    let again = gateway.chat(ACME_KEY, request.clone()).await;
    assert_eq!(header(&again, "x-failover-cached"), "true");
    let other_tenant = gateway.chat(GLOBEX_FULL_KEY, request).await;
    assert_eq!(other_tenant.status(), 200);
    assert_eq!(header(&other_tenant, "x-failover-cached"), "false");
    assert_eq!(gateway.standins.calls(Vendor::Bedrock).await, 2);
}

#[tokio::test]
async fn each_error_has_openais_shape_and_the_status_an_sdk_acts_on() {
    let gateway = TestGateway::start().await;
    let unknown_key = gateway.chat("sk-nobody", ask("gpt-4", "hi")).await;
    assert_eq!(unknown_key.status(), 401);
    let forbidden = gateway.chat(GLOBEX_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(forbidden.status(), 403);
    assert_eq!(json_of(forbidden).await["error"]["param"], "model");
    let allowed = gateway.chat(GLOBEX_KEY, ask("gpt-3.5-turbo", "hi")).await;
    assert_eq!(allowed.status(), 200);
    let unknown_model = gateway.chat(ACME_KEY, ask("no-such-model", "hi")).await;
    assert_eq!(unknown_model.status(), 404);
    assert_eq!(
        json_of(unknown_model).await["error"]["code"],
        "model_not_found"
    );
    let mut hot = ask("gpt-4", "hi");
    hot["temperature"] = json!(5.0);
    let invalid = gateway.chat(ACME_KEY, hot).await;
    assert_eq!(invalid.status(), 400);
    let error = json_of(invalid).await;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "temperature");
    let malformed = gateway
        .http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(ACME_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    // No provider call was made for any of them but the allowed one.
    assert_eq!(gateway.standins.calls(Vendor::Bedrock).await, 1);
}

#[tokio::test]
async fn every_provider_failing_is_502_and_every_breaker_open_is_503_with_retry_after() {
    let gateway =
        TestGateway::with(Limits::default(), quick_breaker(Duration::from_secs(30))).await;
    gateway
        .standins
        .inject(Vendor::Bedrock, Fault::Unavailable, 1)
        .await;
    gateway
        .standins
        .inject(Vendor::OpenAi, Fault::Unavailable, 1)
        .await;
    let failed = gateway.chat(ACME_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(failed.status(), 502);
    assert_eq!(json_of(failed).await["error"]["code"], "upstream_error");
    let open = gateway.chat(ACME_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(open.status(), 503);
    let retry_after: u64 = header(&open, "retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert!(open.headers().get("x-should-retry").is_none());
    // Forced open by an operator: nothing reopens by itself, so a retry cannot help.
    for provider in ["bedrock", "openai"] {
        gateway.adapter.breaker(provider).unwrap().force_open();
    }
    let forced = gateway.chat(ACME_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(forced.status(), 503);
    assert_eq!(header(&forced, "x-should-retry"), "false");
}

#[tokio::test]
async fn admin_routes_need_the_admin_key_and_steer_the_breakers() {
    let gateway = TestGateway::start().await;
    let admin = |path: &str| gateway.http.post(gateway.url(path));
    let refused = admin("/admin/breakers/bedrock/force-open")
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let opened = admin("/admin/breakers/bedrock/force-open")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(opened).await["state"], "FORCED_OPEN");
    let served = gateway.chat(ACME_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(header(&served, "x-failover-provider"), "openai");
    let health = json_of(
        gateway
            .http
            .get(gateway.url("/health"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health["providers"][0]["name"], "bedrock");
    assert_eq!(health["providers"][0]["state"], "FORCED_OPEN");
    assert_eq!(
        health["providers"][0]["reason"],
        "forced open by an operator"
    );
    let unknown = admin("/admin/breakers/azure/reset")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let usage = gateway
        .http
        .get(gateway.url("/admin/tenants/acme/usage"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(usage.status(), 200);
    let purged = admin("/admin/tenants/acme/cache/purge")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(purged).await["removed"], 1);
    let again = gateway.chat(ACME_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(header(&again, "x-failover-cached"), "false");
}

#[tokio::test]
async fn models_lists_what_the_key_may_use() {
    let gateway = TestGateway::start().await;
    let models = |key: &'static str| {
        let request = gateway.http.get(gateway.url("/v1/models")).bearer_auth(key);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let limited = models(GLOBEX_KEY).await;
    assert_eq!(
        limited["data"],
        json!([{"id": "gpt-3.5-turbo", "object": "model", "created": 0, "owned_by": "llm-failover"}])
    );
    let all = models(ACME_KEY).await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gpt-4") && ids.contains(&"gpt-3.5-turbo"),
        "{ids:?}"
    );
    let healthz = gateway
        .http
        .get(gateway.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = gateway
        .http
        .get(gateway.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);
}

#[tokio::test]
async fn an_oversized_body_is_413_in_openais_shape() {
    let limits = Limits {
        body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let gateway = TestGateway::with(limits, Default::default()).await;
    let response = gateway
        .chat(ACME_KEY, ask("gpt-4", &"a".repeat(1024 * 1024)))
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "request_too_large"
    );
    assert_eq!(gateway.standins.calls(Vendor::Bedrock).await, 0);
}

#[tokio::test]
async fn a_slow_loris_client_is_dropped_at_the_header_timeout() {
    let limits = Limits {
        header_timeout_ms: 300,
        ..Limits::default()
    };
    let gateway = TestGateway::with(limits, Default::default()).await;
    let mut socket = tokio::net::TcpStream::connect(gateway.gateway.local_addr())
        .await
        .unwrap();
    socket
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n")
        .await
        .unwrap();
    // The headers never end: the server must close the connection by itself (a 408 or
    // nothing, then EOF). The bound is only against a hang of the test.
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the connection was still open after 20 s");
    // A normal client is still served.
    let served = gateway.chat(ACME_KEY, ask("gpt-4", "hi")).await;
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn over_the_in_flight_bound_requests_are_shed_with_503_and_retry_after() {
    let limits = Limits {
        max_in_flight: 1,
        ..Limits::default()
    };
    let gateway = TestGateway::with(limits, Default::default()).await;
    gateway
        .standins
        .inject(Vendor::Bedrock, Fault::Slow(Duration::from_secs(3)), 1)
        .await;
    let slow = tokio::spawn({
        let request = gateway
            .http
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(ACME_KEY)
            .json(&ask("gpt-4", "slow"));
        async move { request.send().await.unwrap().status() }
    });
    // Once the stand-in holds the slow request, the one slot is taken.
    while gateway.standins.calls(Vendor::Bedrock).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = gateway.chat(ACME_KEY, ask("gpt-4", "another")).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(header(&shed, "retry-after"), "1");
    assert_eq!(json_of(shed).await["error"]["code"], "overloaded");
    assert_eq!(slow.await.unwrap(), 200);
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_call_and_its_usage_is_recorded() {
    let setup = StalledStreams::start(Limits::default()).await;
    let http = reqwest::Client::new();
    let (received, body) = setup.open_stream(&http, "I will hang up".to_owned()).await;
    assert!(received.contains("Hel"));
    assert!(
        setup.sink.records().is_empty(),
        "nothing is settled while it streams"
    );
    drop(body);
    // The gateway sees the connection go, drops the engine's stream, and the engine
    // settles the call as cancelled: wait for that record (the bound only stops a hang).
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while setup.sink.records().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "no usage record after the client went away");
    let records = setup.sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, failover_usage::UsageOutcome::Cancelled);
    assert_eq!(records[0].tenant_id, "acme");
}

#[tokio::test]
async fn a_request_past_its_deadline_is_504() {
    let limits = Limits {
        request_timeout_ms: 300,
        ..Limits::default()
    };
    let gateway = TestGateway::with(limits, Default::default()).await;
    for vendor in [Vendor::Bedrock, Vendor::OpenAi] {
        gateway
            .standins
            .inject(vendor, Fault::Slow(Duration::from_secs(5)), 1)
            .await;
    }
    let response = gateway.chat(ACME_KEY, ask("gpt-4", "slow")).await;
    assert_eq!(response.status(), 504);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "deadline_exceeded"
    );
}

#[tokio::test]
async fn a_stream_fails_over_before_its_first_byte() {
    let gateway = TestGateway::start().await;
    gateway
        .standins
        .inject(Vendor::Bedrock, Fault::Unavailable, 1)
        .await;
    let mut body = ask("gpt-4", "Say hello");
    body["stream"] = json!(true);
    let response = gateway.chat(ACME_KEY, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-failover-provider"), "openai");
    assert_eq!(header(&response, "x-failover-attempts"), "2");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
}
