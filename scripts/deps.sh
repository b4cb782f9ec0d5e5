#!/usr/bin/env bash
# scripts/deps.sh — make sure Redis and PostgreSQL are reachable for the local stack and CI, and
# that the tests' headless browser (Chromium) is installed.
#
#   scripts/deps.sh up      reach (or install/start) Redis at REDIS_URL and PostgreSQL at
#                           DATABASE_URL, then create the database named in DATABASE_URL;
#                           install Debian's `chromium` package when no Chromium is found
#                           (the JS client's browser test; skip with DEPS_CHROMIUM=0); and make
#                           sure the tests' Python peers (aiosmtpd, moto) are in their venv
#                           (.run/tools/test-venv, scripts/test-peers.sh; skipped with DEPS_TEST_VENV=0)
#   scripts/deps.sh down    stop only what `up` started (project-local Redis / PG cluster);
#                           data directories under .run/ are kept
#   scripts/deps.sh status  one line per dependency: reachable or not
#
# Defaults: REDIS_URL=redis://127.0.0.1:6379  DATABASE_URL=postgres://postgres@127.0.0.1:5432/ncy
# A server is only started here when its host is a loopback address. Project-local state
# lives in $ROOT/.run/ (redis/, redis.pid, redis.log, pg/, pg.log, *.started markers).
# Optional knobs: PG_BINDIR (dir holding initdb/pg_ctl), DEPS_REDIS_WAIT (20 s), DEPS_PG_WAIT (30 s),
# DEPS_CHROMIUM=0 (do not look for / install Chromium), NCY_CHROMIUM (a Chromium binary to use),
# DEPS_NODE=0 (do not look for / install Node.js).
# Installing anything (redis-server, PostgreSQL, chromium) goes through apt-get, as root or via sudo.
# Under CI (CI set) a Chromium that cannot be installed is an error; elsewhere a warning, and the
# browser test then skips with its reason.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.run"
PGDATA_LOCAL="$RUN/pg"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ncy}"
REDIS_WAIT="${DEPS_REDIS_WAIT:-20}"
PG_WAIT="${DEPS_PG_WAIT:-30}"
APT_UPDATED=0

