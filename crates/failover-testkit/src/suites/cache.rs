//! The behaviour suite of [`Cache`]: every backend runs the same checks.
//!
//! Each check is a `pub async fn` taking the backend as `Arc<dyn Cache>`; the
//! [`cache_behaviour_suite!`](crate::cache_behaviour_suite) macro expands to one
//! `#[tokio::test]` per check, so each reports by name:
//!
//! ```ignore
//! use std::sync::Arc;
//! use failover_cache::{Cache, MemoryCache};
//!
//! async fn memory() -> Arc<dyn Cache> {
//!     Arc::new(MemoryCache::new())
//! }
//!
//! failover_testkit::cache_behaviour_suite!(memory);
//! ```
//!
//! The factory is anything callable with no argument that returns a future of
//! `Arc<dyn Cache>` (an `async fn`, or a closure returning an `async` block), so a backend
//! that needs a server can start or discover one there. The calling crate needs `tokio`
//! (with `macros` and `rt-multi-thread`) as a dev-dependency.
//!
//! Every check owns its world: it draws a random key secret and random tenant ids, so
//! checks can run in parallel against one shared server, and re-runs never see each
//! other's entries.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failover_cache::{Cache, CacheKey, CacheKeyInput, CachedCompletion, KeyDeriver};
use failover_provider::{
    FinishReason, Message, ResponseFormat, Sampling, TokenUsage, ToolConfig, Usd,
};
use rust_decimal::Decimal;

/// A TTL long enough never to expire during a check.
const LONG_TTL: Duration = Duration::from_secs(300);

/// Random bytes from std's per-process random hasher keys (no RNG dependency needed).
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

/// A fresh, random world for one check: its own key secret and tenant-id prefix.
#[derive(Debug)]
pub struct World {
    deriver: KeyDeriver,
    prefix: String,
}

impl World {
    /// A world with a random secret and a random tenant prefix.
    pub fn new() -> Self {
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&random_u64().to_le_bytes());
        }
        Self {
            deriver: KeyDeriver::new(secret),
            prefix: format!("suite-{:016x}", random_u64()),
        }
    }

    /// The world's key deriver.
    pub fn deriver(&self) -> &KeyDeriver {
        &self.deriver
    }

    /// A tenant id unique to this world.
    pub fn tenant(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The key of a one-message request of `tenant` (a world tenant name) with `prompt`.
    pub fn key(&self, tenant: &str, prompt: &str) -> CacheKey {
        let tenant_id = self.tenant(tenant);
        let messages = [Message::user(prompt)];
        self.deriver.derive(&CacheKeyInput {
            tenant_id: &tenant_id,
            model: "gpt-4",
            messages: &messages,
            temperature: Some(0.1),
            max_tokens: Some(10),
            stop: &[],
            response_format: &ResponseFormat::Text,
            tools: &ToolConfig::NONE,
            sampling: &Sampling::NONE,
        })
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// A completion with every field set to a non-default value.
pub fn sample_completion(content: &str) -> CachedCompletion {
    CachedCompletion {
        provider: "bedrock".to_owned(),
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned(),
        content: content.to_owned(),
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: TokenUsage {
            input_tokens: 12,
            output_tokens: 34,
            cache_read_tokens: 5,
            cache_write_tokens: 6,
        },
        estimated_cost: Usd::new(Decimal::new(123_456_789, 12)),
        stored_at_unix_ms: 1_718_000_000_123,
    }
}

/// A lookup before any `put` misses; after `put` it hits.
pub async fn miss_then_hit_after_put(cache: Arc<dyn Cache>) {
    let world = World::new();
    let key = world.key("a", "What is 2+2?");
    assert_eq!(cache.get(&key).await.unwrap(), None, "fresh key must miss");
    cache
        .put(&key, sample_completion("4"), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(sample_completion("4")),
        "hit after put"
    );
    let health = cache.health();
    assert!(health.hits >= 1 && health.misses >= 1, "{health:?}");
    assert_eq!(health.backend, cache.name());
    assert_eq!(health.degraded, None, "a healthy cache: {health:?}");
}

/// Every field of the value comes back exactly: unicode, JSON text, exact decimal cost,
/// every token class and finish reason.
pub async fn value_roundtrips_exactly(cache: Arc<dyn Cache>) {
    let world = World::new();
    let values = [
        sample_completion("ünïcödé 🦀 \u{0} \"quoted\" \\ \n newline"),
        CachedCompletion {
            content: r#"{"answer": 4, "nested": {"list": [1, 2.5, null]}}"#.to_owned(),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Other("provider_specific".to_owned()),
            estimated_cost: Usd::new(Decimal::new(1, 28)),
            ..sample_completion("")
        },
        CachedCompletion {
            content: "x".repeat(64 * 1024),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Length,
            estimated_cost: Usd::ZERO,
            usage: TokenUsage::default(),
            ..sample_completion("")
        },
    ];
    for (i, value) in values.into_iter().enumerate() {
        let key = world.key("a", &format!("prompt {i}"));
        cache.put(&key, value.clone(), LONG_TTL).await.unwrap();
        let back = cache.get(&key).await.unwrap().expect("stored value");
        assert_eq!(back, value, "value {i} must roundtrip exactly");
        assert_eq!(
            back.estimated_cost.amount().to_string(),
            value.estimated_cost.amount().to_string(),
            "cost {i} keeps its exact decimal text"
        );
    }
}

/// The same request from two tenants has two keys; neither tenant sees the other's entry.
pub async fn tenant_isolation(cache: Arc<dyn Cache>) {
    let world = World::new();
    let a = world.key("a", "same prompt");
    let b = world.key("b", "same prompt");
    assert_ne!(a, b, "two tenants, two keys");
    assert_ne!(a.tenant(), b.tenant(), "two tenants, two tags");
    cache
        .put(&a, sample_completion("for a"), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&b).await.unwrap(),
        None,
        "b must not see a's entry"
    );
    cache
        .put(&b, sample_completion("for b"), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&a).await.unwrap().map(|v| v.content),
        Some("for a".to_owned())
    );
    assert_eq!(
        cache.get(&b).await.unwrap().map(|v| v.content),
        Some("for b".to_owned())
    );
}

