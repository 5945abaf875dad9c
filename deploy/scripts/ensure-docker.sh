#!/usr/bin/env bash
# Docker for the compose stack on a fresh Debian 12 machine (root, no systemd):
# docker.io installed and dockerd started when nothing answers, and a compose
# CLI (`docker compose` plugin, else Debian's docker-compose 1.29, installed
# when neither is present). Reuses whatever already works; safe to re-run.
# (scripts/ensure-deps.sh does Docker too, but always with PostgreSQL and
# Redis for the test suite; the stack needs neither on the host.)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dev_dir="${RTM_DEV_DIR:-$repo/.rtm-dev}"
mkdir -p "$dev_dir"
WAIT_S="${RTM_DOCKERD_WAIT:-60}"

say() { echo "ensure-docker: $*" >&2; }
die() { say "$*"; exit 1; }

apt_updated=
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "missing $*; only root may install it"
    if [[ -z "$apt_updated" ]]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
    [[ -z "${DOCKER_HOST:-}" ]] || die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon"
    command -v dockerd >/dev/null && command -v docker >/dev/null || { say "installing docker.io"; apt_install docker.io; }
    [[ $(id -u) -eq 0 ]] || die "Docker does not answer and only root can start dockerd"
    if ! { [[ -f /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
        say "starting dockerd (log $dev_dir/dockerd.log)"
        setsid dockerd --host unix:///var/run/docker.sock >"$dev_dir/dockerd.log" 2>&1 </dev/null &
    fi
    for ((i = 0; i < WAIT_S * 5; i++)); do
        docker info >/dev/null 2>&1 && break
        sleep 0.2
    done
    docker info >/dev/null 2>&1 || die "dockerd did not answer within ${WAIT_S}s (log $dev_dir/dockerd.log)"
fi

if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    say "installing docker-compose (Debian 1.29)"
    apt_install docker-compose
fi
