# scripts/bench/lib.sh — sourced by the benchmark scripts: ports, the peer harness, and starting a
# service with a clear error naming it when it does not come up.
#
# Ports come from 20000–32767, below Linux's ephemeral range (32768–60999): a run with 10,000 client
# sockets leaves thousands of ephemeral ports in TIME_WAIT, and a fixed or kernel-picked port in
# that range can then be "already in use" when the next service binds it.

# A loopback port below the ephemeral range that nothing is bound to now.
spare_port() {
  python3 - <<'PY'
import random, socket
for _ in range(200):
    port = random.randint(20000, 32767)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("bench: no free port in 20000-32767")
PY
}

# The peer harnesses: ../shared/peer-bench beside the checkout (PEER_BENCH overrides). Prints the
# directory, or fails saying what is missing.
peer_bench_dir() {
  local dir=${PEER_BENCH:-$ROOT/../shared/peer-bench}
  if [[ ! -d "$dir" ]]; then
    echo "bench: the peer harnesses are not at $dir (expected ../shared/peer-bench beside the checkout; set PEER_BENCH, or skip the peer run)" >&2
    return 1
  fi
  (cd "$dir" && pwd)
}

# wait_up NAME PID LOG CHECK...: runs CHECK until it succeeds (10 s at most); fails naming NAME,
# with the end of LOG, when the process exited or never answered.
wait_up() {
  local name=$1 pid=$2 log=$3
  shift 3
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench: $name exited during start-up; the end of $log:" >&2
      tail -n 20 "$log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "bench: $name did not come up within 10 s; the end of $log:" >&2
  tail -n 20 "$log" >&2 || true
  return 1
}