/// An entry is gone after its TTL (real time: 1.5 s TTL, 2.5 s sleep — generous, so the
/// "alive before its TTL" read cannot miss on a loaded machine, and a networked backend's
/// TTL granularity does not matter); a longer-lived one stays.
pub async fn ttl_expiry(cache: Arc<dyn Cache>) {
    let world = World::new();
    let short = world.key("a", "short-lived");
    let long = world.key("a", "long-lived");
    cache
        .put(
            &short,
            sample_completion("short"),
            Duration::from_millis(1_500),
        )
        .await
        .unwrap();
    cache
        .put(&long, sample_completion("long"), LONG_TTL)
        .await
        .unwrap();
    assert!(
        cache.get(&short).await.unwrap().is_some(),
        "alive before its TTL"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        cache.get(&short).await.unwrap(),
        None,
        "an expired entry must never be returned"
    );
    assert!(cache.get(&long).await.unwrap().is_some(), "long TTL stays");
}

/// `purge_tenant` removes every entry of one tenant and none of another.
pub async fn purge_tenant_removes_only_that_tenant(cache: Arc<dyn Cache>) {
    let world = World::new();
    let prompts: Vec<String> = (0..5).map(|i| format!("prompt {i}")).collect();
    for prompt in &prompts {
        for tenant in ["a", "b"] {
            cache
                .put(
                    &world.key(tenant, prompt),
                    sample_completion(tenant),
                    LONG_TTL,
                )
                .await
                .unwrap();
        }
    }
    let tag_a = world.deriver().tenant_tag(&world.tenant("a"));
    let removed = cache.purge_tenant(&tag_a).await.unwrap();
    assert!(
        removed == 0 || removed == 5,
        "purge reports 5 removed (or 0 when it cannot know), got {removed}"
    );
    for prompt in &prompts {
        assert_eq!(
            cache.get(&world.key("a", prompt)).await.unwrap(),
            None,
            "a's entry must be gone"
        );
        assert_eq!(
            cache
                .get(&world.key("b", prompt))
                .await
                .unwrap()
                .map(|v| v.content),
            Some("b".to_owned()),
            "b's entry must stay"
        );
    }
    let tag_unknown = world.deriver().tenant_tag(&world.tenant("nobody"));
    assert_eq!(cache.purge_tenant(&tag_unknown).await.unwrap(), 0);
}

/// A second `put` under a key replaces the first value.
pub async fn overwrite_replaces(cache: Arc<dyn Cache>) {
    let world = World::new();
    let key = world.key("a", "overwritten");
    cache
        .put(&key, sample_completion("first"), LONG_TTL)
        .await
        .unwrap();
    cache
        .put(&key, sample_completion("second"), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap().map(|v| v.content),
        Some("second".to_owned())
    );
}

