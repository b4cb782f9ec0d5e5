#!/usr/bin/env bash
# scripts/test-peers.sh — the real Python servers the tests talk to, in one pinned venv:
# aiosmtpd (the SMTP server of the worker's email tests) and moto (the S3-compatible server of the
# file-store tests).
#
#   scripts/test-peers.sh venv        create .run/tools/test-venv with both if missing, print the
#                                     venv's python (idempotent; parallel callers serialise on a lock)
#   scripts/test-peers.sh smtp DIR [PORT]
#                                     run the test SMTP server on 127.0.0.1:PORT, or a free port
#                                     (printed on the first line of stdout either way), writing
#                                     each message to DIR
#   scripts/test-peers.sh moto-bin    print the path of the venv's moto_server
#
# The SMTP server is crates/testkit/smtp/ncy_test_smtp.py; ncy-testkit's SmtpServer starts it per
# test. `scripts/deps.sh up` (make test, CI) runs `venv` first. Knobs: PYTHON (interpreter that
# creates the venv, default python3), NCY_TEST_VENV (venv dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NCY_TEST_VENV:-$ROOT/.run/tools/test-venv}"
AIOSMTPD_VERSION=1.4.6
MOTO_VERSION=5.2.1
MARKER="$VENV/.aiosmtpd-$AIOSMTPD_VERSION-moto-$MOTO_VERSION"

die() { printf 'test-peers: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

make_venv() {
  local py=${PYTHON:-python3}
  have "$py" || py=/usr/bin/python3
  if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian ships venv/ensurepip separately.
    if ((EUID == 0)) && have apt-get; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1; } \
        || die "cannot install python3-venv"
      rm -rf "$VENV"
      /usr/bin/python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    else
      die "python3 -m venv $VENV failed (install python3-venv)"
    fi
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "aiosmtpd==$AIOSMTPD_VERSION" "moto[server]==$MOTO_VERSION" >&2 \
    || die "pip install aiosmtpd==$AIOSMTPD_VERSION moto[server]==$MOTO_VERSION failed"
  touch "$MARKER"
}

ensure_venv() {
  if [[ ! -f $MARKER ]]; then
    mkdir -p "$(dirname "$VENV")"
    exec 9>"$VENV.lock"
    flock 9
    if [[ ! -f $MARKER ]]; then
      rm -rf "$VENV"
      printf 'test-peers: installing aiosmtpd %s and moto %s into %s\n' "$AIOSMTPD_VERSION" "$MOTO_VERSION" "${VENV#"$ROOT"/}" >&2
      make_venv
    fi
    flock -u 9
    exec 9>&-
  fi
}

case "${1:-}" in
  venv)
    ensure_venv
    printf '%s\n' "$VENV/bin/python"
    ;;
  smtp)
    [[ -n ${2:-} ]] || die "usage: $0 smtp DIR [PORT]"
    ensure_venv
    exec "$VENV/bin/python" "$ROOT/crates/testkit/smtp/ncy_test_smtp.py" "$2" ${3:+"$3"}
    ;;
  moto-bin)
    ensure_venv
    printf '%s\n' "$VENV/bin/moto_server"
    ;;
  *) printf 'usage: %s venv | smtp DIR [PORT] | moto-bin\n' "$0" >&2; exit 2 ;;
esac
