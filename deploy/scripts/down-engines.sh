#!/usr/bin/env bash
# Remove the engine containers of ONE RTM stack: label com.galaxy.owner=
# rtmanager AND com.galaxy.stack=$RTMANAGER_STACK (default compose). Engines
# of other stacks (a test run, another deployment) on the same daemon are not
# touched; game state directories are never deleted.
# Note: the stack's RTM still has records for them; if it is running, its
# reconciler will mark those games `removed` (container_disappeared).
set -euo pipefail
stack="${RTMANAGER_STACK:-compose}"
mapfile -t ids < <(docker ps -aq --filter label=com.galaxy.owner=rtmanager \
    --filter "label=com.galaxy.stack=$stack")
if [[ ${#ids[@]} -eq 0 ]]; then
    echo "down-engines: no engine container of stack '$stack'"
    exit 0
fi
docker rm -f "${ids[@]}" >/dev/null
echo "down-engines: removed ${#ids[@]} engine container(s) of stack '$stack'"
