#!/usr/bin/env bash
# Job engine benchmark: our job-scheduler + worker vs BullMQ 6.7 on the same Redis, same run.
# Starts its own Redis on a spare loopback port, the release job-scheduler and a worker (restarted per
# worker concurrency), runs `loadgen jobs` (noop jobs) and `loadgen jobs-floor` (the same drain as bare
# Redis commands, no engine: the machine's floor), then the BullMQ harness from
# ../shared/peer-bench (copied to /tmp), and prints our figure ÷ BullMQ's. Stops only what it started.
#
# Knobs: BENCH_JOBS (20000), BENCH_PROFILE (release|debug), BENCH_REDIS_PORT (6391), BENCH_BULLMQ (1).
set -euo pipefail
# The load generator sends no API key yet: the services under test run with authentication off
# (the key check costs one SHA-256 of the key per call).
export NCY_API_AUTH=disabled
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
source scripts/bench/lib.sh
N=${BENCH_JOBS:-20000}
PROFILE=${BENCH_PROFILE:-release}
PORT=${BENCH_REDIS_PORT:-6391}
if [ "${BENCH_BULLMQ:-1}" = 1 ]; then PEER=$(peer_bench_dir); fi
OUT_DIR="$ROOT/.run/bench"; mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OURS="$OUT_DIR/jobs-$STAMP.jsonl"; THEIRS="$OUT_DIR/bullmq-$STAMP.jsonl"
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ncy}

if [ "$PROFILE" = release ]; then
  cargo build --release -p job-scheduler -p worker -p loadgen
else
  cargo build -p job-scheduler -p worker -p loadgen
fi
BIN="$ROOT/target/$PROFILE"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

if redis-cli -p "$PORT" ping >/dev/null 2>&1; then
  echo "bench: port $PORT is busy; set BENCH_REDIS_PORT" >&2; exit 1
