"""Runs the seed's three manual tests against the stand-ins (started here, in-process) and
a Redis at ELASTICACHE_ENDPOINT: `python examples/run_seed_manual_tests.py`."""

import os
import subprocess
import sys
from pathlib import Path

from llm_failover.testing import StandIns

HERE = Path(__file__).parent

with StandIns() as standins:
    env = {**os.environ, **standins.env()}
    for name in ("seed_manual_bedrock.py", "seed_manual_caching.py", "seed_manual_circuit_breaker.py"):
        print(f"$ python {name}")
        sys.stdout.flush()
        subprocess.run([sys.executable, str(HERE / name)], env=env, check=True)
