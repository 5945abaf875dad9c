#!/usr/bin/env bash
# Validate RTM's Prometheus config, alert/recording rules and rule unit tests.
#
#   deploy/monitoring/check.sh
#
# Installs Debian's `prometheus` package (which ships `promtool`) when promtool
# is not on PATH, then runs:
#   promtool check config   deploy/monitoring/prometheus/prometheus.yml
#   promtool check rules    deploy/monitoring/prometheus/rules/*.yml
#   promtool test rules     deploy/monitoring/prometheus/tests/*.yml
#
# Safe to run repeatedly and unattended: apt runs non-interactively, the
# package index is refreshed only when the package cannot be found or the
# install fails on stale lists, and no service is started by the install.
# Set PROMTOOL=/path/to/promtool to use a specific binary and skip apt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROM_DIR="$HERE/prometheus"

log() { printf 'check.sh: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        log "need root (or passwordless sudo) to install promtool"
        return 1
    fi
}

apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
        apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"
}

have_candidate() {
    # True when the local package index knows an installable `prometheus`.
    local candidate
    candidate="$(apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

install_promtool() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "promtool not found and apt-get is unavailable; install prometheus's promtool or set PROMTOOL"
        return 1
    fi
    log "promtool not found; installing Debian package 'prometheus'"

    # Debian's postinst would start the Prometheus daemon through invoke-rc.d.
    # We only want the binaries, so deny service starts for the duration of
    # the install unless the machine already has a policy (container images
    # usually ship one that does the same).
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        created_policy=1
    fi

    local rc=0
    {
        if ! have_candidate; then
            apt_get update
        fi
        apt_get install --no-install-recommends prometheus \
            || { log "install failed, refreshing package index and retrying"; \
                 apt_get update && apt_get install --no-install-recommends prometheus; }
    } || rc=$?

    if [ -n "$created_policy" ]; then
        as_root rm -f "$policy"
    fi
    # A systemd host enables the unit even with the policy in place; we
    # never want a stray server from a lint run.
    if [ "$rc" -eq 0 ] && command -v systemctl >/dev/null 2>&1 \
            && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    return "$rc"
}

if [ -n "${PROMTOOL:-}" ]; then
    promtool="$PROMTOOL"
elif command -v promtool >/dev/null 2>&1; then
    promtool="$(command -v promtool)"
else
    install_promtool
    promtool="$(command -v promtool)"
fi
log "using $("$promtool" --version 2>&1 | head -n1)"

cd "$PROM_DIR"
shopt -s nullglob
rules=(rules/*.yml)
tests=(tests/*.yml)
if [ "${#rules[@]}" -eq 0 ] || [ "${#tests[@]}" -eq 0 ]; then
    log "no rule files or no rule tests under $PROM_DIR"
    exit 1
fi

log "promtool check config prometheus.yml"
"$promtool" check config prometheus.yml
log "promtool check rules ${rules[*]}"
"$promtool" check rules "${rules[@]}"
log "promtool test rules ${tests[*]}"
"$promtool" test rules "${tests[@]}"
log "all checks passed"
