//! What this provider adds per call and per streamed chunk: request mapping, response and
//! chunk parsing, JSON-schema validation, and a whole completion / 200-chunk stream over
//! loopback HTTP (wiremock), which bounds the provider's own overhead from above.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use failover_openai::mapping::{
    JsonContract, WireOptions, chat_request, parse_chunk, parse_response,
};
use failover_openai::{OpenAiConfig, OpenAiProvider};
use failover_provider::{Message, Provider, ProviderRequest, RequestId, ResponseFormat};
use failover_standin::openai_fixtures::{
    base_url, chat_completion_cached, json_response, mount_chat, sse_events, sse_response,
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

fn mapping(c: &mut Criterion) {
    let request = request();
    c.bench_function("mapping/chat_request_to_json", |b| {
        b.iter(|| {
            serde_json::to_vec(&chat_request(
                black_box(&request),
                WireOptions::default(),
                true,
            ))
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
