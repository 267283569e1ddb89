//! What only a real Redis can show: server-side TTLs, the key layout, per-tenant purge,
//! and values that are rejected when moved under another key.

mod common;

use std::time::Duration;

use failover_cache::{Cache, CacheKey, CacheKeyInput, KeyDeriver};
use failover_elasticache::{ElastiCacheCache, VALUE_FORMAT_V1, VALUE_FORMAT_V2};
use failover_provider::{Message, ResponseFormat};
use failover_testenv::require_service;
use failover_testenv::services::redis as redis_service;
use failover_testkit::suites::cache::sample_completion;

failover_testenv::service_test_main! {
    service: "redis",
    available: failover_testenv::services::redis::shared(),
    tests: [
        every_write_carries_a_ttl_and_long_ones_are_clamped,
        entries_expire_on_the_server,
        keys_hold_no_request_text_and_values_no_plaintext,
        two_tenants_same_request_two_entries_neither_readable_by_the_other,
        a_value_moved_under_another_tenants_key_is_rejected_and_deleted,
        garbage_and_unknown_versions_are_misses_not_errors,
        purge_removes_one_tenant_across_many_scan_pages_and_nothing_else,
        a_purge_does_not_touch_another_prefix,
        health_counts_hits_and_misses_and_ping_answers,
        a_key_rotation_reads_old_values_and_deletes_nothing_it_cannot_open,
    ],
}

const LONG: Duration = Duration::from_secs(300);

fn key(deriver: &KeyDeriver, tenant: &str, prompt: &str) -> CacheKey {
    let messages = [Message::user(prompt)];
    deriver.derive(&CacheKeyInput {
        tenant_id: tenant,
        model: "gpt-4",
        messages: &messages,
        temperature: Some(0.3),
        max_tokens: Some(20),
        stop: &[],
        response_format: &ResponseFormat::Text,
        tools: &failover_provider::ToolConfig::NONE,
        sampling: &failover_provider::Sampling::NONE,
    })
}

struct Setup {
    prefix: String,
    cache: ElastiCacheCache,
    deriver: KeyDeriver,
}

fn setup(url: &str) -> Setup {
    let config = common::config(url);
    let prefix = config.key_prefix.clone();
    Setup {
        prefix,
        cache: ElastiCacheCache::new(config).unwrap(),
        deriver: KeyDeriver::new(std::array::from_fn(|i| {
            common::random_u64() as u8 ^ i as u8
        })),
    }
}

async fn pttl(url: &str, key: &[u8]) -> i64 {
    let mut conn = common::raw(url).await;
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn exists(url: &str, key: &[u8]) -> bool {
    let mut conn = common::raw(url).await;
    let n: u64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    n == 1
}

async fn every_write_carries_a_ttl_and_long_ones_are_clamped() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let config = common::config(&url).with_max_ttl(Duration::from_secs(60));
    let cache = ElastiCacheCache::new(config).unwrap();
    let s = setup(&url);
    let k = key(&s.deriver, "tenant-a", "q");
    let redis_key = cache.redis_key(&k);

    cache
        .put(&k, sample_completion("x"), Duration::from_secs(30))
        .await
        .unwrap();
    let ttl = pttl(&url, &redis_key).await;
    assert!(
        (1..=30_000).contains(&ttl),
        "PTTL {ttl} must be set and at most 30 s"
    );

    cache
        .put(
            &k,
            sample_completion("x"),
            Duration::from_secs(86_400 * 365),
        )
        .await
        .unwrap();
    let ttl = pttl(&url, &redis_key).await;
    assert!(
        (1..=60_000).contains(&ttl),
        "PTTL {ttl} must be clamped to max_ttl 60 s"
    );

    cache
        .put(&k, sample_completion("x"), Duration::ZERO)
        .await
        .unwrap();
    assert!(!exists(&url, &redis_key).await, "a zero TTL leaves no key");
    assert_eq!(cache.get(&k).await.unwrap(), None);
}

async fn entries_expire_on_the_server() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let k = key(&s.deriver, "tenant-a", "short");
    s.cache
        .put(&k, sample_completion("x"), Duration::from_millis(200))
        .await
        .unwrap();
    assert!(s.cache.get(&k).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !exists(&url, &s.cache.redis_key(&k)).await,
        "Redis removed the key"
    );
    assert_eq!(s.cache.get(&k).await.unwrap(), None);
}

