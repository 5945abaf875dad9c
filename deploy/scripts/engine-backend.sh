#!/usr/bin/env bash
# The Docker side of RTMANAGER_ENGINE_BACKEND for `make up` and `make down`.
#
#   engine-backend.sh prepare   (up.sh, before `compose up`)
#     docker: the engines' network as a bridge network (as before);
#     swarm:  the daemon in a swarm (`docker swarm init` when it is in none; it
#             must be a manager) and the engines' network as an attachable
#             overlay network.
#   engine-backend.sh release   (down.sh, after `compose down`)
#     removes what `prepare` created and recorded, and nothing else: the overlay
#     network (when nothing is attached to it any more) and the swarm (when
#     `prepare` initialised it and no service is left in it).
#
# Switching a deployment between backends is safe, because of what Docker 20.10
# does to a running stack (docs/scale-out.md "Switching backends"): a compose
# stack's containers lose their networks when the daemon joins or leaves a
# swarm under them. So:
#   - `swarm init`, and replacing the engines' network by one of the other
#     kind, happen only with this compose project down: `prepare` takes it down
#     first (`compose down`, volumes kept) and `up.sh` brings it up after;
#   - the swarm is left only by `release`, i.e. after `compose down`;
#   - a network is replaced only when nothing but this project's RTM
#     containers is attached to it; engines of the other backend still running
#     (containers on the bridge, services on the overlay) stop the switch with
#     a message instead: stop them (`make down-engines`) or keep the backend.
#
# Env: RTMANAGER_ENGINE_BACKEND (docker|swarm), RTMANAGER_DOCKER_NETWORK,
#      RTMANAGER_STACK, RTM_COMPOSE_PROJECT (default rtm), RTM_DEV_DIR (where
#      what was created is recorded: $RTM_DEV_DIR/backend/), RTM_SWARM_ADVERTISE_ADDR
#      (swarm init --advertise-addr, default 127.0.0.1: a one-host swarm; give
#      the host's address to add nodes later), DOCKER_HOST as docker reads it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shell > deploy/compose/.env > default (compose's own precedence, as up.sh)
env_get() {
    local key="$1" def="$2" val
    if [[ -n "${!key:-}" ]]; then echo "${!key}"; return; fi
    if [[ -f "$repo/deploy/compose/.env" ]] \
        && val="$(grep -E "^[[:space:]]*$key=" "$repo/deploy/compose/.env" | tail -n1)"; then
        echo "${val#*=}"; return
    fi
    echo "$def"
}
backend="$(env_get RTMANAGER_ENGINE_BACKEND docker)"
net="$(env_get RTMANAGER_DOCKER_NETWORK galaxy-net)"
stack="$(env_get RTMANAGER_STACK compose)"
advertise="$(env_get RTM_SWARM_ADVERTISE_ADDR 127.0.0.1)"
project="${RTM_COMPOSE_PROJECT:-rtm}"
state="${RTM_DEV_DIR:-$repo/.rtm-dev}/backend"

