"""Fixtures of the Python suite: a real redis-server and moto_server (DynamoDB) on free
ports, found the way the Rust suite finds them (``REDIS_URL`` / ``DYNAMODB_ENDPOINT``
when set, else the binary on ``PATH`` or next to this Python), and the Rust stand-ins.

A service that cannot be found is a visible skip with the reason — or, with
``FAILOVER_REQUIRE_SERVICES=1`` (``cargo xtask test`` sets it), a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from llm_failover import AWSLLMAdapter
from llm_failover.testing import StandIns

REQUIRE = os.environ.get("FAILOVER_REQUIRE_SERVICES") == "1"
STARTUP_LIMIT = 20.0


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"FAILOVER_REQUIRE_SERVICES=1 and {reason}")
    pytest.skip(reason)


def _find(binary: str) -> Optional[str]:
    beside = Path(sys.executable).parent / binary
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(binary)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int, probe: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(probe)
            return expect in s.recv(64)
    except OSError:
        return False


def _spawn(argv_for_port: Callable[[int], list[str]], probe: bytes, expect: bytes) -> tuple[subprocess.Popen, int]:
    """Starts a server on a free port and waits until it answers `probe` (a port taken
    meanwhile by another process: the server exits, and we try another)."""
    last = ""
    for _ in range(3):
        port = _free_port()
        proc = subprocess.Popen(
            argv_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + STARTUP_LIMIT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                break
            if _answers(port, probe, expect):
                return proc, port
            time.sleep(0.05)
        else:
            proc.kill()
            last = "did not answer in time"
        proc.wait()
    raise RuntimeError(f"{argv_for_port(0)[0]} did not start: {last}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis: ``REDIS_URL``, else a private ``redis-server`` on a free port."""
    given = os.environ.get("REDIS_URL", "").strip()
    if given:
        yield given
        return
    binary = _find("redis-server")
    if binary is None:
        _missing("redis-server is not on PATH (apt-get install redis-server)")
    proc, port = _spawn(
        lambda port: [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        b"*1\r\n$4\r\nPING\r\n",
        b"+PONG",
    )
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """A DynamoDB endpoint: ``DYNAMODB_ENDPOINT``, else ``moto_server`` on a free port."""
    given = os.environ.get("DYNAMODB_ENDPOINT", "").strip()
    if given:
        yield given
        return
    binary = _find("moto_server")
    if binary is None:
        _missing("moto_server is not on PATH (pip install 'moto[server]')")
    proc, port = _spawn(
        lambda port: [binary, "-H", "127.0.0.1", "-p", str(port)],
        b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        b"HTTP/1.",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def usage_table() -> str:
    """The session's own usage table (created by the first adapter that uses it)."""
    return f"lf-python-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def standins() -> Iterator[StandIns]:
    """This test's own Bedrock and OpenAI stand-ins."""
    with StandIns() as s:
        yield s


@pytest.fixture
def tenant() -> str:
    """A tenant id of this test's own."""
    return f"test_tenant_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_adapter(standins: StandIns, redis_url: str, dynamodb_endpoint: str, usage_table: str) -> Callable[..., AWSLLMAdapter]:
    """Builds adapters against the stand-ins, the real Redis (ElastiCache) and the
    DynamoDB usage table; breakers open after 3 consecutive failures, as the seed's."""

    def make(**overrides: object) -> AWSLLMAdapter:
        kwargs: dict[str, object] = dict(standins.adapter_kwargs())
        kwargs.update(
            elasticache_endpoint=redis_url,
            dynamodb_endpoint=dynamodb_endpoint,
            dynamodb_table=usage_table,
            create_dynamodb_table=True,
            failure_threshold=3,
        )
        kwargs.update(overrides)
        return AWSLLMAdapter(**kwargs)

    return make


@pytest.fixture
def adapter(make_adapter: Callable[..., AWSLLMAdapter]) -> AWSLLMAdapter:
    return make_adapter()
