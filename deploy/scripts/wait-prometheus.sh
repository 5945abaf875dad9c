#!/usr/bin/env bash
# Wait (bound RTM_PROMETHEUS_WAIT, default 90 s) until the stack's Prometheus
# (profile `monitoring`, `make monitoring-up`) answers /-/ready on
# 127.0.0.1:$RTM_PROMETHEUS_PORT and has loaded its rules; on timeout print its
# state and last log lines, and fail.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
compose=("$repo/deploy/scripts/compose.sh" --profile monitoring)
port="${RTM_PROMETHEUS_PORT:-9090}"
bound="${RTM_PROMETHEUS_WAIT:-90}"
url="http://127.0.0.1:$port"

check() {
    python3 - "$url" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
urllib.request.urlopen(base + "/-/ready", timeout=3).read()
groups = json.load(urllib.request.urlopen(base + "/api/v1/rules", timeout=3))["data"]["groups"]
sys.exit(0 if groups else 1)
PY
}

deadline=$(( $(date +%s) + bound ))
until check >/dev/null 2>&1; do
    if (( $(date +%s) >= deadline )); then
        echo "wait-prometheus: not ready within ${bound}s at $url" >&2
        "${compose[@]}" ps prometheus >&2 || true
        "${compose[@]}" logs --no-color --tail 40 prometheus >&2 || true
        exit 1
    fi
    sleep 1
done
echo "wait-prometheus: Prometheus ready at $url (rules loaded)" >&2
