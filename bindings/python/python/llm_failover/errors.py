"""The exceptions of ``llm_failover``. Every message is the engine's own.

``LLMFailoverError`` is the base of all of them. Errors of a request carry
``request_id``, ``attempts`` (one dict per provider tried or skipped: ``provider``,
``model``, ``outcome``, ``error_kind``, ``message``, ``latency``) and ``retry_after``
(seconds, when the engine knows when trying again may succeed).
"""

from __future__ import annotations

from typing import Any, Optional


class LLMFailoverError(Exception):
    """Base class of every llm_failover error."""

    request_id: Optional[str] = None
    attempts: list[dict[str, Any]] = []
    retry_after: Optional[float] = None


class InvalidRequest(LLMFailoverError, ValueError):
    """The request was refused before any cache or provider was touched (a missing id, a
    parameter out of range, a malformed message, tool or image)."""


class ConfigurationError(LLMFailoverError):
    """The adapter cannot be built from its arguments and environment."""


class AllProvidersFailed(LLMFailoverError):
    """Every provider was tried or skipped and none answered; the message names each
    attempt (the seed's "clear error message about all providers failing")."""


class ProvidersUnavailable(AllProvidersFailed):
    """No provider could be called: each was skipped, at least one because its circuit
    breaker is open. ``retry_after`` is the earliest reopening, when known."""


class ProviderRefused(LLMFailoverError):
    """A provider refused the request for a reason no other provider would cure (invalid
    request, content filter): returned at once, without failover. ``provider`` and
    ``error_kind`` say which and why."""


class DeadlineExceeded(LLMFailoverError):
    """The request's deadline (``timeout=``) passed before any provider answered."""


class StreamInterrupted(LLMFailoverError):
    """A stream failed after its first chunk reached the caller: the text so far is
    incomplete. Never a silent clean end."""


class RequestRejected(LLMFailoverError):
    """A request layer (a budget, a rate limit) refused the request before the cache and
    any provider were touched. ``layer`` and ``reason`` say which and why."""


class BudgetExceeded(RequestRejected):
    """The tenant's budget (USD per day or per month) is used up; the message names the
    limit and when it resets (``retry_after``, seconds)."""


class RateLimited(RequestRejected):
    """The tenant's rate limit (requests or tokens per minute) is reached; ``retry_after``
    says when the minute frees it."""


class LimitUnavailable(RequestRejected):
    """The tenant's budget cannot be checked (the shared state does not answer) and budgets
    fail closed."""


class AdapterShutDown(LLMFailoverError):
    """The adapter was shut down and takes no new requests."""


class UsageLedgerError(LLMFailoverError):
    """The usage ledger (memory or DynamoDB) failed to answer or to store."""


class CacheError(LLMFailoverError):
    """A cache operation asked for explicitly (a purge) failed. Lookups never raise: a
    cache error is a miss."""


__all__ = [
    "LLMFailoverError",
    "InvalidRequest",
    "ConfigurationError",
    "AllProvidersFailed",
    "ProvidersUnavailable",
    "ProviderRefused",
    "DeadlineExceeded",
    "StreamInterrupted",
    "RequestRejected",
    "BudgetExceeded",
    "RateLimited",
    "LimitUnavailable",
    "AdapterShutDown",
    "UsageLedgerError",
    "CacheError",
]
