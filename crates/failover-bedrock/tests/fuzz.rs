//! Properties: no upstream input panics this crate — arbitrary exception names, messages,
//! statuses and retry hints through the classification of a failed call and of an
//! in-stream exception; arbitrary bytes through the SDK's event-stream frame decoder;
//! arbitrary events through the stream mapper; and arbitrary event-stream bodies through
//! the real SDK client (over an in-memory HTTP client) and this crate's stream reader.
//! 100 000 cases by default (`PROPTEST_CASES` overrides; timings in the README).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockruntime::config::http::{HttpRequest, HttpResponse};
use aws_sdk_bedrockruntime::config::{
    BehaviorVersion, Credentials, HttpClient, Region, RuntimeComponents,
};
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockDeltaEvent, ContentBlockStart, ContentBlockStartEvent,
    ContentBlockStopEvent, ConverseStreamMetadataEvent, ConverseStreamOutput, MessageStopEvent,
    StopReason, ToolUseBlockDelta, ToolUseBlockStart,
};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::event_stream::{Message, RawMessage};
use failover_bedrock::error::{
    classify_exception, classify_status, classify_validation, from_operation_error,
    from_stream_error,
};
use failover_bedrock::mapping::{JSON_TOOL_NAME, JsonPlan};
use failover_bedrock::stream::{Mapped, StreamMapper};
use failover_bedrock::{BedrockConfig, BedrockProvider};
use failover_provider::{
    ErrorKind, JsonContract, Message as ChatMessage, Provider, ProviderEvent, ProviderRequest,
    RequestId, ResponseFormat, ToolCallAssembler,
};
use failover_standin::eventstream::{event_frame, exception_frame};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::json;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Exception names as Bedrock spells them, mangled, and noise.
fn exception_name() -> impl Strategy<Value = String> {
    let known = prop::sample::select(
        &[
            "ThrottlingException",
            "throttlingException",
            "ValidationException",
            "AccessDeniedException",
            "ModelStreamErrorException",
            "ServiceUnavailableException",
            "com.amazon.bedrock#InternalServerException",
            "UnrecognizedClientException:http://internal.amazon.com/",
            "",
            ":",
            "#",
            "#:",
        ][..],
    )
    .prop_map(str::to_owned);
    prop_oneof![
        known,
        prop::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "The provided model identifier is invalid.",
                "Input is too long for requested model.",
                "on-demand throughput isn't supported",
                "",
            ][..]
        )
        .prop_map(str::to_owned),
        prop::collection::vec(any::<char>(), 0..80).prop_map(String::from_iter),
    ]
}

