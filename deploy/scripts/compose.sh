#!/usr/bin/env bash
# Run compose on deploy/compose/docker-compose.yml with the stack's defaults:
#   - the CLI: `docker compose` (v2 plugin) if present, else `docker-compose`
#     (Debian's 1.29); force one with RTM_COMPOSE_CMD="docker-compose";
#   - project name RTM_COMPOSE_PROJECT (default rtm);
#   - RTM_IMAGE / RTM_POSTGRES_IMAGE / RTM_REDIS_IMAGE from the last
#     deploy/images/build.sh (.rtm-dev/images.env), unless set in the shell or
#     in deploy/compose/.env;
#   - DOCKER_GID = group of the Docker socket, unless set.
# Usage: deploy/scripts/compose.sh <compose args...>   e.g. ps, logs -f rtm-api
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
compose_dir="$repo/deploy/compose"
dev_dir="${RTM_DEV_DIR:-$repo/.rtm-dev}"

in_dotenv() { [[ -f "$compose_dir/.env" ]] && grep -qE "^[[:space:]]*$1=" "$compose_dir/.env"; }

if [[ -f "$dev_dir/images.env" ]]; then
    while IFS='=' read -r key value; do
        [[ "$key" =~ ^[A-Z_]+$ ]] || continue
        [[ -n "${!key:-}" ]] && continue
        in_dotenv "$key" && continue
        export "$key=$value"
    done <"$dev_dir/images.env"
fi

if [[ -z "${DOCKER_GID:-}" ]] && ! in_dotenv DOCKER_GID; then
    sock="${RTM_DOCKER_SOCKET:-/var/run/docker.sock}"
    DOCKER_GID="$(stat -c %g "$sock" 2>/dev/null || echo 0)"
    export DOCKER_GID
fi

if [[ -n "${RTM_COMPOSE_CMD:-}" ]]; then
    read -r -a cmd <<<"$RTM_COMPOSE_CMD"
elif docker compose version >/dev/null 2>&1; then
    cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    cmd=(docker-compose)
else
    echo "compose.sh: neither 'docker compose' nor 'docker-compose' found (run deploy/scripts/ensure-docker.sh)" >&2
    exit 127
fi

exec "${cmd[@]}" -p "${RTM_COMPOSE_PROJECT:-rtm}" -f "$compose_dir/docker-compose.yml" "$@"
