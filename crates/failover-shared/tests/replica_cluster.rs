//! The shared breaker and the tenant limits on a local 3-primary Redis Cluster (and the
//! same checks on one node): three breakers on one record stand for three replicas.
//!
//! Under failover-testenv's service harness: without `redis-server` / `redis-cli` the tests
//! are reported as ignored (failed under `FAILOVER_REQUIRE_SERVICES=1`), never as passed.

use std::sync::Arc;
use std::time::Duration;

use failover_breaker::{Breaker, BreakerConfig, BreakerState, ManualClock, Outcome};
use failover_provider::Usd;
use failover_shared::{
    LimitKind, LimitsConfig, SharedBreaker, SharedBreakerConfig, SharedStore, StoreConfig,
    TenantLimits, UsageEstimator,
};
use failover_testenv::require_service;
use failover_testenv::services::redis;
use rust_decimal::Decimal;

failover_testenv::service_test_main! {
    service: "redis cluster (3 primaries) and one redis-server",
    available: redis::shared_cluster().and_then(|_| redis::shared()),
    tests: [
        replica_breakers_on_a_cluster_trip_together_and_bound_probes,
        replica_budgets_on_a_cluster_reserve_settle_and_refuse,
        replica_breakers_on_one_node_trip_together_and_bound_probes,
        replica_agent_limits_on_a_cluster_apply_on_top_of_the_tenants,
    ],
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), fastrand::u64(..))
}

fn rules() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        open_duration: Duration::from_secs(10),
        jitter: 0.0,
        half_open_max_probes: 2,
        half_open_successes_to_close: 2,
        ..BreakerConfig::default()
    }
}

fn failure() -> Outcome {
    Outcome::Failure {
        kind: "unavailable",
        retry_after: None,
    }
}

/// Three "replicas" of one provider's breaker on `store`, on one manual clock.
fn replicas(store: &SharedStore, clock: &ManualClock) -> Vec<SharedBreaker> {
    let name = unique("provider");
    (0..3)
        .map(|_| {
            SharedBreaker::with_clock(
                store.clone(),
                &name,
                SharedBreakerConfig::new(rules()),
                Arc::new(clock.clone()),
            )
            .unwrap()
        })
        .collect()
}

async fn trip_together_and_bound_probes(store: SharedStore) {
    let clock = ManualClock::new();
    let breakers = replicas(&store, &clock);
    // Failures on replicas 1 and 2 only.
    for breaker in [&breakers[0], &breakers[0], &breakers[1]] {
        let permit = breaker.acquire_for("t").decide().await.unwrap();
        permit.record(failure());
        breaker.flush().await;
    }
    // Every replica reads the record within one refresh interval; here, now.
    for breaker in &breakers {
        breaker.refresh().await.unwrap();
        assert_eq!(breaker.snapshot().state, BreakerState::Open);
    }
    let rejected = breakers[2].acquire_for("t").decide().await.unwrap_err();
    assert_eq!(rejected.state, BreakerState::Open);
    assert!(rejected.next_probe_at.is_some());

    clock.advance(Duration::from_secs(10));
    let mut admitted = Vec::new();
    for i in 0..12 {
        if let Ok(permit) = breakers[i % 3].acquire_for("t").decide().await {
            admitted.push(permit);
        }
    }
    assert_eq!(
        admitted.len(),
        2,
        "half_open_max_probes across every replica"
    );
    for permit in admitted {
        permit.record(Outcome::Success);
    }
    for breaker in &breakers {
        breaker.flush().await;
    }
    breakers[1].refresh().await.unwrap();
    assert_eq!(breakers[1].snapshot().state, BreakerState::Closed);
    // An operator's force_open is seen by every replica at its next read.
    breakers[0].force_open_shared().await.unwrap();
    breakers[2].refresh().await.unwrap();
    assert_eq!(
        breakers[2]
            .acquire_for("t")
            .decide()
            .await
            .unwrap_err()
            .state,
        BreakerState::ForcedOpen
    );
}

async fn replica_breakers_on_a_cluster_trip_together_and_bound_probes() {
    let cluster = require_service!(redis::shared_cluster());
    let store = SharedStore::new(
        &StoreConfig::cluster(cluster.urls()).with_key_prefix(unique("lf-cluster")),
    )
    .unwrap();
    trip_together_and_bound_probes(store).await;
}

async fn replica_breakers_on_one_node_trip_together_and_bound_probes() {
    let service = require_service!(redis::shared());
    let store =
        SharedStore::new(&StoreConfig::single(service.url()).with_key_prefix(unique("lf-node")))
            .unwrap();
    trip_together_and_bound_probes(store).await;
}

