//! Coalescing across replicas through the [`SharedFlights`] seam: two adapters ("replicas")
//! over one memory cache (standing in for ElastiCache) and one in-memory claim table
//! (standing in for Redis).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_breaker::BreakerConfig;
use failover_cache::{Cache, CacheKey, KeyDeriver, MemoryCache};
use failover_core::FailoverAdapter;
use failover_core::flights::{ClaimFuture, ClaimId, FlightClaim, HeldFuture, SharedFlights};
use failover_provider::CompletionRequest;
use failover_testkit::{ScriptedProvider, Step};

/// Claims in a table shared by every adapter built with it; `wait` is the bound.
#[derive(Debug)]
struct Table {
    claims: Mutex<HashMap<CacheKey, ClaimId>>,
    next: AtomicU64,
    wait: Duration,
    released: AtomicU64,
}

impl Table {
    fn new(wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            claims: Mutex::default(),
            next: AtomicU64::new(0),
            wait,
            released: AtomicU64::new(0),
        })
    }
}

impl SharedFlights for Table {
    fn claim<'a>(&'a self, key: &'a CacheKey) -> ClaimFuture<'a> {
        Box::pin(async move {
            let mut claims = self.claims.lock().unwrap();
            if claims.contains_key(key) {
                return FlightClaim::Busy;
            }
            let claim = ClaimId(self.next.fetch_add(1, Ordering::SeqCst));
            claims.insert(*key, claim);
            FlightClaim::Lead(claim)
        })
    }

    fn release(&self, key: &CacheKey, claim: ClaimId) {
        let mut claims = self.claims.lock().unwrap();
        if claims.get(key) == Some(&claim) {
            claims.remove(key);
            self.released.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn held<'a>(&'a self, key: &'a CacheKey) -> HeldFuture<'a> {
        Box::pin(async move { self.claims.lock().unwrap().contains_key(key) })
    }

    fn wait_bound(&self) -> Duration {
        self.wait
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(5)
    }
}

fn replica(
    cache: &Arc<MemoryCache>,
    table: &Arc<Table>,
    provider: &Arc<ScriptedProvider>,
) -> FailoverAdapter {
    FailoverAdapter::builder()
        .provider(Arc::clone(provider) as _, BreakerConfig::default())
        .cache(Arc::clone(cache) as Arc<dyn Cache>)
        .key_deriver(KeyDeriver::from_secret(
            b"flights-test-secret-0123456789abcdef",
        ))
        .shared_flights(Arc::clone(table) as Arc<dyn SharedFlights>)
        .build()
        .unwrap()
}

fn request() -> CompletionRequest {
    CompletionRequest::prompt("tenant", "agent", "gpt-4", "What is 2+2?")
}

#[tokio::test]
async fn a_replica_waits_for_the_one_holding_the_flight() {
    let cache = Arc::new(MemoryCache::new());
    let table = Table::new(Duration::from_secs(10));
    let slow = Arc::new(
        ScriptedProvider::new("bedrock")
            .otherwise(Step::reply("4").after(Duration::from_millis(200))),
    );
    let idle = Arc::new(ScriptedProvider::always("bedrock", "never asked"));
    let first = replica(&cache, &table, &slow);
    let second = replica(&cache, &table, &idle);
    let leading = tokio::spawn(async move { first.generate_completion(request()).await });
    // The second asks once the first holds the claim.
    while table.claims.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let followed = second.generate_completion(request()).await.unwrap();
    let led = leading.await.unwrap().unwrap();
    assert_eq!((led.content.as_str(), led.cached), ("4", false));
    assert_eq!((followed.content.as_str(), followed.cached), ("4", true));
    assert_eq!(slow.call_count(), 1);
    assert_eq!(
        idle.call_count(),
        0,
        "the second replica made no provider call"
    );
    assert_eq!(
        table.released.load(Ordering::SeqCst),
        1,
        "the claim was released"
    );
}

#[tokio::test]
async fn a_claim_never_answered_costs_the_wait_bound_then_the_provider_answers() {
    let cache = Arc::new(MemoryCache::new());
    let table = Table::new(Duration::from_millis(100));
    let provider = Arc::new(ScriptedProvider::always("bedrock", "4"));
    // A replica that died holding the claim: it never answers, never releases.
    let dead = replica(&cache, &table, &provider);
    let key_holder = Arc::new(
        ScriptedProvider::new("bedrock")
            .otherwise(Step::reply("late").after(Duration::from_secs(3600))),
    );
    let dying = replica(&cache, &table, &key_holder);
    let hung = tokio::spawn(async move { dying.generate_completion(request()).await });
    while table.claims.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    let answer = dead.generate_completion(request()).await.unwrap();
    assert_eq!((answer.content.as_str(), answer.cached), ("4", false));
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "waited the bound first"
    );
    assert_eq!(provider.call_count(), 1);
    hung.abort();
}

#[tokio::test]
async fn a_holder_that_fails_releases_the_waiting_replica_at_once() {
    let cache = Arc::new(MemoryCache::new());
    // A long bound: the test ends far sooner only if the release is seen.
    let table = Table::new(Duration::from_secs(30));
    let failing = Arc::new(ScriptedProvider::new("bedrock").otherwise(
        Step::fail(failover_provider::ErrorKind::Unavailable).after(Duration::from_millis(100)),
    ));
    let healthy = Arc::new(ScriptedProvider::always("bedrock", "4"));
    let first = replica(&cache, &table, &failing);
    let second = replica(&cache, &table, &healthy);
    let leading = tokio::spawn(async move { first.generate_completion(request()).await });
    while table.claims.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    let answer = second.generate_completion(request()).await.unwrap();
    assert!(leading.await.unwrap().is_err(), "the holder failed");
    assert_eq!((answer.content.as_str(), answer.cached), ("4", false));
    assert_eq!(
        healthy.call_count(),
        1,
        "the waiting replica called its provider"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "released when the holder let go, not at the 30 s bound: {:?}",
        started.elapsed()
    );
}
