//! The cache is optional: a dead, restarted, black-holed or failed-over server costs a
//! request at most the cache budget, and the cache comes back by itself.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use failover_cache::{Cache, CacheErrorKind, CacheKey};
use failover_core::AdapterConfig;
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig};
use failover_provider::CompletionRequest;
use failover_testenv::require_service;
use failover_testenv::services::redis as redis_service;
use failover_testenv::services::{BlackHole, free_port};
use failover_testkit::suites::cache::sample_completion;

failover_testenv::service_test_main! {
    service: "redis-server",
    available: failover_testenv::services::find_binary("redis-server", std::env::var_os("PATH").as_deref()).ok_or("`redis-server` was not found on PATH"),
    tests: [
        killed_server_costs_the_budget_then_a_restart_brings_the_cache_back,
        a_black_holed_endpoint_costs_each_lookup_at_most_its_timeout,
        a_server_that_is_down_at_start_does_not_stop_the_cache_from_being_built,
        a_readonly_reply_replaces_the_connection,
        one_log_line_per_state_change_not_per_request,
        health_is_degraded_while_the_server_is_down_and_clears_when_it_answers,
    ],
}

const LOOKUP_BUDGET: Duration = Duration::from_millis(50);
const WRITE_BUDGET: Duration = Duration::from_millis(50);
/// Scheduling slack on a shared 2-core machine running debug builds.
const SLACK: Duration = Duration::from_millis(250);

fn request() -> CompletionRequest {
    CompletionRequest::prompt(
        "tenant-outage",
        "agent",
        "gpt-4",
        "What is the capital of France?",
    )
    .temperature(0.3)
    .max_tokens(20)
}

fn adapter_config() -> AdapterConfig {
    let mut config = AdapterConfig::default().with_cache_lookup_budget(LOOKUP_BUDGET);
    config.cache_write_budget = WRITE_BUDGET;
    config
}

fn some_key() -> CacheKey {
    failover_testkit::suites::cache::World::new().key("a", "q")
}

async fn killed_server_costs_the_budget_then_a_restart_brings_the_cache_back() {
    let server = require_service!(redis_service::spawn_owned());
    let cache = Arc::new(common::cache(&server.url()));
    let (adapter, bedrock) = common::adapter(cache.clone(), adapter_config());

    let first = adapter.generate_completion(request()).await.unwrap();
    let second = adapter.generate_completion(request()).await.unwrap();
    assert!(
        !first.cached && second.cached,
        "warm: the second call is a hit"
    );
    assert_eq!(bedrock.call_count(), 1);

    server.stop();
    for i in 0..5 {
        let started = Instant::now();
        let answer = adapter.generate_completion(request()).await.unwrap();
        let took = started.elapsed();
        assert!(
            !answer.cached,
            "call {i}: no cache while the server is down"
        );
        assert_eq!(answer.content, "Paris", "call {i}: served by the provider");
        assert!(
            took < LOOKUP_BUDGET + WRITE_BUDGET + SLACK,
            "call {i} took {took:?}: more than the cache budgets"
        );
    }
    assert_eq!(bedrock.call_count(), 6);
    let health = cache.health();
    assert!(!health.available, "{health:?}");
    assert!(health.errors + health.timeouts >= 5, "{health:?}");
    let report = adapter
        .health()
        .cache
        .expect("the adapter reports its cache");
    assert!(!report.available);

    // Same process, same cache object: after the restart it reconnects by itself.
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut calls = 0;
    loop {
        calls += 1;
        let answer = adapter.generate_completion(request()).await.unwrap();
        if answer.cached {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not come back after {calls} calls"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.health().available);
    assert!(calls <= 3, "back within a couple of calls, took {calls}");
}

async fn a_black_holed_endpoint_costs_each_lookup_at_most_its_timeout() {
    let hole = BlackHole::start().unwrap();
    let timeout = Duration::from_millis(100);
    let cache = ElastiCacheCache::new(
        ElastiCacheConfig::new(format!("redis://{}", hole.addr()), common::fresh_key())
            .with_operation_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_purge_timeout(timeout),
    )
    .unwrap();
    let key = some_key();
    for i in 0..5 {
        let started = Instant::now();
        let error = cache.get(&key).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind, CacheErrorKind::Timeout, "get {i}: {error}");
        assert!(took < timeout + SLACK, "get {i} took {took:?}");
    }
    let started = Instant::now();
    assert!(
        cache
            .put(&key, sample_completion("x"), Duration::from_secs(60))
            .await
            .is_err()
    );
    assert!(cache.purge_tenant(key.tenant()).await.is_err());
    assert!(started.elapsed() < 2 * timeout + SLACK);
    assert!(
        hole.accepted() >= 1,
        "the client did connect; the server never answered"
    );
    let health = cache.health();
    assert_eq!(health.timeouts, 7, "{health:?}");
    assert!(!health.available);

    // Through the adapter: the lookup budget bounds every request.
    let (adapter, bedrock) = common::adapter(Arc::new(cache), adapter_config());
    for i in 0..3 {
        let started = Instant::now();
        let answer = adapter.generate_completion(request()).await.unwrap();
        let took = started.elapsed();
        assert!(!answer.cached);
        assert!(
            took < LOOKUP_BUDGET + WRITE_BUDGET + SLACK,
            "request {i} took {took:?}"
        );
    }
    assert_eq!(bedrock.call_count(), 3);
}

async fn a_server_that_is_down_at_start_does_not_stop_the_cache_from_being_built() {
    let port = free_port().unwrap(); // nothing listens there
    let cache = common::cache(&format!("redis://127.0.0.1:{port}"));
    let started = Instant::now();
    let error = cache.get(&some_key()).await.unwrap_err();
    assert_eq!(error.kind, CacheErrorKind::Unavailable, "{error}");
    assert!(started.elapsed() < Duration::from_millis(200) + SLACK);
    assert_eq!(cache.health().errors, 1);
}

async fn a_readonly_reply_replaces_the_connection() {
    let primary = require_service!(redis_service::spawn_owned());
    let other = require_service!(redis_service::spawn_owned());
    let cache = common::cache(&primary.url());
    let key = some_key();
    cache
        .put(&key, sample_completion("x"), Duration::from_secs(60))
        .await
        .unwrap();

    let mut admin = common::raw(&primary.url()).await;
    let connections = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    // The node becomes a replica, as an old primary does after an ElastiCache failover.
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(other.port())
        .query_async(&mut admin)
        .await
        .unwrap();
    let before: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    let error = cache
        .put(&key, sample_completion("y"), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        error.message.to_lowercase().contains("read only"),
        "{error}"
    );
    assert_eq!(cache.stats().reconnects, 1);

    // It is a primary again; the next operation runs on a new connection.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache
        .put(&key, sample_completion("z"), Duration::from_secs(60))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "writes never worked again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        connections(after) > connections(before),
        "a new connection was opened after READONLY"
    );
    assert_eq!(cache.get(&key).await.unwrap().unwrap().content, "z");
}

