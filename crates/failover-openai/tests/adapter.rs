//! The OpenAI provider behind `FailoverAdapter`, pointed at wiremock: usage and cost, JSON
//! modes, and the seed's OpenAI fallback class (`TestOpenAIFallback`) with a failing
//! scripted Bedrock in front — fallback completion, all providers failing, the same
//! response structure — plus the streaming fallback.

mod common;

use std::str::FromStr;
use std::sync::Arc;

use failover_breaker::BreakerConfig;
use failover_core::{FailoverAdapter, FailoverError};
use failover_provider::{
    AttemptOutcome, Completion, CompletionRequest, ErrorKind, Provider, ResponseFormat,
    StreamChunk, TokenUsage,
};
use failover_standin::openai_fixtures::{
    base_url, chat_completion, chat_completion_cached, json_response, mount_chat, server_error,
    sse_error_frame, sse_events, sse_response, sse_role_chunk, sse_text_chunk,
};
use failover_testkit::{ScriptedProvider, Step};
use failover_usage::{MemoryUsageSink, UsageOutcome};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::json;
use wiremock::MockServer;

struct World {
    adapter: FailoverAdapter,
    sink: Arc<MemoryUsageSink>,
    bedrock: Option<Arc<ScriptedProvider>>,
}

fn openai(server: &MockServer) -> Arc<dyn Provider> {
    Arc::new(common::provider(&base_url(server)))
}

fn only_openai(server: &MockServer) -> World {
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = FailoverAdapter::builder()
        .provider(openai(server), BreakerConfig::default())
        .usage_sink(sink.clone())
        .build()
        .unwrap();
    World {
        adapter,
        sink,
        bedrock: None,
    }
}

fn behind(bedrock: ScriptedProvider, server: &MockServer) -> World {
    let bedrock = Arc::new(bedrock);
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = FailoverAdapter::builder()
        .provider(bedrock.clone(), BreakerConfig::default())
        .provider(openai(server), BreakerConfig::default())
        .usage_sink(sink.clone())
        .build()
        .unwrap();
    World {
        adapter,
        sink,
        bedrock: Some(bedrock),
    }
}

fn usd(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn prompt(model: &str) -> CompletionRequest {
    CompletionRequest::prompt(
        "test_tenant",
        "test_agent",
        model,
        "What is 2+2? Answer with just the number.",
    )
    .temperature(0.1)
    .max_tokens(10)
}

#[tokio::test]
async fn completion_usage_and_cost_through_the_adapter() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(
            200,
            &chat_completion_cached("gpt-4o-2024-08-06", "4", 2_000, 1_536, 40),
        ),
        None,
    )
    .await;
    let world = only_openai(&server);
    let result = world
        .adapter
        .generate_completion(prompt("gpt-4o"))
        .await
        .unwrap();
    assert_eq!(result.provider, "openai");
    assert_eq!(
        result.model, "gpt-4o-2024-08-06",
        "the model that served the answer, as the provider reports it"
    );
    assert_eq!(
        result.attempts.last().unwrap().model,
        "gpt-4o",
        "the routed model, which is what is priced"
    );
    assert_eq!(result.content, "4");
    assert_eq!(
        result.usage,
        TokenUsage {
            input_tokens: 464,
            output_tokens: 40,
            cache_read_tokens: 1_536,
            cache_write_tokens: 0
        }
    );
    // gpt-4o: 464 × $2.50 + 1 536 × $1.25 (cached) + 40 × $10.00, per million tokens.
    assert_eq!(result.estimated_cost.amount(), usd("0.00348"));
    assert!(!result.cached);

    world.adapter.flush_usage().await.unwrap();
    let records = world.sink.records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(
        (record.provider.as_str(), record.model.as_str()),
        ("openai", "gpt-4o")
    );
    assert_eq!(record.outcome, UsageOutcome::Success);
    assert_eq!(record.usage, result.usage);
    assert_eq!(record.cost, result.estimated_cost);
    assert!(!record.fallback_used);
}

#[tokio::test]
async fn json_object_and_json_schema_through_the_adapter() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4", r#"{"answer": 4}"#, 30, 6)),
        None,
    )
    .await;
    let world = only_openai(&server);
    let object = world
        .adapter
        .generate_completion(prompt("gpt-4").response_format(ResponseFormat::JsonObject))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&object.content).unwrap()["answer"],
        4
    );
    // gpt-4: 30 × $30 + 6 × $60 per million.
    assert_eq!(object.estimated_cost.amount(), usd("0.00126"));

    let schema = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}),
    };
    let structured = world
        .adapter
        .generate_completion(prompt("gpt-4").response_format(schema))
        .await
        .unwrap();
    assert_eq!(structured.content, r#"{"answer": 4}"#);
    let bodies: Vec<serde_json::Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies[0]["response_format"]["type"], "json_object");
    assert_eq!(bodies[1]["response_format"]["type"], "json_schema");
}

