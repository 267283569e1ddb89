//! No prompt, answer or secret in any log line, span field or metric.
//!
//! Canary values — a prompt, an answer, the OpenAI key, the AWS secret key and session
//! token — go through the real Bedrock and OpenAI clients against the stand-ins, on the
//! success, error and stream paths (plain answers, a 503 failing over, a stream that
//! completes, a stream cut after its first chunk), with a subscriber at TRACE for every
//! crate (span opening and closing included, so every recorded field is printed) and the
//! Prometheus recorder installed. Then neither the captured output nor the rendered
//! exposition may contain any canary.
//!
//! One test in its own binary: the subscriber and the recorder are process-global, so that
//! every thread and task (the SDK's and hyper's included) reports to them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use failover_bedrock::{BedrockProvider, StaticCredentials};
use failover_core::FailoverAdapter;
use failover_openai::OpenAiProvider;
use failover_provider::{CompletionRequest, StreamChunk};
use failover_standin::seed::seed_breaker_config;
use failover_standin::{Fault, StandIns, Vendor};
use failover_telemetry::prometheus::PrometheusMetrics;
use futures::StreamExt;
use serde_json::json;
use tracing_subscriber::fmt::format::FmtSpan;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, ResponseTemplate};

const PROMPT: &str = "CANARY-PROMPT-5f1e2d: what is the airspeed of an unladen swallow?";
const ANSWER: &str = "CANARY-ANSWER-9b8c7a: african or european?";
const OPENAI_KEY: &str = "sk-CANARY-KEY-0a1b2c3d4e5f";
const AWS_SECRET: &str = "CANARY-AWS-SECRET-6e5d4c3b2a";
const AWS_SESSION_TOKEN: &str = "CANARY-AWS-SESSION-TOKEN-1f2e3d";
const CANARIES: &[&str] = &[
    "CANARY-PROMPT",
    "CANARY-ANSWER",
    "CANARY-KEY",
    "CANARY-AWS-SECRET",
    "CANARY-AWS-SESSION",
];

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn request(tenant: &str) -> CompletionRequest {
    CompletionRequest::prompt(tenant, "canary-agent", "gpt-4", PROMPT).max_tokens(20)
}

#[test]
fn canary_prompts_answers_and_keys_appear_in_no_log_span_or_metric() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let prometheus = PrometheusMetrics::install().expect("the recorder installs");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run_every_path());

    let logs = captured.text();
    let exposition = prometheus.render();
    // The checks below can fail: the paths ran, traced and counted.
    assert!(
        logs.contains("failover.request"),
        "no request span in the logs"
    );
    assert!(
        logs.contains("failover.attempt"),
        "no attempt span in the logs"
    );
    assert!(
        logs.contains("aws_smithy"),
        "the AWS SDK's own traces were not captured"
    );
    assert!(
        logs.contains("stream interrupted"),
        "the cut stream was not logged"
    );
    assert!(
        exposition.contains("failover_provider_attempts"),
        "{exposition}"
    );
    for canary in CANARIES {
        if let Some(at) = logs.find(canary) {
            let start = logs[..at].rfind('\n').map_or(0, |newline| newline + 1);
            let end = logs[at..]
                .find('\n')
                .map_or(logs.len(), |newline| at + newline);
            panic!("{canary} in the logs: {}", &logs[start..end]);
        }
        assert!(!exposition.contains(canary), "{canary} in the exposition");
    }
}

async fn run_every_path() {
    let standins = StandIns::start().await;
    // OpenAI answers with the canary answer, plain and streamed.
    Mock::given(method("POST"))
        .and(body_string_contains("\"stream\":true"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(
                "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}}]}),
                json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4",
                       "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}}),
            ),
            "text/event-stream",
        ))
        .with_priority(3)
        .mount(standins.server(Vendor::OpenAi))
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "model": "gpt-4",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
        })))
        .with_priority(4)
        .mount(standins.server(Vendor::OpenAi))
        .await;
    let mut credentials = StaticCredentials::new("AKIDCANARYNOTSECRET0", AWS_SECRET);
    credentials.session_token = Some(AWS_SESSION_TOKEN.to_owned());
    let bedrock =
        BedrockProvider::new(standins.bedrock_config().credentials(credentials).build()).await;
    let openai = OpenAiProvider::new(standins.openai_config().api_key(OPENAI_KEY).build())
        .expect("the OpenAI client builds");
    let adapter = FailoverAdapter::builder()
        .provider(Arc::new(bedrock), seed_breaker_config())
        .provider(Arc::new(openai), seed_breaker_config())
        .build()
        .expect("the adapter builds");

    // Success on Bedrock, plain and streamed.
    adapter
        .generate_completion(request("canary-1"))
        .await
        .unwrap();
    drain(&adapter, request("canary-2")).await.unwrap();
    // Bedrock's 503: OpenAI answers with the canary answer, plain and streamed.
    standins
        .inject(Vendor::Bedrock, Fault::Unavailable, 2)
        .await;
    let answered = adapter
        .generate_completion(request("canary-3"))
        .await
        .unwrap();
    assert_eq!(answered.content, ANSWER);
    assert_eq!(drain(&adapter, request("canary-4")).await.unwrap(), ANSWER);
    // A stream cut after its first chunk: the error item, after some text.
    standins.inject(Vendor::Bedrock, Fault::CutStream, 1).await;
    let error = drain(&adapter, request("canary-5")).await.unwrap_err();
    assert!(error.contains("interrupted"), "{error}");
    // Every provider failing: one error naming each attempt.
    standins
        .inject(Vendor::Bedrock, Fault::Unavailable, 1)
        .await;
    standins.inject(Vendor::OpenAi, Fault::Unavailable, 1).await;
    adapter
        .generate_completion(request("canary-6"))
        .await
        .unwrap_err();
    adapter.flush_usage().await.unwrap();
}

/// The text of a stream, or its error.
async fn drain(adapter: &FailoverAdapter, request: CompletionRequest) -> Result<String, String> {
    let mut stream = adapter
        .stream_completion(request)
        .await
        .map_err(|error| error.to_string())?;
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item.map_err(|error| error.to_string())? {
            StreamChunk::Delta { text: delta } => text.push_str(&delta),
            StreamChunk::Done(_) => return Ok(text),
            other => return Err(format!("a text answer streamed {other:?}")),
        }
    }
    Err("the stream ended without its summary".to_owned())
}
