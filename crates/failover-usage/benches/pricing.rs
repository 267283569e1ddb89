//! Cost computation and usage recording.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use failover_provider::{RequestId, TokenUsage, Usd};
use failover_usage::{MemoryUsageSink, PricingTable, UsageOutcome, UsageRecord, UsageSink};

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: RequestId::new(format!("0b6f2a4e-6f1c-4c55-9a3f-{i:012}")),
        call_id: format!("call-{i}"),
        attempt: 1,
        tenant_id: "tenant-0042".to_owned(),
        agent_id: "support-bot".to_owned(),
        timestamp_unix_ms: 1_718_000_000_000 + i,
        provider: "bedrock".to_owned(),
        model: "anthropic.claude-3-5-sonnet-20240620-v1:0".to_owned(),
        logical_model: "gpt-4".to_owned(),
        usage: TokenUsage::new(1_234, 567),
        usage_estimated: false,
        cost: Usd::ZERO,
        latency_ms: 850,
        outcome: UsageOutcome::Success,
        cached: false,
        fallback_used: false,
        streamed: false,
    }
}

fn bench_pricing(c: &mut Criterion) {
    let table = PricingTable::embedded();
    let usage = TokenUsage {
        input_tokens: 1_234,
        output_tokens: 567,
        cache_read_tokens: 10_000,
        cache_write_tokens: 200,
    };
    let mut group = c.benchmark_group("pricing");
    group.bench_function("cost_bedrock_claude_37", |b| {
        b.iter(|| {
            black_box(table.cost(
                black_box("bedrock"),
                black_box("us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
                black_box(&usage),
            ))
        })
    });
    group.bench_function("cost_unknown_model", |b| {
        b.iter(|| black_box(table.cost(black_box("openai"), black_box("gpt-17"), &usage)))
    });
    group.bench_function("parse_embedded_toml", |b| {
        b.iter(|| black_box(PricingTable::from_toml_str(PricingTable::embedded_toml()).unwrap()))
    });
    group.finish();
}

fn bench_sink(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_sink");
    let sink = MemoryUsageSink::with_capacity(usize::MAX);
    let mut i = 0u64;
    group.bench_function("record_new", |b| {
        b.iter_batched(
            || {
                i += 1;
                record(i)
            },
            |r| sink.record(r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let dup = record(0);
    sink.record(dup.clone()).unwrap();
    group.bench_function("record_duplicate", |b| {
        b.iter_batched(
            || dup.clone(),
            |r| sink.record(r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_pricing, bench_sink);
criterion_main!(benches);
