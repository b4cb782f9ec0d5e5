#!/usr/bin/env bash
# scripts/test-keys-gc.sh — removes from the test Redis the keys that earlier test runs left behind.
#
# Every test writes under its own prefix (ncy_testkit::unique_prefix: `t-<unix secs>-<12 hex>`, also
# as a hash tag `{t-…`), and most leave their keys there: a few thousand per run, with no TTL. On a
# machine that runs the suite again and again (CI runs on the developer's machine) they pile up and
# slow every SCAN a test makes. `make test` runs this first. It removes the keys of prefixes older than
# MAX_AGE_SECS (default 2 hours, so a run still going elsewhere keeps its keys) and of the older
# prefixes without a time (`t-<12 hex>`), with SCAN and pipelined UNLINK, never KEYS.
#
#   REDIS_URL=redis://127.0.0.1:6379 bash scripts/test-keys-gc.sh
set -euo pipefail
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
MAX_AGE_SECS=${MAX_AGE_SECS:-7200}
command -v redis-cli >/dev/null || exit 0
redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || exit 0
now=$(date +%s)
cmds=$(mktemp)
trap 'rm -f "$cmds"' EXIT
removed=$(
  { redis-cli -u "$REDIS_URL" --scan --pattern 't-*'; redis-cli -u "$REDIS_URL" --scan --pattern '{t-*'; } |
    python3 -c '
import re, sys
now, max_age = int(sys.argv[1]), int(sys.argv[2])
timed = re.compile(r"^\{?t-(\d{9,11})-[0-9a-f]{12}[:}]")
legacy = re.compile(r"^\{?t-[0-9a-f]{12}[:}]")
n = 0
with open(sys.argv[3], "wb") as out:
    for line in sys.stdin.buffer:
        key = line.rstrip(b"\n")
        text = key.decode("utf-8", "replace")
        m = timed.match(text)
        if (m and now - int(m.group(1)) > max_age) or (not m and legacy.match(text)):
            out.write(b"*2\r\n$6\r\nUNLINK\r\n$%d\r\n%s\r\n" % (len(key), key))
            n += 1
print(n)
' "$now" "$MAX_AGE_SECS" "$cmds"
)
if [[ ${removed:-0} -gt 0 ]]; then
  redis-cli -u "$REDIS_URL" --pipe <"$cmds" >/dev/null
fi
echo "test-keys-gc: removed ${removed:-0} keys left by earlier test runs"
