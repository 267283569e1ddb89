//! What this provider adds per call and per streamed chunk: request mapping (a plain one,
//! and an agent's with tools and tool history), response and chunk parsing, a streamed
//! answer of tool calls, JSON-schema validation, and a whole completion / 200-chunk stream
//! over loopback HTTP (wiremock), which bounds the provider's own overhead from above.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use failover_openai::mapping::{
    JsonContract, WireOptions, chat_request, parse_chunk, parse_response,
};
use failover_openai::stream::read_sse_body;
use failover_openai::{OpenAiConfig, OpenAiProvider};
use failover_provider::{
    Message, Provider, ProviderEvent, ProviderRequest, RequestId, ResponseFormat, ToolCall,
    ToolConfig, ToolDefinition, ToolResultContent,
};
use failover_standin::openai_fixtures::{
    FixtureToolCall, base_url, chat_completion_cached, json_response, mount_chat, sse_events,
    sse_response, sse_tool_call_events,
};
use futures::StreamExt;
use serde_json::json;
use wiremock::MockServer;

fn request() -> ProviderRequest {
    ProviderRequest {
        request_id: RequestId::new("bench"),
        model: "gpt-4o".into(),
        messages: vec![
            Message::system("You are a helpful assistant. Answer briefly."),
            Message::user("What is 2+2? Answer with just the number. ".repeat(20)),
        ],
        temperature: Some(0.1),
        max_tokens: Some(256),
        stop: vec!["\n\n".into()],
        response_format: ResponseFormat::Text,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

/// An agent's request: a system prompt and 20 turns of history (5 rounds of a user
/// question, an assistant turn calling two tools, and the two results, JSON and text),
/// offering 10 tools with realistic schemas.
fn agent_request() -> ProviderRequest {
    let tools: Vec<ToolDefinition> = (0..10)
        .map(|i| {
            ToolDefinition::new(
                format!("tool_{i}_lookup"),
                format!("Looks up record kind {i} by id and returns its fields and history."),
                json!({
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "The record's id."},
                        "fields": {"type": "array", "items": {"type": "string"}},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                        "include_history": {"type": "boolean"}
                    },
                    "required": ["id"],
                    "additionalProperties": false
                }),
            )
        })
        .collect();
    let mut messages = vec![Message::system(
        "You are a support agent. Use the tools to look records up before answering.",
    )];
    for round in 0..5 {
        messages.push(Message::user(format!(
            "Customer {round} asks about order 10{round}42 and their last invoice."
        )));
        let calls = vec![
            ToolCall::new(
                format!("call_{round}a7Hq2kLmN0pQrStUvWxYz01"),
                format!("tool_{}_lookup", round * 2),
                format!(r#"{{"id":"ord_10{round}42","fields":["status","eta"],"limit":5}}"#),
            ),
            ToolCall::new(
                format!("call_{round}b7Hq2kLmN0pQrStUvWxYz02"),
                format!("tool_{}_lookup", round * 2 + 1),
                format!(r#"{{"id":"inv_{round}","include_history":true}}"#),
            ),
        ];
        messages.push(Message::assistant_with_calls("", calls.clone()));
        messages.push(Message::tool_result(
            calls[0].id.clone(),
            ToolResultContent::Json(json!({
                "status": "shipped", "eta": "2026-12-04", "carrier": "UPS",
                "events": [{"at": "2026-12-01T10:00:00Z", "what": "picked"}, {"at": "2026-12-02T08:30:00Z", "what": "shipped"}]
            })),
        ));
        messages.push(Message::tool_result(
            calls[1].id.clone(),
            ToolResultContent::Text(format!(
                "Invoice inv_{round}: 3 lines, total 129.90 EUR, paid on 2026-11-28."
            )),
        ));
    }
    ProviderRequest {
        messages,
        tools: ToolConfig {
            tools,
            parallel_tool_calls: Some(true),
            ..ToolConfig::default()
        },
        ..request()
    }
}

/// A streamed answer of 5 tool calls, their arguments in fragments of 6 bytes (a few
/// tokens, as OpenAI sends them), with the usage chunk and `[DONE]`.
fn tool_call_stream() -> String {
    let calls: Vec<(String, String, String)> = (0..5)
        .map(|i| {
            (
                format!("call_{i}Zx81kLmN0pQrStUvWxYz0{i}"),
                format!("tool_{i}_lookup"),
                format!(
                    r#"{{"id":"ord_{i}0042","fields":["status","eta","carrier"],"limit":10,"include_history":true}}"#
                ),
            )
        })
        .collect();
    let calls: Vec<FixtureToolCall<'_>> = calls
        .iter()
        .map(|(id, name, arguments)| FixtureToolCall::new(id, name, arguments))
        .collect();
    sse_tool_call_events(&calls, 6, Some((900, 0, 120))).concat()
}

fn mapping(c: &mut Criterion) {
    let request = request();
    c.bench_function("mapping/chat_request_to_json", |b| {
        b.iter(|| {
            serde_json::to_vec(
                &chat_request(black_box(&request), WireOptions::default(), true).unwrap(),
            )
            .unwrap()
        })
    });
    let body = chat_completion_cached("gpt-4o", &"word ".repeat(200), 1200, 1024, 200).to_string();
    c.bench_function("mapping/parse_response", |b| {
        b.iter(|| parse_response(black_box(body.as_bytes()), "gpt-4o").unwrap())
    });
    let chunk = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null}"#;
    c.bench_function("mapping/parse_chunk", |b| {
        b.iter(|| parse_chunk("message", black_box(chunk)).unwrap())
    });
    let agent = agent_request();
    let mut openai = c.benchmark_group("openai");
    openai.bench_function("map_agent_request", |b| {
        b.iter(|| {
            serde_json::to_vec(
                &chat_request(black_box(&agent), WireOptions::default(), true).unwrap(),
            )
            .unwrap()
        })
    });
    let stream = tool_call_stream();
    let items = read_sse_body(&[stream.as_bytes()], None, 1 << 20, 1 << 20);
    assert!(matches!(
        items.last(),
        Some(Ok(ProviderEvent::Finished { .. }))
    ));
    // Per SSE event, as well as per body: the body's cost is its events' count times this.
    openai.throughput(Throughput::Elements(
        stream.matches("\n\n").count().try_into().unwrap(),
    ));
    openai.bench_function("parse_tool_call_stream", |b| {
        b.iter(|| read_sse_body(&[black_box(stream.as_bytes())], None, 1 << 20, 1 << 20))
    });
    // The floor, in the same run: only tokenizing each chunk's JSON (serde's IgnoredAny,
    // no value built) — what any reader of this stream pays before mapping anything.
    let chunks: Vec<&str> = stream
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .collect();
    openai.bench_function("json_floor_of_tool_call_stream", |b| {
        b.iter(|| {
            for chunk in black_box(&chunks) {
                let _: serde::de::IgnoredAny = serde_json::from_str(chunk).unwrap();
            }
        })
    });
    openai.finish();
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}, "why": {"type": "string"}}, "required": ["answer"]}),
    };
    c.bench_function("mapping/json_schema_compile_and_check", |b| {
        b.iter(|| {
            let contract = JsonContract::for_format(black_box(&format))
                .unwrap()
                .unwrap();
            contract
                .check_text(r#"{"answer": 4, "why": "arithmetic"}"#)
                .unwrap();
        })
    });
}

