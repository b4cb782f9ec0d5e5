#!/usr/bin/env bash
# scripts/stack.sh — local development stack (used by `make run` / `make stop`).
#
#   scripts/stack.sh up      deps (scripts/deps.sh up), cargo build --bins, ncyctl db migrate +
#                            seed, start the four services and the console in the background, wait
#                            until healthy
#   scripts/stack.sh down    stop the services by recorded PID, then scripts/deps.sh down
#   scripts/stack.sh status  running / health of each service
#
# Environment (defaults in brackets):
#   PROFILE [debug] or release         REDIS_URL [redis://127.0.0.1:6379]
#   DATABASE_URL [postgres://postgres@127.0.0.1:5432/ncy]   FRONTEND_URL [http://localhost:3000]
#   NCY_LOG_FORMAT [text]               JWT_SECRET [an insecure dev-only value, with a warning]
#   Per-service listen addresses; each service gets them as NCY_GRPC_ADDR / NCY_ADMIN_ADDR:
#     NCY_CACHE_GATEWAY_GRPC_ADDR [127.0.0.1:50051]     NCY_CACHE_GATEWAY_ADMIN_ADDR [127.0.0.1:9101]
#     NCY_JOB_SCHEDULER_GRPC_ADDR [127.0.0.1:50052]     NCY_JOB_SCHEDULER_ADMIN_ADDR [127.0.0.1:9102]
#     NCY_WORKER_GRPC_ADDR [127.0.0.1:50053]            NCY_WORKER_ADMIN_ADDR [127.0.0.1:9103]
#     NCY_REALTIME_GATEWAY_GRPC_ADDR [127.0.0.1:50054]  NCY_REALTIME_GATEWAY_ADMIN_ADDR [127.0.0.1:9104]
#     NCY_CONSOLE_ADMIN_ADDR [127.0.0.1:9105] (the console has no gRPC port: its health is /readyz)
#     NCY_WS_ADDR [127.0.0.1:8080] (realtime-gateway's WebSocket listener)
#     NCY_CONSOLE_ADDR [127.0.0.1:8090] (the operator console's pages; dev logins made on first start
#                      in .run/console-users.toml, printed with the table)
#   STACK_READY_TIMEOUT [60] seconds to wait for all services to report SERVING
#   NCY_API_KEYS_FILE [.run/api-keys.toml, made on first start with one all-scopes dev key, printed
#                      with the table; ncyctl reads it from NCY_API_KEY]
# State: .run/<svc>.pid, logs in .run/logs/<svc>.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.run"
LOGS="$RUN/logs"
SERVICES=(cache-gateway job-scheduler worker realtime-gateway ncy-console)
declare -A GRPC ADMIN
declare -A DEF_GRPC=([cache-gateway]=127.0.0.1:50051 [job-scheduler]=127.0.0.1:50052 [worker]=127.0.0.1:50053 [realtime-gateway]=127.0.0.1:50054 [ncy-console]=)
declare -A DEF_ADMIN=([cache-gateway]=127.0.0.1:9101 [job-scheduler]=127.0.0.1:9102 [worker]=127.0.0.1:9103 [realtime-gateway]=127.0.0.1:9104 [ncy-console]=127.0.0.1:9105)
for s in "${SERVICES[@]}"; do
  v="NCY_${s#ncy-}"; v=${v^^}; v=${v//-/_}
  g="${v}_GRPC_ADDR"; a="${v}_ADMIN_ADDR"
  GRPC[$s]=${!g:-${DEF_GRPC[$s]}}
  ADMIN[$s]=${!a:-${DEF_ADMIN[$s]}}
done
WS_ADDR=${NCY_WS_ADDR:-127.0.0.1:8080}
CONSOLE_ADDR=${NCY_CONSOLE_ADDR:-127.0.0.1:8090}
READY_TIMEOUT=${STACK_READY_TIMEOUT:-60}

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ncy}"

PROFILE=${PROFILE:-debug}
case $PROFILE in
  debug) CARGO_PROFILE_ARGS=() ;;
  release) CARGO_PROFILE_ARGS=(--release) ;;
  *) printf 'stack: error: PROFILE must be debug or release (got %s)\n' "$PROFILE" >&2; exit 2 ;;
esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/$PROFILE"

say() { printf '%s\n' "$*"; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }
rel() { printf '%s' "${1#"$ROOT"/}"; }

# "host:port" -> URL a client on this machine can dial (wildcard binds -> loopback).
dial_url() {
  local scheme=$1 addr=$2 host port
  port=${addr##*:}; host=${addr%:*}
  case $host in ''|0.0.0.0) host=127.0.0.1 ;; '[::]'|'::') host='[::1]' ;; esac
  printf '%s://%s:%s' "$scheme" "$host" "$port"
}

# PID of service $1 from .run/<svc>.pid if that process is alive and is that program
# (argv[0], or argv[1] for an interpreted stand-in, is named like the service).
svc_pid() {
  local s=$1 file="$RUN/$1.pid" pid="" arg0="" arg1=""
  [[ -s $file ]] || return 1
  read -r pid <"$file" || true
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    { IFS= read -r -d '' arg0; IFS= read -r -d '' arg1; } <"/proc/$pid/cmdline" || true
    [[ ${arg0##*/} == "$s" || ${arg1##*/} == "$s" ]] || return 1
  fi
  printf '%s\n' "$pid"
}

# exit 0 when GET /readyz at host:port $1 answers 200 (bash's /dev/tcp: no curl needed)
http_ready() (
  local host=${1%:*} port=${1##*:} line
  case $host in ''|0.0.0.0) host=127.0.0.1 ;; esac
  exec 3<>"/dev/tcp/$host/$port" || exit 1
  printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  IFS= read -r -t 5 line <&3 || exit 1
  [[ $line == *" 200 "* ]]
) 2>/dev/null

health() { # $1 = service; exit 0 when it answers SERVING (the console: /readyz 200)
  if [[ -z ${GRPC[$1]} ]]; then http_ready "${ADMIN[$1]}"; return; fi
  [[ -x $BIN/ncyctl ]] || return 1
  timeout 5 "$BIN/ncyctl" health --addr "$(dial_url http "${GRPC[$1]}")" >/dev/null 2>&1
}

grpc_url() { if [[ -n ${GRPC[$1]} ]]; then dial_url http "${GRPC[$1]}"; else printf '(none)'; fi; }

need_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f ${HOME:-/nonexistent}/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 \
    || die "cargo not found on PATH: install Rust with rustup (https://rustup.rs), see README"
}

start_svc() {
  local s=$1 pid env=()
  if pid=$(svc_pid "$s"); then say "stack: $s already running (pid $pid)"; return 0; fi
  [[ -x $BIN/$s ]] || die "binary $(rel "$BIN/$s") not found after cargo build"
  env=("NCY_ADMIN_ADDR=${ADMIN[$s]}")
  if [[ -n ${GRPC[$s]} ]]; then env+=("NCY_GRPC_ADDR=${GRPC[$s]}"); fi
  if [[ $s == realtime-gateway ]]; then env+=("NCY_WS_ADDR=$WS_ADDR"); fi
  if [[ $s == ncy-console ]]; then
    env+=("NCY_CONSOLE_ADDR=$CONSOLE_ADDR" "NCY_CONSOLE_JOBS_URL=$(dial_url http "${GRPC[job-scheduler]}")"
      "NCY_CONSOLE_CACHE_URL=$(dial_url http "${GRPC[cache-gateway]}")"
      "NCY_CONSOLE_REALTIME_URL=$(dial_url http "${GRPC[realtime-gateway]}")"
      "NCY_CONSOLE_USERS_FILE=$RUN/console-users.toml" "NCY_CONSOLE_SESSION_SECRET=$(cat "$RUN/console-session-secret")")
    if [[ $NCY_API_KEYS_FILE == "$RUN/api-keys.toml" ]]; then env+=("NCY_CONSOLE_API_KEY=$(dev_api_key)"); fi
  fi
  local shown=() e
  for e in "${env[@]}"; do
    case ${e%%=*} in *SECRET*|*API_KEY*) shown+=("${e%%=*}=<hidden>") ;; *) shown+=("$e") ;; esac
  done
  printf '=== %s starting %s (%s)\n' "$(date '+%F %T')" "$s" "${shown[*]}" >>"$LOGS/$s.log"
  if [[ $s != realtime-gateway ]]; then env=(-u NCY_WS_ADDR "${env[@]}"); fi
  nohup env "${env[@]}" "$BIN/$s" >>"$LOGS/$s.log" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" >"$RUN/$s.pid"
  say "stack: started $s (pid $pid, log $(rel "$LOGS/$s.log"))"
}

