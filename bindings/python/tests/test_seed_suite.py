"""The seed's eight test classes, in Python, against the Rust stand-ins (the real Bedrock
and OpenAI clients inside the engine talk to them over loopback), a real Redis as the
ElastiCache cache and moto as the DynamoDB usage ledger."""

from __future__ import annotations

import json
import time

import pytest

from helpers import (
    BEDROCK_GPT35,
    BEDROCK_GPT4,
    BEDROCK_REPLY,
    OPENAI_REPLY,
    SEED,
    redis_entries,
    usage_items,
)
from llm_failover import (
    AllProvidersFailed,
    AWSLLMAdapter,
    InvalidRequest,
    ProvidersUnavailable,
    StreamInterrupted,
)

RESULT_KEYS = {"provider", "content", "tokens", "estimated_cost", "cached", "model", "latency", "request_id"}


class TestAWSLLMAdapterBasic:
    def test_adapter_initialization(self, adapter: AWSLLMAdapter) -> None:
        assert adapter.providers == ["bedrock", "openai"]
        assert adapter.backends[0].startswith("cache: ElastiCache/Redis at redis://127.0.0.1:")
        assert adapter.backends[1].startswith("usage: DynamoDB table lf-python-")
        assert adapter.bedrock_circuit_breaker.name == "bedrock"
        assert adapter.openai_circuit_breaker.name == "openai"

    @pytest.mark.asyncio
    async def test_configured_from_the_environment(self, monkeypatch, standins, redis_url: str, dynamodb_endpoint: str, usage_table: str, tenant: str) -> None:
        for name, value in standins.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ELASTICACHE_ENDPOINT", redis_url)
        monkeypatch.setenv("DYNAMODB_ENDPOINT", dynamodb_endpoint)
        monkeypatch.setenv("FAILOVER_DYNAMODB_TABLE", usage_table)
        adapter = AWSLLMAdapter(region_name="us-east-1", create_dynamodb_table=True)
        assert adapter.backends == [
            f"cache: ElastiCache/Redis at {redis_url}",
            f"usage: DynamoDB table {usage_table} at {dynamodb_endpoint}",
        ]
        result = await adapter.generate_completion(prompt="from the environment", tenant_id=tenant, **SEED)
        assert result["provider"] == "bedrock" and standins.calls("bedrock") == 1
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        assert stats["total_requests"] == 1

    def test_health_status(self, adapter: AWSLLMAdapter) -> None:
        health = adapter.get_health_status()
        assert health["status"] == "healthy"
        assert health["providers"]["bedrock"]["circuit_breaker_state"] == "CLOSED"
        assert health["providers"]["openai"]["circuit_breaker_state"] == "CLOSED"
        assert health["cache"]["backend"] == "elasticache"
        assert health["usage"]["backend"] == "dynamodb"
        assert health["problems"] == []

    @pytest.mark.asyncio
    async def test_cache_key_generation_with_tenant_isolation(self, adapter: AWSLLMAdapter, redis_url: str, tenant: str, standins) -> None:
        prompt = "Which tenant owns this secret prompt text?"
        before = redis_entries(redis_url)
        first = await adapter.generate_completion(prompt=prompt, tenant_id=tenant, **SEED)
        second = await adapter.generate_completion(prompt=prompt, tenant_id=tenant + "_other", **SEED)
        assert (first["cached"], second["cached"]) == (False, False)
        assert standins.calls("bedrock") == 2
        new = {k: v for k, v in redis_entries(redis_url).items() if k not in before}
        assert len(new) == 2, new.keys()
        for key, value in new.items():
            assert b"secret prompt" not in key and b"secret prompt" not in value
            assert tenant.encode() not in key
        # The two entries live under two different tenant tags.
        assert len({key.split(b":")[1] for key in new}) == 2


