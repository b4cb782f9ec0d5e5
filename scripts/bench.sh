#!/usr/bin/env bash
# `make bench`: release build, then each benchmark against services started here on loopback ports,
# with the peer baseline measured in the same run on the same machine. Prints JSON lines and writes
# them to .run/bench/<UTC stamp>.jsonl. Nothing here asserts: figures go in docs/benchmarks.md by hand (the current ones also in the README).
set -euo pipefail
# The load generator sends no API key yet: the services under test run with authentication off
# (the key check costs one SHA-256 of the key per call).
export NCY_API_AUTH=disabled
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ncy}
OUT_DIR="$ROOT/.run/bench"; mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
REQUESTS=${BENCH_REQUESTS:-200000}

DEPS_CHROMIUM=0 DEPS_TEST_VENV=0 bash scripts/deps.sh up
cargo build --release --bins
BIN="$ROOT/target/release"
"$BIN/ncyctl" db migrate >/dev/null

source scripts/bench/lib.sh
GRPC=127.0.0.1:$(spare_port) ADMIN=127.0.0.1:$(spare_port)
NCY_GRPC_ADDR=$GRPC NCY_ADMIN_ADDR=$ADMIN NCY_REDIS_PREFIX=bench RUST_LOG=warn \
  "$BIN/cache-gateway" >"$OUT_DIR/cache-gateway.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
wait_up cache-gateway "$PID" "$OUT_DIR/cache-gateway.log" curl -fs "http://$ADMIN/readyz"

echo "bench: grpc-health c64 against cache-gateway ($REQUESTS requests)"
"$BIN/loadgen" grpc-health --addr "http://$GRPC" --concurrency 64 --requests "$REQUESTS" | tee -a "$OUT"
ps -o pid,comm,time -p $PID | tee -a "$OUT_DIR/cpu.txt"

if command -v redis-benchmark >/dev/null; then
  host=$(echo "$REDIS_URL" | sed -E 's#^redis://([^:/]+).*#\1#'); port=$(echo "$REDIS_URL" | sed -nE 's#^redis://[^:/]+:([0-9]+).*#\1#p')
  echo "bench: redis-benchmark -t get -c 64 (baseline, same run)"
  rps=$(redis-benchmark -h "$host" -p "${port:-6379}" -t get -c 64 -n "$REQUESTS" -q | tr "\r" "\n" | sed -nE 's/^GET: ([0-9.]+) requests per second.*/\1/p')
  echo "{\"scenario\":\"redis-benchmark-get\",\"concurrency\":64,\"ops_per_sec\":$rps}" | tee -a "$OUT"
fi
echo "bench: results in $OUT"
