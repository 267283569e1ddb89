"""Type stubs of ``llm_failover.AWSLLMAdapter``: the native adapter with its async
methods as coroutines."""

from typing import Any, Optional, Sequence, Union

from ._native import AWSLLMAdapter as _Native
from ._native import Image, Message, ResponseFormat, Tool

class AWSLLMAdapter(_Native):
    async def generate_completion(
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
    async def get_usage_statistics(
        self,
        tenant_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        *,
        flush: bool = True,
    ) -> dict[str, Any]: ...
    async def flush_usage(self) -> None: ...
    async def purge_tenant_cache(self, tenant_id: str) -> int: ...
    async def shutdown(self) -> None: ...
    async def __aenter__(self) -> "AWSLLMAdapter": ...
    async def __aexit__(self, *exc_info: object) -> None: ...
    def __enter__(self) -> "AWSLLMAdapter": ...
    def __exit__(self, *exc_info: object) -> None: ...