class TestBedrockIntegration:
    @pytest.mark.asyncio
    async def test_bedrock_completion(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        result = await adapter.generate_completion(prompt="What is 2+2? Answer with just the number.", tenant_id=tenant, **SEED)
        assert RESULT_KEYS <= result.keys()
        assert result["provider"] == "bedrock"
        assert result["content"] == BEDROCK_REPLY
        assert result["cached"] is False
        assert standins.calls("bedrock") == 1 and standins.calls("openai") == 0

    @pytest.mark.asyncio
    async def test_json_response_format(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        result = await adapter.generate_completion(
            prompt="Answer in JSON", tenant_id=tenant, **{**SEED, "response_format": "json"}
        )
        assert result["provider"] == "bedrock"
        assert json.loads(result["content"]) == {"answer": "4"}

    @pytest.mark.asyncio
    async def test_model_routing(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        gpt4 = await adapter.generate_completion(prompt="route me", tenant_id=tenant, **SEED)
        gpt35 = await adapter.generate_completion(prompt="route me", tenant_id=tenant, **{**SEED, "model": "gpt-3.5-turbo"})
        assert (gpt4["model"], gpt35["model"]) == (BEDROCK_GPT4, BEDROCK_GPT35)
        paths = [r for r in standins.bodies("bedrock")]
        assert len(paths) == 2
        with pytest.raises(InvalidRequest, match="model"):
            await adapter.generate_completion(prompt="route me", tenant_id=tenant, **{**SEED, "model": "no-such-model"})

    @pytest.mark.asyncio
    async def test_token_counting_and_usage_tracking(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        result = await adapter.generate_completion(prompt="count my tokens", tenant_id=tenant, **SEED)
        assert result["input_tokens"] > 0 and result["output_tokens"] == len(BEDROCK_REPLY.split())
        assert result["tokens"] == result["input_tokens"] + result["output_tokens"]
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        assert stats["total_requests"] == 1
        assert stats["total_tokens"] == result["tokens"]


class TestElastiCacheCaching:
    @pytest.mark.asyncio
    async def test_cache_hit_on_second_identical_call(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        first = await adapter.generate_completion(prompt="What is the capital of France?", tenant_id=tenant, **SEED)
        second = await adapter.generate_completion(prompt="What is the capital of France?", tenant_id=tenant, **SEED)
        assert (first["cached"], second["cached"]) == (False, True)
        assert second["content"] == first["content"]
        assert standins.calls("bedrock") == 1
        # Scenario 4: no usage logged for the cached request.
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        assert stats["total_requests"] == 1

    @pytest.mark.asyncio
    async def test_cache_isolation_by_tenant(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        await adapter.generate_completion(prompt="shared words", tenant_id=tenant, **SEED)
        other = await adapter.generate_completion(prompt="shared words", tenant_id=tenant + "_b", **SEED)
        again = await adapter.generate_completion(prompt="shared words", tenant_id=tenant, **SEED)
        assert other["cached"] is False and again["cached"] is True
        assert standins.calls("bedrock") == 2

    @pytest.mark.asyncio
    async def test_cache_invalidation_when_parameters_change(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        await adapter.generate_completion(prompt="vary me", tenant_id=tenant, **SEED)
        variants = [
            {"temperature": 0.9},
            {"max_tokens": 21},
            {"model": "gpt-3.5-turbo"},
            {"response_format": "json"},
            {"stop": ["END"]},
        ]
        for change in variants:
            result = await adapter.generate_completion(prompt="vary me", tenant_id=tenant, **{**SEED, **change})
            assert result["cached"] is False, change
        assert standins.calls("bedrock") == 1 + len(variants)

    @pytest.mark.asyncio
    async def test_ttl_based_cache_expiration(self, make_adapter, tenant: str, standins, redis_url: str) -> None:
        adapter = make_adapter(cache_ttl=1.0)
        first = await adapter.generate_completion(prompt="expire me", tenant_id=tenant, **SEED)
        hit = await adapter.generate_completion(prompt="expire me", tenant_id=tenant, **SEED)
        assert (first["cached"], hit["cached"]) == (False, True)
        # The TTL is the thing under test: wait it out (Redis expires keys on its own clock).
        time.sleep(1.3)
        after = await adapter.generate_completion(prompt="expire me", tenant_id=tenant, **SEED)
        assert after["cached"] is False
        assert standins.calls("bedrock") == 2


class TestCircuitBreakerFailover:
    @pytest.mark.asyncio
    async def test_breaker_opens_after_threshold_failures(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        standins.inject("bedrock", "unavailable", times=3)
        for i in range(3):
            result = await adapter.generate_completion(prompt=f"fail {i}", tenant_id=tenant, **SEED)
            assert result["provider"] == "openai"
        health = adapter.get_health_status()
        assert health["providers"]["bedrock"]["circuit_breaker_state"] == "OPEN"
        assert health["providers"]["bedrock"]["last_error_kind"] == "unavailable"
        assert health["status"] == "degraded"
        assert adapter.bedrock_circuit_breaker.state == "OPEN"

    @pytest.mark.asyncio
    async def test_automatic_fallback_to_openai(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        standins.inject("bedrock", "unavailable", times=1)
        result = await adapter.generate_completion(prompt="fall back", tenant_id=tenant, **SEED)
        assert result["provider"] == "openai" and result["content"] == OPENAI_REPLY
        assert [a["outcome"] for a in result["attempts"]] == ["failed", "succeeded"]
        assert result["attempts"][0]["error_kind"] == "unavailable"
        assert adapter.get_health_status()["providers"]["bedrock"]["failures"] == 1

    @pytest.mark.asyncio
    async def test_recovery_open_half_open_closed(self, make_adapter, tenant: str, standins) -> None:
        adapter = make_adapter(recovery_timeout=0.5)
        standins.inject("bedrock", "unavailable", times=3)
        for i in range(3):
            await adapter.generate_completion(prompt=f"trip {i}", tenant_id=tenant, **SEED)
        breaker = adapter.bedrock_circuit_breaker
        snapshot = breaker.snapshot()
        assert snapshot["state"] == "OPEN"
        # Wait exactly as long as the breaker says its open period still lasts.
        time.sleep(snapshot["next_probe_in"] + 0.05)
        probe = await adapter.generate_completion(prompt="probe", tenant_id=tenant, **SEED)
        assert probe["provider"] == "bedrock"
        # The engine's default breaker closes after two successful probes.
        assert breaker.state == "HALF_OPEN"
        second = await adapter.generate_completion(prompt="probe 2", tenant_id=tenant, **SEED)
        assert second["provider"] == "bedrock"
        assert breaker.state == "CLOSED"
        assert breaker.snapshot()["transitions"][-3:] == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]

    @pytest.mark.asyncio
    async def test_open_breaker_prevents_calls(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        adapter.bedrock_circuit_breaker.force_open()
        assert adapter.get_health_status()["providers"]["bedrock"]["circuit_breaker_state"] == "FORCED_OPEN"
        result = await adapter.generate_completion(prompt="skip bedrock", tenant_id=tenant, **SEED)
        assert result["provider"] == "openai"
        assert result["attempts"][0]["outcome"] == "skipped_breaker_open"
        assert standins.calls("bedrock") == 0
        adapter.bedrock_circuit_breaker.force_close()
        back = await adapter.generate_completion(prompt="bedrock again", tenant_id=tenant, **SEED)
        assert back["provider"] == "bedrock" and standins.calls("bedrock") == 1


class TestOpenAIFallback:
    @pytest.mark.asyncio
    async def test_openai_fallback_completion(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        adapter.bedrock_circuit_breaker.force_open()
        result = await adapter.generate_completion(prompt="What is 2+2?", tenant_id=tenant, **SEED)
        assert result["provider"] == "openai"
        assert result["model"].startswith("gpt-4")  # the model OpenAI says served it
        assert result["content"] == OPENAI_REPLY
        assert standins.calls("openai") == 1

    @pytest.mark.asyncio
    async def test_error_when_all_providers_fail(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        adapter.bedrock_circuit_breaker.force_open()
        standins.inject("openai", "unavailable", times=1)
        with pytest.raises(AllProvidersFailed) as caught:
            await adapter.generate_completion(prompt="nobody answers", tenant_id=tenant, **SEED)
        error = caught.value
        assert str(error).startswith(f"all providers failed for request {error.request_id}: bedrock")
        assert "openai (gpt-4): unavailable" in str(error)
        assert [a["provider"] for a in error.attempts] == ["bedrock", "openai"]
        assert [a["outcome"] for a in error.attempts] == ["skipped_breaker_open", "failed"]

    @pytest.mark.asyncio
    async def test_every_breaker_open_fails_fast(self, make_adapter, tenant: str, standins) -> None:
        adapter = make_adapter(recovery_timeout=30.0)
        adapter.bedrock_circuit_breaker.force_open()
        standins.inject("openai", "unavailable", times=3)
        for i in range(3):
            with pytest.raises(AllProvidersFailed):
                await adapter.generate_completion(prompt=f"down {i}", tenant_id=tenant, **SEED)
        assert adapter.openai_circuit_breaker.state == "OPEN"
        with pytest.raises(ProvidersUnavailable) as caught:
            await adapter.generate_completion(prompt="nobody is up", tenant_id=tenant, **SEED)
        assert str(caught.value).startswith(f"no provider is available for request {caught.value.request_id}")
        assert 0 < caught.value.retry_after <= 30.0  # OpenAI's breaker reopens first
        assert standins.calls("openai") == 3 and standins.calls("bedrock") == 0
        assert adapter.get_health_status()["status"] == "unhealthy"

    @pytest.mark.asyncio
    async def test_fallback_keeps_response_structure(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        primary = await adapter.generate_completion(prompt="shape a", tenant_id=tenant, **SEED)
        standins.inject("bedrock", "unavailable", times=1)
        fallback = await adapter.generate_completion(prompt="shape b", tenant_id=tenant, **SEED)
        assert (primary["provider"], fallback["provider"]) == ("bedrock", "openai")
        assert primary.keys() == fallback.keys()
        for key in primary:
            assert type(primary[key]) is type(fallback[key]), key


class TestUsageTracking:
    @pytest.mark.asyncio
    async def test_usage_statistics_structure(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        await adapter.generate_completion(prompt="structure", tenant_id=tenant, **SEED)
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        for key in ("total_requests", "total_tokens", "total_cost", "successes", "failures", "cancelled", "by_tenant", "by_agent", "by_provider", "by_model"):
            assert key in stats, key
        assert set(stats["by_tenant"]) == {tenant}
        assert set(stats["by_agent"]) == {"test_agent"}
        assert set(stats["by_provider"]) == {"bedrock"}

    @pytest.mark.asyncio
    async def test_usage_logged_after_completion(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        standins.inject("bedrock", "unavailable", times=1)
        result = await adapter.generate_completion(prompt="log me", tenant_id=tenant, **SEED)
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        # One record per provider call: the failed Bedrock call and the OpenAI answer.
        assert stats["total_requests"] == 2
        assert (stats["failures"], stats["successes"], stats["fallbacks"]) == (1, 1, 1)
        assert stats["by_provider"]["openai"]["tokens"] == result["tokens"]

    @pytest.mark.asyncio
    async def test_dynamodb_integration_for_usage_logs(self, adapter: AWSLLMAdapter, tenant: str, dynamodb_endpoint: str, usage_table: str) -> None:
        result = await adapter.generate_completion(prompt="to dynamodb", tenant_id=tenant, **SEED)
        await adapter.flush_usage()
        items = [i for i in usage_items(dynamodb_endpoint, usage_table, tenant) if "request_id" in i]
        assert len(items) == 1
        item = items[0]
        assert item["request_id"]["S"] == result["request_id"]
        assert item["provider"]["S"] == "bedrock"
        assert item["model"]["S"] == BEDROCK_GPT4
        assert int(item["input_tokens"]["N"]) + int(item["output_tokens"]["N"]) == result["tokens"]


    @pytest.mark.asyncio
    async def test_async_with_stores_every_record_at_exit(self, make_adapter, tenant: str, dynamodb_endpoint: str, usage_table: str) -> None:
        async with make_adapter() as adapter:
            for i in range(3):
                await adapter.generate_completion(prompt=f"record {i}", tenant_id=tenant, **SEED)
        items = [i for i in usage_items(dynamodb_endpoint, usage_table, tenant) if "request_id" in i]
        assert len(items) == 3
        from llm_failover import AdapterShutDown

        with pytest.raises(AdapterShutDown):
            await adapter.generate_completion(prompt="after exit", tenant_id=tenant, **SEED)


class TestCostTracking:
    @pytest.mark.asyncio
    async def test_cost_in_response(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        result = await adapter.generate_completion(prompt="price me", tenant_id=tenant, **SEED)
        # Claude 3.5 Sonnet: $3 / $15 per million input / output tokens.
        expected = (result["input_tokens"] * 3 + result["output_tokens"] * 15) / 1_000_000
        assert result["estimated_cost"] == pytest.approx(expected, abs=1e-12)
        assert result["estimated_cost"] > 0

    @pytest.mark.asyncio
    async def test_cost_in_usage_statistics(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        a = await adapter.generate_completion(prompt="cost one", tenant_id=tenant, **SEED)
        b = await adapter.generate_completion(prompt="cost two", tenant_id=tenant, **SEED)
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        assert stats["total_cost"] == pytest.approx(a["estimated_cost"] + b["estimated_cost"], abs=1e-12)

    @pytest.mark.asyncio
    async def test_per_model_cost(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        sonnet = await adapter.generate_completion(prompt="same size", tenant_id=tenant, **SEED)
        haiku = await adapter.generate_completion(prompt="same size", tenant_id=tenant, **{**SEED, "model": "gpt-3.5-turbo"})
        assert sonnet["tokens"] == haiku["tokens"]
        assert haiku["estimated_cost"] == pytest.approx((haiku["input_tokens"] * 0.25 + haiku["output_tokens"] * 1.25) / 1_000_000, abs=1e-12)
        assert haiku["estimated_cost"] < sonnet["estimated_cost"]
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        assert stats["by_model"][BEDROCK_GPT35]["estimated_cost"] == pytest.approx(haiku["estimated_cost"])


class TestStreamingCompletion:
    @pytest.mark.asyncio
    async def test_streaming_completion(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        chunks = [c async for c in adapter.stream_completion(prompt="stream it", tenant_id=tenant, **SEED)]
        assert chunks[-1]["type"] == "done"
        done = chunks[-1]
        assert done["provider"] == "bedrock" and done["cached"] is False and done["tokens"] > 0
        assert "".join(c["content"] for c in chunks if c["type"] == "delta") == BEDROCK_REPLY

    @pytest.mark.asyncio
    async def test_chunk_by_chunk_delivery(self, adapter: AWSLLMAdapter, tenant: str) -> None:
        deltas = []
        async for chunk in adapter.stream_completion(prompt="chunks", tenant_id=tenant, **SEED):
            if chunk["type"] == "delta":
                deltas.append(chunk["content"])
        assert len(deltas) == len(BEDROCK_REPLY.split())
        assert "".join(deltas) == BEDROCK_REPLY

    @pytest.mark.asyncio
    async def test_fallback_to_openai_streaming(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        standins.inject("bedrock", "unavailable", times=1)
        chunks = [c async for c in adapter.stream_completion(prompt="stream fallback", tenant_id=tenant, **SEED)]
        done = chunks[-1]
        assert done["type"] == "done" and done["provider"] == "openai"
        assert "".join(c["content"] for c in chunks if c["type"] == "delta") == OPENAI_REPLY
        stats = await adapter.get_usage_statistics(tenant_id=tenant)
        assert (stats["failures"], stats["successes"]) == (1, 1)

    @pytest.mark.asyncio
    async def test_stream_cut_after_first_chunk_raises(self, adapter: AWSLLMAdapter, tenant: str, standins) -> None:
        standins.inject("bedrock", "cut_stream", times=1)
        received = []
        stream = adapter.stream_completion(prompt="cut me", tenant_id=tenant, **SEED)
        with pytest.raises(StreamInterrupted) as caught:
            async for chunk in stream:
                received.append(chunk)
        # Past the first chunk there is no failover: the stream ends with an explicit error.
        assert received and all(c["type"] == "delta" for c in received)
        assert caught.value.provider == "bedrock" and caught.value.request_id
        assert str(caught.value).startswith("stream from bedrock interrupted after")
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert standins.calls("openai") == 0
        again = await adapter.generate_completion(prompt="cut me", tenant_id=tenant, **SEED)
        assert again["cached"] is False  # a cut stream is never cached
