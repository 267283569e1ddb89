//! The behaviour suite of [`UsageSink`]: every backend runs the same checks.
//!
//! Each check is a `pub async fn` taking the backend as `Arc<dyn UsageSink>`; the
//! [`usage_sink_behaviour_suite!`](crate::usage_sink_behaviour_suite) macro expands to one
//! `#[tokio::test]` per check:
//!
//! ```ignore
//! use std::sync::Arc;
//! use failover_usage::{MemoryUsageSink, UsageSink};
//!
//! async fn memory() -> Arc<dyn UsageSink> {
//!     Arc::new(MemoryUsageSink::new())
//! }
//!
//! failover_testkit::usage_sink_behaviour_suite!(memory);
//! ```
//!
//! The factory is anything callable with no argument returning a future of
//! `Arc<dyn UsageSink>`, so a backend needing a server (DynamoDB via moto) can start or
//! discover it there. The calling crate needs `tokio` as a dev-dependency.
//!
//! Every check uses tenant ids unique to its run and queries by tenant, so checks can share
//! one table and re-runs never see each other's records.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use failover_provider::{ErrorKind, RequestId, TokenUsage, Usd};
use failover_usage::{UsageOutcome, UsageQuery, UsageRecord, UsageSink};
use rust_decimal::Decimal;

fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// Ids unique to one check run.
#[derive(Debug, Clone)]
pub struct Run {
    prefix: String,
    /// A base timestamp (now, in ms since the epoch) the check's records are placed around.
    pub base_ms: u64,
}

impl Run {
    /// A run with a random prefix.
    pub fn new() -> Self {
        Self {
            prefix: format!("suite-{:016x}", random_u64()),
            base_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        }
    }

    /// A tenant id unique to this run.
    pub fn tenant(&self, name: &str) -> String {
        format!("{}-tenant-{name}", self.prefix)
    }

    /// A request id unique to this run.
    pub fn request(&self, name: &str) -> RequestId {
        RequestId::new(format!("{}-req-{name}", self.prefix))
    }

    /// A successful record of tenant `tenant`, agent `agent`, `ms_offset` after `base_ms`,
    /// with 100 input and 50 output tokens costing `cost`.
    pub fn record(
        &self,
        request: &str,
        tenant: &str,
        agent: &str,
        ms_offset: u64,
        cost: Decimal,
    ) -> UsageRecord {
        UsageRecord {
            request_id: self.request(request),
            call_id: format!("{}#1", self.request(request)),
            attempt: 1,
            tenant_id: self.tenant(tenant),
            agent_id: agent.to_owned(),
            timestamp_unix_ms: self.base_ms + ms_offset,
            provider: "bedrock".to_owned(),
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned(),
            logical_model: "gpt-4".to_owned(),
            usage: TokenUsage::new(100, 50),
            usage_estimated: false,
            cost: Usd::new(cost),
            latency_ms: 42,
            outcome: UsageOutcome::Success,
            cached: false,
            fallback_used: false,
            streamed: false,
        }
    }
}

impl Default for Run {
    fn default() -> Self {
        Self::new()
    }
}

fn cents(n: i64) -> Decimal {
    Decimal::new(n, 2)
}

/// Recorded records are visible in `stats` after `flush`, with their tokens and cost.
pub async fn records_visible_in_stats_after_flush(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    for i in 0..3 {
        sink.record(run.record(&format!("r{i}"), "a", "agent", i, cents(1)))
            .unwrap();
    }
    sink.flush().await.unwrap();
    let stats = sink
        .stats(&UsageQuery::tenant(run.tenant("a")))
        .await
        .unwrap();
    assert_eq!(stats.records, 3);
    assert_eq!(stats.successes, 3);
    assert_eq!(stats.tokens, TokenUsage::new(300, 150));
    assert_eq!(stats.cost, Usd::new(cents(3)));
    assert_eq!(stats.by_tenant[&run.tenant("a")].calls, 3);
    assert_eq!(stats.by_provider["bedrock"].calls, 3);
    let health = sink.health();
    assert!(health.accepted >= 3, "{health:?}");
    assert_eq!(health.backend, sink.name());
    assert_eq!(health.degraded, None, "a healthy sink: {health:?}");
}

/// Requests no provider could be called for (`Rejected`) are counted as such, in the
/// totals and in the buckets, with zero cost.
pub async fn rejected_outcomes_are_counted(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    for i in 0..4u64 {
        let mut record = run.record(&format!("r{i}"), "a", "x", i, cents(1));
        if i % 2 == 1 {
            record.outcome = UsageOutcome::Rejected;
            record.usage = TokenUsage::default();
            record.cost = Usd::ZERO;
        }
        sink.record(record).unwrap();
    }
    sink.flush().await.unwrap();
    let stats = sink
        .stats(&UsageQuery::tenant(run.tenant("a")))
        .await
        .unwrap();
    assert_eq!(
        (stats.records, stats.successes, stats.rejected),
        (4, 2, 2),
        "{stats:?}"
    );
    assert_eq!(stats.cost, Usd::new(cents(2)));
    assert_eq!(stats.by_tenant[&run.tenant("a")].rejected, 2);
    assert_eq!(stats.by_agent["x"].rejected, 2);
}