fn loopback(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (completion_server, stream_server) = runtime.block_on(async {
        let completion = MockServer::start().await;
        mount_chat(
            &completion,
            json_response(200, &chat_completion_cached("gpt-4o", "4", 20, 0, 1)),
            None,
        )
        .await;
        let stream = MockServer::start().await;
        let deltas: Vec<String> = (0..200).map(|i| format!("tok{i} ")).collect();
        let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
        mount_chat(
            &stream,
            sse_response(&sse_events(&deltas, Some((20, 0, 200)))),
            None,
        )
        .await;
        (completion, stream)
    });
    let provider = |server: &MockServer| {
        OpenAiProvider::new(
            OpenAiConfig::builder()
                .api_key("sk-bench")
                .base_url(base_url(server))
                .build(),
        )
        .unwrap()
    };
    let completer = provider(&completion_server);
    let streamer = provider(&stream_server);
    c.bench_function("loopback/complete", |b| {
        b.to_async(&runtime)
            .iter(|| async { completer.complete(request()).await.unwrap() })
    });
    c.bench_function("loopback/stream_200_chunks", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let streamer = &streamer;
            async move {
                let started = Instant::now();
                for _ in 0..iterations {
                    let events: Vec<_> = streamer.stream(request()).await.unwrap().collect().await;
                    assert_eq!(events.len(), 201);
                }
                started.elapsed()
            }
        })
    });
}

criterion_group!(benches, mapping, loopback);
criterion_main!(benches);
