#!/bin/bash
# Entrypoint of rtm-postgres:15: a small subset of the official postgres
# image's contract. First start (empty $PGDATA): initdb with POSTGRES_USER as
# superuser, password auth over TCP, create POSTGRES_DB and schema RTM_SCHEMA,
# run /docker-entrypoint-initdb.d/*, all on a unix-socket-only temporary
# server (so the healthcheck, which uses TCP, stays red until init is done).
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${RTM_SCHEMA:=rtmanager}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

if [[ "${1:-}" == -* ]]; then set -- postgres "$@"; fi

if [[ "${1:-}" != postgres ]]; then exec "$@"; fi

# As root: fix ownership, then re-exec as postgres.
if [[ "$(id -u)" == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

log() { echo "rtm-postgres: $*" >&2; }

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    if [[ -z "${POSTGRES_PASSWORD:-}" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
        log "POSTGRES_PASSWORD is required (or set POSTGRES_HOST_AUTH_METHOD=trust)"
        exit 1
    fi
    log "initialising $PGDATA (superuser $POSTGRES_USER)"
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" >/dev/null
    rm -f "$pwfile"
    {
        echo
        echo "# rtm-postgres: clients on the container networks"
        echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
    } >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start >/dev/null
    psql=(psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -q)
    if [[ "$POSTGRES_DB" != postgres ]]; then
        "${psql[@]}" -d postgres -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    fi
    "${psql[@]}" -d "$POSTGRES_DB" -v schema="$RTM_SCHEMA" -v owner="$POSTGRES_USER" <<'SQL'
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'owner') \gexec
SQL
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) log "running $f"; "${psql[@]}" -d "$POSTGRES_DB" -f "$f" ;;
            *.sh)  log "running $f"; . "$f" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "init complete: database $POSTGRES_DB, schema $RTM_SCHEMA"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off -k /var/run/postgresql "${@:2}"