async fn keys_hold_no_request_text_and_values_no_plaintext() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let tenant = "acme-corp-tenant";
    let prompt = "What is the capital of France?";
    let k = key(&s.deriver, tenant, prompt);
    s.cache
        .put(&k, sample_completion("The capital is Paris"), LONG)
        .await
        .unwrap();
    let keys = common::keys_under(&url, &s.prefix).await;
    assert_eq!(keys.len(), 1);
    let stored_key = &keys[0];
    assert_eq!(
        stored_key,
        &format!(
            "{}:{{{}}}:{}",
            s.prefix,
            k.tenant().to_hex(),
            hex(k.digest())
        )
    );
    for needle in [tenant, "France", "capital", "gpt-4"] {
        assert!(
            !stored_key.contains(needle),
            "{stored_key} contains {needle}"
        );
    }
    let mut conn = common::raw(&url).await;
    let value: Vec<u8> = redis::cmd("GET")
        .arg(stored_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value[0], VALUE_FORMAT_V2);
    for needle in [&b"Paris"[..], b"bedrock", b"claude"] {
        assert!(
            !value.windows(needle.len()).any(|w| w == needle),
            "plaintext in value"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn two_tenants_same_request_two_entries_neither_readable_by_the_other() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let a = key(&s.deriver, "tenant-a", "same prompt");
    let b = key(&s.deriver, "tenant-b", "same prompt");
    s.cache
        .put(&a, sample_completion("for a"), LONG)
        .await
        .unwrap();
    assert_eq!(
        s.cache.get(&b).await.unwrap(),
        None,
        "b sees nothing of a's"
    );
    s.cache
        .put(&b, sample_completion("for b"), LONG)
        .await
        .unwrap();
    assert_eq!(
        common::keys_under(&url, &s.prefix).await.len(),
        2,
        "two entries"
    );
    assert_eq!(s.cache.get(&a).await.unwrap().unwrap().content, "for a");
    assert_eq!(s.cache.get(&b).await.unwrap().unwrap().content, "for b");
}

async fn a_value_moved_under_another_tenants_key_is_rejected_and_deleted() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let victim = key(&s.deriver, "tenant-a", "secret question");
    let target = key(&s.deriver, "tenant-b", "secret question");
    s.cache
        .put(&victim, sample_completion("a's private answer"), LONG)
        .await
        .unwrap();

    // redis-cli style: GET a's value, SET it under b's key.
    let mut conn = common::raw(&url).await;
    let stolen: Vec<u8> = redis::cmd("GET")
        .arg(s.cache.redis_key(&victim))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(s.cache.redis_key(&target))
        .arg(&stolen)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();

    let before = s.cache.stats();
    assert_eq!(
        s.cache.get(&target).await.unwrap(),
        None,
        "b must not read a's answer"
    );
    let after = s.cache.stats();
    assert_eq!(after.rejected, before.rejected + 1);
    assert_eq!(after.misses, before.misses + 1, "counted as a miss");
    assert!(
        !exists(&url, &s.cache.redis_key(&target)).await,
        "the planted value is deleted"
    );
    assert_eq!(
        s.cache.get(&victim).await.unwrap().unwrap().content,
        "a's private answer",
        "a's own entry is untouched"
    );

    // The same within one tenant: a value copied under another request's key.
    let other_request = key(&s.deriver, "tenant-a", "another question");
    let _: () = redis::cmd("SET")
        .arg(s.cache.redis_key(&other_request))
        .arg(&stolen)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.cache.get(&other_request).await.unwrap(), None);
    assert!(!exists(&url, &s.cache.redis_key(&other_request)).await);

    // A cache with another encryption key cannot read it either.
    let other =
        ElastiCacheCache::new(common::config(&url).with_key_prefix(s.prefix.clone())).unwrap();
    assert_eq!(other.get(&victim).await.unwrap(), None);
}

async fn garbage_and_unknown_versions_are_misses_not_errors() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let k = key(&s.deriver, "tenant-a", "q");
    let redis_key = s.cache.redis_key(&k);
    let mut conn = common::raw(&url).await;

    let mut future_format = vec![VALUE_FORMAT_V2 + 1];
    future_format.extend_from_slice(&[0u8; 64]);
    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&future_format)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.cache.get(&k).await.unwrap(), None);
    assert_eq!(s.cache.stats().unknown_version, 1);
    assert!(
        exists(&url, &redis_key).await,
        "a newer build's entry is left alone"
    );

    let _: () = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&[VALUE_FORMAT_V1, 1, 2, 3][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.cache.get(&k).await.unwrap(), None);
    assert_eq!(s.cache.stats().rejected, 1);
    assert!(
        !exists(&url, &redis_key).await,
        "garbage of our format is deleted"
    );
}

