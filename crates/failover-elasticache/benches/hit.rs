//! A cache hit through `ElastiCacheCache` beside a raw `GET` of the same stored value on
//! the same connection, in the same run, against a local Redis (`REDIS_URL`, else a
//! spawned `redis-server`). The ratio hit / raw is what we watch (target ≤ 1.3): the
//! round trip is the floor; key building, decryption and decoding must not dominate.
//!
//! `cargo bench -p failover-elasticache --bench hit`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use failover_cache::{Cache, CachedCompletion};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig, EncryptionKey};
use failover_testenv::services::redis as redis_service;
use failover_testkit::suites::cache::{World, sample_completion};

fn bench_hit(c: &mut Criterion) {
    let service = match redis_service::shared() {
        Ok(service) => service,
        Err(unavailable) => {
            eprintln!("SKIPPED: elasticache hit bench: {unavailable}");
            return;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = runtime.block_on(async {
        ElastiCacheCache::new(
            ElastiCacheConfig::new(service.url(), EncryptionKey::generate().unwrap())
                .with_key_prefix("bench")
                .with_operation_timeout(Duration::from_secs(1)),
        )
        .unwrap()
    });
    let world = World::new();

    let mut group = c.benchmark_group("elasticache_hit_vs_raw_get");
    group
        .sample_size(60)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3));
    for content_len in [256usize, 4 * 1024, 32 * 1024] {
        let key = world.key("bench", &format!("prompt {content_len}"));
        let value = CachedCompletion {
            content: "x".repeat(content_len),
            tool_calls: Vec::new(),
            ..sample_completion("")
        };
        let redis_key = cache.redis_key(&key);
        let stored_len = runtime.block_on(async {
            cache
                .put(&key, value.clone(), Duration::from_secs(3600))
                .await
                .unwrap();
            assert_eq!(cache.get(&key).await.unwrap().as_ref(), Some(&value));
            cache.bench_raw_get(&redis_key).await.unwrap().len()
        });
        group.throughput(Throughput::Bytes(stored_len as u64));
        group.bench_with_input(
            BenchmarkId::new("cache_get_hit", content_len),
            &key,
            |b, key| {
                b.to_async(&runtime)
                    .iter(|| async { cache.get(key).await.unwrap().unwrap() })
            },
        );
        let stored = runtime.block_on(cache.bench_raw_get(&redis_key)).unwrap();
        group.bench_with_input(
            BenchmarkId::new("decrypt_and_decode_only", content_len),
            &stored,
            |b, stored| {
                b.iter_batched(
                    || stored.clone(),
                    |bytes| cache.bench_open(&key, bytes).unwrap(),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_get_same_connection", content_len),
            &redis_key,
            |b, redis_key| {
                b.to_async(&runtime)
                    .iter(|| async { cache.bench_raw_get(redis_key).await.unwrap() })
            },
        );
        interleaved_ratio(&runtime, &cache, &key, &redis_key, content_len);
    }
    group.finish();
}

/// On a shared machine the load drifts between two criterion benchmarks run one after the
/// other. This measures both operations *interleaved* (alternating, in random order) and
/// prints the medians and their ratio, which is the figure to compare with 1.3.
fn interleaved_ratio(
    runtime: &tokio::runtime::Runtime,
    cache: &ElastiCacheCache,
    key: &failover_cache::CacheKey,
    redis_key: &[u8],
    content_len: usize,
) {
    let rounds = 4_000;
    let mut hit = Vec::with_capacity(rounds);
    let mut raw = Vec::with_capacity(rounds);
    runtime.block_on(async {
        for round in 0..rounds {
            let hit_first = (round * 7919) % 2 == 0;
            for step in 0..2 {
                let started = std::time::Instant::now();
                if (step == 0) == hit_first {
                    std::hint::black_box(cache.get(key).await.unwrap().unwrap());
                    hit.push(started.elapsed());
                } else {
                    std::hint::black_box(cache.bench_raw_get(redis_key).await.unwrap());
                    raw.push(started.elapsed());
                }
            }
        }
    });
    hit.sort();
    raw.sort();
    let (hit_median, raw_median) = (hit[rounds / 2], raw[rounds / 2]);
    println!(
        "interleaved/{content_len}: cache hit median {hit_median:?}, raw GET median \
         {raw_median:?}, ratio {:.2} ({rounds} rounds each)",
        hit_median.as_secs_f64() / raw_median.as_secs_f64()
    );
}

criterion_group!(benches, bench_hit);
criterion_main!(benches);
