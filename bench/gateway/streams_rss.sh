#!/usr/bin/env bash
# The gateway's resident memory with 1,000 concurrent streams held open: the mock takes 5 s
# to each stream's first chunk and 200 ms between chunks, oha keeps 1,000 streams in flight
# for 20 s, and the gateway's VmRSS is sampled every 200 ms. Run after bench/gateway/run.sh
# (which sets up the harness and builds the release binary).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PERF="$ROOT/target/perf"
STREAMS="${STREAMS:-1000}"
ulimit -n "$(ulimit -Hn)"  # each stream holds two sockets (client and upstream)
export OPENAI_API_KEY=sk-mock FAILOVER_LOG=error
cd "$PERF"
./run_mock.sh start
"$ROOT/target/release/failover" serve --config "$ROOT/bench/gateway/openai-slowstreams.toml" \
  2>"$PERF/run/rss-gateway.log" &
GW=$!
trap 'kill $GW 2>/dev/null; ./run_mock.sh stop' EXIT
until curl -s -o /dev/null http://127.0.0.1:18400/healthz; do sleep 0.2; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$GW/status"; }
echo "idle: $(rss) KiB"
"$PERF/tools/bin/oha" --no-tui -c "$STREAMS" -z 20s -m POST \
  -H "Authorization: Bearer sk-bench" -H "content-type: application/json" \
  -D "$PERF/requests/chat_stream.json" http://127.0.0.1:18400/v1/chat/completions \
  >"$PERF/run/rss-oha.txt" &
OHA=$!
peak=0
while kill -0 $OHA 2>/dev/null; do
  now=$(rss); [ "$now" -gt "$peak" ] && peak=$now
  sleep 0.2
done
echo "peak with $STREAMS concurrent streams: $peak KiB"
grep -E "Success rate|Requests/sec|Total:" "$PERF/run/rss-oha.txt" || true
grep -A12 "Status code distribution" "$PERF/run/rss-oha.txt" || true
echo "after: $(rss) KiB"