async fn purge_removes_one_tenant_across_many_scan_pages_and_nothing_else() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let many = 2_500; // more than one SCAN page
    let tenants = ["tenant-a", "tenant-b"];
    // Write through a pipeline of puts, concurrently, to keep the test short.
    let mut tasks = Vec::new();
    for tenant in tenants {
        for chunk in 0..10 {
            let cache = s.cache.clone();
            let deriver = s.deriver.clone();
            tasks.push(tokio::spawn(async move {
                for i in (chunk..many).step_by(10) {
                    let k = key(&deriver, tenant, &format!("prompt {i}"));
                    cache
                        .put(&k, sample_completion(tenant), LONG)
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(common::keys_under(&url, &s.prefix).await.len(), 2 * many);
    let tag_a = s.deriver.tenant_tag("tenant-a");
    let removed = s.cache.purge_tenant(&tag_a).await.unwrap();
    assert_eq!(removed, many as u64, "exact count");
    let left = common::keys_under(&url, &s.prefix).await;
    assert_eq!(left.len(), many);
    let tag_b = s.deriver.tenant_tag("tenant-b").to_hex();
    assert!(
        left.iter().all(|k| k.contains(&tag_b)),
        "only b's keys are left"
    );
    assert_eq!(
        s.cache
            .get(&key(&s.deriver, "tenant-b", "prompt 7"))
            .await
            .unwrap()
            .unwrap()
            .content,
        "tenant-b"
    );
    assert_eq!(
        s.cache.purge_tenant(&tag_a).await.unwrap(),
        0,
        "nothing left to purge"
    );
}

async fn a_purge_does_not_touch_another_prefix() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let other = ElastiCacheCache::new(common::config(&url)).unwrap();
    let k = key(&s.deriver, "tenant-a", "q");
    s.cache
        .put(&k, sample_completion("mine"), LONG)
        .await
        .unwrap();
    other
        .put(&k, sample_completion("other app"), LONG)
        .await
        .unwrap();
    assert_eq!(s.cache.purge_tenant(k.tenant()).await.unwrap(), 1);
    assert_eq!(other.get(&k).await.unwrap().unwrap().content, "other app");
}

async fn health_counts_hits_and_misses_and_ping_answers() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let s = setup(&url);
    let k = key(&s.deriver, "tenant-a", "q");
    assert_eq!(s.cache.get(&k).await.unwrap(), None);
    s.cache.put(&k, sample_completion("x"), LONG).await.unwrap();
    assert!(s.cache.get(&k).await.unwrap().is_some());
    let health = s.cache.health();
    assert_eq!(
        (health.hits, health.misses, health.errors, health.timeouts),
        (1, 1, 0, 0)
    );
    assert!(health.available);
    assert_eq!(health.backend, "elasticache");
    assert!(s.cache.ping().await.unwrap() < Duration::from_secs(1));
}

/// A rotation from key A to key B across replicas sharing one Redis: `old` has only A,
/// `rotating` seals with B and still opens A. Values sealed with A are read by both;
/// values sealed with B are read by `rotating` (and a replica done rotating), not by
/// `old` — which must not delete them. While a rotation is configured, nothing that fails
/// to open is deleted.
async fn a_key_rotation_reads_old_values_and_deletes_nothing_it_cannot_open() {
    let url = require_service!(redis_service::shared()).url().to_owned();
    let prefix = common::fresh_prefix();
    let key_a = common::fresh_key();
    let key_b = common::fresh_key();
    let config = |key: failover_elasticache::EncryptionKey| {
        common::config(&url)
            .with_key_prefix(prefix.clone())
            .with_encryption_key(key)
    };
    let old = ElastiCacheCache::new(config(key_a.clone())).unwrap();
    let rotating =
        ElastiCacheCache::new(config(key_b.clone()).with_decryption_keys([key_a.clone()])).unwrap();
    let done = ElastiCacheCache::new(config(key_b)).unwrap();
    let deriver = KeyDeriver::new([3; 32]);

    // Sealed with the old key: both read it.
    let by_old = key(&deriver, "tenant-a", "before the rotation");
    old.put(&by_old, sample_completion("old"), LONG)
        .await
        .unwrap();
    assert_eq!(rotating.get(&by_old).await.unwrap().unwrap().content, "old");
    assert_eq!(old.get(&by_old).await.unwrap().unwrap().content, "old");

    // Sealed with the new key: not readable by the old replica, and not deleted by it.
    let by_new = key(&deriver, "tenant-a", "during the rotation");
    rotating
        .put(&by_new, sample_completion("new"), LONG)
        .await
        .unwrap();
    let before = old.stats();
    assert_eq!(old.get(&by_new).await.unwrap(), None);
    let after = old.stats();
    assert_eq!(after.kept_unopened, before.kept_unopened + 1, "{after:?}");
    assert_eq!(after.rejected, before.rejected, "{after:?}");
    assert!(exists(&url, &old.redis_key(&by_new)).await, "kept");
    assert_eq!(rotating.get(&by_new).await.unwrap().unwrap().content, "new");
    assert_eq!(done.get(&by_new).await.unwrap().unwrap().content, "new");

    // During a rotation even a value that fails to open for another reason is kept.
    let garbage = key(&deriver, "tenant-a", "garbage");
    let mut conn = common::raw(&url).await;
    let _: () = redis::cmd("SET")
        .arg(rotating.redis_key(&garbage))
        .arg(&[VALUE_FORMAT_V1, 1, 2, 3][..])
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(rotating.get(&garbage).await.unwrap(), None);
    assert!(exists(&url, &rotating.redis_key(&garbage)).await);
    assert_eq!(rotating.stats().kept_unopened, 1);
    assert_eq!(rotating.stats().rejected, 0);
}