say() { printf '%s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
rel() { printf '%s' "${1#"$ROOT"/}"; }

# Run a command as root (directly, or through sudo when we are not root).
as_root() {
  if ((EUID == 0)); then "$@"
  elif have sudo; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

# Run a command as the owner of the project-local PostgreSQL cluster: the `postgres`
# system user when we are root (initdb/postgres refuse to run as root), else ourselves.
as_pg_owner() {
  if ((EUID == 0)); then
    if have runuser; then (cd / && runuser -u postgres -- "$@")
    else (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
  else
    "$@"
  fi
}

apt_install() {
  have apt-get || die "apt-get not found: install $* yourself, or point REDIS_URL/DATABASE_URL at running servers"
  mkdir -p "$RUN"
  if ((APT_UPDATED == 0)); then
    say "apt: apt-get update"
    as_root apt-get update -qq >"$RUN/apt.log" 2>&1 || { tail -n 20 "$RUN/apt.log" >&2; die "apt-get update failed (log: $(rel "$RUN/apt.log"))"; }
    APT_UPDATED=1
  fi
  say "apt: installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$RUN/apt.log" 2>&1 \
    || { tail -n 20 "$RUN/apt.log" >&2; die "apt-get install $* failed (log: $(rel "$RUN/apt.log"))"; }
  hash -r
}

# Poll "$@" until it succeeds or $1 seconds have passed.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.25
  done
}

# Print the PID recorded in file $1 if that process is alive and its command line
# contains $2; fail otherwise (no file, stale PID, or PID reused by something else).
recorded_pid() {
  local file=$1 pattern=$2 pid="" cmd=""
  [[ -s $file ]] || return 1
  read -r pid <"$file" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ $cmd == *"$pattern"* ]] || return 1
  fi
  printf '%s\n' "$pid"
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# Stop PID $1 (one we started) with SIGTERM, SIGKILL after $2 seconds.
stop_pid() {
  local pid=$1 secs=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_for "$secs" pid_gone "$pid"; then
    say "deps: pid $pid did not exit within ${secs}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

urldecode() { local s="${1//%/\\x}"; printf '%b' "$s"; }

# parse_url URL DEFAULT_PORT -> U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH
parse_url() {
  local url=$1 rest authority hostport userinfo after
  [[ $url == *://* ]] || die "not a URL: $url"
  U_SCHEME=${url%%://*}
  rest=${url#*://}
  rest=${rest%%\?*}; rest=${rest%%#*}
  authority=${rest%%/*}
  U_PATH=""; [[ $rest == */* ]] && U_PATH=${rest#*/}
  U_USER=""; U_PASS=""; hostport=$authority
  if [[ $authority == *@* ]]; then
    userinfo=${authority%@*}; hostport=${authority##*@}
    if [[ $userinfo == *:* ]]; then U_USER=${userinfo%%:*}; U_PASS=${userinfo#*:}; else U_USER=$userinfo; fi
    U_USER=$(urldecode "$U_USER"); U_PASS=$(urldecode "$U_PASS")
  fi
  if [[ $hostport == \[* ]]; then            # [ipv6]:port
    U_HOST=${hostport:1}; U_HOST=${U_HOST%%]*}
    after=${hostport#*]}; U_PORT=${after#:}
  elif [[ $hostport == *:* ]]; then
    U_HOST=${hostport%%:*}; U_PORT=${hostport##*:}
  else
    U_HOST=$hostport; U_PORT=""
  fi
  [[ -n $U_HOST ]] || U_HOST=localhost
  [[ -n $U_PORT ]] || U_PORT=$2
  [[ $U_PORT =~ ^[0-9]+$ ]] || die "bad port '$U_PORT' in $U_SCHEME URL"
  U_PATH=$(urldecode "$U_PATH")
}

# Is something (anything) listening on host $1 port $2?
port_open() {
  # shellcheck disable=SC2016
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

is_loopback() { [[ $1 == localhost || $1 == 127.* || $1 == ::1 ]]; }
listen_addr() { if [[ $1 == ::1 ]]; then printf '::1'; elif [[ $1 == localhost ]]; then printf 'localhost'; else printf '%s' "$1"; fi; }

# ---------------------------------------------------------------- Redis

redis_ping() {
  local host=$1 port=$2 out
  if have redis-cli; then
    if [[ -n ${R_PASS:-} ]]; then
      out=$(REDISCLI_AUTH=$R_PASS timeout 5 redis-cli -h "$host" -p "$port" ping 2>/dev/null) || return 1
    else
      out=$(timeout 5 redis-cli -h "$host" -p "$port" ping 2>/dev/null) || return 1
    fi
    [[ $out == PONG* ]]
  else
    # shellcheck disable=SC2016  # expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
      printf "PING\r\n" >&3; IFS= read -r -t 4 line <&3 || exit 1
      [[ $line == "+PONG"* || $line == "-NOAUTH"* ]]' "$host" "$port" 2>/dev/null
  fi
}

redis_up() {
  parse_url "$REDIS_URL" 6379
  local host=$U_HOST port=$U_PORT pid bind
  R_PASS=$U_PASS
  if redis_ping "$host" "$port"; then
    if [[ -f $RUN/redis.started ]] && pid=$(recorded_pid "$RUN/redis.pid" redis-server); then
      say "redis: reachable at $host:$port (project-local instance, pid $pid)"
    else
      say "redis: reachable at $host:$port"
    fi
    return 0
  fi
  is_loopback "$host" || die "redis: not reachable at $host:$port, and that is not a local address; start it there or change REDIS_URL"
  port_open "$host" "$port" && die "redis: port $port on $host is in use by something that does not answer PING; free it or change REDIS_URL"
  say "redis: not reachable at $host:$port"
  if ! have redis-server; then
    apt_install redis-server
    have redis-server || die "redis: redis-server still not found after installing it"
    if redis_ping "$host" "$port"; then say "redis: reachable at $host:$port (started by the redis-server package)"; return 0; fi
  fi
  if pid=$(recorded_pid "$RUN/redis.pid" redis-server); then
    say "redis: stopping our earlier instance (pid $pid), it does not answer on port $port"
    stop_pid "$pid" 10
  fi
  mkdir -p "$RUN/redis"
  bind=$(listen_addr "$host"); [[ $bind == localhost ]] && bind=127.0.0.1
  local args=(--daemonize yes --bind "$bind" --port "$port" --dir "$RUN/redis"
    --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log" --save "" --appendonly no)
  [[ -n $R_PASS ]] && args+=(--requirepass "$R_PASS")
  rm -f "$RUN/redis.pid"
  redis-server "${args[@]}" || die "redis: redis-server failed to start (log: $(rel "$RUN/redis.log"))"
  printf '%s\n' "$port" >"$RUN/redis.started"
  if ! wait_for "$REDIS_WAIT" redis_ping "$host" "$port"; then
    tail -n 20 "$RUN/redis.log" >&2 2>/dev/null || true
    die "redis: no PONG from $host:$port within ${REDIS_WAIT}s (log: $(rel "$RUN/redis.log"))"
  fi
  pid=$(recorded_pid "$RUN/redis.pid" redis-server) || pid='?'
  say "redis: started local instance on $host:$port (pid $pid, data in $(rel "$RUN/redis"), log $(rel "$RUN/redis.log"))"
}

redis_down() {
  local pid port=""
  if [[ ! -f $RUN/redis.started ]]; then say "redis: nothing to stop (deps.sh did not start it)"; return 0; fi
  read -r port <"$RUN/redis.started" || true
  if pid=$(recorded_pid "$RUN/redis.pid" redis-server); then
    stop_pid "$pid" 10
    say "redis: stopped local instance on port $port (pid $pid)"
  else
    say "redis: local instance on port $port is not running"
  fi
  rm -f "$RUN/redis.started" "$RUN/redis.pid"
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() {
  if have pg_isready; then
    pg_isready -q -h "$1" -p "$2" -t 3
  else
    port_open "$1" "$2"
  fi
}

# Directory holding initdb and pg_ctl: PG_BINDIR, the version of an existing .run/pg,
# the newest /usr/lib/postgresql/<ver>/bin, or whatever is on PATH.
pg_bindir() {
  local want="" d
  if [[ -n ${PG_BINDIR:-} ]]; then printf '%s\n' "$PG_BINDIR"; return 0; fi
  [[ -s $PGDATA_LOCAL/PG_VERSION ]] && read -r want <"$PGDATA_LOCAL/PG_VERSION"
  if [[ -n $want && -x /usr/lib/postgresql/$want/bin/initdb && -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
    printf '%s\n' "/usr/lib/postgresql/$want/bin"; return 0
  fi
  d=$(for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb && -x $d/pg_ctl ]] && printf '%s\n' "$d"; done | sort -V | tail -n 1)
  if [[ -z $d ]] && have initdb && have pg_ctl; then d=$(dirname "$(command -v pg_ctl)"); fi
  [[ -n $d ]] && printf '%s\n' "$d"
}

# Start a stopped cluster of the machine's own (Debian's postgresql-common) on port $1.
pg_start_system_cluster() {
  local port=$1 ver name cport status _rest
  have pg_lsclusters && have pg_ctlcluster || return 1
  while read -r ver name cport status _rest; do
    [[ $cport == "$port" && $status == down* ]] || continue
    say "postgres: starting the machine's cluster $ver/$name on port $port"
    if [[ -d /run/systemd/system ]] && have systemctl; then
      as_root systemctl start "postgresql@$ver-$name" && return 0
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start && return 0
    say "postgres: could not start cluster $ver/$name"
    return 1
  done < <(pg_lsclusters -h 2>/dev/null || true)
  return 1
}

pg_start_local_cluster() {
  local host=$1 port=$2 bindir pid listen
  bindir=$(pg_bindir) || true
  if [[ -z $bindir ]]; then
    apt_install postgresql postgresql-client
    if pg_ready "$host" "$port"; then say "postgres: reachable at $host:$port (started by the postgresql package)"; return 0; fi
    bindir=$(pg_bindir) || true
    [[ -n $bindir ]] || die "postgres: initdb/pg_ctl still not found after installing postgresql (set PG_BINDIR)"
  fi
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || die "postgres: running as root but there is no 'postgres' system user to own $(rel "$PGDATA_LOCAL")"
  fi
  mkdir -p "$RUN"
  if [[ ! -s $PGDATA_LOCAL/PG_VERSION ]]; then
    mkdir -p "$PGDATA_LOCAL"
    chmod 700 "$PGDATA_LOCAL"
    ((EUID == 0)) && chown postgres:postgres "$PGDATA_LOCAL"
    as_pg_owner test -w "$PGDATA_LOCAL" \
      || die "postgres: user postgres cannot write $PGDATA_LOCAL (is a parent directory not searchable by it?)"
    say "postgres: initdb $(rel "$PGDATA_LOCAL") with $bindir"
    as_pg_owner "$bindir/initdb" -D "$PGDATA_LOCAL" --auth=trust -U postgres -E UTF8 --no-locale >"$RUN/pg-initdb.log" 2>&1 \
      || { tail -n 20 "$RUN/pg-initdb.log" >&2; die "postgres: initdb failed (log: $(rel "$RUN/pg-initdb.log"))"; }
  fi
  if pid=$(recorded_pid "$PGDATA_LOCAL/postmaster.pid" postgres); then
    say "postgres: stopping our local cluster (pid $pid), it does not answer on $host:$port"
    as_pg_owner "$bindir/pg_ctl" -D "$PGDATA_LOCAL" stop -m fast -s -t 30 || true
  fi
  touch "$RUN/pg.log"
  ((EUID == 0)) && chown postgres:postgres "$RUN/pg.log"
  listen=$(listen_addr "$host")
  printf '%s %s\n' "$port" "$bindir" >"$RUN/pg.started"
  as_pg_owner "$bindir/pg_ctl" -D "$PGDATA_LOCAL" -l "$RUN/pg.log" -s -w -t "$PG_WAIT" \
    -o "-p $port -k /tmp -c listen_addresses=$listen" start \
    || { tail -n 20 "$RUN/pg.log" >&2; die "postgres: pg_ctl start failed (log: $(rel "$RUN/pg.log"))"; }
  if ! wait_for "$PG_WAIT" pg_ready "$host" "$port"; then
    tail -n 20 "$RUN/pg.log" >&2 || true
    die "postgres: not ready on $host:$port within ${PG_WAIT}s (log: $(rel "$RUN/pg.log"))"
  fi
  say "postgres: started local cluster in $(rel "$PGDATA_LOCAL") on $host:$port (log $(rel "$RUN/pg.log"))"
}

# psql_as USER SQL -> runs one statement against database `postgres`, prints the tuples.
psql_as() {
  PGCONNECT_TIMEOUT=5 psql -X -w -q -v ON_ERROR_STOP=1 -h "$P_HOST" -p "$P_PORT" -U "$1" -d postgres -tAc "$2"
}

pg_ensure_db() {
  local user=$P_USER db=$P_DB out lit ident uident
  have psql || apt_install postgresql-client
  have psql || die "postgres: psql still not found after installing postgresql-client"
  [[ -n $P_PASS ]] && export PGPASSWORD=$P_PASS
  lit=${db//\'/\'\'}; ident=${db//\"/\"\"}
  uident=${user//\"/\"\"}
  if ! out=$(psql_as "$user" "SELECT 1 FROM pg_database WHERE datname='$lit'" 2>&1); then
    if [[ $out == *"role \"$user\" does not exist"* && $user != postgres ]] \
      && psql_as postgres "SELECT 1" >/dev/null 2>&1; then
      local pw=""; [[ -n $P_PASS ]] && pw=" PASSWORD '${P_PASS//\'/\'\'}'"
      psql_as postgres "CREATE ROLE \"$uident\" LOGIN CREATEDB$pw" >/dev/null || die "postgres: could not create role $user"
      say "postgres: created role $user"
      out=$(psql_as "$user" "SELECT 1 FROM pg_database WHERE datname='$lit'" 2>&1) || die "postgres: $out"
    elif [[ $out == *"password authentication failed"* || $out == *"no password supplied"* ]]; then
      die "postgres: $P_HOST:$P_PORT wants a password for user $user: put it in DATABASE_URL (postgres://$user:PASSWORD@...), or use a project-local cluster on a free port, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5433/$db"
    else
      die "postgres: cannot query $P_HOST:$P_PORT as $user: $out"
    fi
  fi
  if [[ $out == 1 ]]; then
    say "postgres: database $db exists"
    return 0
  fi
  if ! out=$(psql_as "$user" "CREATE DATABASE \"$ident\"" 2>&1); then
    # the URL's user may lack CREATEDB: try again as the superuser, owned by that user
    if [[ $user == postgres ]] || ! psql_as postgres "CREATE DATABASE \"$ident\" OWNER \"$uident\"" >/dev/null 2>&1; then
      die "postgres: CREATE DATABASE $db failed: $out"
    fi
  fi
  say "postgres: created database $db"
}

pg_parse() {
  parse_url "$DATABASE_URL" 5432
  [[ $U_SCHEME == postgres || $U_SCHEME == postgresql ]] || die "DATABASE_URL must start with postgres:// (got $U_SCHEME://)"
  P_HOST=$U_HOST; P_PORT=$U_PORT; P_USER=${U_USER:-postgres}; P_PASS=$U_PASS
  P_DB=${U_PATH%%/*}; P_DB=${P_DB:-$P_USER}
}

pg_up() {
  pg_parse
  local host=$P_HOST port=$P_PORT
  if pg_ready "$host" "$port"; then
    if [[ -f $RUN/pg.started ]] && recorded_pid "$PGDATA_LOCAL/postmaster.pid" postgres >/dev/null; then
      say "postgres: reachable at $host:$port (project-local cluster in $(rel "$PGDATA_LOCAL"))"
    else
      say "postgres: reachable at $host:$port"
    fi
  else
    is_loopback "$host" || die "postgres: not reachable at $host:$port, and that is not a local address; start it there or change DATABASE_URL"
    if port_open "$host" "$port"; then
      # a server that is still starting up, or something else on the port
      say "postgres: $host:$port is open but not accepting connections yet, waiting up to ${PG_WAIT}s"
      wait_for "$PG_WAIT" pg_ready "$host" "$port" \
        || die "postgres: port $port on $host is in use but no PostgreSQL accepts connections there; free it or change DATABASE_URL"
      say "postgres: reachable at $host:$port"
      pg_ensure_db
      return 0
    fi
    say "postgres: not reachable at $host:$port"
    if pg_start_system_cluster "$port" && wait_for "$PG_WAIT" pg_ready "$host" "$port"; then
      say "postgres: reachable at $host:$port (machine's cluster; 'down' leaves it running)"
    else
      pg_start_local_cluster "$host" "$port"
    fi
  fi
  pg_ensure_db
}

pg_down() {
  local port="" bindir="" pid
  if [[ ! -f $RUN/pg.started ]]; then say "postgres: nothing to stop (deps.sh did not start a cluster)"; return 0; fi
  read -r port bindir <"$RUN/pg.started" || true
  [[ -x ${bindir:-}/pg_ctl ]] || bindir=$(pg_bindir) || true
  if pid=$(recorded_pid "$PGDATA_LOCAL/postmaster.pid" postgres); then
    [[ -n $bindir ]] || die "postgres: pg_ctl not found; stop pid $pid yourself"
    as_pg_owner "$bindir/pg_ctl" -D "$PGDATA_LOCAL" stop -m fast -s -t 30 || die "postgres: pg_ctl stop failed"
    say "postgres: stopped local cluster in $(rel "$PGDATA_LOCAL") on port $port (data kept)"
  else
    say "postgres: local cluster in $(rel "$PGDATA_LOCAL") is not running"
  fi
  rm -f "$RUN/pg.started"
}

# ---------------------------------------------------------------- Chromium (browser tests)

in_ci() { [[ -n ${CI:-} && ${CI} != false && ${CI} != 0 ]]; }

# The Chromium the tests use (same lookup as crates/testkit/src/chromium/): NCY_CHROMIUM,
# else chromium or chromium-browser on PATH.
chromium_bin() {
  if [[ -n ${NCY_CHROMIUM:-} ]]; then
    [[ -x $NCY_CHROMIUM ]] && printf '%s\n' "$NCY_CHROMIUM"
    return
  fi
  command -v chromium || command -v chromium-browser
}

# The Debian wrapper script prints a shell warning on stderr; keep only the version line.
chromium_version() { "$1" --version 2>/dev/null | head -n 1; }

chromium_up() {
  [[ ${DEPS_CHROMIUM:-1} == 0 ]] && return 0
  local bin
  if bin=$(chromium_bin); then
    say "chromium: $bin ($(chromium_version "$bin"))"
    return 0
  fi
  [[ -n ${NCY_CHROMIUM:-} ]] && die "chromium: NCY_CHROMIUM=$NCY_CHROMIUM is not an executable file"
  say "chromium: not installed (the JavaScript client's browser test needs it)"
  if in_ci; then
    apt_install chromium
  elif ! (apt_install chromium); then
    say "chromium: could not install it; the browser test will be skipped (apt-get install chromium, or NCY_CHROMIUM=<path>)"
    return 0
  fi
  bin=$(chromium_bin) || die "chromium: still not found after installing the chromium package"
  say "chromium: installed $bin ($(chromium_version "$bin"))"
}

# Node.js runs the JavaScript client's test (crates/realtime-gateway/tests/it/js_client.rs: Node's
# built-in WebSocket, 20.10 or later); like Chromium, required under CI and best effort elsewhere.
node_up() {
  [[ ${DEPS_NODE:-1} == 0 ]] && return 0
  if have node; then say "node: $(command -v node) ($(node --version))"; return 0; fi
  say "node: not installed (the JavaScript client's test needs it)"
  if in_ci; then
    apt_install nodejs
  elif ! (apt_install nodejs); then
    say "node: could not install it; the JavaScript client's test will be skipped (apt-get install nodejs)"
    return 0
  fi
  have node || die "node: still not found after installing the nodejs package"
  say "node: installed $(command -v node) ($(node --version))"
}

# ---------------------------------------------------------------- tests' Python peers

test_venv_up() {
  if [[ ${DEPS_TEST_VENV:-1} == 0 ]]; then say "test-peers: venv skipped (DEPS_TEST_VENV=0)"; return 0; fi
  local py
  py=$(bash "$ROOT/scripts/test-peers.sh" venv) || die "test-peers: cannot create the tests' venv (scripts/test-peers.sh venv)"
  say "test-peers: ready ($(rel "$py") with aiosmtpd and moto)"
}

status() {
  local rc=0
  parse_url "$REDIS_URL" 6379; R_PASS=$U_PASS
  if redis_ping "$U_HOST" "$U_PORT"; then say "redis: reachable at $U_HOST:$U_PORT"; else say "redis: NOT reachable at $U_HOST:$U_PORT"; rc=1; fi
  pg_parse
  if pg_ready "$P_HOST" "$P_PORT"; then say "postgres: reachable at $P_HOST:$P_PORT"; else say "postgres: NOT reachable at $P_HOST:$P_PORT"; rc=1; fi
  local bin  # informational only: the running stack does not need a browser
  if bin=$(chromium_bin); then say "chromium: $bin"; else say "chromium: not installed (browser test skipped; \`deps.sh up\` installs it)"; fi
  return "$rc"
}

case "${1:-}" in
  up) redis_up; pg_up; chromium_up; node_up; test_venv_up ;;
  down) redis_down; pg_down ;;
  status) status ;;
  *) printf 'usage: %s up|down|status\n' "$0" >&2; exit 2 ;;
esac
