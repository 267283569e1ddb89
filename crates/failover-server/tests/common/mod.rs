//! A real gateway on a free port in front of the real Bedrock and OpenAI clients, each
//! talking to its local stand-in; memory cache and ledger.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use failover_bedrock::BedrockProvider;
use failover_breaker::BreakerConfig;
use failover_cache::{KeyDeriver, MemoryCache};
use failover_core::{FailoverAdapter, Router};
use failover_openai::OpenAiProvider;
use failover_server::{Gateway, GatewayConfig, KeyGrant, KeyHash, Limits, RunningGateway};
use failover_standin::StandIns;
use failover_standin::bedrock_server::{ChunkedResponse, ChunkedServer, Gate};
use failover_standin::eventstream::ConverseStreamBody;
use failover_usage::MemoryUsageSink;

/// The key of tenant `acme`, allowed every model.
pub const ACME_KEY: &str = "sk-test-acme-0123456789";
/// The key of tenant `globex`, allowed only `gpt-3.5-turbo`.
pub const GLOBEX_KEY: &str = "sk-test-globex-0123456789";
/// A second key of `globex`, allowed every model (for the cache-isolation test).
pub const GLOBEX_FULL_KEY: &str = "sk-test-globex-full-0123456789";
/// The admin key.
pub const ADMIN_KEY: &str = "sk-test-admin-0123456789";

/// What a test drives.
pub struct TestGateway {
    pub standins: StandIns,
    pub adapter: FailoverAdapter,
    pub sink: Arc<MemoryUsageSink>,
    pub gateway: RunningGateway,
    pub base: String,
    pub http: reqwest::Client,
}

/// Breakers that trip on one failure and reopen after `open`: a test decides in one
/// request whether a provider is up.
pub fn quick_breaker(open: Duration) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 1,
        minimum_calls: 1,
        open_duration: open,
        jitter: 0.0,
        half_open_max_probes: 1,
        half_open_successes_to_close: 1,
        ..BreakerConfig::default()
    }
}

pub fn grant(name: &str, key: &str, tenant: &str, models: &[&str]) -> KeyGrant {
    KeyGrant {
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        ..KeyGrant::new(name, KeyHash::of(key), tenant)
    }
}

pub fn config(limits: Limits) -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        limits,
        keys: vec![
            grant("acme", ACME_KEY, "acme", &[]),
            grant("globex-limited", GLOBEX_KEY, "globex", &["gpt-3.5-turbo"]),
            grant("globex-full", GLOBEX_FULL_KEY, "globex", &[]),
        ],
        admin_key_hash: Some(KeyHash::of(ADMIN_KEY)),
    }
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::with(Limits::default(), BreakerConfig::default()).await
    }

    pub async fn with(limits: Limits, breaker: BreakerConfig) -> Self {
        let standins = StandIns::start().await;
        let bedrock = BedrockProvider::new(standins.bedrock_config().build()).await;
        let openai = OpenAiProvider::new(standins.openai_config().build()).unwrap();
        let sink = Arc::new(MemoryUsageSink::default());
        let adapter = FailoverAdapter::builder()
            .provider(Arc::new(bedrock), breaker.clone())
            .provider(Arc::new(openai), breaker)
            .router(Router::embedded())
            .cache(Arc::new(MemoryCache::new()))
            .key_deriver(KeyDeriver::new(*b"gateway-tests-secret-key-32bytes"))
            .usage_sink(sink.clone())
            .build()
            .unwrap();
        let gateway = Gateway::new(adapter.clone(), config(limits), None)
            .unwrap()
            .start()
            .await
            .unwrap();
        let base = format!("http://{}", gateway.local_addr());
        Self {
            standins,
            adapter,
            sink,
            gateway,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn chat(&self, key: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// A gateway whose Bedrock answers every stream with one text delta (`Hel`) and then holds
/// it open (a gate that never opens), routed as model `claude`; plain requests go to
/// OpenAI's stand-in as model `gpt-4`.
pub struct StalledStreams {
    gateway: Option<RunningGateway>,
    pub base: String,
    pub sink: Arc<MemoryUsageSink>,
    pub bedrock: ChunkedServer,
    pub standins: StandIns,
    held: Gate,
}

impl StalledStreams {
    pub async fn start(limits: Limits) -> Self {
        let held = Gate::new();
        let frames = ConverseStreamBody::text_reply(&["Hel", "lo"], 10, 2);
        let bedrock = ChunkedServer::start(
            ChunkedResponse::event_stream(frames.frames()).hold_before(2, &held),
        )
        .await
        .unwrap();
        let standins = StandIns::start().await;
        let bedrock_provider = BedrockProvider::new(
            standins
                .bedrock_config()
                .endpoint_url(bedrock.uri())
                .build(),
        )
        .await;
        let openai = OpenAiProvider::new(standins.openai_config().build()).unwrap();
        let sink = Arc::new(MemoryUsageSink::default());
        let adapter = FailoverAdapter::builder()
            .provider(Arc::new(bedrock_provider), BreakerConfig::default())
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
        let gateway = Gateway::new(adapter, config(limits), None)
            .unwrap()
            .start()
            .await
            .unwrap();
        let base = format!("http://{}", gateway.local_addr());
        Self {
            gateway: Some(gateway),
            base,
            sink,
            bedrock,
            standins,
            held,
        }
    }

    /// Begins the drain.
    pub fn drain(&self) {
        if let Some(gateway) = &self.gateway {
            gateway.shutdown_handle().drain();
        }
    }

    /// Waits for the drain to end.
    pub async fn wait(&mut self) -> failover_server::DrainReport {
        self.gateway.take().expect("waited once").wait().await
    }

    /// A stream of model `claude`, read until its first text has arrived and handed on
    /// still open.
    pub async fn open_stream(
        &self,
        http: &reqwest::Client,
        text: String,
    ) -> (
        String,
        impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + use<>,
    ) {
        use futures::StreamExt;
        let response = http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(ACME_KEY)
            .json(&serde_json::json!({"model": "claude", "stream": true,
                "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut received = String::new();
        while !received.contains("Hel") {
            let bytes = body.next().await.expect("the first text arrives").unwrap();
            received.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        (received, body)
    }
}

impl Drop for StalledStreams {
    fn drop(&mut self) {
        self.held.open();
    }
}

pub fn ask(model: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}
