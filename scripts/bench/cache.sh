#!/usr/bin/env bash
# scripts/bench/cache.sh — the cache gateway's benchmark: two gateways on spare loopback ports,
# `loadgen cache` against them (L1-hit and L2-hit, unary and over GetStream, miss→load, invalidation
# propagation), and `redis-benchmark -t get -c 64` on the same Redis in the same run, printed as ratios.
# Prints JSON lines (also appended to $BENCH_OUT when set). Nothing here asserts.
#
# Knobs: BENCH_REQUESTS (200000), BENCH_LOADS (20000), BENCH_INVALIDATIONS (1000),
# BENCH_CONCURRENCY (64), BENCH_PROFILE (release; `debug` for a quick smoke run).
# Only the processes started here are stopped, by PID, at exit.
set -euo pipefail
# The load generator sends no API key yet: the services under test run with authentication off
# (the key check costs one SHA-256 of the key per call).
export NCY_API_AUTH=disabled
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ncy}
REQUESTS=${BENCH_REQUESTS:-200000}
LOADS=${BENCH_LOADS:-20000}
INVALIDATIONS=${BENCH_INVALIDATIONS:-1000}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
PROFILE=${BENCH_PROFILE:-release}
OUT=${BENCH_OUT:-/dev/null}
LOGS="$ROOT/.run/bench"; mkdir -p "$LOGS"

DEPS_CHROMIUM=0 DEPS_TEST_VENV=0 bash scripts/deps.sh up >/dev/null
if [[ $PROFILE == release ]]; then
  cargo build --release --workspace --bins  # the same feature set as bench.sh: no rebuild
else
  cargo build --workspace --bins
fi
BIN="$ROOT/target/$PROFILE"
"$BIN/ncyctl" db migrate >/dev/null

source scripts/bench/lib.sh
PIDS=()
PREFIX="bench-cache-$$"
# The run writes ~400,000 keys (one-hour TTL) under its own prefix into $REDIS_URL, which may be the
# Redis the tests use: they are removed at exit (SCAN + UNLINK, pipelined), or a few runs would leave
# millions of keys behind and slow every SCAN there (InvalidatePattern's tests time out on it).
drop_keys() {
  command -v redis-cli >/dev/null || return 0
  redis-cli -u "$REDIS_URL" --scan --pattern "*$PREFIX*" 2>/dev/null \
    | LC_ALL=C awk '{printf "*2\r\n$6\r\nUNLINK\r\n$%d\r\n%s\r\n", length($0), $0}' \
    | redis-cli -u "$REDIS_URL" --pipe >/dev/null 2>&1 || true
}
cleanup() { for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
            for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
            drop_keys; }
trap cleanup EXIT

ADDRS=()
for i in 1 2; do
  grpc="127.0.0.1:$(spare_port)"; admin="127.0.0.1:$(spare_port)"
  NCY_GRPC_ADDR=$grpc NCY_ADMIN_ADDR=$admin NCY_REDIS_PREFIX=$PREFIX RUST_LOG=warn \
    "$BIN/cache-gateway" >"$LOGS/cache-gateway-$i.log" 2>&1 &
  PIDS+=($!)
  ADDRS+=("$grpc")
  wait_up "cache-gateway $i" "$!" "$LOGS/cache-gateway-$i.log" curl -fs "http://$admin/readyz"
done

echo "bench: loadgen cache c$CONCURRENCY ($REQUESTS requests per hit figure, $LOADS loads, $INVALIDATIONS invalidations)"
RESULTS=$("$BIN/loadgen" cache --addr "http://${ADDRS[0]}" --addr2 "http://${ADDRS[1]}" \
  --concurrency "$CONCURRENCY" --requests "$REQUESTS" --loads "$LOADS" --invalidations "$INVALIDATIONS")
echo "$RESULTS" | tee -a "$OUT"
ps -o pid,comm,time -p "$(IFS=,; echo "${PIDS[*]}")" | tee "$LOGS/cache-cpu.txt"

if command -v redis-benchmark >/dev/null; then
  host=$(echo "$REDIS_URL" | sed -E 's#^redis://([^:/]+).*#\1#'); port=$(echo "$REDIS_URL" | sed -nE 's#^redis://[^:/]+:([0-9]+).*#\1#p')
  rps=$(redis-benchmark -h "$host" -p "${port:-6379}" -t get -c 64 -n "$REQUESTS" -q | tr "\r" "\n" | sed -nE 's/^GET: ([0-9.]+) requests per second.*/\1/p' | tail -1)
  echo "{\"scenario\":\"redis-benchmark-get\",\"concurrency\":64,\"ops_per_sec\":$rps}" | tee -a "$OUT"
  echo "$RESULTS" | python3 -c '
import json, sys
base = float(sys.argv[1])
for line in sys.stdin:
    f = json.loads(line)
    if f["scenario"] in ("cache-l1-hit", "cache-l2-hit", "cache-l1-hit-stream", "cache-l2-hit-stream") and base > 0:
        print(json.dumps({"scenario": f["scenario"] + "-vs-redis-get", "ratio": round(f["ops_per_sec"] / base, 3)}))
' "$rps" | tee -a "$OUT"
fi
