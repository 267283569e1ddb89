#!/usr/bin/env bash
# The gateway's load bench: the loopback harness of ../shared/perf (an nginx mock that speaks
# OpenAI and Bedrock; wrk closed loop, oha open loop and time to first byte), the direct floor
# and the gateway in one sitting. Results: target/perf/results/runs.jsonl; the summary table:
# `python3 target/perf/summarize.py`.
#
#   bench/gateway/run.sh                # everything (~25 min on 2 cores after setup)
#   DUR=5 REPS=3 bench/gateway/run.sh   # shorter runs
#
# Not part of `cargo xtask test`: figures are reported (README), never asserted.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HARNESS="${HARNESS:-$ROOT/../shared/perf}"
PERF="$ROOT/target/perf"
export DUR="${DUR:-10}" REPS="${REPS:-3}" CONCS="${CONCS:-1 16 64}"
[ -d "$PERF" ] || cp -r "$HARNESS" "$PERF"
[ -x "$PERF/tools/bin/oha" ] && command -v wrk >/dev/null || (cd "$PERF" && ./setup.sh)
cargo build --release -p failover-cli --manifest-path "$ROOT/Cargo.toml"
FAILOVER="$ROOT/target/release/failover"
# The mock checks nothing; the clients still sign and send these.
export OPENAI_API_KEY=sk-mock AWS_ACCESS_KEY_ID=AKIDMOCKBENCH0000000 AWS_SECRET_ACCESS_KEY=mock \
  AWS_REGION=us-east-1 FAILOVER_LOG=error
cd "$PERF"
./run_mock.sh start
trap './run_mock.sh stop; ./run_redis.sh stop >/dev/null 2>&1 || true' EXIT
./run_mock.sh check

BEDROCK=1 RATE=1 TTFT_QPS=100 ./bench_direct.sh

hex32() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
gateway() { # LABEL CONFIG MODES
  LABEL="$1" GW_URL=http://127.0.0.1:18400/v1/chat/completions AUTH=sk-bench \
    GW_CMD="$FAILOVER serve --config $ROOT/bench/gateway/$2.toml" \
    GW_HEALTH=http://127.0.0.1:18400/healthz MODES="$3" ./bench_gateway.sh
}
gateway failover-openai openai-none "plain stream ttft"
gateway failover-bedrock bedrock-none "plain stream ttft"
gateway failover-mem openai-memory "cachehit cachemiss"
./run_redis.sh start
ELASTICACHE_ENDPOINT=redis://127.0.0.1:16390 \
  FAILOVER_CACHE_ENCRYPTION_KEY="$(hex32)" FAILOVER_CACHE_KEY="$(hex32)" \
  gateway failover-redis openai-elasticache "cachehit"
python3 summarize.py