#[tokio::test]
async fn fallback_completion_when_bedrock_fails() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4-0613", "4", 18, 1)),
        None,
    )
    .await;
    let world = behind(
        ScriptedProvider::new("bedrock").then(Step::fail(ErrorKind::Timeout)),
        &server,
    );
    let result = world
        .adapter
        .generate_completion(prompt("gpt-4"))
        .await
        .unwrap();
    assert_eq!(result.provider, "openai");
    assert_eq!(result.model, "gpt-4-0613", "as the provider reports it");
    assert_eq!(result.attempts.last().unwrap().model, "gpt-4");
    assert_eq!(result.content, "4");
    assert_eq!(result.attempts.len(), 2);
    assert_eq!(result.attempts[0].provider, "bedrock");
    assert!(matches!(
        result.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Timeout,
            ..
        }
    ));
    assert_eq!(result.attempts[1].outcome, AttemptOutcome::Succeeded);
    assert_eq!(world.bedrock.as_ref().unwrap().call_count(), 1);
    // gpt-4: 18 × $30 + 1 × $60 per million.
    assert_eq!(result.estimated_cost.amount(), usd("0.0006"));

    world.adapter.flush_usage().await.unwrap();
    let records = world.sink.records();
    let openai = records.iter().find(|r| r.provider == "openai").unwrap();
    assert!(openai.fallback_used);
    assert_eq!(openai.outcome, UsageOutcome::Success);
}

#[tokio::test]
async fn all_providers_failing_names_every_attempt() {
    let server = MockServer::start().await;
    mount_chat(&server, json_response(503, &server_error()), None).await;
    let world = behind(
        ScriptedProvider::new("bedrock").then(Step::fail(ErrorKind::Throttled)),
        &server,
    );
    let error = world
        .adapter
        .generate_completion(prompt("gpt-4"))
        .await
        .unwrap_err();
    let FailoverError::AllProvidersFailed { attempts, .. } = &error else {
        panic!("unexpected {error}")
    };
    let kinds: Vec<_> = attempts
        .iter()
        .map(|a| match &a.outcome {
            AttemptOutcome::Failed { kind, .. } => (a.provider.as_str(), *kind),
            other => panic!("unexpected outcome {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("bedrock", ErrorKind::Throttled),
            ("openai", ErrorKind::Unavailable)
        ]
    );
    let text = error.to_string();
    assert!(
        text.contains("bedrock") && text.contains("openai") && text.contains("HTTP 503"),
        "{text}"
    );
}

fn same_structure(a: &Completion, b: &Completion) {
    for result in [a, b] {
        assert!(!result.content.is_empty());
        assert!(result.usage.total_tokens() > 0);
        assert!(result.estimated_cost.amount() > Decimal::ZERO);
        assert!(!result.cached);
        assert!(!result.request_id.as_str().is_empty());
        assert_eq!(
            result.attempts.last().unwrap().outcome,
            AttemptOutcome::Succeeded
        );
    }
    // Field for field, the two serialise to the same keys.
    let keys = |c: &Completion| {
        let value = serde_json::to_value(c).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(a), keys(b));
}

#[tokio::test]
async fn fallback_keeps_the_response_structure() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(200, &chat_completion("gpt-4", "OpenAI says 4", 18, 4)),
        None,
    )
    .await;
    let healthy = behind(
        ScriptedProvider::always("bedrock", "Bedrock says 4"),
        &server,
    );
    let failing = behind(
        ScriptedProvider::new("bedrock").otherwise(Step::fail(ErrorKind::Unavailable)),
        &server,
    );
    let a = healthy
        .adapter
        .generate_completion(prompt("gpt-4"))
        .await
        .unwrap();
    let b = failing
        .adapter
        .generate_completion(prompt("gpt-4"))
        .await
        .unwrap();
    assert_eq!(
        (a.provider.as_str(), b.provider.as_str()),
        ("bedrock", "openai")
    );
    same_structure(&a, &b);
}

