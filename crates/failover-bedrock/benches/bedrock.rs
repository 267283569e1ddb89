//! Costs of the Bedrock provider's own work.
//!
//! - `request_mapping`: a 10-turn conversation with a JSON schema → Converse shapes.
//! - `stream_mapping/1000_events`: [`StreamMapper`] over 1,000 pre-decoded ConverseStream
//!   events (998 text deltas, `messageStop`, `metadata`): our mapping alone, no decoding.
//! - `stream_decode/1000_frames`: the SDK's event-stream frame codec
//!   (`aws_smithy_eventstream::frame::MessageFrameDecoder`, headers and CRCs) over a
//!   1,000-frame body in memory, each payload parsed as JSON: a proxy for the decoding half
//!   of the SDK's receiver, whose unmarshaller is private to the SDK.
//! - `stream_end_to_end/{4,1000}_events`: the real SDK client (request building, SigV4
//!   signing, HTTP over loopback to a local wiremock server, event-stream frame decoding,
//!   unmarshalling) plus our mapping, reading a whole ConverseStream body. The difference
//!   between the two sizes is the per-event cost of decoding and mapping; the 4-event run
//!   is the fixed cost of one call.
//! - `bedrock/map_agent_request`: an agent loop's request → Converse shapes: 20 turns (10
//!   user questions, 10 assistant turns each calling 2 tools, and their 20 results) with 10
//!   tools offered.
//! - `bedrock/parse_tool_call_stream`: [`StreamMapper`] over pre-decoded ConverseStream
//!   events of an answer with 5 tool calls, each start, 6 input fragments and stop (plus
//!   `messageStop`, `metadata`: 42 events), to provider events: the same layer as
//!   `stream_mapping`.
//! - Sizes count event-stream frames.

use std::hint::black_box;
use std::sync::Arc;

use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockDeltaEvent, ContentBlockStart, ContentBlockStartEvent,
    ContentBlockStopEvent, ConverseStreamMetadataEvent, ConverseStreamOutput, MessageStopEvent,
    StopReason, TokenUsage, ToolUseBlockDelta, ToolUseBlockStart,
};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use failover_bedrock::mapping::{JsonPlan, to_converse};
use failover_bedrock::stream::{Mapped, StreamMapper};
use failover_bedrock::{BedrockConfig, BedrockProvider, JsonModeConfig, StaticCredentials};
use failover_provider::{
    Message, Provider, ProviderEvent, ProviderRequest, RequestId, ResponseFormat, ToolCall,
    ToolCallAssembler, ToolDefinition, ToolResultContent,
};
use failover_standin::eventstream::ConverseStreamBody;
use futures::StreamExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn request(format: ResponseFormat) -> ProviderRequest {
    let mut messages = vec![Message::system("You are a careful assistant.")];
    for turn in 0..5 {
        messages.push(Message::user(format!(
            "Question {turn}: what is {turn} + {turn}?"
        )));
        messages.push(Message::assistant(format!("It is {}.", turn * 2)));
    }
    messages.push(Message::user("And 21 + 21?"));
    ProviderRequest {
        request_id: RequestId::new("bench"),
        model: MODEL.to_owned(),
        messages,
        temperature: Some(0.2),
        max_tokens: Some(256),
        stop: vec!["\n\nHuman:".into()],
        response_format: format,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    }
}

fn agent_request() -> ProviderRequest {
    let tools: Vec<ToolDefinition> = (0..10)
        .map(|i| {
            ToolDefinition::new(
                format!("tool_{i}"),
                format!("Tool number {i}: looks something up."),
                serde_json::json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "limit": {"type": "integer", "minimum": 1}
                    },
                    "required": ["query"]
                }),
            )
        })
        .collect();
    let mut messages = vec![Message::system("You are an agent. Use the tools.")];
    for turn in 0..10 {
        messages.push(Message::user(format!("Step {turn}: find what you need.")));
        let calls: Vec<ToolCall> = (0..2)
            .map(|k| {
                ToolCall::new(
                    format!("tooluse_{turn}_{k}"),
                    format!("tool_{}", (turn + k) % 10),
                    format!(r#"{{"query":"item {turn}-{k}","limit":{}}}"#, k + 1),
                )
            })
            .collect();
        messages.push(Message::assistant_with_calls("Looking it up.", calls));
        for k in 0..2 {
            messages.push(Message::tool_result(
                format!("tooluse_{turn}_{k}"),
                ToolResultContent::Json(serde_json::json!({"found": [turn, k], "ok": true})),
            ));
        }
    }
    let mut request = request(ResponseFormat::Text);
    request.messages = messages;
    request.tools.tools = tools;
    request
}

