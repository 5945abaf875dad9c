#!/usr/bin/env bash
# The Helm chart ships RTM's alert rules and Grafana dashboard (PrometheusRule
# and dashboard ConfigMap, both off by default). Helm only packages files
# inside the chart directory, so the chart carries copies under
# deploy/helm/rtm/files/; deploy/monitoring stays the one source of truth.
#
#   deploy/helm/sync-monitoring.sh          # copy deploy/monitoring -> chart (`make helm-sync`)
#   deploy/helm/sync-monitoring.sh --check  # fail when a copy differs (helm-check, tests)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$repo/deploy/monitoring"
dst="$repo/deploy/helm/rtm/files"
# source dir (under deploy/monitoring) : file glob : chart dir (under files/)
pairs=(
    "prometheus/rules:*.yml:prometheus/rules"
    "grafana:*.json:grafana"
)

check=""
[[ "${1:-}" == "--check" ]] && check=1

drift=0
for pair in "${pairs[@]}"; do
    IFS=: read -r from glob to <<<"$pair"
    [[ -n "$check" ]] || mkdir -p "$dst/$to"
    shopt -s nullglob
    sources=("$src/$from"/$glob)
    copies=("$dst/$to"/$glob)
    shopt -u nullglob
    [[ ${#sources[@]} -gt 0 ]] || { echo "sync-monitoring: nothing in $src/$from/$glob" >&2; exit 1; }
    for f in "${sources[@]}"; do
        copy="$dst/$to/$(basename "$f")"
        if ! cmp -s "$f" "$copy"; then
            if [[ -n "$check" ]]; then
                echo "sync-monitoring: ${copy#"$repo/"} differs from ${f#"$repo/"}" >&2
                drift=1
            else
                cp "$f" "$copy"
                echo "sync-monitoring: updated ${copy#"$repo/"}" >&2
            fi
        fi
    done
    for copy in "${copies[@]}"; do
        if [[ ! -e "$src/$from/$(basename "$copy")" ]]; then
            if [[ -n "$check" ]]; then
                echo "sync-monitoring: ${copy#"$repo/"} has no source in ${src#"$repo/"}/$from" >&2
                drift=1
            else
                rm -f "$copy"
                echo "sync-monitoring: removed ${copy#"$repo/"}" >&2
            fi
        fi
    done
done
if [[ "$drift" -ne 0 ]]; then
    echo "sync-monitoring: the chart's copies are stale: run \`make helm-sync\` (deploy/helm/sync-monitoring.sh)" >&2
    exit 1
fi