/// After `shutdown` the records accepted before are kept and readable, `record` fails with
/// `Closed`, and a second `shutdown` is harmless.
pub async fn shutdown_keeps_what_was_accepted_and_refuses_the_rest(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    for i in 0..5 {
        sink.record(run.record(&format!("r{i}"), "a", "x", i, cents(1)))
            .unwrap();
    }
    sink.shutdown().await.unwrap();
    let refused = sink.record(run.record("late", "a", "x", 9, cents(1)));
    assert!(
        matches!(refused, Err(failover_usage::UsageError::Closed)),
        "{refused:?}"
    );
    sink.shutdown().await.unwrap();
    let stats = sink
        .stats(&UsageQuery::tenant(run.tenant("a")))
        .await
        .unwrap();
    assert_eq!(stats.records, 5);
    assert_eq!(stats.cost, Usd::new(cents(5)));
}

/// `stats` filters by tenant, by agent, and by both.
pub async fn stats_filter_by_tenant_and_agent(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    sink.record(run.record("1", "a", "x", 0, cents(1))).unwrap();
    sink.record(run.record("2", "a", "y", 0, cents(2))).unwrap();
    sink.record(run.record("3", "b", "x", 0, cents(4))).unwrap();
    sink.flush().await.unwrap();
    let cost = |stats: failover_usage::UsageStats| (stats.records, stats.cost);
    assert_eq!(
        cost(
            sink.stats(&UsageQuery::tenant(run.tenant("a")))
                .await
                .unwrap()
        ),
        (2, Usd::new(cents(3)))
    );
    assert_eq!(
        cost(
            sink.stats(&UsageQuery::tenant(run.tenant("b")))
                .await
                .unwrap()
        ),
        (1, Usd::new(cents(4)))
    );
    assert_eq!(
        cost(
            sink.stats(&UsageQuery::tenant(run.tenant("a")).with_agent("x"))
                .await
                .unwrap()
        ),
        (1, Usd::new(cents(1)))
    );
    assert_eq!(
        cost(
            sink.stats(&UsageQuery::tenant(run.tenant("nobody")))
                .await
                .unwrap()
        ),
        (0, Usd::ZERO)
    );
}

/// `stats` filters by time: `from` inclusive, `to` exclusive.
pub async fn stats_filter_by_time_range(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    for (i, offset) in [0u64, 1_000, 2_000, 3_000].into_iter().enumerate() {
        sink.record(run.record(&format!("r{i}"), "a", "x", offset, cents(1)))
            .unwrap();
    }
    sink.flush().await.unwrap();
    let t = run.tenant("a");
    let b = run.base_ms;
    let count = |q: UsageQuery| {
        let sink = sink.clone();
        async move { sink.stats(&q).await.unwrap().records }
    };
    assert_eq!(
        count(UsageQuery::tenant(&t).between(b + 1_000, b + 3_000)).await,
        2
    );
    assert_eq!(count(UsageQuery::tenant(&t).since(b + 3_000)).await, 1);
    assert_eq!(count(UsageQuery::tenant(&t).until(b + 1)).await, 1);
    assert_eq!(
        count(UsageQuery::tenant(&t).between(b + 1, b + 1_000)).await,
        0
    );
    assert_eq!(count(UsageQuery::tenant(&t)).await, 4);
}

/// Recording the same (request id, attempt) twice counts once; another attempt counts.
pub async fn dedup_on_request_and_attempt(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    let first = run.record("dup", "a", "x", 0, cents(5));
    sink.record(first.clone()).unwrap();
    sink.record(first.clone()).unwrap();
    sink.flush().await.unwrap();
    sink.record(first.clone()).unwrap();
    let second_attempt = UsageRecord {
        call_id: format!("{}#2", first.request_id),
        attempt: 2,
        provider: "openai".to_owned(),
        fallback_used: true,
        ..first
    };
    sink.record(second_attempt).unwrap();
    sink.flush().await.unwrap();
    let stats = sink
        .stats(&UsageQuery::tenant(run.tenant("a")))
        .await
        .unwrap();
    assert_eq!(stats.records, 2, "duplicates count once");
    assert_eq!(stats.cost, Usd::new(cents(10)));
    assert_eq!(stats.fallbacks, 1);
}