fn tool_call_events(calls: i32, fragments: usize) -> Vec<ConverseStreamOutput> {
    let mut events = Vec::new();
    for call in 0..calls {
        events.push(ConverseStreamOutput::ContentBlockStart(
            ContentBlockStartEvent::builder()
                .content_block_index(call)
                .start(ContentBlockStart::ToolUse(
                    ToolUseBlockStart::builder()
                        .tool_use_id(format!("tooluse_{call}"))
                        .name(format!("tool_{call}"))
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        ));
        let arguments = format!(r#"{{"query": "the item number {call}", "limit": 10}}"#);
        let step = arguments.len().div_ceil(fragments);
        for piece in arguments.as_bytes().chunks(step) {
            events.push(ConverseStreamOutput::ContentBlockDelta(
                ContentBlockDeltaEvent::builder()
                    .content_block_index(call)
                    .delta(ContentBlockDelta::ToolUse(
                        ToolUseBlockDelta::builder()
                            .input(String::from_utf8(piece.to_vec()).unwrap())
                            .build()
                            .unwrap(),
                    ))
                    .build()
                    .unwrap(),
            ));
        }
        events.push(ConverseStreamOutput::ContentBlockStop(
            ContentBlockStopEvent::builder()
                .content_block_index(call)
                .build()
                .unwrap(),
        ));
    }
    let mut end = decoded_events(0);
    if let Some(ConverseStreamOutput::MessageStop(_)) = end.first() {
        end[0] = ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(StopReason::ToolUse)
                .build()
                .unwrap(),
        );
    }
    events.extend(end);
    events
}

fn tools(c: &mut Criterion) {
    let json = JsonModeConfig::default();
    let agent = agent_request();
    let mut group = c.benchmark_group("bedrock");
    group.bench_function("map_agent_request", |b| {
        b.iter(|| to_converse(black_box(&agent), &json).unwrap())
    });
    let events = tool_call_events(5, 6);
    assert_eq!(events.len(), 42);
    group.bench_function("parse_tool_call_stream", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut mapper = StreamMapper::new(JsonPlan::Text);
                let mut calls = ToolCallAssembler::new();
                for event in events {
                    match mapper.on_event(event).unwrap() {
                        Mapped::Event(ProviderEvent::ToolCallStart { index, id, name }) => {
                            calls.start(index, &id, &name).unwrap()
                        }
                        Mapped::Event(ProviderEvent::ToolCallDelta { index, arguments }) => {
                            calls.delta(index, &arguments).unwrap()
                        }
                        Mapped::Event(ProviderEvent::ToolCallEnd { index }) => {
                            calls.end(index).unwrap()
                        }
                        _ => {}
                    }
                }
                assert!(mapper.finished());
                let calls = calls.finish().unwrap();
                assert_eq!(calls.len(), 5);
                calls
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn decoded_events(deltas: usize) -> Vec<ConverseStreamOutput> {
    let mut events: Vec<_> = (0..deltas)
        .map(|i| {
            ConverseStreamOutput::ContentBlockDelta(
                ContentBlockDeltaEvent::builder()
                    .content_block_index(0)
                    .delta(ContentBlockDelta::Text(format!("token{i} ")))
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    events.push(ConverseStreamOutput::MessageStop(
        MessageStopEvent::builder()
            .stop_reason(StopReason::EndTurn)
            .build()
            .unwrap(),
    ));
    events.push(ConverseStreamOutput::Metadata(
        ConverseStreamMetadataEvent::builder()
            .usage(
                TokenUsage::builder()
                    .input_tokens(100)
                    .output_tokens(deltas as i32)
                    .total_tokens(100 + deltas as i32)
                    .build()
                    .unwrap(),
            )
            .build(),
    ));
    events
}

fn body(deltas: usize) -> ConverseStreamBody {
    let chunks: Vec<String> = (0..deltas).map(|i| format!("token{i} ")).collect();
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    ConverseStreamBody::text_reply(&chunks, 100, deltas as u32)
}

fn mapping(c: &mut Criterion) {
    let schema = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: serde_json::json!({
            "type": "object",
            "properties": {"answer": {"type": "integer"}},
            "required": ["answer"]
        }),
    };
    let json = JsonModeConfig::default();
    let text_request = request(ResponseFormat::Text);
    let schema_request = request(schema);
    c.bench_function("request_mapping/text_10_turns", |b| {
        b.iter(|| to_converse(black_box(&text_request), &json).unwrap())
    });
    c.bench_function("request_mapping/json_schema_10_turns", |b| {
        b.iter(|| to_converse(black_box(&schema_request), &json).unwrap())
    });

    let events = decoded_events(998);
    let mut group = c.benchmark_group("stream_mapping");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("1000_events", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let mut mapper = StreamMapper::new(JsonPlan::Text);
                let mut out = 0_usize;
                for event in events {
                    if let Ok(Mapped::Event(_)) = mapper.on_event(event) {
                        out += 1;
                    }
                }
                assert!(mapper.finished());
                out
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let bytes = body(996).to_bytes();
    let mut group = c.benchmark_group("stream_decode");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000_frames", |b| {
        b.iter(|| {
            let mut decoder = MessageFrameDecoder::new();
            let mut buffer: &[u8] = black_box(&bytes);
            let mut frames = 0_usize;
            while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buffer).unwrap() {
                let payload: serde_json::Value = serde_json::from_slice(message.payload()).unwrap();
                black_box(payload);
                frames += 1;
            }
            assert_eq!(frames, 1000);
            frames
        })
    });
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("stream_end_to_end");
    // Frames: messageStart, the deltas, contentBlockStop, messageStop, metadata.
    for deltas in [0_usize, 996] {
        let events = deltas + 4;
        let (server, provider) = runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(body(deltas).response())
                .mount(&server)
                .await;
            let config = BedrockConfig::builder()
                .region("us-east-1")
                .endpoint_url(server.uri())
                .credentials(StaticCredentials::new("AKIDBENCH", "bench-secret"))
                .max_attempts(1)
                .build();
            (server, Arc::new(BedrockProvider::new(config).await))
        });
        let label = format!("{events}_events");
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(&label, |b| {
            b.to_async(&runtime).iter(|| {
                let provider = Arc::clone(&provider);
                async move {
                    let stream = provider
                        .stream(request(ResponseFormat::Text))
                        .await
                        .unwrap();
                    let items: Vec<_> = stream.collect().await;
                    assert!(items.last().unwrap().is_ok());
                    items.len()
                }
            })
        });
        drop(server);
    }
    group.finish();
}

criterion_group!(benches, mapping, tools, decode, end_to_end);
criterion_main!(benches);
