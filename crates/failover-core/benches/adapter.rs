//! The adapter's own overhead: a cache miss answered at once by a scripted provider, and a
//! cache hit, both with the memory cache and the memory usage sink — with nothing observing,
//! with the Prometheus recorder, and with a `tracing` subscriber at INFO.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group};
use failover_breaker::BreakerConfig;
use failover_cache::MemoryCache;
use failover_core::FailoverAdapter;
use failover_provider::CompletionRequest;
use failover_telemetry::prometheus::{PrometheusMetrics, PrometheusRecorder};
use failover_testkit::ScriptedProvider;
use failover_usage::MemoryUsageSink;

fn adapter() -> FailoverAdapter {
    FailoverAdapter::builder()
        .provider(
            Arc::new(ScriptedProvider::always("bedrock", "4")),
            BreakerConfig::default(),
        )
        .provider(
            Arc::new(ScriptedProvider::always("openai", "4")),
            BreakerConfig::default(),
        )
        .cache(Arc::new(MemoryCache::new()))
        .usage_sink(Arc::new(MemoryUsageSink::with_capacity(50_000_000)))
        .build()
        .expect("bench adapter builds")
}

fn request(prompt: String) -> CompletionRequest {
    CompletionRequest::prompt("bench-tenant", "bench-agent", "gpt-4", prompt)
        .temperature(0.1)
        .max_tokens(10)
}

/// What observes the adapter during a run.
#[derive(Clone, Copy)]
enum Observer {
    /// No `metrics` recorder, no `tracing` subscriber: the instrumentation's floor.
    Nothing,
    /// The Prometheus recorder (as `failover serve` and `failover demo --metrics` install it).
    Prometheus,
    /// A `tracing` subscriber at INFO formatting to a null writer (the engine's spans are
    /// DEBUG).
    TracingInfo,
}

impl Observer {
    fn name(self) -> &'static str {
        match self {
            Observer::Nothing => "no_recorder",
            Observer::Prometheus => "prometheus",
            Observer::TracingInfo => "tracing_info",
        }
    }

    /// Makes `recorder` (Prometheus) or an INFO subscriber the thread's default, as this
    /// observer asks, until the guards are dropped.
    fn observe(
        self,
        recorder: &PrometheusRecorder,
    ) -> (
        Option<metrics::LocalRecorderGuard<'_>>,
        Option<tracing::subscriber::DefaultGuard>,
    ) {
        let recorder = matches!(self, Observer::Prometheus)
            .then(|| metrics::set_default_local_recorder(recorder));
        let subscriber = matches!(self, Observer::TracingInfo).then(|| {
            tracing::subscriber::set_default(
                tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::INFO)
                    .with_writer(std::io::sink)
                    .finish(),
            )
        });
        (recorder, subscriber)
    }
}

fn bench_adapter(c: &mut Criterion) {
    for observer in [
        Observer::Nothing,
        Observer::Prometheus,
        Observer::TracingInfo,
    ] {
        // The thread's default recorder and subscriber for this group only; the adapters
        // are built (and their handles registered) inside it.
        let (recorder, prometheus) = PrometheusMetrics::recorder().unwrap();
        let _observing = observer.observe(&recorder);
        bench_paths(c, observer.name());
        if matches!(observer, Observer::Prometheus) {
            // The recorder saw the runs: the exposition holds the requests.
            assert!(prometheus.render().contains("failover_requests"));
        }
    }
}

fn bench_paths(c: &mut Criterion, observer: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group(format!("adapter/{observer}"));
    let miss_adapter = adapter();
    let counter = AtomicU64::new(0);
    group.bench_function("cache_miss_provider_answers_at_once", |b| {
        b.to_async(&runtime).iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let request = request(format!("What is {n} + 2? Answer with just the number."));
            let adapter = &miss_adapter;
            async move { adapter.generate_completion(request).await.unwrap() }
        })
    });

    let hit_adapter = adapter();
    let prompt = "What is 2 + 2? Answer with just the number.".to_owned();
    runtime
        .block_on(hit_adapter.generate_completion(request(prompt.clone())))
        .unwrap();
    group.bench_function("cache_hit", |b| {
        b.to_async(&runtime).iter(|| {
            let request = request(prompt.clone());
            let adapter = &hit_adapter;
            async move {
                let completion = adapter.generate_completion(request).await.unwrap();
                assert!(completion.cached);
                completion
            }
        })
    });
    group.finish();
}

/// Instruction counts: with `FAILOVER_BENCH_ITERATIONS=N` (and `FAILOVER_BENCH_PATH=miss|hit`,
/// `FAILOVER_BENCH_OBSERVER=no_recorder|prometheus|tracing_info`) the binary runs N requests
/// of one path and exits, for `valgrind --tool=callgrind`: two runs with different N give
/// the instructions per request, setup cancelled out, whatever the machine's load.
fn count(iterations: u64) {
    let path = std::env::var("FAILOVER_BENCH_PATH").unwrap_or_else(|_| "miss".into());
    let observer = match std::env::var("FAILOVER_BENCH_OBSERVER").as_deref() {
        Ok("prometheus") => Observer::Prometheus,
        Ok("tracing_info") => Observer::TracingInfo,
        _ => Observer::Nothing,
    };
    let (recorder, _prometheus) = PrometheusMetrics::recorder().unwrap();
    let _observing = observer.observe(&recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let adapter = adapter();
    let prompt = "What is 2 + 2? Answer with just the number.".to_owned();
    runtime.block_on(async {
        adapter
            .generate_completion(request(prompt.clone()))
            .await
            .unwrap();
        for n in 0..iterations {
            let prompt = if path == "hit" {
                prompt.clone()
            } else {
                format!("What is {n} + 2? Answer with just the number.")
            };
            adapter.generate_completion(request(prompt)).await.unwrap();
        }
    });
}

criterion_group!(benches, bench_adapter);

fn main() {
    if let Some(iterations) = std::env::var("FAILOVER_BENCH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        count(iterations);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
