//! Key derivation and memory-cache lookups.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use failover_cache::{Cache, CacheKeyInput, CachedCompletion, KeyDeriver, MemoryCache};
use failover_provider::{FinishReason, Message, ResponseFormat, TokenUsage, Usd};

fn typical_messages() -> Vec<Message> {
    vec![
        Message::system("You are a concise assistant for an insurance claims team. ".repeat(4)),
        Message::user("Summarise the following claim note in two sentences: ".repeat(8)),
        Message::assistant("Understood. Please paste the note and I will summarise it. ".repeat(4)),
    ]
}

fn bench_keys(c: &mut Criterion) {
    let deriver = KeyDeriver::from_secret(b"bench secret");
    let messages = typical_messages();
    let text: usize = messages.iter().map(|m| m.content.len()).sum();
    let stop = vec!["\n\nHuman:".to_owned()];
    let input = CacheKeyInput {
        tenant_id: "tenant-0042",
        model: "gpt-4",
        messages: &messages,
        temperature: Some(0.2),
        max_tokens: Some(512),
        stop: &stop,
        response_format: &ResponseFormat::Text,
        tools: &failover_provider::ToolConfig::NONE,
        sampling: &failover_provider::Sampling::NONE,
    };
    let mut group = c.benchmark_group("key");
    group.throughput(Throughput::Bytes(text as u64));
    group.bench_function(format!("derive_3_messages_{text}_bytes"), |b| {
        b.iter(|| black_box(deriver.derive(black_box(&input))))
    });
    group.finish();

    let mut group = c.benchmark_group("key_parts");
    group.bench_function("tenant_tag", |b| {
        b.iter(|| black_box(deriver.tenant_tag(black_box("tenant-0042"))))
    });
    let key = deriver.derive(&input);
    group.bench_function("to_hex", |b| b.iter(|| black_box(key.to_hex())));
    group.finish();
}

fn bench_memory_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = MemoryCache::new();
    let deriver = KeyDeriver::default();
    let messages = typical_messages();
    let input = CacheKeyInput {
        tenant_id: "tenant-0042",
        model: "gpt-4",
        messages: &messages,
        temperature: Some(0.2),
        max_tokens: Some(512),
        stop: &[],
        response_format: &ResponseFormat::Text,
        tools: &failover_provider::ToolConfig::NONE,
        sampling: &failover_provider::Sampling::NONE,
    };
    let key = deriver.derive(&input);
    let value = CachedCompletion {
        provider: "bedrock".to_owned(),
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned(),
        content: "A typical answer of a few hundred bytes. ".repeat(8),
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: TokenUsage::new(300, 80),
        estimated_cost: Usd::ZERO,
        stored_at_unix_ms: 0,
    };
    runtime.block_on(async {
        cache
            .put(&key, value, Duration::from_secs(3600))
            .await
            .unwrap();
    });
    let miss = deriver.derive(&CacheKeyInput {
        tenant_id: "other",
        ..input
    });
    let mut group = c.benchmark_group("memory_cache");
    group.bench_function("get_hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cache.get(black_box(&key)).await.unwrap()) })
    });
    group.bench_function("get_miss", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cache.get(black_box(&miss)).await.unwrap()) })
    });
    group.bench_function("derive_then_get_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            let key = deriver.derive(black_box(&input));
            black_box(cache.get(&key).await.unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_keys, bench_memory_cache);
criterion_main!(benches);
