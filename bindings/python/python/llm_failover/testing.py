"""Test your own code offline, the way llm-failover tests itself.

``StandIns()`` starts the project's local Bedrock and OpenAI stand-ins (Rust servers on
127.0.0.1 that speak both wire formats: Converse JSON, the AWS event stream, chat
completions, SSE) inside this process, and tells an adapter how to reach them::

    from llm_failover import AWSLLMAdapter
    from llm_failover.testing import StandIns

    with StandIns() as standins:
        adapter = AWSLLMAdapter(**standins.adapter_kwargs())
        standins.inject("bedrock", "unavailable", times=3)   # Bedrock answers 503 thrice
        ...

or, for code that builds its adapter from the environment, ``os.environ.update(standins.env())``.
"""

from __future__ import annotations

from typing import Any, Optional

from . import _native

__all__ = ["StandIns"]


class StandIns:
    """The Bedrock and OpenAI stand-ins, started on ``__enter__`` (or construction with
    ``start=True``) and stopped on ``__exit__`` / :meth:`close`."""

    def __init__(self, start: bool = False) -> None:
        self._native: Optional[_native.StandIns] = None
        if start:
            self.start()

    def start(self) -> "StandIns":
        """Starts both servers (no-op when running)."""
        if self._native is None:
            self._native = _native.StandIns()
        return self

    def __enter__(self) -> "StandIns":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops both servers (idempotent)."""
        if self._native is not None:
            self._native.close()
            self._native = None

    @property
    def native(self) -> _native.StandIns:
        if self._native is None:
            raise RuntimeError("the stand-ins are not started: use `with StandIns() as s:`")
        return self._native

    @property
    def bedrock_endpoint(self) -> str:
        """The Bedrock runtime endpoint URL."""
        return self.native.bedrock_endpoint

    @property
    def openai_base_url(self) -> str:
        """The OpenAI base URL (``…/v1``)."""
        return self.native.openai_base_url

    def adapter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AWSLLMAdapter(**...)``: both endpoints, the stand-ins'
        dummy credentials and key, and one SDK attempt per provider call (the adapter fails
        over instead of retrying: every request a stand-in receives is one provider call)."""
        n = self.native
        return {
            "region_name": n.region,
            "bedrock_endpoint_url": n.bedrock_endpoint,
            "openai_base_url": n.openai_base_url,
            "openai_api_key": n.openai_api_key,
            "aws_access_key_id": n.aws_access_key_id,
            "aws_secret_access_key": n.aws_secret_access_key,
            "max_attempts": n.max_attempts,
        }

    def env(self) -> dict[str, str]:
        """The same as environment variables, for code that builds ``AWSLLMAdapter(...)``
        from the environment (the SDK's own retry count stays at its default there)."""
        n = self.native
        return {
            "AWS_REGION": n.region,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": n.bedrock_endpoint,
            "OPENAI_BASE_URL": n.openai_base_url,
            "OPENAI_API_KEY": n.openai_api_key,
            "AWS_ACCESS_KEY_ID": n.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": n.aws_secret_access_key,
        }

    def inject(
        self,
        vendor: str,
        fault: str,
        times: int = 1,
        *,
        retry_after: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Serves ``fault`` to the next ``times`` requests of ``vendor`` (``"bedrock"`` or
        ``"openai"``): ``"unavailable"`` (503), ``"throttled"`` (429 with ``retry_after``
        seconds), ``"cut_stream"`` (a stream cut after its first delta) or ``"slow"`` (the
        answer after ``delay`` seconds). Faults are used up in order."""
        self.native.inject(vendor, fault, times, retry_after=retry_after, delay=delay)

    def reply(
        self,
        vendor: str,
        text: Optional[str] = None,
        times: int = 1,
        *,
        tool_calls: Optional[list[dict[str, Any]]] = None,
    ) -> None:
        """Answers the next ``times`` requests of ``vendor`` with ``text``, or with
        ``tool_calls`` (OpenAI-style: ``{"id", "function": {"name", "arguments"}}``) after
        the text, in the vendor's wire format, plain or streamed as the request asks."""
        self.native.reply(vendor, text, times, tool_calls=tool_calls)

    def calls(self, vendor: str) -> int:
        """How many requests ``vendor``'s stand-in received."""
        return self.native.calls(vendor)

    def bodies(self, vendor: str) -> list[Any]:
        """The JSON bodies ``vendor``'s stand-in received, in order."""
        return self.native.bodies(vendor)