/// Counts the crate's warn/info log lines about one endpoint. Installed as the global
/// subscriber and filtered by the `endpoint` field: a thread-local default misses events
/// when another test thread registers the same callsite concurrently (tracing caches a
/// callsite's interest process-wide), which made this test flaky under load.
#[derive(Clone, Default)]
struct LineCounter {
    lines: Arc<AtomicUsize>,
    endpoint: Arc<std::sync::OnceLock<String>>,
}

struct EndpointField<'a> {
    needle: &'a str,
    found: bool,
}

impl tracing::field::Visit for EndpointField<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "endpoint" && format!("{value:?}").contains(self.needle) {
            self.found = true;
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LineCounter {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let Some(needle) = self.endpoint.get() else {
            return;
        };
        if meta.target().starts_with("failover_elasticache")
            && *meta.level() <= tracing::Level::INFO
        {
            let mut visitor = EndpointField {
                needle,
                found: false,
            };
            event.record(&mut visitor);
            if visitor.found {
                self.lines.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

async fn one_log_line_per_state_change_not_per_request() {
    use tracing_subscriber::layer::SubscriberExt;
    let server = require_service!(redis_service::spawn_owned());
    let counter = LineCounter::default();
    // The server's own `host:port`: only lines about this test's server are counted.
    let url = server.url();
    let _ = counter
        .endpoint
        .set(url.trim_start_matches("redis://").to_owned());
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(counter.clone()))
        .expect("the only global subscriber of this test binary");
    let lines = || counter.lines.load(Ordering::SeqCst);

    let cache = common::cache(&server.url());
    let key = some_key();
    for _ in 0..5 {
        cache.get(&key).await.unwrap();
    }
    assert_eq!(lines(), 0, "healthy: silent");

    server.stop();
    for _ in 0..20 {
        assert!(cache.get(&key).await.is_err());
    }
    assert_eq!(lines(), 1, "one line for going down, not one per request");

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.get(&key).await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        cache.get(&key).await.unwrap();
    }
    assert_eq!(lines(), 2, "one more line for coming back");
}

/// `degraded` names the outage while the server is stopped (after an operation found it
/// gone) and clears with the first operation that succeeds after the restart.
async fn health_is_degraded_while_the_server_is_down_and_clears_when_it_answers() {
    let server = require_service!(redis_service::spawn_owned());
    let cache = common::cache(&server.url());
    let key = some_key();
    cache
        .put(&key, sample_completion("x"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    assert_eq!(cache.health().degraded, None, "healthy");

    server.stop();
    assert!(cache.get(&key).await.is_err());
    let health = cache.health();
    let reason = health.degraded.expect("degraded while the server is down");
    assert!(
        reason.contains("redis is unreachable") || reason.contains("not answering in time"),
        "{reason}"
    );
    assert!(!health.available);
    // Still degraded while it stays down.
    assert!(cache.get(&key).await.is_err());
    assert!(cache.health().degraded.is_some());

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the cache did not reach the restarted server: {:?}",
            cache.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.health().degraded, None, "{:?}", cache.health());
    assert!(cache.health().available);
}
