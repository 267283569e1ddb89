"""Type stubs of the native module ``llm_failover._native`` (the pyo3 extension)."""

from typing import Any, Awaitable, Iterator, Literal, Optional, Sequence, Union

__version__: str

BreakerState = Literal["CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "FORCED_CLOSED"]
ResponseFormat = Union[Literal["text", "json", "json_object"], dict[str, Any]]
Message = dict[str, Any]
Tool = dict[str, Any]
Image = Union[str, dict[str, Any]]

class CircuitBreaker:
    """One provider's circuit breaker (a handle: the breaker lives in the adapter)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> BreakerState: ...
    def force_open(self) -> None: ...
    def force_close(self) -> None: ...
    def reset(self) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...

class CompletionStream:
    """A streamed completion: ``async for chunk in stream`` or ``for chunk in stream``.
    Chunks: ``{"type": "delta", "content"}``, ``tool_call_start`` (index, id, name),
    ``tool_call_delta`` (index, arguments), ``tool_call_end`` (index), and a last ``done``
    with the seed's fields."""

    def __aiter__(self) -> "CompletionStream": ...
    def __anext__(self) -> Awaitable[dict[str, Any]]: ...
    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def __next__(self) -> dict[str, Any]: ...
    def aclose(self) -> Awaitable[None]: ...
    def close(self) -> None: ...

class AWSLLMAdapter:
    """The native adapter (``llm_failover.AWSLLMAdapter`` subclasses it)."""

    def __init__(
        self,
        region_name: Optional[str] = None,
        elasticache_endpoint: Optional[str] = None,
        *,
        bedrock_endpoint_url: Optional[str] = None,
        openai_api_key: Optional[str] = None,
        openai_base_url: Optional[str] = None,
        aws_access_key_id: Optional[str] = None,
        aws_secret_access_key: Optional[str] = None,
        aws_session_token: Optional[str] = None,
        dynamodb_endpoint: Optional[str] = None,
        dynamodb_table: Optional[str] = None,
        create_dynamodb_table: bool = False,
        cache: bool = True,
        cache_ttl: Optional[float] = None,
        failure_threshold: Optional[int] = None,
        recovery_timeout: Optional[float] = None,
        max_attempts: Optional[int] = None,
        timeout: Optional[float] = None,
        shared_state_url: Optional[str] = None,
        shared_state_prefix: Optional[str] = None,
        tenant_limits: Optional[dict[str, Any]] = None,
    ) -> None: ...
    def generate_completion(
        self,
        prompt: Optional[str] = None,
        agent_id: Optional[str] = None,
        tenant_id: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        response_format: Optional[ResponseFormat] = None,
        *,
        messages: Optional[Sequence[Message]] = None,
        system: Optional[str] = None,
        images: Optional[Sequence[Image]] = None,
        tools: Optional[Sequence[Tool]] = None,
        tool_choice: Optional[Union[str, dict[str, Any]]] = None,
        parallel_tool_calls: Optional[bool] = None,
        stop: Optional[Union[str, Sequence[str]]] = None,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
    ) -> Awaitable[dict[str, Any]]: ...
    def generate_completion_sync(
        self,
        prompt: Optional[str] = None,
        agent_id: Optional[str] = None,
        tenant_id: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        response_format: Optional[ResponseFormat] = None,
        *,
        messages: Optional[Sequence[Message]] = None,
        system: Optional[str] = None,
        images: Optional[Sequence[Image]] = None,
        tools: Optional[Sequence[Tool]] = None,
        tool_choice: Optional[Union[str, dict[str, Any]]] = None,
        parallel_tool_calls: Optional[bool] = None,
        stop: Optional[Union[str, Sequence[str]]] = None,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
    ) -> dict[str, Any]: ...
    def stream_completion(
        self,
        prompt: Optional[str] = None,
        agent_id: Optional[str] = None,
        tenant_id: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        response_format: Optional[ResponseFormat] = None,
        *,
        messages: Optional[Sequence[Message]] = None,
        system: Optional[str] = None,
        images: Optional[Sequence[Image]] = None,
        tools: Optional[Sequence[Tool]] = None,
        tool_choice: Optional[Union[str, dict[str, Any]]] = None,
        parallel_tool_calls: Optional[bool] = None,
        stop: Optional[Union[str, Sequence[str]]] = None,
        top_p: Optional[float] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        timeout: Optional[float] = None,
        request_id: Optional[str] = None,
    ) -> CompletionStream: ...
    def get_health_status(self) -> dict[str, Any]: ...
    @property
    def bedrock_circuit_breaker(self) -> CircuitBreaker: ...
    @property
    def openai_circuit_breaker(self) -> CircuitBreaker: ...
    def circuit_breaker(self, name: str) -> CircuitBreaker: ...
    @property
    def providers(self) -> list[str]: ...
    @property
    def backends(self) -> list[str]: ...
    @property
    def dynamodb_table(self) -> Optional[str]: ...
    def get_usage_statistics(
        self,
        tenant_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        *,
        flush: bool = True,
    ) -> Awaitable[dict[str, Any]]: ...
    def get_usage_statistics_sync(
        self,
        tenant_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        *,
        flush: bool = True,
    ) -> dict[str, Any]: ...
    def flush_usage(self) -> Awaitable[None]: ...
    def purge_tenant_cache(self, tenant_id: str) -> Awaitable[int]: ...
    def shutdown(self) -> Awaitable[None]: ...
    def shutdown_sync(self) -> None: ...

class StandIns:
    """The Rust stand-ins (see ``llm_failover.testing.StandIns``)."""

    def __init__(self) -> None: ...
    @property
    def bedrock_endpoint(self) -> str: ...
    @property
    def openai_base_url(self) -> str: ...
    @property
    def openai_api_key(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def aws_access_key_id(self) -> str: ...
    @property
    def aws_secret_access_key(self) -> str: ...
    @property
    def max_attempts(self) -> int: ...
    def inject(
        self, vendor_name: str, fault: str, times: int = 1, *, retry_after: int = 1, delay: float = 0.0
    ) -> None: ...
    def reply(
        self,
        vendor_name: str,
        text: Optional[str] = None,
        times: int = 1,
        *,
        tool_calls: Optional[Sequence[dict[str, Any]]] = None,
    ) -> None: ...
    def calls(self, vendor_name: str) -> int: ...
    def bodies(self, vendor_name: str) -> list[Any]: ...
    def close(self) -> None: ...