/// Many concurrent puts and gets on distinct and shared keys: no panic, no error, and every
/// key reads back a value written for it.
pub async fn concurrent_puts_and_gets(cache: Arc<dyn Cache>) {
    let world = Arc::new(World::new());
    let tasks = 16;
    let per_task = 25;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let cache = cache.clone();
        let world = world.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let own = world.key(&format!("t{}", task % 4), &format!("{task}-{i}"));
                let content = format!("{task}-{i}");
                cache
                    .put(&own, sample_completion(&content), LONG_TTL)
                    .await
                    .unwrap();
                let shared = world.key("shared", "everyone writes this");
                cache
                    .put(
                        &shared,
                        sample_completion(&format!("shared {task}")),
                        LONG_TTL,
                    )
                    .await
                    .unwrap();
                let back = cache.get(&own).await.unwrap().map(|v| v.content);
                assert_eq!(back, Some(content), "own key reads back its value");
                let shared_back = cache.get(&shared).await.unwrap().map(|v| v.content);
                assert!(
                    shared_back.is_some_and(|c| c.starts_with("shared ")),
                    "shared key holds one of the written values"
                );
            }
        }));
    }
    for handle in handles {
        handle.await.expect("no task panicked");
    }
    for task in 0..tasks {
        for i in 0..per_task {
            let key = world.key(&format!("t{}", task % 4), &format!("{task}-{i}"));
            assert_eq!(
                cache.get(&key).await.unwrap().map(|v| v.content),
                Some(format!("{task}-{i}"))
            );
        }
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cache_checks {
    ($callback:ident, $($args:tt)*) => {
        $crate::$callback!(@check $($args)*, cache_miss_then_hit_after_put, miss_then_hit_after_put);
        $crate::$callback!(@check $($args)*, cache_value_roundtrips_exactly, value_roundtrips_exactly);
        $crate::$callback!(@check $($args)*, cache_tenant_isolation, tenant_isolation);
        $crate::$callback!(@check $($args)*, cache_ttl_expiry, ttl_expiry);
        $crate::$callback!(@check $($args)*, cache_purge_tenant_removes_only_that_tenant, purge_tenant_removes_only_that_tenant);
        $crate::$callback!(@check $($args)*, cache_overwrite_replaces, overwrite_replaces);
        $crate::$callback!(@check $($args)*, cache_concurrent_puts_and_gets, concurrent_puts_and_gets);
    };
}

/// Expands to one `#[tokio::test]` per cache check, each building its backend with
/// `$factory` (callable with no argument, returning a future of `Arc<dyn Cache>`).
///
/// For a backend that needs no server (the memory cache). Invoke it once per module; wrap
/// it in `mod name { ... }` to run it for several backends in one file. The calling crate
/// needs `tokio` as a dev-dependency. A backend that needs a server uses
/// [`cache_behaviour_tests!`](crate::cache_behaviour_tests) under the service harness, so
/// a missing server is reported as ignored, never as passed.
#[macro_export]
macro_rules! cache_behaviour_suite {
    ($factory:expr) => {
        $crate::__cache_checks!(cache_behaviour_suite, $factory);
    };
    (@check $factory:expr, $name:ident, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::suites::cache::$check(($factory)().await).await;
        }
    };
}

/// The cache checks as a `Vec<`[`Check`](crate::suites::Check)`>` for a
/// service-backed test binary (`failover_testenv::service_test_main!`'s `suites:`). `$factory` is as for [`cache_behaviour_suite!`](crate::cache_behaviour_suite)
/// and is expanded into each check: it may capture `Copy` values (a mode, a port), which
/// each check then owns.
#[macro_export]
macro_rules! cache_behaviour_tests {
    ($factory:expr) => {{
        let mut tests = ::std::vec::Vec::new();
        $crate::__cache_checks!(cache_behaviour_tests, tests, $factory);
        tests
    }};
    (@check $tests:ident, $factory:expr, $name:ident, $check:ident) => {
        $tests.push($crate::suites::Check {
            name: ::std::string::String::from(::core::stringify!($name)),
            body: ::std::boxed::Box::new(move || {
                ::std::boxed::Box::pin(async move {
                    $crate::suites::cache::$check(($factory)().await).await;
                })
            }),
        });
    };
}
