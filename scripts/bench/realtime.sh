#!/usr/bin/env bash
# Realtime fan-out benchmark: two release realtime-gateways on a bench Redis of their own, driven by
# `loadgen realtime`, then the Socket.IO + redis-adapter harness (../shared/peer-bench) with the same
# clients and messages on the same Redis; prints both JSON lines and our figure ÷ Socket.IO's.
#
#   CLIENTS=2000 MESSAGES=200 RATE=20 bash scripts/bench/realtime.sh
#   CLIENTS=50 MESSAGES=20 SKIP_PEER=1 bash scripts/bench/realtime.sh   # quick check
#
# With steady in MODES it also runs `loadgen fanout-floor` (the same fan-out over bare loopback TCP
# sockets: the machine's floor under the steady latency) and prints ours ÷ floor.
# Knobs: CLIENTS, MESSAGES, RATE, MODES ("steady burst"), SKIP_PEER=1, SKIP_FLOOR=1, PEER_DIR,
# BENCH_REDIS_PORT.
# Everything it starts is stopped by PID on exit. Loopback only.
set -euo pipefail
# The load generator sends no API key yet: the services under test run with authentication off
# (the key check costs one SHA-256 of the key per call).
export NCY_API_AUTH=disabled
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CLIENTS=${CLIENTS:-2000}
MESSAGES=${MESSAGES:-200}
RATE=${RATE:-20}
MODES=${MODES:-"steady burst"}
# Its own database (created here, dropped on exit), so other benchmarks' schema state does not matter.
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_DB=ncy_bench_realtime_$$
export DATABASE_URL="${PG_ADMIN_URL%/*}/$BENCH_DB"
OUT_DIR="$ROOT/.run/bench"; mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/realtime-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
source scripts/bench/lib.sh
PEER_DIR=${PEER_DIR:-}
if [[ -z "$PEER_DIR" && "${SKIP_PEER:-0}" != 1 ]]; then PEER_DIR=$(peer_bench_dir); fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

REDIS_PORT=${BENCH_REDIS_PORT:-$(spare_port)}
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000 \
  >"$OUT_DIR/realtime-redis.log" 2>&1 &
PIDS+=($!)
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

DEPS_CHROMIUM=0 DEPS_TEST_VENV=0 bash scripts/deps.sh up >/dev/null
cargo build --release --workspace --bins  # the same feature set as bench.sh: no rebuild
BIN="$ROOT/target/release"
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $BENCH_DB" >/dev/null 2>&1 || true  # deps.sh may have made it
"$BIN/ncyctl" db migrate >/dev/null
export JWT_SECRET=$(openssl rand -hex 32)

WS=() GRPC=() GW_PIDS=()
for i in 1 2; do
  ws=$(spare_port) grpc=$(spare_port) admin=$(spare_port)
  NCY_WS_ADDR=127.0.0.1:$ws NCY_GRPC_ADDR=127.0.0.1:$grpc NCY_ADMIN_ADDR=127.0.0.1:$admin \
    NCY_REDIS_PREFIX=bench-rt NCY_WS_MAX_CONNECTIONS=100000 NCY_WS_COMMANDS_PER_SEC=1000 RUST_LOG=warn \
    "$BIN/realtime-gateway" >"$OUT_DIR/realtime-gateway-$i.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); GW_PIDS+=("$pid")
  WS+=("127.0.0.1:$ws"); GRPC+=("127.0.0.1:$grpc")
  wait_up "realtime-gateway $i" "$pid" "$OUT_DIR/realtime-gateway-$i.log" curl -fs "http://127.0.0.1:$admin/readyz"
done
ws_list=$(IFS=,; echo "${WS[*]}"); pid_list=$(IFS=,; echo "${GW_PIDS[*]}")

# Each run leaves its clients' ports in TIME_WAIT for a minute; with 10,000 of them the kernel's
# search for a free ephemeral port makes the next run's connects slower (seen: 1.9 s → 3.9 s for
# 10,000 clients). Every run, ours and the peer's, starts once they have drained.
settle_ports() {
  command -v ss >/dev/null || return 0
  for _ in $(seq 1 70); do
    (( $(ss -Htan state time-wait 2>/dev/null | wc -l) < 1000 )) && return 0
    sleep 1
  done
}

for mode in $MODES; do
  settle_ports
  echo "bench: realtime $mode, $CLIENTS clients, $MESSAGES messages (ncy)"
  "$BIN/loadgen" realtime --ws "$ws_list" --grpc "http://${GRPC[0]}" --pids "$pid_list" \
    --clients "$CLIENTS" --messages "$MESSAGES" --rate "$RATE" --mode "$mode" | tee -a "$OUT"
done

# The machine's floor under the steady figure: the same clients, messages and rate over bare
# loopback TCP sockets (two writer threads, one epoll reader; no gateway, WebSocket or Redis).
if [[ " $MODES " == *" steady "* && "${SKIP_FLOOR:-0}" != 1 ]]; then
  settle_ports
  echo "bench: fan-out floor, $CLIENTS bare loopback sockets, $MESSAGES messages at $RATE/s"
  "$BIN/loadgen" fanout-floor --clients "$CLIENTS" --messages "$MESSAGES" --rate "$RATE" | tee -a "$OUT"
  python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = next((r for r in rows if r.get("bench") == "ncy-realtime" and r.get("mode") == "steady"), None)
floor = next((r for r in rows if r.get("bench") == "fanout-floor"), None)
if ours and floor and floor.get("p99_ms"):
    print(json.dumps({"ratio": "ncy steady / bare-TCP floor", "p50_ms": round(ours["p50_ms"] / floor["p50_ms"], 2),
                      "p99_ms": round(ours["p99_ms"] / floor["p99_ms"], 2)}))
PY
fi

if [[ "${SKIP_PEER:-0}" != 1 && -n "$PEER_DIR" ]] && command -v node >/dev/null; then
  PEER=/tmp/peer-bench-realtime
  rm -rf "$PEER"; cp -r "$PEER_DIR" "$PEER"
  (cd "$PEER" && npm ci --silent >/dev/null 2>&1)
  for mode in $MODES; do
    settle_ports
    echo "bench: realtime $mode, $CLIENTS clients, $MESSAGES messages (Socket.IO + redis adapter)"
    (cd "$PEER" && node sio_bench.mjs --clients "$CLIENTS" --messages "$MESSAGES" --rate "$RATE" \
      --mode "$mode" --redis-port "$REDIS_PORT" --out "$OUT.sio") | tail -n 1 || true
  done
  [[ -f "$OUT.sio" ]] && cat "$OUT.sio" >>"$OUT"
  python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def pick(bench, mode):
    return next((r for r in rows if r.get("bench") == bench and r.get("mode") == mode), None)
for mode in ("steady", "burst"):
    ours, sio = pick("ncy-realtime", mode), pick("socketio", mode)
    if not ours or not sio:
        continue
    def ratio(k):
        a, b = ours.get(k), sio.get(k)
        return round(a / b, 2) if a and b else None
    print(json.dumps({"ratio": f"ncy/socketio {mode}", "delivered_per_sec": ratio("delivered_per_sec"),
                      "p50_ms": ratio("p50_ms"), "p99_ms": ratio("p99_ms"),
                      "connect_all_ms": ratio("connect_all_ms"),
                      "server_rss_per_conn_kb": ratio("server_rss_per_conn_kb")}))
PY
fi
echo "bench: results in $OUT"
