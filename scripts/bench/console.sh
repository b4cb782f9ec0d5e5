#!/usr/bin/env bash
# Console page-render benchmark: a queue page with 100,000 waiting jobs must render in the same time
# as one with 10 (the page lists fifty at a time with ListJobs' token; it never loads a state whole).
#
# Starts the release job-scheduler (no worker: jobs stay WAITING) and console on spare ports below
# the ephemeral range, against the local Redis (REDIS_URL, default 127.0.0.1:6379) under a fresh key
# prefix of its own; fills the email queue with BENCH_BIG waiting jobs and the notification queue
# with BENCH_SMALL and the report queue with 50 (one full page: the same rows as the big queue's
# page, so that ratio shows the cost of the queue's size alone), all paused (ncyctl jobs
# enqueue-bulk); signs in; times BENCH_GETS GETs of each queue page with curl (%{time_total}) after
# a few warm-up GETs; prints median and p95 for each and the ratios, one JSON line each, also
# written under .run/bench/. Removes its keys and stops only the processes it started, by PID.
#
# Knobs: BENCH_BIG (100000), BENCH_SMALL (10), BENCH_GETS (50), BENCH_PROFILE (release|debug),
# BENCH_BUILD (1; 0 runs the binaries already built).
set -euo pipefail
export NCY_API_AUTH=disabled
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
source scripts/bench/lib.sh
BIG=${BENCH_BIG:-100000}
SMALL=${BENCH_SMALL:-10}
GETS=${BENCH_GETS:-50}
PROFILE=${BENCH_PROFILE:-release}
OUT_DIR="$ROOT/.run/bench"; mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$OUT_DIR/console-$STAMP.jsonl"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PREFIX="benchconsole-$STAMP-$$"
WORK=$(mktemp -d)

if [ "${BENCH_BUILD:-1}" != 1 ]; then
  :
elif [ "$PROFILE" = release ]; then
  cargo build --release -p job-scheduler -p ncy-console -p ncyctl
else
  cargo build -p job-scheduler -p ncy-console -p ncyctl
fi
BIN="$ROOT/target/$PROFILE"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # This run's keys only (SCAN, not KEYS), so the shared Redis is left as it was.
  redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" 2>/dev/null \
    | xargs -r -n 500 redis-cli -u "$REDIS_URL" unlink >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "bench: no Redis at $REDIS_URL" >&2; exit 1; }

export RUST_LOG=warn NCY_CRON_INSTALL_DEFAULTS=false NCY_LOG_FORMAT=text
GRPC=127.0.0.1:$(spare_port)
NCY_GRPC_ADDR=$GRPC NCY_ADMIN_ADDR=127.0.0.1:$(spare_port) NCY_REDIS_PREFIX=$PREFIX \
  "$BIN/job-scheduler" >"$OUT_DIR/console-scheduler.log" 2>&1 &
SCHED_PID=$!; PIDS+=("$SCHED_PID")
export NCY_SCHEDULER_ADDR="http://$GRPC"
wait_up job-scheduler "$SCHED_PID" "$OUT_DIR/console-scheduler.log" "$BIN/ncyctl" queues

PASSWORD="bench-$(date +%s%N)"
HASH=$(printf '%s\n' "$PASSWORD" | "$BIN/ncy-console" hash-password)
printf '[[users]]\nname = "bench"\nrole = "viewer"\npassword_hash = "%s"\n' "$HASH" >"$WORK/users.toml"
CONSOLE=127.0.0.1:$(spare_port)
# No cache-gateway: the sign-in rate limit fails open (one warn line).
NCY_CONSOLE_ADDR=$CONSOLE NCY_ADMIN_ADDR=127.0.0.1:$(spare_port) NCY_CONSOLE_JOBS_URL="http://$GRPC" \
  NCY_CONSOLE_CACHE_URL=http://127.0.0.1:1 NCY_CONSOLE_USERS_FILE="$WORK/users.toml" \
  NCY_CONSOLE_SESSION_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" \
  "$BIN/ncy-console" >"$OUT_DIR/console-console.log" 2>&1 &
CONSOLE_PID=$!; PIDS+=("$CONSOLE_PID")
wait_up console "$CONSOLE_PID" "$OUT_DIR/console-console.log" curl -fs "http://$CONSOLE/login"

fill() {  # queue count
  "$BIN/ncyctl" queues pause "$1" >/dev/null
  python3 -c 'import sys; sys.stdout.write(("{\"queue\":\"%s\",\"jobType\":\"noop\"}\n" % sys.argv[1]) * int(sys.argv[2]))' \
    "$1" "$2" >"$WORK/$1.jsonl"
  "$BIN/ncyctl" jobs enqueue-bulk "$WORK/$1.jsonl" >/dev/null
}
echo "bench: console ($BIG waiting jobs on email, $SMALL on notification, 50 on report, $GETS GETs each, $PROFILE build)"
T0=$(date +%s.%N)
fill email "$BIG"
fill notification "$SMALL"
fill report 50
echo "bench: filled in $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$T0" "$(date +%s.%N)") s"
"$BIN/ncyctl" queues

JAR="$WORK/cookies"
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -c "$JAR" -H "Origin: http://$CONSOLE" \
  --data-urlencode name=bench --data-urlencode "password=$PASSWORD" "http://$CONSOLE/login")
[ "$STATUS" = 303 ] || { echo "bench: sign-in answered $STATUS" >&2; exit 1; }

measure() {  # queue jobs
  local url="http://$CONSOLE/queues/$1?state=waiting" times="$WORK/$1.times" code
  for _ in 1 2 3 4 5; do curl -s -o /dev/null -b "$JAR" "$url"; done
  : >"$times"
  for _ in $(seq 1 "$GETS"); do
    code=$(curl -s -o /dev/null -b "$JAR" -w '%{http_code} %{time_total}\n' "$url")
    [ "${code%% *}" = 200 ] || { echo "bench: GET $url answered ${code%% *}" >&2; exit 1; }
    echo "${code#* }" >>"$times"
  done
  python3 - "$1" "$2" "$times" <<'PY' | tee -a "$OUT"
import json, sys
queue, jobs, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = sorted(float(x) * 1000 for x in open(path).read().split())
pick = lambda q: t[min(len(t) - 1, int(round(q * (len(t) - 1))))]
print(json.dumps({"scenario": f"console-queue-page-{jobs}", "queue": queue, "waiting_jobs": jobs,
                  "gets": len(t), "median_ms": round(pick(0.5), 2), "p95_ms": round(pick(0.95), 2)}))
PY
}
measure notification "$SMALL"
measure report 50
measure email "$BIG"
python3 - "$OUT" "$SMALL" "$BIG" <<'PY' | tee -a "$OUT"
import json, sys
rows = {r["queue"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip()) if "queue" in r}
big = rows["email"]
for other in ("notification", "report"):
    o = rows[other]
    print(json.dumps({"figure": "queue page with %d vs %d waiting jobs" % (big["waiting_jobs"], o["waiting_jobs"]),
                      "median_ratio": round(big["median_ms"] / o["median_ms"], 2),
                      "p95_ratio": round(big["p95_ms"] / o["p95_ms"], 2)}))
PY
echo "bench: results in $OUT"
