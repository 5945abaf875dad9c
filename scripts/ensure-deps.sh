#!/usr/bin/env bash
# Makes sure what the test suite needs is present and running: python3.11 with
# venv, busybox-static (test engine image), Docker, PostgreSQL 15 and Redis,
# and docker-registry + htpasswd for the registry pull tests.
# Whatever already answers is reused (a laptop, this dev box); the rest is
# installed with apt and started by hand (CI machines are fresh Debian 12,
# root, no systemd). Safe to run any number of times.
#
# Env: RTM_DEV_DIR (default <repo>/.rtm-dev: logs, data, test.env),
#      RTM_TEST_PG_PORT (55432), RTM_TEST_REDIS_PORT (56379),
#      RTM_TEST_POSTGRES_DSN / RTM_TEST_REDIS_ADDR: set = bring your own, skip.
# Writes $RTM_DEV_DIR/test.env (export lines) for the test run to source.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV_DIR=${RTM_DEV_DIR:-$REPO/.rtm-dev}
mkdir -p "$DEV_DIR"
DEV_DIR=$(cd "$DEV_DIR" && pwd)
PG_PORT=${RTM_TEST_PG_PORT:-55432}
REDIS_PORT=${RTM_TEST_REDIS_PORT:-56379}
PG_BIN=/usr/lib/postgresql/15/bin
WAIT_S=60 # bound for any daemon to come up

