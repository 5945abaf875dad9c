#!/usr/bin/env bash
# `make up`: from a fresh Debian 12 machine to a ready RTM stack.
#   1. Docker + a compose CLI (ensure-docker.sh)
#   2. images (deploy/images/build.sh: offline path when no registry answers)
#   3. the engine backend (RTMANAGER_ENGINE_BACKEND, or ENGINE_BACKEND=swarm on
#      the make command line): the engines' network, a bridge (docker) or an
#      attachable overlay in a swarm initialised here if the daemon is in none
#      (swarm); engine-backend.sh says how switching backends stays safe
#   4. the game state root, writable by the RTM user (never emptied)
#   5. compose up -d (RTMANAGER_* of the shell or deploy/compose/.env reach RTM
#      through compose's interpolation, e.g. the opt-in self-healing switches:
#      RTMANAGER_AUTO_RESTART=on RTMANAGER_PATCH_HEALTH_GATE=on make up)
#   6. wait, bounded by RTM_UP_TIMEOUT (default 180 s), until rtm-api's
#      /readyz answers and every RTM service is healthy; on timeout print
#      the state and logs of whatever is not, and fail.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
scripts="$repo/deploy/scripts"
compose=("$scripts/compose.sh")
timeout_s="${RTM_UP_TIMEOUT:-180}"
t0=$(date +%s)

say() { printf '[up] %s\n' "$*" >&2; }
elapsed() { echo $(( $(date +%s) - t0 )); }

# shell > deploy/compose/.env > default (compose's own precedence)
env_get() {
    local key="$1" def="$2" val
    if [[ -n "${!key:-}" ]]; then echo "${!key}"; return; fi
    if [[ -f "$repo/deploy/compose/.env" ]] \
        && val="$(grep -E "^[[:space:]]*$key=" "$repo/deploy/compose/.env" | tail -n1)"; then
        echo "${val#*=}"; return
    fi
    echo "$def"
}

"$scripts/ensure-docker.sh"
say "docker ready ($(elapsed)s)"

"$repo/deploy/images/build.sh"
say "images ready ($(elapsed)s)"

net="$(env_get RTMANAGER_DOCKER_NETWORK galaxy-net)"
backend="${ENGINE_BACKEND:-$(env_get RTMANAGER_ENGINE_BACKEND docker)}"
# Exported: compose interpolates them, engine-backend.sh reads them.
export RTMANAGER_ENGINE_BACKEND="$backend" RTMANAGER_DOCKER_NETWORK="$net"
export RTMANAGER_STACK="$(env_get RTMANAGER_STACK compose)"
"$scripts/engine-backend.sh" prepare
say "engine backend $backend ready, network $net ($(elapsed)s)"

state_root="$(env_get RTMANAGER_GAME_STATE_ROOT /var/lib/galaxy/games)"
rtm_uid="$(env_get RTM_UID 10001)"
engine_gid="$(env_get RTM_ENGINE_GID 0)"
if [[ ! -d "$state_root" ]]; then
    install -d -m 0750 -o "$rtm_uid" -g "$engine_gid" "$state_root"
    say "created state root $state_root (owner $rtm_uid:$engine_gid)"
elif [[ "$(stat -c %u "$state_root")" != "$rtm_uid" && "$rtm_uid" != 0 ]]; then
    # Only the root dir itself, never its content: the games' dirs stay as they are.
    chown "$rtm_uid:$engine_gid" "$state_root"
    say "state root $state_root handed to uid $rtm_uid (content untouched)"
fi

# curl is not on every fresh Debian; python3 always is.
http_ok() {
    if command -v curl >/dev/null; then
        curl -fsS -m 3 "$1" >/dev/null 2>&1
    else
        python3 -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=3)' "$1" >/dev/null 2>&1
    fi
}

dump_failing() {
    say "services not ready after $(elapsed)s:"
    "${compose[@]}" ps >&2 || true
    local cid svc state health
    for cid in $(docker ps -aq --filter "label=com.docker.compose.project=${RTM_COMPOSE_PROJECT:-rtm}"); do
        svc="$(docker inspect -f '{{ index .Config.Labels "com.docker.compose.service" }}' "$cid")"
        state="$(docker inspect -f '{{ .State.Status }} {{ .State.ExitCode }}' "$cid")"
        health="$(docker inspect -f '{{ if .State.Health }}{{ .State.Health.Status }}{{ end }}' "$cid")"
        if [[ "$state" == "running 0" && ( -z "$health" || "$health" == healthy ) ]]; then continue; fi
        [[ "$svc" == rtm-migrate && "$state" == "exited 0" ]] && continue
        say "---- $svc ($cid): state=$state health=${health:-n/a}; last log lines:"
        docker logs --tail 60 "$cid" >&2 2>&1 || true
    done
}

say "self-healing: auto restart $(env_get RTMANAGER_AUTO_RESTART off)," \
    "patch health gate $(env_get RTMANAGER_PATCH_HEALTH_GATE off)," \
    "start wait ready $(env_get RTMANAGER_START_WAIT_READY off)"
if ! "${compose[@]}" up -d --remove-orphans; then
    dump_failing
    exit 1
fi
say "compose up returned ($(elapsed)s); waiting for readiness (bound ${timeout_s}s)"

port="$(env_get RTM_API_PORT 8096)"
deadline=$(( $(date +%s) + timeout_s ))
ready=0
while (( $(date +%s) < deadline )); do
    if http_ok "http://127.0.0.1:$port/readyz"; then
        unhealthy=0
        for svc in rtm-api rtm-jobs rtm-watcher rtm-reconciler; do
            for cid in $("${compose[@]}" ps -q "$svc" 2>/dev/null); do
                [[ "$(docker inspect -f '{{ if .State.Health }}{{ .State.Health.Status }}{{ end }}' "$cid")" == healthy ]] || unhealthy=1
            done
        done
        if (( unhealthy == 0 )); then ready=1; break; fi
    fi
    sleep 1
done

if (( ready == 0 )); then
    dump_failing
    exit 1
fi
say "RTM ready: http://127.0.0.1:$port (readyz ok, all services healthy) in $(elapsed)s"
