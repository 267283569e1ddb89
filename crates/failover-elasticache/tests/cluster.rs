//! Cluster mode against a local 3-primary Redis Cluster (spawned with `redis-server
//! --cluster-enabled yes` and formed with `redis-cli --cluster create`). The cache is
//! given **one** seed node: it discovers the others and follows `MOVED` redirects.

mod common;

use std::sync::Arc;
use std::time::Duration;

use failover_cache::{Cache, CacheKey};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig};
use failover_testenv::require_service;
use failover_testenv::services::redis as redis_service;
use failover_testkit::suites::cache::{World, sample_completion};

failover_testenv::service_test_main! {
    service: "redis cluster",
    available: failover_testenv::services::redis::shared_cluster(),
    tests: [
        tenants_spread_over_nodes_and_a_purge_removes_exactly_one_tenant,
        one_tenants_keys_share_a_slot,
    ],
    // The cache behaviour suite, unchanged, on a cluster given one seed node.
    suites: [failover_testkit::cache_behaviour_tests!({
        let cluster = require_service!(redis_service::shared_cluster());
        let seed = cluster.urls()[0].clone();
        move || async move { Arc::new(cluster_cache(&seed)) as Arc<dyn Cache> }
    })],
}

fn cluster_cache(seed: &str) -> ElastiCacheCache {
    ElastiCacheCache::new(
        ElastiCacheConfig::cluster([seed], common::fresh_key())
            .with_key_prefix(common::fresh_prefix())
            .with_operation_timeout(Duration::from_millis(500))
            .with_connect_timeout(Duration::from_millis(500)),
    )
    .unwrap()
}

async fn keys_per_node(urls: &[String], pattern: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for url in urls {
        let mut conn = common::raw(url).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        counts.push(keys.len());
    }
    counts
}

async fn tenants_spread_over_nodes_and_a_purge_removes_exactly_one_tenant() {
    let cluster = require_service!(redis_service::shared_cluster());
    let urls = cluster.urls();
    let cache = cluster_cache(&urls[0]);
    let world = World::new();
    let tenants: Vec<String> = (0..12).map(|i| format!("tenant-{i}")).collect();
    let per_tenant = 20;
    for tenant in &tenants {
        for i in 0..per_tenant {
            let key = world.key(tenant, &format!("prompt {i}"));
            cache
                .put(&key, sample_completion(tenant), Duration::from_secs(300))
                .await
                .unwrap();
        }
    }
    let prefix_pattern = {
        let redis_key = String::from_utf8(cache.redis_key(&world.key("x", "y"))).unwrap();
        format!("{}:*", redis_key.split(':').next().unwrap())
    };
    let counts = keys_per_node(&urls, &prefix_pattern).await;
    assert_eq!(counts.iter().sum::<usize>(), tenants.len() * per_tenant);
    assert!(
        counts.iter().filter(|&&n| n > 0).count() >= 2,
        "12 tenants land on more than one node: {counts:?}"
    );
    // Every node holds whole tenants: a tenant's keys share a hash tag, so a slot.
    assert!(counts.iter().all(|n| n % per_tenant == 0), "{counts:?}");

    let victim = world.tenant("tenant-3");
    let tag = world.deriver().tenant_tag(&victim);
    assert_eq!(cache.purge_tenant(&tag).await.unwrap(), per_tenant as u64);
    let after = keys_per_node(&urls, &prefix_pattern).await;
    assert_eq!(
        after.iter().sum::<usize>(),
        (tenants.len() - 1) * per_tenant
    );
    for tenant in &tenants {
        let key: CacheKey = world.key(tenant, "prompt 0");
        let found = cache.get(&key).await.unwrap();
        if *tenant == "tenant-3" {
            assert_eq!(found, None);
        } else {
            assert_eq!(found.unwrap().content, *tenant);
        }
    }
}

async fn one_tenants_keys_share_a_slot() {
    let cluster = require_service!(redis_service::shared_cluster());
    let urls = cluster.urls();
    let cache = cluster_cache(&urls[0]);
    let world = World::new();
    let mut conn = common::raw(&urls[0]).await;
    let mut slots = Vec::new();
    for i in 0..5 {
        let key = cache.redis_key(&world.key("a", &format!("q{i}")));
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        slots.push(slot);
    }
    assert!(slots.windows(2).all(|w| w[0] == w[1]), "{slots:?}");
}
