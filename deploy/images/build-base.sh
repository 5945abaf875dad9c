#!/usr/bin/env bash
# Build the offline base image rtm-base:bookworm from Debian's own archive.
#
# Used when no container registry answers (python:3.11-slim cannot be pulled).
# debootstrap fetches Debian bookworm (python3 = 3.11, same minor as the
# ordinary python:3.11-slim path) over http from deb.debian.org and the rootfs
# is imported as an image. The result is cached under a tag derived from this
# script's content, so a re-run is a no-op unless the recipe changed.
#
# Usage: deploy/images/build-base.sh [--force]
# Env:   RTM_BASE_IMAGE (default rtm-base:bookworm)
#        DEBIAN_MIRROR  (default http://deb.debian.org/debian)
set -euo pipefail

BASE_IMAGE="${RTM_BASE_IMAGE:-rtm-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
recipe="$(cat "$here/build-base.sh" | sha256sum | cut -c1-12)"
repo="${BASE_IMAGE%%:*}"
pinned="${repo}:${SUITE}-${recipe}"

log() { printf '[build-base] %s\n' "$*" >&2; }

if [[ $FORCE -eq 0 ]] && docker image inspect "$pinned" >/dev/null 2>&1; then
    docker tag "$pinned" "$BASE_IMAGE"
    log "cached: $BASE_IMAGE = $pinned"
    exit 0
fi

command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get install -y --no-install-recommends debootstrap >/dev/null
}
[[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }

rootfs="$(mktemp -d /tmp/rtm-rootfs.XXXXXX)"
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the rootfs on failure
    for m in proc sys dev/pts; do
        mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
    done
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap $SUITE from $MIRROR into $rootfs"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"

# apt inside derived images: updates + security over http (https to mirrors
# may be intercepted here), no recommends, no docs/man/locales.
cat >"$rootfs/etc/apt/sources.list" <<SRC
deb ${MIRROR} ${SUITE} main
deb ${MIRROR} ${SUITE}-updates main
deb ${MIRROR%/debian}/debian-security ${SUITE}-security main
SRC
cat >"$rootfs/etc/apt/apt.conf.d/90rtm-minimal" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
APT
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90rtm-excludes" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
DPKG

# Pick up bookworm-updates / bookworm-security fixes (python3, openssl, ...).
log "applying bookworm updates and security fixes"
chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade' \
    >/tmp/rtm-base-upgrade.log 2>&1 || {
    tail -n 30 /tmp/rtm-base-upgrade.log >&2
    exit 1
}

# Slim the rootfs.
chroot "$rootfs" /bin/sh -c 'apt-get clean'
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/log/* "$rootfs"/tmp/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# Keep the stdlib's __pycache__: RTM runs with a read-only root and
# PYTHONDONTWRITEBYTECODE, so without it every start recompiles the stdlib.

log "importing as $pinned"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["/bin/bash"]' \
    -m "debootstrap minbase $SUITE + python3 python3-venv ca-certificates (recipe $recipe)" \
    - "$pinned" >/dev/null
docker tag "$pinned" "$BASE_IMAGE"
log "built $BASE_IMAGE ($pinned) in $(( $(date +%s) - start ))s"
