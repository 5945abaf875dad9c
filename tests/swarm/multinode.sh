#!/usr/bin/env bash
# The multi-node test of the swarm backend (tests/swarm/multinode.py), as CI
# runs it (`make swarm-multinode`): needs root (network namespaces, dockerd),
# the test environment (.rtm-dev/test.env: PostgreSQL, Redis) and the test
# engine image. Whatever happens, every cluster this run started is torn down
# (the script does it itself; the trap sweeps what a crash could leave).
# Usage: tests/swarm/multinode.sh [--games N] [--nodes N] [--report FILE]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${RTM_PYTHON:-$repo/.venv/bin/python}"
env_file="${RTM_DEV_DIR:-$repo/.rtm-dev}/test.env"

[[ $(id -u) -eq 0 ]] || { echo "multinode: needs root (ip netns, dockerd)" >&2; exit 2; }
[[ -f "$env_file" ]] || { echo "multinode: $env_file missing (make deps)" >&2; exit 2; }
# shellcheck disable=SC1090
source "$env_file"
"$repo/scripts/build-test-engine.sh"

sweep() { PYTHONPATH="$repo/tests" "$py" "$repo/tests/swarm/nodes.py" sweep || true; }
trap sweep EXIT
PYTHONPATH="$repo/tests" "$py" "$repo/tests/swarm/multinode.py" "$@"
