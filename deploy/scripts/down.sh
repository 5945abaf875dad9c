#!/usr/bin/env bash
# `make down`: the compose stack's containers, networks and volumes (not game
# state, not engines: `make down-engines`), then what `make up` created for the
# engine backend and nothing else (engine-backend.sh release: the overlay
# network and the swarm `make up` initialised, each only once nothing uses it).
set -euo pipefail
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$scripts/compose.sh" down -v --remove-orphans
"$scripts/engine-backend.sh" release
