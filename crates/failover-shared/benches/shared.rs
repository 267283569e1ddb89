//! The shared breaker and the tenant limits, each as a ratio to a raw `PING` round trip to
//! the same Redis (a spawned `redis-server`, or `REDIS_URL`), measured in one run:
//!
//! - `shared/ping`: the floor;
//! - `shared/breaker_permit_outcome`: a CLOSED permit (decided from the replica's view) and
//!   its success outcome, waited for until the script answered (target ≤ 1.5 round trips);
//! - `shared/budget_reserve_settle`: a reservation and its settlement (target ≤ 2).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use failover_breaker::{Breaker, BreakerConfig, Outcome};
use failover_provider::Usd;
use failover_shared::{
    LimitsConfig, SharedBreaker, SharedBreakerConfig, SharedStore, StoreConfig, TenantLimits,
    UsageEstimator,
};
use failover_testenv::services::redis as redis_service;

fn bench_shared(c: &mut Criterion) {
    let service = match redis_service::shared() {
        Ok(service) => service,
        Err(unavailable) => {
            eprintln!("shared benches skipped: {unavailable}");
            return;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("lf-bench-{}", std::process::id());
    let (store, breaker, limits) = runtime.block_on(async {
        let store =
            SharedStore::new(&StoreConfig::single(service.url()).with_key_prefix(prefix)).unwrap();
        // Refreshes far apart, so the background read does not share the measured time.
        let breaker = SharedBreaker::new(
            store.clone(),
            "bench",
            SharedBreakerConfig::new(BreakerConfig::default())
                .with_refresh_interval(Duration::from_secs(3600)),
        )
        .unwrap();
        breaker.refresh().await.unwrap();
        let mut config = LimitsConfig::default();
        config.default.usd_per_day = Some(rust_decimal::Decimal::from(1_000_000));
        config.default.requests_per_minute = Some(u64::MAX / 2);
        let estimator = UsageEstimator::new(
            failover_core::Router::empty(),
            failover_usage::PricingTable::new(),
            Vec::new(),
        );
        let limits = TenantLimits::new(store.clone(), config, estimator).unwrap();
        (store, breaker, limits)
    });
    let mut group = c.benchmark_group("shared");
    group.bench_function("ping", |b| {
        b.to_async(&runtime)
            .iter(|| async { store.ping().await.unwrap() })
    });
    group.bench_function("breaker_permit_outcome", |b| {
        b.to_async(&runtime).iter(|| async {
            let permit = breaker.acquire_for("tenant").decide().await.unwrap();
            permit.record(Outcome::Success);
            breaker.flush().await;
        })
    });
    let mut call = 0u64;
    group.bench_function("budget_reserve_settle", |b| {
        b.to_async(&runtime).iter(|| {
            call += 1;
            let id = format!("call-{call}");
            let limits = &limits;
            async move {
                let cost = Usd::new(rust_decimal::Decimal::new(1, 3));
                limits
                    .reserve("tenant", "agent", &id, cost, 100)
                    .await
                    .unwrap()
                    .unwrap();
                assert!(
                    limits
                        .settle("tenant", "agent", &id, cost, 50)
                        .await
                        .unwrap()
                );
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_shared);
criterion_main!(benches);
