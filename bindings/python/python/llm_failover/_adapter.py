"""``AWSLLMAdapter``: the native adapter, with its async methods as coroutines (so
``asyncio.create_task(adapter.generate_completion(...))`` works, and asyncio cancels the
call at shutdown like any task)."""

from __future__ import annotations

from typing import Any

from . import _native

_Native = _native.AWSLLMAdapter


class AWSLLMAdapter(_Native):
    """Resilient LLM access: Bedrock first, OpenAI as the fallback, one circuit breaker
    each, a tenant-bound response cache (memory, or ElastiCache/Redis) and a usage ledger
    (memory, or DynamoDB) — the llm-failover engine with the seed's API.

    Configured by keyword arguments, the rest from the environment: ``AWS_REGION``, the
    AWS credential chain, ``OPENAI_API_KEY``, ``ELASTICACHE_ENDPOINT``,
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ``OPENAI_BASE_URL``, ``DYNAMODB_ENDPOINT``,
    ``FAILOVER_DYNAMODB_TABLE``, ``FAILOVER_CACHE_KEY``, ``FAILOVER_CACHE_ENCRYPTION_KEY``.
    """

    __slots__ = ()

    async def generate_completion(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The seed's ``generate_completion(prompt, agent_id, tenant_id, model,
        temperature, max_tokens, response_format)``; see the stubs for every argument."""
        return await _Native.generate_completion(self, *args, **kwargs)

    async def get_usage_statistics(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Usage statistics from the ledger (after storing every record so far)."""
        return await _Native.get_usage_statistics(self, *args, **kwargs)

    async def flush_usage(self) -> None:
        """Waits until every usage record so far is stored."""
        await _Native.flush_usage(self)

    async def purge_tenant_cache(self, tenant_id: str) -> int:
        """Removes every cached answer of ``tenant_id``."""
        return await _Native.purge_tenant_cache(self, tenant_id)

    async def shutdown(self) -> None:
        """Refuses new requests and stores every usage record accepted."""
        await _Native.shutdown(self)

    async def __aenter__(self) -> "AWSLLMAdapter":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """``async with AWSLLMAdapter(...) as adapter:`` shuts it down at the end: every
        usage record is stored (or spilled) before the block exits."""
        await self.shutdown()

    def __enter__(self) -> "AWSLLMAdapter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        """``with AWSLLMAdapter(...) as adapter:``: :meth:`shutdown_sync` at the end."""
        self.shutdown_sync()