say() { printf '%-9s %s\n' "$1:" "$2"; }
die() { echo "ensure-deps: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# No sudo on purpose: root installs, anyone else is told what is missing.
APT_UPDATED=
apt_install() {
    is_root || die "missing $*, and only root may install it; install it yourself and re-run"
    command -v apt-get >/dev/null || die "missing $*, and there is no apt-get; install it yourself"
    # apt's chatter (debconf notes and such) is shown only when it fails.
    local out
    if [ -z "$APT_UPDATED" ]; then
        out=$(apt-get update -qq 2>&1) || die "apt-get update failed:"$'\n'"$out"
        APT_UPDATED=1
    fi
    out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" 2>&1) ||
        die "apt-get install $* failed:"$'\n'"$out"
}

wait_for() { # what command... : poll every 0.2 s, at most WAIT_S
    local what=$1 i
    shift
    for ((i = 0; i < WAIT_S * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not answer within ${WAIT_S}s"
}

ensure_python() {
    # `make venv` runs python3.11 -m venv; Debian ships ensurepip separately.
    if command -v python3.11 >/dev/null && python3.11 -c 'import ensurepip' 2>/dev/null; then
        say python "python3.11 with venv present"
    else
        apt_install python3.11 python3.11-venv
        say python "installed python3.11 and python3.11-venv"
    fi
}

ensure_busybox() {
    # The test engine image is FROM scratch: it needs a statically linked
    # busybox (Debian's plain `busybox` package is dynamic). ldd succeeds only
    # on dynamic executables.
    if [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; then
        say busybox "static /bin/busybox present"
    else
        apt_install busybox-static
        say busybox "installed busybox-static"
    fi
}

dockerd_alive() { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        say docker "reusing the running daemon"
        return
    fi
    [ -z "${DOCKER_HOST:-}" ] || die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon"
    local how=started
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        apt_install docker.io
        how="installed docker.io, started"
    fi
    is_root || die "Docker does not answer and only root can start dockerd; start it yourself"
    # A daemon still booting (an earlier run, a slow disk) must not get a twin.
    if ! dockerd_alive; then
        # Own session: a Ctrl-C in the calling make must not kill the daemon.
        setsid dockerd --host unix:///var/run/docker.sock >"$DEV_DIR/dockerd.log" 2>&1 </dev/null &
    else
        how="waited for the booting"
    fi
    wait_for "dockerd (log: $DEV_DIR/dockerd.log)" docker info
    say docker "$how dockerd, log $DEV_DIR/dockerd.log"
}

ensure_compose() {
    # `make up`, `make integration` and the compose-file test need a compose CLI.
    if docker compose version >/dev/null 2>&1; then
        say compose "reusing the docker compose plugin"
    elif command -v docker-compose >/dev/null; then
        say compose "reusing $(docker-compose version --short 2>/dev/null || echo docker-compose)"
    else
        apt_install docker-compose
        say compose "installed docker-compose (Debian)"
    fi
}

ensure_registry() {
    # tests/core/test_registry.py pulls for real from its own registry on
    # loopback with htpasswd auth (the packaged service itself is not used).
    if command -v docker-registry >/dev/null && command -v htpasswd >/dev/null; then
        say registry "docker-registry and htpasswd present"
    else
        apt_install docker-registry apache2-utils
        say registry "installed docker-registry and apache2-utils (htpasswd)"
    fi
}

pg_answers() {
    local isready
    isready=$(command -v pg_isready || echo "$PG_BIN/pg_isready")
    "$isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null
}

as_postgres() { # the server refuses to run as root: use its OS user then
    if is_root; then
        su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

ensure_postgres() {
    if [ -n "${RTM_TEST_POSTGRES_DSN:-}" ]; then
        say postgres "RTM_TEST_POSTGRES_DSN given by caller, not touched"
        return
    fi
    if pg_answers; then
        say postgres "reusing the server on 127.0.0.1:$PG_PORT"
        return
    fi
    local how=started
    if [ ! -x "$PG_BIN/initdb" ]; then
        apt_install postgresql
        how="installed postgresql, started"
    fi
    local dir=$DEV_DIR/pg
    mkdir -p "$dir"
    if is_root; then
        chown postgres: "$dir"
        # A checkout under /root (0700) is out of the postgres user's reach:
        # fall back to its home rather than loosen the caller's directories.
        if ! as_postgres test -w "$dir"; then
            dir=/var/lib/postgresql/rtm-dev-$PG_PORT
            as_postgres mkdir -p "$dir" || die "user postgres cannot write $DEV_DIR/pg nor $dir"
        fi
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
            >"$dir/initdb.log" 2>&1 || die "initdb failed, see $dir/initdb.log"
    fi
    # A Unix socket path may not exceed 107 bytes; deep checkouts use /tmp.
    local sockets=$dir
    [ "${#dir}" -le 90 ] || sockets=/tmp
    # max_connections: four RTM processes plus tests open many pools at once.
    # PostgreSQL 15's initdb has no -c, so it is a server option here.
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$WAIT_S" \
        -o "-p $PG_PORT -k '$sockets' -c listen_addresses=127.0.0.1 -c max_connections=300" \
        start >/dev/null || die "PostgreSQL did not start, see $dir/postgres.log"
    wait_for "PostgreSQL on 127.0.0.1:$PG_PORT" pg_answers
    say postgres "$how PostgreSQL 15 on 127.0.0.1:$PG_PORT, data $dir/data"
}

redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
    if [ -n "${RTM_TEST_REDIS_ADDR:-}" ]; then
        say redis "RTM_TEST_REDIS_ADDR given by caller, not touched"
        return
    fi
    if redis_answers; then
        say redis "reusing the server on 127.0.0.1:$REDIS_PORT"
        return
    fi
    local how=started
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server redis-tools
        how="installed redis, started"
    fi
    local dir=$DEV_DIR/redis
    mkdir -p "$dir"
    # Test data only: no snapshots, no AOF.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' \
        --appendonly no --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
    wait_for "Redis on 127.0.0.1:$REDIS_PORT (log: $dir/redis.log)" redis_answers
    say redis "$how Redis on 127.0.0.1:$REDIS_PORT, log $dir/redis.log"
}

write_test_env() {
    local env=$DEV_DIR/test.env
    # Written whole, then renamed: a concurrent reader never sees half a file.
    {
        echo "# Written by scripts/ensure-deps.sh; source it before running the tests."
        printf 'export RTM_TEST_POSTGRES_DSN=%q\n' \
            "${RTM_TEST_POSTGRES_DSN:-postgresql://postgres@127.0.0.1:$PG_PORT/postgres}"
        printf 'export RTM_TEST_REDIS_ADDR=%q\n' "${RTM_TEST_REDIS_ADDR:-127.0.0.1:$REDIS_PORT}"
        # Ryuk (testcontainers' reaper) needs an image pull, and nothing can be pulled.
        echo 'export TESTCONTAINERS_RYUK_DISABLED=true'
    } >"$env.tmp"
    mv "$env.tmp" "$env"
    say test.env "$env"
}

ensure_python
ensure_busybox
ensure_docker
ensure_compose
ensure_registry
ensure_postgres
ensure_redis
write_test_env
