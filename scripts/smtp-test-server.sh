#!/usr/bin/env bash
# scripts/smtp-test-server.sh — the real SMTP server the worker's email tests send to (aiosmtpd).
#
#   scripts/smtp-test-server.sh venv        create .run/tools/smtp-venv with aiosmtpd if missing,
#                                           print the venv's python (idempotent; parallel callers
#                                           serialise on a lock)
#   scripts/smtp-test-server.sh run DIR     run the test server on a free 127.0.0.1 port (printed on
#                                           the first line of stdout), writing each message to DIR
#
# The server is crates/testkit/smtp/ncy_test_smtp.py; ncy-testkit's SmtpServer starts it per test.
# Knobs: PYTHON (interpreter that creates the venv, default python3), NCY_SMTP_VENV (venv dir).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NCY_SMTP_VENV:-$ROOT/.run/tools/smtp-venv}"
AIOSMTPD_VERSION=1.4.6
MARKER="$VENV/.aiosmtpd-$AIOSMTPD_VERSION"

die() { printf 'smtp-test-server: error: %s\n' "$*" >&2; exit 1; }
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
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION" >&2 \
    || die "pip install aiosmtpd==$AIOSMTPD_VERSION failed"
  touch "$MARKER"
}

ensure_venv() {
  if [[ ! -f $MARKER ]]; then
    mkdir -p "$(dirname "$VENV")"
    exec 9>"$VENV.lock"
    flock 9
    if [[ ! -f $MARKER ]]; then
      rm -rf "$VENV"
      printf 'smtp-test-server: installing aiosmtpd %s into %s\n' "$AIOSMTPD_VERSION" "${VENV#"$ROOT"/}" >&2
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
  run)
    [[ -n ${2:-} ]] || die "usage: $0 run DIR"
    ensure_venv
    exec "$VENV/bin/python" "$ROOT/crates/testkit/smtp/ncy_test_smtp.py" "$2"
    ;;
  *) printf 'usage: %s venv | run DIR\n' "$0" >&2; exit 2 ;;
esac