/// Totals are exact decimals: 1 000 records of $0.001 sum to exactly $1, and outcomes
/// are counted per kind.
pub async fn totals_are_exact(sink: Arc<dyn UsageSink>) {
    let run = Run::new();
    let outcomes = [
        UsageOutcome::Success,
        UsageOutcome::Failed {
            kind: ErrorKind::Throttled,
        },
        UsageOutcome::Cancelled,
        UsageOutcome::CacheHit,
    ];
    for i in 0..1_000u64 {
        let mut record = run.record(&format!("r{i}"), "a", "x", i, Decimal::new(1, 3));
        record.outcome = outcomes[(i % 4) as usize];
        record.usage = TokenUsage {
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
        };
        sink.record(record).unwrap();
    }
    sink.flush().await.unwrap();
    let stats = sink
        .stats(&UsageQuery::tenant(run.tenant("a")))
        .await
        .unwrap();
    assert_eq!(stats.records, 1_000);
    assert_eq!(stats.cost, Usd::new(Decimal::ONE), "exactly one dollar");
    assert_eq!(stats.cost.to_string(), "$1");
    assert_eq!(
        (
            stats.successes,
            stats.failures,
            stats.cancelled,
            stats.cache_hits
        ),
        (250, 250, 250, 250)
    );
    assert_eq!(
        stats.tokens,
        TokenUsage {
            input_tokens: 1_000,
            output_tokens: 2_000,
            cache_read_tokens: 3_000,
            cache_write_tokens: 4_000,
        }
    );
}

/// Records from many concurrent tasks are all kept, each once.
pub async fn concurrent_records_all_kept(sink: Arc<dyn UsageSink>) {
    let run = Arc::new(Run::new());
    let mut handles = Vec::new();
    for task in 0..8 {
        let sink = sink.clone();
        let run = run.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..50 {
                let record = run.record(&format!("{task}-{i}"), "a", "x", 0, cents(1));
                sink.record(record.clone()).unwrap();
                sink.record(record).unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.expect("no task panicked");
    }
    sink.flush().await.unwrap();
    let stats = sink
        .stats(&UsageQuery::tenant(run.tenant("a")))
        .await
        .unwrap();
    assert_eq!(stats.records, 400);
    assert_eq!(stats.cost, Usd::new(cents(400)));
}

#[doc(hidden)]
#[macro_export]
macro_rules! __usage_sink_checks {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback!(@check $($args)*, usage_records_visible_in_stats_after_flush, records_visible_in_stats_after_flush);
        $crate::$callback!(@check $($args)*, usage_stats_filter_by_tenant_and_agent, stats_filter_by_tenant_and_agent);
        $crate::$callback!(@check $($args)*, usage_stats_filter_by_time_range, stats_filter_by_time_range);
        $crate::$callback!(@check $($args)*, usage_dedup_on_request_and_attempt, dedup_on_request_and_attempt);
        $crate::$callback!(@check $($args)*, usage_totals_are_exact, totals_are_exact);
        $crate::$callback!(@check $($args)*, usage_concurrent_records_all_kept, concurrent_records_all_kept);
        $crate::$callback!(@check $($args)*, usage_rejected_outcomes_are_counted, rejected_outcomes_are_counted);
        $crate::$callback!(@check $($args)*, usage_shutdown_keeps_what_was_accepted_and_refuses_the_rest, shutdown_keeps_what_was_accepted_and_refuses_the_rest);
    };
}

/// Expands to one `#[tokio::test]` per usage-sink check, each building its backend with
/// `$factory` (callable with no argument, returning a future of `Arc<dyn UsageSink>`).
///
/// For a backend that needs no server (the memory sink). Invoke it once per module. The
/// calling crate needs `tokio` as a dev-dependency. A backend that needs a server uses
/// [`usage_sink_behaviour_tests!`](crate::usage_sink_behaviour_tests) under the service
/// harness, so a missing server is reported as ignored, never as passed.
#[macro_export]
macro_rules! usage_sink_behaviour_suite {
    ($factory:expr) => {
        $crate::__usage_sink_checks!(usage_sink_behaviour_suite, $factory);
    };
    (@check $factory:expr, $name:ident, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::suites::usage::$check(($factory)().await).await;
        }
    };
}

/// The usage-sink checks as a `Vec<`[`Check`](crate::suites::Check)`>` for a
/// service-backed test binary (`failover_testenv::service_test_main!`'s `suites:`). `$factory` is as for
/// [`usage_sink_behaviour_suite!`](crate::usage_sink_behaviour_suite) and is expanded into each check:
/// it may capture `Copy` values (a mode, a port), which each check then owns.
#[macro_export]
macro_rules! usage_sink_behaviour_tests {
    ($factory:expr) => {{
        let mut tests = ::std::vec::Vec::new();
        $crate::__usage_sink_checks!(usage_sink_behaviour_tests, tests, $factory);
        tests
    }};
    (@check $tests:ident, $factory:expr, $name:ident, $check:ident) => {
        $tests.push($crate::suites::Check {
            name: ::std::string::String::from(::core::stringify!($name)),
            body: ::std::boxed::Box::new(move || {
                ::std::boxed::Box::pin(async move {
                    $crate::suites::usage::$check(($factory)().await).await;
                })
            }),
        });
    };
}
