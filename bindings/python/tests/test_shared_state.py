"""State shared by several adapters (processes of one application) through Redis: the
breakers, and per-tenant budgets and rate limits raising their own exceptions."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import pytest

from llm_failover import AWSLLMAdapter, BudgetExceeded, RateLimited, RequestRejected

from helpers import SEED


def shared(redis_url: str, **more: Any) -> dict[str, Any]:
    return {"shared_state_url": redis_url, "shared_state_prefix": f"lf-py-{uuid.uuid4().hex}", **more}


def test_a_used_up_budget_raises_budget_exceeded(make_adapter: Callable[..., AWSLLMAdapter], redis_url: str, tenant: str) -> None:
    limits = {"default": {"usd_per_day": "0"}, "tenants": {"rich": {"usd_per_day": "100"}}}
    adapter = make_adapter(**shared(redis_url, tenant_limits=limits))
    with pytest.raises(BudgetExceeded) as refused:
        adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id=tenant, **SEED)
    assert isinstance(refused.value, RequestRejected)
    assert "usd_per_day" in str(refused.value)
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 86_400
    result = adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id="rich", **SEED)
    assert result["content"]


def test_a_rate_limit_raises_rate_limited_with_retry_after(make_adapter: Callable[..., AWSLLMAdapter], redis_url: str, tenant: str) -> None:
    limits = {"default": {"requests_per_minute": 2}}
    adapter = make_adapter(**shared(redis_url, tenant_limits=limits), cache=False)
    for _ in range(2):
        adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id=tenant, **SEED)
    with pytest.raises(RateLimited) as refused:
        adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id=tenant, **SEED)
    assert "requests_per_minute" in str(refused.value)
    assert 0 < refused.value.retry_after <= 60


def test_an_agent_limit_applies_on_top_of_the_tenants(make_adapter: Callable[..., AWSLLMAdapter], redis_url: str, tenant: str) -> None:
    limits = {"agents": {f"{tenant}/chatty": {"requests_per_minute": 1}}}
    adapter = make_adapter(**shared(redis_url, tenant_limits=limits), cache=False)
    seed = {**SEED, "agent_id": "chatty"}
    adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id=tenant, **seed)
    with pytest.raises(RateLimited) as refused:
        adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id=tenant, **seed)
    assert str(refused.value).count("agent chatty of tenant") == 1, str(refused.value)
    # Another agent of the tenant has no limit of its own.
    for _ in range(2):
        adapter.generate_completion_sync(prompt="What is 2+2?", tenant_id=tenant, **SEED)


def test_two_adapters_share_one_breaker(make_adapter: Callable[..., AWSLLMAdapter], redis_url: str) -> None:
    settings = shared(redis_url)
    first = make_adapter(**settings)
    second = make_adapter(**settings)
    first.bedrock_circuit_breaker.force_open()
    deadline = time.monotonic() + 1.0
    while second.bedrock_circuit_breaker.state != "FORCED_OPEN":
        assert time.monotonic() < deadline, "the other adapter sees the forced open within a second"
        time.sleep(0.01)
    assert second.get_health_status()["providers"]["bedrock"]["circuit_breaker_state"] == "FORCED_OPEN"
    second.bedrock_circuit_breaker.reset()
    deadline = time.monotonic() + 1.0
    while first.bedrock_circuit_breaker.state != "CLOSED":
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_limits_need_the_shared_state(make_adapter: Callable[..., AWSLLMAdapter]) -> None:
    from llm_failover import ConfigurationError

    with pytest.raises(ConfigurationError, match="shared_state_url"):
        make_adapter(tenant_limits={"default": {"usd_per_day": "1"}})
    with pytest.raises(ConfigurationError, match="tenant_limits"):
        make_adapter(shared_state_url="redis://127.0.0.1:1", tenant_limits={"default": {"usd_per_day": "-1"}})
