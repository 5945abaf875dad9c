#!/usr/bin/env bash
# Remove the engines of ONE RTM stack: containers (docker backend) and, on a
# swarm manager, services (swarm backend) labelled com.galaxy.owner=
# rtmanager AND com.galaxy.stack=$RTMANAGER_STACK (default compose). Engines
# of other stacks (a test run, another deployment) on the same daemon are not
# touched; game state directories are never deleted.
# Note: the stack's RTM still has records for them; if it is running, its
# reconciler will mark those games `removed` (container_disappeared).
set -euo pipefail
stack="${RTMANAGER_STACK:-compose}"
if [[ "$(docker info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null)" == true ]]; then
    mapfile -t services < <(docker service ls -q --filter label=com.galaxy.owner=rtmanager \
        --filter "label=com.galaxy.stack=$stack")
    if [[ ${#services[@]} -gt 0 ]]; then
        docker service rm "${services[@]}" >/dev/null
        echo "down-engines: removed ${#services[@]} engine service(s) of stack '$stack'"
    fi
fi
# Swarm task containers go with their services (and Swarm removes them itself).
mapfile -t ids < <(docker ps -aq --filter label=com.galaxy.owner=rtmanager \
    --filter "label=com.galaxy.stack=$stack" | while read -r id; do
        [[ -n "$(docker inspect -f '{{ index .Config.Labels "com.docker.swarm.service.id" }}' "$id" 2>/dev/null)" ]] || echo "$id"
    done)
if [[ ${#ids[@]} -eq 0 ]]; then
    echo "down-engines: no engine container of stack '$stack'"
    exit 0
fi
docker rm -f "${ids[@]}" >/dev/null
echo "down-engines: removed ${#ids[@]} engine container(s) of stack '$stack'"
