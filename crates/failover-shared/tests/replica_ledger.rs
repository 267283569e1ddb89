//! Spend survives a Redis flush: the tenant limits seed a day's and a month's spend from
//! the DynamoDB usage ledger (moto) when Redis does not know them, once for every replica.
//!
//! Under failover-testenv's service harness: without `redis-server` and `moto_server` the
//! test is reported as ignored (failed under `FAILOVER_REQUIRE_SERVICES=1`), never passed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use failover_dynamodb::DynamoDbUsageSinkBuilder;
use failover_provider::{RequestId, TokenUsage, Usd};
use failover_shared::{
    LimitKind, LimitsConfig, SharedStore, StoreConfig, TenantLimits, UsageEstimator,
};
use failover_testenv::services::redis;
use failover_testenv::{moto, require_service};
use failover_usage::{UsageOutcome, UsageRecord, UsageSink};
use rust_decimal::Decimal;

failover_testenv::service_test_main! {
    service: "redis-server and moto_server",
    available: redis::spawn_owned().map(|server| server.stop()).and_then(|_| moto::shared()),
    tests: [replica_spend_is_seeded_from_the_ledger_after_a_redis_flush],
}

fn record(tenant: &str, id: &str, cost: Usd) -> UsageRecord {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    UsageRecord {
        request_id: RequestId::new(id),
        call_id: format!("{id}-call"),
        attempt: 1,
        tenant_id: tenant.to_owned(),
        agent_id: "agent".to_owned(),
        timestamp_unix_ms: now,
        provider: "openai".to_owned(),
        model: "gpt-4".to_owned(),
        logical_model: "gpt-4".to_owned(),
        usage: TokenUsage::new(100, 100),
        usage_estimated: false,
        cost,
        latency_ms: 10,
        outcome: UsageOutcome::Success,
        cached: false,
        fallback_used: false,
        streamed: false,
    }
}

async fn replica_spend_is_seeded_from_the_ledger_after_a_redis_flush() {
    // A Redis of its own: the test restarts it, losing everything (no persistence).
    let server = require_service!(redis::spawn_owned());
    let redis_url = server.url();
    let endpoint = require_service!(moto::shared()).url().to_owned();
    let table = moto::unique_table_name("failover-shared-seed");
    let sink = DynamoDbUsageSinkBuilder::new()
        .table_name(&table)
        .endpoint_url(&endpoint)
        .region("us-east-1")
        .credentials(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "tests",
        ))
        .spill_path(std::env::temp_dir().join(format!("{table}.spill")))
        .max_in_flight(1)
        .build()
        .await
        .unwrap();
    sink.create_table().await.unwrap();
    let run = format!("{}-{}", std::process::id(), fastrand::u64(..));
    let tenant = format!("seeded-{run}");
    let eight_cents = Usd::new(Decimal::new(8, 2));
    sink.record(record(&tenant, &format!("{run}-a"), eight_cents))
        .unwrap();
    sink.flush().await.unwrap();
    let ledger: Arc<dyn UsageSink> = Arc::new(sink);

    let mut config = LimitsConfig::default();
    config.default.usd_per_day = Some(Decimal::new(10, 2)); // $0.10
    let estimator = UsageEstimator::new(
        failover_core::Router::empty(),
        failover_usage::PricingTable::new(),
        Vec::new(),
    );
    let store = SharedStore::new(
        &StoreConfig::single(redis_url.clone()).with_key_prefix(format!("lf-seed-{run}")),
    )
    .unwrap();
    let limits = TenantLimits::with_ledger(store, config, estimator, Arc::clone(&ledger)).unwrap();
    let three_cents = Usd::new(Decimal::new(3, 2));

    // Redis knows nothing of the tenant: the ledger's $0.08 is seeded first.
    let refused = limits
        .reserve(&tenant, "agent", "b", three_cents, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.kind, LimitKind::UsdPerDay);
    assert_eq!(refused.used, Decimal::new(8, 2), "{refused}");
    let [day, month, _, _] = limits.spend(&tenant, None).await.unwrap();
    assert_eq!((day, month), (Decimal::new(8, 2), Decimal::new(8, 2)));
    limits
        .reserve(&tenant, "agent", "c", Usd::new(Decimal::new(2, 2)), 10)
        .await
        .unwrap()
        .unwrap();

    // Redis restarts empty; the spend comes back from the ledger.
    server.stop();
    server.restart().unwrap();
    let refused = limits
        .reserve(&tenant, "agent", "d", three_cents, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.used, Decimal::new(8, 2), "{refused}");
    assert!(refused.resets_in <= Duration::from_secs(86_400));
}