show_log_tail() {
  say "----- last 40 lines of $(rel "$LOGS/$1.log") -----" >&2
  tail -n 40 "$LOGS/$1.log" >&2 2>/dev/null || true
  say "-----" >&2
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) s pending=("${SERVICES[@]}") still
  say "stack: waiting up to ${READY_TIMEOUT}s for the services to report SERVING"
  while ((${#pending[@]})); do
    still=()
    for s in "${pending[@]}"; do
      if ! svc_pid "$s" >/dev/null; then
        show_log_tail "$s"
        die "$s exited during startup (see $(rel "$LOGS/$s.log")); 'make stop' stops the rest"
      fi
      if health "$s"; then say "stack: $s is SERVING"; else still+=("$s"); fi
    done
    pending=("${still[@]}")
    ((${#pending[@]})) || break
    if ((SECONDS >= deadline)); then
      for s in "${pending[@]}"; do show_log_tail "$s"; done
      die "not ready within ${READY_TIMEOUT}s: ${pending[*]}; 'make stop' stops the stack"
    fi
    sleep 0.5
  done
}

# The gRPC APIs need API keys: on a laptop, one key with every scope, in a file of its own.
dev_api_keys() {
  if [[ -n ${NCY_API_KEYS_FILE:-} ]]; then export NCY_API_KEYS_FILE; return 0; fi
  export NCY_API_KEYS_FILE="$RUN/api-keys.toml"
  if [[ ! -s $NCY_API_KEYS_FILE ]]; then
    local key
    key="ncy_dev_$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    (umask 077 && cat >"$NCY_API_KEYS_FILE" <<KEYS
# Made by 'make run' for this laptop only. Production keys: SECURITY.md.
[[keys]]
name = "dev"
secret = "$key"
scopes = ["*"]
KEYS
    )
    say "stack: made a development API key in $(rel "$NCY_API_KEYS_FILE")"
  fi
}

# The console's logins on a laptop: an operator and a viewer with random passwords (kept in
# .run/console-logins.txt to be printed again), and the key that signs its session cookies.
dev_console() {
  if [[ ! -s $RUN/console-session-secret ]]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$RUN/console-session-secret")
  fi
  [[ -s $RUN/console-users.toml && -s $RUN/console-logins.txt ]] && return 0
  local name role password hash users="" logins=""
  for name in admin viewer; do
    role=operator; [[ $name == viewer ]] && role=viewer
    password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    hash=$(printf '%s' "$password" | "$BIN/ncy-console" hash-password) || die "ncy-console hash-password failed"
    users+=$(printf '[[users]]\nname = "%s"\nrole = "%s"\npassword_hash = "%s"\n\n' "$name" "$role" "$hash")$'\n'
    logins+="$name / $password ($role)"$'\n'
  done
  (umask 077 && printf '# Made by make run for this laptop only. Production: docs/operations.md#console.\n%s' "$users" >"$RUN/console-users.toml" \
    && printf '%s' "$logins" >"$RUN/console-logins.txt")
  say "stack: made development console logins in $(rel "$RUN/console-users.toml")"
}

dev_api_key() { sed -n 's/^secret = "\(.*\)"$/\1/p' "$RUN/api-keys.toml" 2>/dev/null | head -n 1; }

print_table() {
  local s fmt='%-17s %-24s %s\n'
  say ""
  say "NCY local stack is up ($PROFILE build):"
  # shellcheck disable=SC2059
  printf "$fmt" SERVICE gRPC "ADMIN (metrics / healthz / readyz)"
  for s in "${SERVICES[@]}"; do
    local admin; admin=$(dial_url http "${ADMIN[$s]}")
    # shellcheck disable=SC2059
    printf "$fmt" "$s" "$(grpc_url "$s")" "$admin/metrics  $admin/healthz  $admin/readyz"
  done
  # shellcheck disable=SC2059
  printf "$fmt" "" "WebSocket" "$(dial_url ws "$WS_ADDR") (realtime-gateway)"
  # shellcheck disable=SC2059
  printf "$fmt" "" "console" "$(dial_url http "$CONSOLE_ADDR")  login $(head -n 1 "$RUN/console-logins.txt" 2>/dev/null), all in $(rel "$RUN/console-logins.txt")"
  say ""
  say "logs:  $(rel "$LOGS")/<service>.log     health: $(rel "$BIN")/ncyctl health --addr $(dial_url http "${GRPC[cache-gateway]}")"
  if [[ $NCY_API_KEYS_FILE == "$RUN/api-keys.toml" ]]; then
    say "api:   every gRPC call needs a key: export NCY_API_KEY=$(dev_api_key)   (dev only, all scopes)"
  fi
  say "stop:  make stop   (or scripts/stack.sh down)"
}

stack_up() {
  need_cargo
  DEPS_CHROMIUM=0 DEPS_NODE=0 DEPS_TEST_VENV=0 bash "$ROOT/scripts/deps.sh" up  # browser, node and test venv: tests only
  say "stack: cargo build --bins (${PROFILE})"
  (cd "$ROOT" && cargo build --bins "${CARGO_PROFILE_ARGS[@]}") || die "cargo build failed"
  [[ -x $BIN/ncyctl ]] || die "$(rel "$BIN/ncyctl") not found after cargo build"
  say "stack: ncyctl db migrate"
  "$BIN/ncyctl" db migrate || die "ncyctl db migrate failed"
  say "stack: ncyctl db seed"
  "$BIN/ncyctl" db seed || die "ncyctl db seed failed"

  export FRONTEND_URL="${FRONTEND_URL:-http://localhost:3000}"
  export NCY_LOG_FORMAT="${NCY_LOG_FORMAT:-text}"
  if [[ -z ${JWT_SECRET:-} ]]; then
    export JWT_SECRET=dev-only-insecure-secret-change-me
    say "stack: WARNING: JWT_SECRET not set, using the insecure dev-only default '$JWT_SECRET' (local stack only, never in production)"
  fi
  mkdir -p "$LOGS"
  dev_api_keys
  dev_console
  local s
  for s in "${SERVICES[@]}"; do start_svc "$s"; done
  wait_ready
  print_table
}

stack_down() {
  local s pid deadline
  declare -A pids=()
  for s in "${SERVICES[@]}"; do
    if pid=$(svc_pid "$s"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids[$s]=$pid
      say "stack: sent SIGTERM to $s (pid $pid)"
    else
      say "stack: $s is not running"
      rm -f "$RUN/$s.pid"
    fi
  done
  for s in "${SERVICES[@]}"; do
    [[ -n ${pids[$s]:-} ]] || continue
    pid=${pids[$s]}
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "stack: $s (pid $pid) still running after 30s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$s.pid"
    say "stack: stopped $s"
  done
  bash "$ROOT/scripts/deps.sh" down
}

stack_status() {
  local s pid run hl rc=0 fmt='%-17s %-22s %-24s %s\n'
  # shellcheck disable=SC2059
  printf "$fmt" SERVICE PROCESS gRPC HEALTH
  for s in "${SERVICES[@]}"; do
    if pid=$(svc_pid "$s"); then run="running (pid $pid)"; else run="not running"; rc=1; fi
    if [[ ! -x $BIN/ncyctl ]]; then hl="unknown ($(rel "$BIN/ncyctl") not built)"; rc=1
    elif health "$s"; then hl=SERVING
    else hl="not serving"; rc=1
    fi
    # shellcheck disable=SC2059
    printf "$fmt" "$s" "$run" "$(grpc_url "$s")" "$hl"
  done
  bash "$ROOT/scripts/deps.sh" status || rc=1
  return "$rc"
}

case "${1:-}" in
  up) stack_up ;;
  down) stack_down ;;
  status) stack_status ;;
  *) printf 'usage: %s up|down|status\n' "$0" >&2; exit 2 ;;
esac
