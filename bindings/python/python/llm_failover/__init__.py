"""Resilient LLM access on the llm-failover Rust engine, with the ``AWSLLMAdapter`` API.

Bedrock is the primary provider and OpenAI the fallback, each behind its own circuit
breaker; answers are cached per tenant (memory, or ElastiCache/Redis) and every provider
call's tokens and cost go to a usage ledger (memory, or DynamoDB)::

    from llm_failover import AWSLLMAdapter

    adapter = AWSLLMAdapter(region_name="us-east-1")
    result = await adapter.generate_completion(
        prompt="What is 2+2?", agent_id="agent", tenant_id="tenant", model="gpt-4",
        temperature=0.1, max_tokens=10, response_format="text",
    )
    print(result["provider"], result["content"], result["tokens"], result["cached"])
"""

from __future__ import annotations

from . import errors
from ._adapter import AWSLLMAdapter
from ._native import CircuitBreaker, CompletionStream, __version__
from .errors import (
    AdapterShutDown,
    AllProvidersFailed,
    BudgetExceeded,
    CacheError,
    ConfigurationError,
    DeadlineExceeded,
    InvalidRequest,
    LimitUnavailable,
    LLMFailoverError,
    ProviderRefused,
    ProvidersUnavailable,
    RateLimited,
    RequestRejected,
    StreamInterrupted,
    UsageLedgerError,
)

__all__ = [
    "AWSLLMAdapter",
    "CircuitBreaker",
    "CompletionStream",
    "__version__",
    "errors",
    "AdapterShutDown",
    "AllProvidersFailed",
    "BudgetExceeded",
    "CacheError",
    "ConfigurationError",
    "DeadlineExceeded",
    "InvalidRequest",
    "LimitUnavailable",
    "LLMFailoverError",
    "ProviderRefused",
    "ProvidersUnavailable",
    "RateLimited",
    "RequestRejected",
    "StreamInterrupted",
    "UsageLedgerError",
]