say() { printf '[engine-backend] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

swarm_state() { docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown; }
is_manager() { [[ "$(docker info -f '{{.Swarm.ControlAvailable}}')" == true ]]; }
net_driver() { docker network inspect -f '{{.Driver}}' "$net" 2>/dev/null || true; }
net_attachable() { [[ "$(docker network inspect -f '{{.Attachable}}' "$net")" == true ]]; }
project_containers() { docker ps -q --filter "label=com.docker.compose.project=$project"; }

# Containers attached to the network that are not this compose project's.
foreign_on_net() {
    local id
    for id in $(docker network inspect -f '{{range $k, $v := .Containers}}{{$k}} {{end}}' "$net"); do
        [[ "$id" == lb-* || "$id" == ingress-* ]] && continue # Swarm's own endpoints
        [[ -n "$(docker ps -aq --filter "id=$id" --filter "label=com.docker.compose.project=$project")" ]] \
            || echo "$id"
    done
}

engine_services() {
    [[ "$(swarm_state)" == active ]] && is_manager || return 0
    docker service ls -q --filter label=com.galaxy.owner=rtmanager \
        --filter "label=com.galaxy.stack=$stack"
}

stack_down_for() { # why: the project goes down before the daemon's networking changes
    if [[ -n "$(project_containers)" ]]; then
        say "taking the compose project '$project' down first ($1; volumes kept)"
        "$repo/deploy/scripts/compose.sh" down --remove-orphans >&2
    fi
}

require_replaceable() { # the network has the wrong kind: only RTM's own containers may be on it
    local foreign
    foreign="$(foreign_on_net)"
    [[ -z "$foreign" ]] || die "network $net ($(net_driver)) still has containers that are not this \
stack's RTM ($(echo "$foreign" | wc -w): engines of the other backend?). Stop them (make down-engines) \
or keep RTMANAGER_ENGINE_BACKEND as it was, or use another RTMANAGER_DOCKER_NETWORK. Nothing was changed."
}

wrong_for_swarm() { # the network exists and is not an attachable overlay
    local driver
    driver="$(net_driver)"
    [[ -n "$driver" ]] && { [[ "$driver" != overlay ]] || ! net_attachable; }
}

replace_network() { # what: the kind expected
    require_replaceable
    stack_down_for "replacing network $net"
    docker network rm "$net" >/dev/null
    say "removed network $net ($1 expected)"
}

prepare_docker() {
    local services
    services="$(engine_services)"
    [[ -z "$services" ]] || die "$(echo "$services" | wc -w) engine service(s) of stack '$stack' \
still run in the swarm (RTMANAGER_ENGINE_BACKEND was swarm): stop and clean those games up \
(or make down-engines), or keep RTMANAGER_ENGINE_BACKEND=swarm."
    if [[ "$(net_driver)" == overlay ]]; then
        replace_network bridge
    fi
    if [[ -z "$(net_driver)" ]]; then
        docker network create "$net" >/dev/null
        say "created network $net (bridge)"
    fi
}

prepare_swarm() {
    mkdir -p "$state"
    # Refuse before changing anything (no swarm init for a switch that cannot finish).
    if wrong_for_swarm; then require_replaceable; fi
    case "$(swarm_state)" in
        active)
            is_manager || die "this daemon is a swarm worker; RTM needs a manager (point DOCKER_HOST at one)"
            ;;
        inactive)
            stack_down_for "joining a swarm under a running stack breaks its networks"
            docker swarm init --advertise-addr "$advertise" >/dev/null
            touch "$state/swarm-initialised"
            say "initialised a single-node swarm (advertise $advertise); make down leaves it again"
            ;;
        *) die "the daemon's swarm state is $(swarm_state); settle it by hand first (docker info)" ;;
    esac
    if wrong_for_swarm; then
        replace_network "attachable overlay"
    fi
    if [[ -z "$(net_driver)" ]]; then
        docker network create -d overlay --attachable "$net" >/dev/null
        echo "$net" >"$state/overlay-network"
        # A new swarm-scoped network can show an empty driver for a moment on a busy
        # manager; RTM's boot check (and the next prepare) must see an overlay.
        for _ in $(seq 1 50); do
            [[ "$(net_driver)" == overlay ]] && break
            sleep 0.2
        done
        [[ "$(net_driver)" == overlay ]] || die "network $net created but not reported as an overlay"
        say "created network $net (attachable overlay)"
    fi
}

release() {
    [[ -d "$state" ]] || return 0
    if [[ -f "$state/overlay-network" ]]; then
        local created i
        created="$(cat "$state/overlay-network")"
        if ! docker network inspect "$created" >/dev/null 2>&1; then
            rm -f "$state/overlay-network"
        elif [[ -n "$(engine_services)" ]]; then
            say "kept network $created: engine services of stack '$stack' still use it"
        else
            # Tasks of services just removed detach a few seconds later (Swarm's
            # own 2 s pause before it stops a networked task).
            for ((i = 0; i < 40; i++)); do
                [[ -z "$(net="$created" foreign_on_net)" ]] && break
                sleep 0.5
            done
            if [[ -n "$(net="$created" foreign_on_net)" ]]; then
                say "kept network $created: containers are still attached to it"
            elif docker network rm "$created" >/dev/null 2>&1; then
                rm -f "$state/overlay-network"
                say "removed network $created"
            else
                say "kept network $created: docker refused to remove it"
            fi
        fi
    fi
    if [[ -f "$state/swarm-initialised" ]]; then
        if [[ "$(swarm_state)" != active ]]; then
            rm -f "$state/swarm-initialised"
        elif [[ -n "$(docker service ls -q)" ]]; then
            say "kept the swarm: services still run in it ($(docker service ls -q | wc -l))"
        elif [[ -n "$(project_containers)" ]]; then
            say "kept the swarm: the compose project is still up"
        elif [[ -f "$state/overlay-network" ]]; then
            say "kept the swarm: its network $(cat "$state/overlay-network") is still in use"
        else
            docker swarm leave --force >/dev/null
            rm -f "$state/swarm-initialised"
            say "left the swarm make up had initialised"
        fi
    fi
}

case "${1:-}" in
    prepare)
        case "$backend" in
            docker) prepare_docker ;;
            swarm) prepare_swarm ;;
            *) die "RTMANAGER_ENGINE_BACKEND must be docker or swarm, not '$backend'" ;;
        esac
        ;;
    release) release ;;
    *) die "usage: $0 prepare|release" ;;
esac
