"""The Python layer's cost over the Rust call, on a cache hit (memory cache, memory
ledger, stand-ins behind it but never reached): median per call of

- the engine called from Rust in a loop (``_bench_engine_ns``, no Python in the loop);
- ``generate_completion_sync`` from Python;
- ``await generate_completion`` in an asyncio loop (one call at a time).

Run with the package built into the current Python (``maturin develop --release`` for
release figures): ``python bench/overhead.py [N] [REDIS_URL]`` — with a Redis URL the cache
is ElastiCache/Redis (a hit then waits on the network: the async call takes the spawned
path, not the inline one).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from llm_failover import AWSLLMAdapter
from llm_failover.testing import StandIns

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
REDIS = sys.argv[2] if len(sys.argv) > 2 else None
ARGS = dict(prompt="What is 2+2?", agent_id="bench_agent", tenant_id="bench_tenant", model="gpt-4")


def median_us(ns: list[int]) -> float:
    return statistics.median(ns) / 1000


def main() -> None:
    with StandIns() as standins:
        extra = {"elasticache_endpoint": REDIS} if REDIS else {}
        adapter = AWSLLMAdapter(**standins.adapter_kwargs(), **extra)
        first = adapter.generate_completion_sync(**ARGS)
        assert first["cached"] is False
        assert adapter.generate_completion_sync(**ARGS)["cached"] is True

        rounds = []
        for _ in range(3):
            rust = adapter._bench_engine_ns(N, ARGS["prompt"], ARGS["agent_id"], ARGS["tenant_id"], ARGS["model"])

            sync_ns = []
            clock = time.perf_counter_ns
            call = adapter.generate_completion_sync
            for _ in range(N):
                t = clock()
                call(**ARGS)
                sync_ns.append(clock() - t)

            async def run() -> list[int]:
                out = []
                for _ in range(N):
                    t = clock()
                    await adapter.generate_completion(**ARGS)
                    out.append(clock() - t)
                return out

            async_ns = asyncio.run(run())
            rounds.append((median_us(rust), median_us(sync_ns), median_us(async_ns)))
        assert standins.calls("bedrock") == 1, "every measured call must be a cache hit"

    print(f"cache: {'Redis at ' + REDIS if REDIS else 'memory'}; N = {N} calls per round, 3 rounds; medians per call in µs")
    print("| round | Rust engine | Python sync | Python async | sync − Rust | async − Rust |")
    print("|---|---|---|---|---|---|")
    for i, (r, s, a) in enumerate(rounds, 1):
        print(f"| {i} | {r:.1f} | {s:.1f} | {a:.1f} | {s - r:.1f} | {a - r:.1f} |")


if __name__ == "__main__":
    main()