fn response(status: u16, retry_after: &[u8]) -> HttpResponse {
    let mut response = HttpResponse::new(
        status.try_into().expect("100..=999 is a status"),
        SdkBody::empty(),
    );
    if let Ok(value) = std::str::from_utf8(retry_after) {
        // Header values the HTTP layer refuses never reach us: `try_insert` skips them.
        let _ = response
            .headers_mut()
            .try_insert("retry-after", value.to_owned());
        let _ = response
            .headers_mut()
            .try_insert("x-amzn-retry-after", value.to_owned());
    }
    response
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn failed_calls_classify_without_panicking(
        code in exception_name(),
        message in text(),
        status in 100_u16..=999,
        retry_after in prop::collection::vec(any::<u8>(), 0..24),
        with_message in any::<bool>(),
    ) {
        let _ = classify_exception(&code, &message, Some(status));
        let _ = classify_exception(&code, &message, None);
        let _ = classify_status(status, &message);
        let _ = classify_validation(&message);
        let mut meta = ErrorMetadata::builder().code(code.clone());
        if with_message {
            meta = meta.message(message.clone());
        }
        let error = SdkError::service_error(
            ConverseError::generic(meta.build()),
            response(status, &retry_after),
        );
        let classified = from_operation_error(error, MAX_RETRY_AFTER);
        prop_assert!(classified.retry_after().is_none_or(|wait| wait <= MAX_RETRY_AFTER));
        prop_assert!(classified.message().len() <= 600, "messages are cut");
    }

    #[test]
    fn in_stream_exceptions_classify_without_panicking(
        code in exception_name(),
        message in text(),
    ) {
        let error = SdkError::service_error(
            ConverseStreamOutputError::generic(
                ErrorMetadata::builder().code(code).message(message).build(),
            ),
            RawMessage::Decoded(Message::new(Vec::new())),
        );
        let classified = from_stream_error(error);
        prop_assert!(classified.message().len() <= 1200);
    }

    #[test]
    fn arbitrary_bytes_through_the_frame_decoder_never_panic(
        body in frames_or_noise(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut decoder = MessageFrameDecoder::new();
        let mut buffer = VecDeque::new();
        'chunks: for chunk in chunked(&body, cuts) {
            buffer.extend(chunk);
            loop {
                match decoder.decode_frame(&mut buffer) {
                    Ok(DecodedFrame::Complete(_message)) => {}
                    Ok(DecodedFrame::Incomplete) => break,
                    Err(_) => break 'chunks,
                }
            }
        }
    }

    #[test]
    fn arbitrary_events_through_the_mapper_never_panic(
        events in prop::collection::vec(event(), 0..8),
        plan in 0_u8..3,
        end in 0_u8..2,
    ) {
        let plan = match plan {
            0 => JsonPlan::Text,
            1 => JsonPlan::ForcedTool { tool_name: JSON_TOOL_NAME.into(), contract: JsonContract::object() },
            _ => JsonPlan::Native { contract: JsonContract::object() },
        };
        let mut mapper = StreamMapper::with_limit(plan, 64);
        // Whatever the events, the tool-call items the mapper emits are in order, and it
        // never finishes with a call open.
        let mut calls = ToolCallAssembler::new();
        let mut check = |item: &Result<Mapped, failover_provider::ProviderError>| -> Result<bool, TestCaseError> {
            match item {
                Ok(Mapped::Event(ProviderEvent::ToolCallStart { index, id, name })) => {
                    prop_assert!(calls.start(*index, id, name).is_ok());
                }
                Ok(Mapped::Event(ProviderEvent::ToolCallDelta { index, arguments })) => {
                    prop_assert!(calls.delta(*index, arguments).is_ok());
                }
                Ok(Mapped::Event(ProviderEvent::ToolCallEnd { index })) => {
                    prop_assert!(calls.end(*index).is_ok());
                }
                Ok(Mapped::Event(ProviderEvent::Finished { .. })) => {
                    prop_assert!(!calls.is_open(), "finished inside a call");
                    return Ok(true);
                }
                Ok(_) => {}
                Err(_) => return Ok(true),
            }
            Ok(false)
        };
        let mut finished = false;
        for event in events {
            if check(&mapper.on_event(event))? {
                finished = true;
                break;
            }
        }
        if !finished {
            let last = if end == 0 {
                mapper.on_end()
            } else {
                mapper.on_error(failover_provider::ProviderError::new(ErrorKind::StreamCut, "cut"))
            };
            check(&last)?;
        }
    }
}

/// Valid event-stream frames (with arbitrary payloads and names), mutated, or noise.
fn frames_or_noise() -> impl Strategy<Value = Vec<u8>> {
    let frame = prop_oneof![
        (text(), text()).prop_map(|(name, payload)| event_frame(&name, &json!(payload))),
        (text(), text()).prop_map(|(name, message)| exception_frame(&name, &message)),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    (
        prop::collection::vec(frame, 0..4),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        any::<Option<usize>>(),
    )
        .prop_map(|(frames, flips, truncate)| {
            let mut bytes = frames.concat();
            for (at, value) in flips {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= value;
                }
            }
            if let Some(at) = truncate {
                bytes.truncate(at % (bytes.len() + 1));
            }
            bytes
        })
}

fn event() -> impl Strategy<Value = ConverseStreamOutput> {
    prop_oneof![
        text().prop_map(|text| delta(ContentBlockDelta::Text(text))),
        text().prop_map(|input| delta(ContentBlockDelta::ToolUse(
            ToolUseBlockDelta::builder().input(input).build().unwrap()
        ))),
        text().prop_map(|reason| ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(StopReason::from(reason.as_str()))
                .build()
                .unwrap()
        )),
        (any::<i32>(), any::<i32>(), any::<Option<i32>>()).prop_map(|(input, output, cached)| {
            let usage = aws_sdk_bedrockruntime::types::TokenUsage::builder()
                .input_tokens(input)
                .output_tokens(output)
                .total_tokens(input.wrapping_add(output))
                .set_cache_read_input_tokens(cached)
                .build()
                .unwrap();
            ConverseStreamOutput::Metadata(
                ConverseStreamMetadataEvent::builder().usage(usage).build(),
            )
        }),
        Just(ConverseStreamOutput::MessageStart(
            aws_sdk_bedrockruntime::types::MessageStartEvent::builder()
                .role(aws_sdk_bedrockruntime::types::ConversationRole::Assistant)
                .build()
                .unwrap()
        )),
        // Tool blocks at a few indices, the JSON tool's name among the names, so starts,
        // fragments and stops meet in every order.
        (
            0_i32..3,
            text(),
            prop::sample::select(&[JSON_TOOL_NAME, "get_weather", ""][..])
        )
            .prop_map(|(index, id, name)| ConverseStreamOutput::ContentBlockStart(
                ContentBlockStartEvent::builder()
                    .content_block_index(index)
                    .start(ContentBlockStart::ToolUse(
                        ToolUseBlockStart::builder()
                            .tool_use_id(id)
                            .name(name)
                            .build()
                            .unwrap()
                    ))
                    .build()
                    .unwrap()
            )),
        (0_i32..3, text()).prop_map(|(index, input)| ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(index)
                .delta(ContentBlockDelta::ToolUse(
                    ToolUseBlockDelta::builder().input(input).build().unwrap()
                ))
                .build()
                .unwrap()
        )),
        (0_i32..3).prop_map(|index| ConverseStreamOutput::ContentBlockStop(
            ContentBlockStopEvent::builder()
                .content_block_index(index)
                .build()
                .unwrap()
        )),
    ]
}