fi
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >"$OUT_DIR/jobs-redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
for _ in $(seq 1 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

export REDIS_URL="redis://127.0.0.1:$PORT" RUST_LOG=warn NCY_CRON_INSTALL_DEFAULTS=false
# Keep finished jobs for the read-back of timestamps; no rate limit on the bench queue.
export NCY_QUEUE_NOTIFICATION_KEEP_COMPLETED=10000000 NCY_QUEUE_NOTIFICATION_RATE_LIMIT=0
GRPC=127.0.0.1:$(spare_port)
NCY_GRPC_ADDR=$GRPC NCY_ADMIN_ADDR=127.0.0.1:$(spare_port) NCY_REDIS_PREFIX=benchjobs \
  "$BIN/job-scheduler" >"$OUT_DIR/jobs-scheduler.log" 2>&1 &
SCHED_PID=$!; PIDS+=("$SCHED_PID")
wait_up job-scheduler "$SCHED_PID" "$OUT_DIR/jobs-scheduler.log" \
  "$BIN/loadgen" grpc-health --addr "http://$GRPC" --concurrency 1 --connections 1 --requests 1

WORKER_PID=
start_worker() {  # $1 = concurrency
  local grpc admin
  grpc=127.0.0.1:$(spare_port) admin=127.0.0.1:$(spare_port)
  NCY_GRPC_ADDR=$grpc NCY_ADMIN_ADDR=$admin NCY_REDIS_PREFIX=benchjobs \
    NCY_WORKER_QUEUES=notification NCY_QUEUE_NOTIFICATION_CONCURRENCY="$1" NCY_WORKER_BATCH="$1" \
    "$BIN/worker" >"$OUT_DIR/jobs-worker.log" 2>&1 &
  WORKER_PID=$!; PIDS+=("$WORKER_PID")
  wait_up "worker (concurrency $1)" "$WORKER_PID" "$OUT_DIR/jobs-worker.log" curl -fs "http://$admin/readyz"
}
stop_worker() {
  kill -TERM "$WORKER_PID" 2>/dev/null || true; wait "$WORKER_PID" 2>/dev/null || true
}
lg() { "$BIN/loadgen" jobs --addr "http://$GRPC" "$@" | tee -a "$OURS"; }

echo "bench: jobs ($N noop jobs per scenario, $PROFILE build, redis :$PORT)"
lg --mode enqueue --clients 16 --jobs "$N"
for c in 1 16 64; do
  start_worker "$c"
  lg --mode drain --concurrency "$c" --jobs "$N"
  lg --mode e2e --concurrency "$c" --jobs "$N"
  if [ "$c" = 16 ]; then
    lg --mode stream --concurrency 16 --jobs "$N"
    lg --mode delayed --jobs 1000 --concurrency 16
  fi
  ps -o pid,comm,time -p "$SCHED_PID,$WORKER_PID,$REDIS_PID" | tee -a "$OUT_DIR/jobs-cpu-$STAMP.txt"
  stop_worker
done

# The machine's floor under the drain: the least Redis work per job of a stream queue, no engine.
for c in 16 64; do
  "$BIN/loadgen" jobs-floor --redis-url "$REDIS_URL" --jobs "$N" --concurrency "$c" | tee -a "$OURS"
done

if [ "${BENCH_BULLMQ:-1}" = 1 ]; then
  echo "bench: BullMQ harness on the same redis (:$PORT)"
  rm -rf /tmp/peer-bench-jobs && cp -r "$PEER" /tmp/peer-bench-jobs
  (cd /tmp/peer-bench-jobs && npm ci --silent >/dev/null 2>&1 && node bullmq_bench.mjs --n "$N" --port "$PORT" --out "$THEIRS" >/dev/null)
  node - "$OURS" "$THEIRS" <<'JS'
const fs = require('fs');
const read = (f) => fs.readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const ours = Object.fromEntries(read(process.argv[2]).map((r) => [r.scenario, r]));
const theirs = Object.fromEntries(read(process.argv[3]).map((r) => [r.scenario, r]));
// Redis CPU per drained job: BullMQ records Redis's cores over the drain window.
for (const r of Object.values(theirs)) {
  if (r.scenario.startsWith('b_drain_') && r.redis_cpu_cores != null && r.jobs_per_sec) {
    r.redis_cpu_us_per_job = Math.round((r.redis_cpu_cores / r.jobs_per_sec) * 1e7) / 10;
  }
}
const rows = [
  ['enqueue bulk jobs/s', 'jobs-enqueue-bulk', 'jobs_per_sec', 'a_enqueue_addBulk', 'jobs_per_sec', true],
  ['enqueue one-by-one jobs/s', 'jobs-stream-serial-c16', 'jobs_per_sec', 'c1_stream_serial_add_c16', 'add_per_sec', true],
  ['enqueue 16 in flight jobs/s (vs BullMQ serial)', 'jobs-enqueue-single', 'jobs_per_sec', 'c1_stream_serial_add_c16', 'add_per_sec', true],
  ...[1, 16, 64].flatMap((c) => [
    [`drain c${c} jobs/s`, `jobs-drain-c${c}`, 'jobs_per_sec', `b_drain_c${c}`, 'jobs_per_sec', true],
    [`drain c${c} Redis CPU µs per job`, `jobs-drain-c${c}`, 'redis_cpu_us_per_job', `b_drain_c${c}`, 'redis_cpu_us_per_job', false],
    [`e2e bulk c${c} jobs/s`, `jobs-e2e-bulk-c${c}`, 'jobs_per_sec', `b_e2e_bulk_c${c}`, 'jobs_per_sec', true],
  ]),
  ...[16, 64].flatMap((c) => [
    [`floor (no engine) c${c} jobs/s`, `jobs-floor-c${c}`, 'jobs_per_sec', `b_drain_c${c}`, 'jobs_per_sec', true],
    [`floor (no engine) c${c} Redis CPU µs per job`, `jobs-floor-c${c}`, 'redis_cpu_us_per_job', `b_drain_c${c}`, 'redis_cpu_us_per_job', false],
  ]),
  ['enqueue-to-start p50 ms (stream c16)', 'jobs-stream-serial-c16', 'start_p50_ms', 'c1_stream_serial_add_c16', 'p50_ms', false],
  ['enqueue-to-start p99 ms (stream c16)', 'jobs-stream-serial-c16', 'start_p99_ms', 'c1_stream_serial_add_c16', 'p99_ms', false],
  ['delayed lateness p50 ms', 'jobs-delayed-1000ms-500ps', 'lateness_p50_ms', 'd1_delayed_1000ms_spread_500ps', 'p50_ms', false],
  ['delayed lateness p99 ms', 'jobs-delayed-1000ms-500ps', 'lateness_p99_ms', 'd1_delayed_1000ms_spread_500ps', 'p99_ms', false],
];
for (const [label, os, of, ts, tf] of rows) {
  const o = ours[os]?.[of], t = theirs[ts]?.[tf];
  const ratio = o != null && t ? (o / t).toFixed(2) : 'n/a';
  console.log(JSON.stringify({ figure: label, ours: o ?? null, bullmq: t ?? null, ours_over_bullmq: ratio }));
}
JS
fi
echo "bench: results in $OURS ${BENCH_BULLMQ:+and $THEIRS}"
