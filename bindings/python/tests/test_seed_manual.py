"""The seed's three "Manual Testing" snippets (examples/seed_manual_*.py: the seed's text,
the import line and the ElastiCache endpoint aside), run as scripts in their own process,
configured only by the environment — ``StandIns.env()`` and ``ELASTICACHE_ENDPOINT`` — and
checked for what the seed says they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import BEDROCK_REPLY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, standins, redis_url: str) -> list[str]:
    env = {**os.environ, **standins.env(), "ELASTICACHE_ENDPOINT": redis_url}
    for name_ in ("DYNAMODB_ENDPOINT", "FAILOVER_DYNAMODB_TABLE"):
        env.pop(name_, None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout.splitlines()


def test_manual_bedrock(standins, redis_url: str) -> None:
    lines = run("seed_manual_bedrock.py", standins, redis_url)
    assert lines[0] == "Provider: bedrock"
    assert lines[1] == f"Content: {BEDROCK_REPLY}"
    assert re.fullmatch(r"Tokens: [1-9][0-9]*", lines[2]), lines[2]
    assert re.fullmatch(r"Cost: \$0\.000[0-9]{3}", lines[3]) and lines[3] != "Cost: $0.000000", lines[3]
    assert lines[4] == "Cached: False"
    assert len(lines) == 5
    assert standins.calls("bedrock") == 1


def test_manual_caching(standins, redis_url: str) -> None:
    lines = run("seed_manual_caching.py", standins, redis_url)
    assert lines == ["First call - Cached: False", "Second call - Cached: True", "Same content: True"]
    assert standins.calls("bedrock") == 1


def test_manual_circuit_breaker(standins, redis_url: str) -> None:
    lines = run("seed_manual_circuit_breaker.py", standins, redis_url)
    assert lines == [
        "Bedrock circuit breaker: CLOSED",
        "OpenAI circuit breaker: CLOSED",
        "Provider used: openai",
    ]
    assert (standins.calls("bedrock"), standins.calls("openai")) == (0, 1)
