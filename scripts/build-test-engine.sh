#!/usr/bin/env bash
# Builds the busybox test engine (tests/engine) and tags every version the
# tests use. Re-runs are cheap: a tag whose image already carries the current
# content hash is left alone.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENGINE_DIR=$REPO/tests/engine
# Must be static: the image is FROM scratch, there is no libc to link against.
BUSYBOX=${RTM_TEST_ENGINE_BUSYBOX:-/bin/busybox}
HASH_LABEL=com.galaxy.test_engine.content_hash

# Same content under every tag; only ENGINE_VERSION (served at GET /version)
# differs, so patch tests can see which image is running.
VERSIONS=(1.0.0 1.0.1 1.0.2 1.1.0 2.0.0 latest notsemver)
# Misbehaving releases for the self-healing tests (issue 12): the same content
# with the engine's env controls baked in (tag -> ENV line appended to the
# Dockerfile; built from this context, not FROM a shared tag another checkout
# may have retagged). Same major.minor as 1.0.0, so RTM may patch to them.
#   1.0.7  crash loop: exits 1 one second after every start
#   1.0.8  clean exit: exits 0 one second after every start
#   1.0.9  bad patch:  corrupts its state on start, /healthz 503 after 1 s
BAD_VERSIONS=(1.0.7 1.0.8 1.0.9)
declare -A BAD_ENV=(
    [1.0.7]="ENGINE_EXIT_CODE=1 ENGINE_EXIT_AFTER=1"
    [1.0.8]="ENGINE_EXIT_CODE=0 ENGINE_EXIT_AFTER=1"
    [1.0.9]="ENGINE_CORRUPT_STATE=1 ENGINE_FAIL_HEALTH_AFTER=1"
)
# Resource labels RTM must honour over its defaults (label-override test).
LIMITED_REF=galaxy/test-engine-limited:1.0.0
LIMITED_LABELS=(--label com.galaxy.memory=64m --label com.galaxy.cpu_quota=0.5
    --label com.galaxy.pids_limit=64)

die() { echo "build-test-engine: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "Docker is not answering (run scripts/ensure-deps.sh)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static, or set RTM_TEST_ENGINE_BUSYBOX)"
# ldd succeeds only on dynamic executables.
! ldd "$BUSYBOX" >/dev/null 2>&1 || die "$BUSYBOX is dynamically linked; install busybox-static"

# Everything that ends up in the image, names and modes included, plus this
# script (it decides tags, labels and build args).
content_hash() {
    {
        sha256sum "$BUSYBOX" "$ENGINE_DIR/Dockerfile" "${BASH_SOURCE[0]}" | cut -d' ' -f1
        (cd "$ENGINE_DIR/rootfs" && find . -type f -printf '%p %m\n' | LC_ALL=C sort)
        (cd "$ENGINE_DIR/rootfs" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-16
}
HASH=$(content_hash)

current() { # ref -> 0 when the tag already holds this content
    [ "$(docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null)" = "$HASH" ]
}

CTX=
stage_context() {
    CTX=$(mktemp -d)
    trap 'rm -rf "$CTX"' EXIT
    mkdir -p "$CTX/rootfs/bin" "$CTX/rootfs/tmp"
    chmod 1777 "$CTX/rootfs/tmp"
    cp "$BUSYBOX" "$CTX/rootfs/bin/busybox"
    # Relative links to every applet, so the scripts (and `docker exec sh`)
    # find sh, nc, sleep, ... on PATH=/bin.
    local applet
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$CTX/rootfs/bin/$applet"
    done
    cp -a "$ENGINE_DIR/rootfs/." "$CTX/rootfs/"
    cp "$ENGINE_DIR/Dockerfile" "$CTX/Dockerfile"
    local v
    for v in "${BAD_VERSIONS[@]}"; do
        { cat "$ENGINE_DIR/Dockerfile"; echo "ENV ${BAD_ENV[$v]}"; } >"$CTX/Dockerfile.$v"
    done
}

UP_TO_DATE=0
build() { # ref version [docker build args...]
    local ref=$1 version=$2
    shift 2
    if current "$ref"; then
        UP_TO_DATE=$((UP_TO_DATE + 1))
        return
    fi
    [ -n "$CTX" ] || stage_context
    # Output only on failure: the legacy builder nags on every build.
    local out
    local args=("$@")
    # A file of the staged context (only known once it is staged).
    [[ "${args[0]:-}" != -f ]] || args[1]="$CTX/${args[1]}"
    out=$(docker build -q --build-arg "ENGINE_VERSION=$version" --label "$HASH_LABEL=$HASH" \
        "${args[@]}" -t "$ref" "$CTX" 2>&1) || die "docker build of $ref failed:"$'\n'"$out"
    echo "test engine: built $ref ($HASH)"
}

for v in "${VERSIONS[@]}"; do
    build "galaxy/test-engine:$v" "$v"
done
for v in "${BAD_VERSIONS[@]}"; do
    build "galaxy/test-engine:$v" "$v" -f "Dockerfile.$v"
done
build "$LIMITED_REF" 1.0.0 "${LIMITED_LABELS[@]}"
[ "$UP_TO_DATE" = 0 ] || echo "test engine: $UP_TO_DATE images already up to date ($HASH)"