#[tokio::test]
async fn streaming_falls_back_before_the_first_chunk() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        sse_response(&sse_events(&["Open", "AI ", "says 4"], Some((20, 0, 3)))),
        None,
    )
    .await;
    let world = behind(
        ScriptedProvider::new("bedrock").then(Step::fail(ErrorKind::Unavailable)),
        &server,
    );
    let stream = world
        .adapter
        .stream_completion(prompt("gpt-4o"))
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let mut text = String::new();
    let mut summary = None;
    for chunk in chunks {
        match chunk.unwrap() {
            StreamChunk::Delta { text: delta } => text.push_str(&delta),
            StreamChunk::Done(done) => summary = Some(done),
            other => panic!("a text answer streamed {other:?}"),
        }
    }
    assert_eq!(text, "OpenAI says 4");
    let summary = summary.expect("a Done chunk");
    assert_eq!(summary.provider, "openai");
    assert_eq!(summary.usage, TokenUsage::new(20, 3));
    // gpt-4o: 20 × $2.50 + 3 × $10 per million.
    assert_eq!(summary.estimated_cost.amount(), usd("0.00008"));
    assert_eq!(summary.attempts.len(), 2);
    assert!(matches!(
        summary.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::Unavailable,
            ..
        }
    ));

    world.adapter.flush_usage().await.unwrap();
    let records = world.sink.records();
    let openai = records.iter().find(|r| r.provider == "openai").unwrap();
    assert_eq!(openai.usage, TokenUsage::new(20, 3));
    assert!(
        !openai.usage_estimated,
        "the usage chunk's figures, not an estimate"
    );
    assert!(openai.streamed && openai.fallback_used);
}

#[tokio::test]
async fn a_failure_after_the_first_chunk_interrupts_the_stream() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        sse_response(&[sse_role_chunk(), sse_text_chunk("Hel"), sse_error_frame()]),
        None,
    )
    .await;
    let world = only_openai(&server);
    let chunks: Vec<_> = world
        .adapter
        .stream_completion(prompt("gpt-4o"))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(chunks.len(), 2);
    assert!(matches!(&chunks[0], Ok(StreamChunk::Delta { text }) if text == "Hel"));
    let Err(FailoverError::StreamInterrupted {
        provider,
        kind,
        delivered_bytes,
        ..
    }) = &chunks[1]
    else {
        panic!("unexpected {:?}", chunks[1])
    };
    assert_eq!(
        (provider.as_str(), *kind, *delivered_bytes),
        ("openai", ErrorKind::Unavailable, 3)
    );
}

#[tokio::test]
async fn an_exhausted_openai_account_fails_over_and_counts_against_the_breaker() {
    let server = MockServer::start().await;
    mount_chat(
        &server,
        json_response(
            429,
            &failover_standin::openai_fixtures::insufficient_quota_error(),
        ),
        None,
    )
    .await;
    let sink = Arc::new(MemoryUsageSink::default());
    let adapter = FailoverAdapter::builder()
        .provider(openai(&server), BreakerConfig::default())
        .provider(
            Arc::new(ScriptedProvider::always("bedrock", "4")),
            BreakerConfig::default(),
        )
        .usage_sink(sink)
        .build()
        .unwrap();
    let result = adapter.generate_completion(prompt("gpt-4")).await.unwrap();
    assert_eq!(result.provider, "bedrock");
    assert!(matches!(
        result.attempts[0].outcome,
        AttemptOutcome::Failed {
            kind: ErrorKind::AuthOrConfig,
            ..
        }
    ));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "insufficient_quota is never retried"
    );
    let breaker = adapter.breaker("openai").unwrap().snapshot();
    assert_eq!(breaker.consecutive_failures, 1);
    assert_eq!(breaker.last_error_kind, Some("auth_or_config"));
}

#[tokio::test]
async fn the_first_delta_reaches_the_caller_while_the_stand_in_holds_the_rest() {
    use failover_standin::bedrock_server::{ChunkedServer, Gate};
    use failover_standin::openai_fixtures::sse_chunked;

    let gate = Gate::new();
    // Role chunk and "Hel" are written and flushed; "lo", the finish and usage chunks and
    // [DONE] wait at the gate.
    let events = sse_events(&["Hel", "lo"], Some((12, 0, 2)));
    let server = ChunkedServer::start(sse_chunked(&events).hold_before(2, &gate))
        .await
        .unwrap();
    let openai: Arc<dyn Provider> = Arc::new(common::provider(&format!("{}/v1", server.uri())));
    let adapter = FailoverAdapter::builder()
        .provider(openai, BreakerConfig::default())
        .usage_sink(Arc::new(MemoryUsageSink::default()))
        .build()
        .unwrap();
    let mut stream = adapter.stream_completion(prompt("gpt-4o")).await.unwrap();
    // Not a synchronisation: a bound so that an adapter holding deltas back fails the test
    // instead of hanging it.
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .expect("the first delta arrives while the rest is held")
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, StreamChunk::Delta { text } if text == "Hel"),
        "{first:?}"
    );
    assert!(
        !gate.is_open(),
        "the caller has the first delta while the stand-in has not sent the rest"
    );
    gate.open();
    let rest: Vec<_> = stream.collect().await;
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(matches!(&rest[0], Ok(StreamChunk::Delta { text }) if text == "lo"));
    let Ok(StreamChunk::Done(summary)) = &rest[1] else {
        panic!("unexpected {:?}", rest[1])
    };
    assert_eq!(summary.usage, TokenUsage::new(12, 2));
}