fn delta(delta: ContentBlockDelta) -> ConverseStreamOutput {
    ConverseStreamOutput::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(0)
            .delta(delta)
            .build()
            .unwrap(),
    )
}

fn chunked(body: &[u8], cuts: Vec<usize>) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.into_iter().map(|cut| cut % (body.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(body[start..point].to_vec());
        start = point;
    }
    chunks.push(body[start..].to_vec());
    chunks
}

/// An HTTP client answering every request with the body in `body`: no socket, so the
/// SDK's whole pipeline (signing, the event-stream receiver, its unmarshaller) runs per
/// case at the cost of a function call.
#[derive(Debug, Clone, Default)]
struct CannedBody {
    body: Arc<Mutex<Vec<u8>>>,
}

impl HttpConnector for CannedBody {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let body = self
            .body
            .lock()
            .map(|body| body.clone())
            .unwrap_or_default();
        let mut response = HttpResponse::new(200.try_into().unwrap(), SdkBody::from(body));
        response
            .headers_mut()
            .insert("content-type", "application/vnd.amazon.eventstream");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for CannedBody {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// Event-stream bodies made of the frames Bedrock sends, with arbitrary contents, mixed
/// with exceptions, unknown events, corrupt frames and noise.
fn stream_body() -> impl Strategy<Value = Vec<u8>> {
    let frame = prop_oneof![
        text().prop_map(|text| event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": text}})
        )),
        text().prop_map(|reason| event_frame("messageStop", &json!({"stopReason": reason}))),
        (any::<i64>(), any::<i64>()).prop_map(|(input, output)| event_frame(
            "metadata",
            &json!({"usage": {"inputTokens": input, "outputTokens": output, "totalTokens": 0}, "metrics": {"latencyMs": 1}})
        )),
        Just(event_frame("messageStart", &json!({"role": "assistant"}))),
        (text(), text()).prop_map(|(name, payload)| event_frame(&name, &json!(payload))),
        (exception_name(), text()).prop_map(|(name, message)| exception_frame(&name, &message)),
        prop::collection::vec(any::<u8>(), 0..32),
    ];
    prop::collection::vec(frame, 0..6).prop_map(|frames| frames.concat())
}

/// Bodies through the real client and the provider's stream; a separate runner so the
/// client and the runtime are built once, not per case.
#[test]
fn arbitrary_stream_bodies_through_the_sdk_never_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let canned = CannedBody::default();
    let sdk_config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDFUZZ",
            "fuzz-secret",
            None,
            None,
            "fuzz",
        ))
        .http_client(canned.clone())
        .build();
    let provider = BedrockProvider::from_client(
        aws_sdk_bedrockruntime::Client::from_conf(sdk_config),
        BedrockConfig::builder().max_response_bytes(256).build(),
    );
    let request = ProviderRequest {
        request_id: RequestId::new("fuzz"),
        model: "anthropic.claude-3-haiku-20240307-v1:0".into(),
        messages: vec![ChatMessage::user("hi")],
        temperature: None,
        max_tokens: None,
        stop: Vec::new(),
        response_format: ResponseFormat::Text,
        tools: Default::default(),
        sampling: Default::default(),
        deadline: None,
        attempt_deadline: None,
    };
    // The SDK's client-side work per case (endpoint, signing, retry bookkeeping) makes
    // this the slowest property: its default is a tenth of the others' (see the README).
    let cases = std::env::var("PROPTEST_SDK_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(cases() / 10);
    let mut runner = TestRunner::new(ProptestConfig { cases, ..config() });
    runner
        .run(&stream_body(), |body| {
            *canned.body.lock().unwrap() = body;
            runtime.block_on(async {
                // An error opening the stream is a classified error: nothing to check.
                if let Ok(stream) = provider.stream(request.clone()).await {
                    let items: Vec<_> = stream.collect().await;
                    let (last, deltas) = items.split_last().expect("a stream ends with an item");
                    prop_assert!(
                        deltas
                            .iter()
                            .all(|item| matches!(item, Ok(ProviderEvent::Delta(_))))
                    );
                    prop_assert!(!matches!(last, Ok(ProviderEvent::Delta(_))));
                }
                Ok(())
            })
        })
        .unwrap();
}