/// Tenant limits on the cluster under a key prefix of their own; amounts are passed to
/// `reserve` as they are (no prices needed).
fn limits_on(cluster: &redis::RedisCluster, config: LimitsConfig) -> Arc<TenantLimits> {
    let store = SharedStore::new(
        &StoreConfig::cluster(cluster.urls()).with_key_prefix(unique("lf-cluster")),
    )
    .unwrap();
    let estimator = UsageEstimator::new(
        failover_core::Router::empty(),
        failover_usage::PricingTable::new(),
        Vec::new(),
    );
    TenantLimits::new(store, config, estimator).unwrap()
}

async fn replica_budgets_on_a_cluster_reserve_settle_and_refuse() {
    let cluster = require_service!(redis::shared_cluster());
    let mut config = LimitsConfig::default();
    config.default.usd_per_day = Some(Decimal::new(10, 2)); // $0.10
    let limits = limits_on(&cluster, config);
    let four_cents = Usd::new(Decimal::new(4, 2));
    let three_cents = Usd::new(Decimal::new(3, 2));
    // Tenants hash to different slots; each keeps its own spend.
    for tenant in ["acme", "beta", "gamma"] {
        limits
            .reserve(tenant, "agent", "a", four_cents, 10)
            .await
            .unwrap()
            .unwrap();
        limits
            .reserve(tenant, "agent", "b", four_cents, 10)
            .await
            .unwrap()
            .unwrap();
        let refused = limits
            .reserve(tenant, "agent", "c", four_cents, 10)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.kind, LimitKind::UsdPerDay);
        assert!(refused.resets_in <= Duration::from_secs(86_400));
        // Settling below the estimate frees room; a second settle changes nothing.
        assert!(
            limits
                .settle(tenant, "agent", "a", three_cents, 10)
                .await
                .unwrap()
        );
        assert!(
            !limits
                .settle(tenant, "agent", "a", three_cents, 10)
                .await
                .unwrap()
        );
        let [spent_day, spent_month, reserved_day, _] = limits.spend(tenant, None).await.unwrap();
        assert_eq!(spent_day, Decimal::new(3, 2));
        assert_eq!(spent_month, Decimal::new(3, 2));
        assert_eq!(reserved_day, Decimal::new(4, 2));
        limits
            .reserve(tenant, "agent", "c", three_cents, 10)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn replica_agent_limits_on_a_cluster_apply_on_top_of_the_tenants() {
    let cluster = require_service!(redis::shared_cluster());
    let mut config = LimitsConfig::default();
    config.default.usd_per_day = Some(Decimal::new(10, 2)); // $0.10 per tenant
    let mut bot = failover_shared::Limits::default();
    bot.usd_per_day = Some(Decimal::new(5, 2)); // $0.05 for acme's bot
    config.agents.insert("acme/bot".to_owned(), bot);
    let limits = limits_on(&cluster, config);
    let four_cents = Usd::new(Decimal::new(4, 2));
    // The bot reaches its own limit first…
    limits
        .reserve("acme", "bot", "a", four_cents, 10)
        .await
        .unwrap()
        .unwrap();
    let refused = limits
        .reserve("acme", "bot", "b", four_cents, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.agent.as_deref(), Some("bot"));
    assert!(
        refused.to_string().starts_with("agent bot of tenant acme"),
        "{refused}"
    );
    // …which refused without reserving anything for the tenant.
    let [_, _, reserved_day, _] = limits.spend("acme", None).await.unwrap();
    assert_eq!(reserved_day, Decimal::new(4, 2));
    // Another agent of acme has only the tenant's limit, which the bot's spend counts in.
    limits
        .reserve("acme", "triage", "c", four_cents, 10)
        .await
        .unwrap()
        .unwrap();
    let refused = limits
        .reserve("acme", "triage", "d", four_cents, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((refused.agent, refused.kind), (None, LimitKind::UsdPerDay));
    // Settling releases both scopes of the bot's reservation and spends in both.
    assert!(
        limits
            .settle("acme", "bot", "a", Usd::new(Decimal::new(1, 2)), 10)
            .await
            .unwrap()
    );
    let [bot_day, _, bot_reserved, _] = limits.spend("acme", Some("bot")).await.unwrap();
    assert_eq!((bot_day, bot_reserved), (Decimal::new(1, 2), Decimal::ZERO));
    let [acme_day, _, acme_reserved, _] = limits.spend("acme", None).await.unwrap();
    assert_eq!(
        (acme_day, acme_reserved),
        (Decimal::new(1, 2), Decimal::new(4, 2))
    );
}
