"""Async done right: cancelling an asyncio task drops the engine's call (and its usage is
still recorded, as cancelled); asyncio.run() twice and a shutdown with calls in flight
print no "Event loop is closed"; the GIL is released while the engine works, so calls
from several threads (or tasks) proceed at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from helpers import SEED

SLOW = 1.0  # seconds each scripted slow answer takes


async def settled_stats(adapter, tenant: str, limit: float = 5.0) -> dict:
    """The tenant's usage statistics once the cancelled call is settled: the asyncio
    cancellation aborts the engine's task, which drops the call on a runtime thread an
    instant later."""
    deadline = time.monotonic() + limit
    while True:
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        if stats["cancelled"] >= 1 or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.005)


async def wait_for_requests(standins, vendor: str, count: int, limit: float = 10.0) -> None:
    """Until `vendor`'s stand-in has received `count` requests (the request is in flight)."""
    deadline = time.monotonic() + limit
    while standins.calls(vendor) < count:
        assert time.monotonic() < deadline, f"{vendor} never received request {count}"
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_cancelling_a_task_cancels_the_call_and_records_usage(make_adapter, standins, tenant: str) -> None:
    adapter = make_adapter()
    standins.inject("bedrock", "slow", 1, delay=30.0)
    task = asyncio.create_task(adapter.generate_completion(prompt="cancel me", tenant_id=tenant, **SEED))
    await wait_for_requests(standins, "bedrock", 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5.0
    stats = await settled_stats(adapter, tenant)
    assert (stats["total_requests"], stats["cancelled"], stats["failures"]) == (1, 1, 0)
    # A cancellation judges nobody: the breaker counted neither a failure nor a success.
    breaker = adapter.bedrock_circuit_breaker.snapshot()
    assert (breaker["state"], breaker["failures"], breaker["successes"]) == ("CLOSED", 0, 0)
    # The adapter still works, and OpenAI was never asked.
    again = await adapter.generate_completion(prompt="after cancel", tenant_id=tenant, **SEED)
    assert again["provider"] == "bedrock" and standins.calls("openai") == 0


@pytest.mark.asyncio
async def test_timeout_of_a_stream_opening_records_usage(make_adapter, standins, tenant: str) -> None:
    adapter = make_adapter()
    standins.inject("bedrock", "slow", 1, delay=30.0)
    stream = adapter.stream_completion(prompt="stream cancel", tenant_id=tenant, **SEED)
    first = asyncio.ensure_future(stream.__anext__())
    await wait_for_requests(standins, "bedrock", 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await stream.aclose()
    stats = await settled_stats(adapter, tenant)
    assert (stats["total_requests"], stats["cancelled"]) == (1, 1)
    # A closed stream ends.
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


@pytest.mark.asyncio
async def test_abandoned_stream_records_usage(make_adapter, standins, tenant: str) -> None:
    adapter = make_adapter()
    standins.inject("bedrock", "slow", 1, delay=30.0)
    stream = adapter.stream_completion(prompt="abandon me", tenant_id=tenant, **SEED)
    pending = asyncio.ensure_future(stream.__anext__())
    await wait_for_requests(standins, "bedrock", 1)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    del stream, pending  # the iterator is collected: the engine settles the call
    stats = await settled_stats(adapter, tenant)
    assert stats["cancelled"] == 1


SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import asyncio, time
    from llm_failover import AWSLLMAdapter
    from llm_failover.testing import StandIns

    SEED = dict(agent_id="a", tenant_id="t", model="gpt-4")

    with StandIns() as standins:
        adapter = AWSLLMAdapter(**standins.adapter_kwargs())

        async def call(n):
            result = await adapter.generate_completion(prompt=f"run {n}", **SEED)
            print(n, result["provider"], result["cached"], flush=True)

        async def leave_calls_in_flight():
            standins.inject("bedrock", "slow", 2, delay=30.0)
            asyncio.ensure_future(adapter.generate_completion(prompt="in flight", **SEED))
            async def read_stream():
                async for chunk in adapter.stream_completion(prompt="stream in flight", **SEED):
                    print("unexpected chunk", chunk)
            asyncio.ensure_future(read_stream())
            while standins.calls("bedrock") < 3:
                await asyncio.sleep(0.005)
            print("leaving", standins.calls("bedrock"), flush=True)
            # asyncio.run() cancels both at shutdown and closes its loop

        asyncio.run(call(1))
        asyncio.run(leave_calls_in_flight())
        asyncio.run(call(2))
        asyncio.run(call(1))
        print("cancelled", adapter.get_usage_statistics_sync()["cancelled"], flush=True)
    print("clean exit", flush=True)
    """
)


def test_asyncio_run_twice_and_shutdown_with_calls_in_flight() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", SHUTDOWN_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONASYNCIODEBUG": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "Event loop is closed" not in done.stderr
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    assert done.stdout.splitlines() == [
        "1 bedrock False",
        "leaving 3",
        "2 bedrock False",
        "1 bedrock True",
        "cancelled 2",
        "clean exit",
    ]


def test_threads_call_concurrently_gil_released(make_adapter, standins, tenant: str) -> None:
    """N threads each make a synchronous call the stand-in answers after SLOW seconds: with
    the GIL held they would take N x SLOW; released, about SLOW."""
    adapter = make_adapter()
    threads_n = 4
    standins.inject("bedrock", "slow", threads_n, delay=SLOW)
    barrier = threading.Barrier(threads_n + 1)
    results: list = [None] * threads_n

    def work(i: int) -> None:
        barrier.wait()
        results[i] = adapter.generate_completion_sync(prompt=f"thread {i}", tenant_id=tenant, **SEED)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    # While the calls are in flight, this thread runs Python: it holds the GIL at will.
    spins = 0
    while any(t.is_alive() for t in threads):
        spins += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    for t in threads:
        t.join()
    assert all(r is not None and r["provider"] == "bedrock" for r in results)
    assert standins.calls("bedrock") == threads_n
    assert elapsed < 2 * SLOW, f"{threads_n} calls of {SLOW}s took {elapsed:.2f}s"
    assert elapsed >= SLOW * 0.9
    assert spins > 10


@pytest.mark.asyncio
async def test_tasks_call_concurrently(make_adapter, standins, tenant: str) -> None:
    adapter = make_adapter()
    n = 4
    standins.inject("bedrock", "slow", n, delay=SLOW)
    started = time.monotonic()
    results = await asyncio.gather(
        *(adapter.generate_completion(prompt=f"task {i}", tenant_id=tenant, **SEED) for i in range(n))
    )
    elapsed = time.monotonic() - started
    assert [r["provider"] for r in results] == ["bedrock"] * n
    assert SLOW * 0.9 <= elapsed < 2 * SLOW, elapsed


def test_sync_stream(make_adapter, tenant: str) -> None:
    adapter = make_adapter()
    chunks = list(adapter.stream_completion(prompt="sync stream", tenant_id=tenant, **SEED))
    assert chunks[-1]["type"] == "done" and chunks[-1]["provider"] == "bedrock"
    assert len([c for c in chunks if c["type"] == "delta"]) > 1
