#!/usr/bin/env bash
# Build galaxy/rtm:<version> and, on the offline path, rtm-postgres:15 and
# rtm-redis:7 for compose. Idempotent and fast on re-run:
#   - the base image is cached by build-base.sh (keyed by its own content);
#   - the third-party set is `uv export` of uv.lock (both paths); its wheels
#     are downloaded again only when that export or the base image changes,
#     RTM's five wheels only when their sources change (two content hashes,
#     two wheel dirs);
#   - Docker's layer cache does the rest (deps layer before sources layer).
#
# Path selection (RTM_BUILD_PATH=auto|ordinary|offline, default auto):
#   ordinary  FROM python:3.11-slim, pip installs the locked set from PyPI
#             inside the build; compose then uses postgres:15 and redis:7.
#   offline   FROM rtm-base:bookworm (debootstrap), the locked set's wheels
#             downloaded here on the host; compose then uses rtm-postgres:15
#             and rtm-redis:7.
#   auto      offline unless `docker pull python:3.11-slim` succeeds (bounded
#             by RTM_REGISTRY_PROBE_TIMEOUT, default 20 s).
# The choice is written to .rtm-dev/images.env, which deploy/scripts/compose.sh
# reads for the image variables you did not set yourself.
#
# RTM_BUILD_MONITORING=1 (set by `make monitoring-up`) also builds
# rtm-prometheus:2 on the offline path (the compose profile `monitoring`);
# the ordinary path uses prom/prometheus:v2.42.0 from the registry.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/deploy/images"
dev_dir="${RTM_DEV_DIR:-$repo/.rtm-dev}"
wheels="$here/wheels"
PYTHON="${PYTHON:-python3}"
path="${RTM_BUILD_PATH:-auto}"
probe_timeout="${RTM_REGISTRY_PROBE_TIMEOUT:-20}"
version="${RTM_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/libs/rtm-core/pyproject.toml" | head -n1)}"
rtm_image="${RTM_IMAGE:-galaxy/rtm:${version}}"
base_image="${RTM_BASE_IMAGE:-rtm-base:bookworm}"
slim_image="${RTM_SLIM_IMAGE:-python:3.11-slim}"

log() { printf '[build] %s\n' "$*" >&2; }
logs="$dev_dir/logs"; mkdir -p "$logs"
# run LOGNAME CMD...: output to $logs/LOGNAME.log, shown only when CMD fails.
run() {
    local name="$1"; shift
    if ! "$@" >"$logs/$name.log" 2>&1; then
        log "FAILED: $* (log: $logs/$name.log)"; tail -n 40 "$logs/$name.log" >&2; return 1
    fi
}
now() { date +%s; }
t_all=$(now)
mkdir -p "$dev_dir" "$wheels/deps" "$wheels/rtm"

# The Docker 28 CLI without buildx refuses to build unless told to use the
# classic builder; the Dockerfiles are written for both.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

# ------------------------------------------------------------- choose a path
if [[ "$path" == auto ]]; then
    if docker image inspect "$slim_image" >/dev/null 2>&1 \
        || timeout "$probe_timeout" docker pull -q "$slim_image" >/dev/null 2>&1; then
        path=ordinary
    else
        path=offline
        log "no registry answered for $slim_image: offline path"
    fi
fi
case "$path" in
    ordinary|offline) ;;
    *) log "RTM_BUILD_PATH must be auto, ordinary or offline (got $path)"; exit 2 ;;
esac
log "path=$path image=$rtm_image"

# ------------------------------------------------------------- hashing helper
hash_files() {  # stable content hash of the given files/dirs (sources only)
    (cd "$repo" && find "$@" -type f \
        -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*.egg-info/*' \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

# ------------------------------------------------------------- requirements
# The image's third-party packages are exactly uv.lock's, on both paths:
# `uv export` of the five packages' runtime dependencies (no dependency
# group, no extra, no workspace member), environment markers and hashes
# kept. pip inside the image evaluates the markers for its own interpreter
# and checks every file against the lock's hashes (a hash in the file turns
# on --require-hashes).
uv="$(RTM_DEV_DIR="$dev_dir" "$repo/scripts/ensure-uv.sh")"
reqs="$wheels/deps/requirements.txt"
reqs_new="$(mktemp)"
trap 'rm -f "$reqs_new"' EXIT
(cd "$repo" && "$uv" export --quiet --frozen --all-packages --no-default-groups \
    --no-emit-workspace --no-header --format requirements.txt) >"$reqs_new"

# ------------------------------------------------------------- offline: base
build_args=()
if [[ "$path" == offline ]]; then
    t=$(now)
    RTM_BASE_IMAGE="$base_image" "$here/build-base.sh"
    log "base image ready in $(( $(now) - t ))s"

    # ---------------------------------------------------------- offline: wheels
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
        log "$PYTHON is not Python 3.11: wheels must match the image's interpreter"; exit 1; }
    pkgs=(libs/rtm-core services/rtm-api services/rtm-jobs services/rtm-watcher services/rtm-reconciler)
    # Host-side build venv (a fresh Debian has python3 without pip): pip plus
    # the pinned build backend, so RTM's own wheels build without an isolated
    # env per package (~25 s -> ~3 s for the five).
    backend="$(sed -n 's/^requires *= *\["\(hatchling[^"]*\)"\]/\1/p' "$repo/libs/rtm-core/pyproject.toml" | head -n1)"
    bvenv="$dev_dir/cache/wheel-build"
    if [[ "$(cat "$bvenv/.backend" 2>/dev/null)" != "$backend" || ! -x "$bvenv/bin/python" ]]; then
        rm -rf "$bvenv"
        if ! "$PYTHON" -m venv "$bvenv" >/dev/null 2>&1; then
            [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || {
                log "$PYTHON -m venv failed: install python3-venv"; exit 1; }
            log "installing python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$bvenv"; "$PYTHON" -m venv "$bvenv"
        fi
        run wheel-build-venv "$bvenv/bin/pip" install --disable-pip-version-check "${backend:-hatchling}"
        echo "$backend" >"$bvenv/.backend"
    fi
    bpy="$bvenv/bin/python"
    # deps: what the lock exports; the target interpreter (base image) decides
    # which marked lines apply.
    deps_hash="$( (cat "$reqs_new"; docker image inspect -f '{{.Id}}' "$base_image") | sha256sum | cut -c1-16)"
    src_hash="$(hash_files "${pkgs[@]}")"

    t=$(now)
    if [[ "$(cat "$wheels/deps/.hash" 2>/dev/null)" != "$deps_hash" ]]; then
        log "dependencies changed: downloading uv.lock's wheels into $wheels/deps"
        rm -rf "$wheels/deps"; mkdir -p "$wheels/deps"
        # Markers are the image's, not the host's (Debian's 3.11.2 needs
        # async-timeout, which `python_full_version < '3.11.3'` skips on a
        # newer host): uv narrows the export to the lines that apply to the
        # base image's interpreter, pinned, markers gone; pip downloads those.
        read -r target_py target_machine < <(docker run --rm "$base_image" python3 -c \
            'import platform; print(platform.python_version(), platform.machine())')
        target="$dev_dir/cache/image-requirements.txt"
        mkdir -p "$(dirname "$target")"
        run uv-target "$uv" pip compile --no-deps --no-header --no-annotate \
            --python-version "$target_py" --python-platform "$target_machine-unknown-linux-gnu" \
            --output-file "$target" "$reqs_new"
        run pip-download-deps "$bpy" -m pip download --disable-pip-version-check \
            --no-deps --only-binary=:all: --dest "$wheels/deps" -r "$target"
        cp "$reqs_new" "$reqs"
        echo "$deps_hash" >"$wheels/deps/.hash"
        log "wheels: $(ls "$wheels/deps"/*.whl | wc -l) deps for python $target_py ($target_machine) in $(( $(now) - t ))s"
    else
        log "dependency wheels up to date"
    fi
    t=$(now)
    if [[ "$(cat "$wheels/rtm/.hash" 2>/dev/null)" != "$src_hash" ]]; then
        log "RTM sources changed: building the five RTM wheels"
        rm -rf "$wheels/rtm"; mkdir -p "$wheels/rtm"
        (cd "$repo" && run pip-wheel-rtm "$bpy" -m pip wheel --disable-pip-version-check --no-deps \
            --no-build-isolation --wheel-dir "$wheels/rtm" "${pkgs[@]/#/./}")
        echo "$src_hash" >"$wheels/rtm/.hash"
        log "rtm wheels built in $(( $(now) - t ))s"
    else
        log "rtm wheels up to date"
    fi
    build_args=(--build-arg "BASE_IMAGE=$base_image" --build-arg OFFLINE=1)
else
    # The ordinary path installs inside the build, from the index; keep
    # stale wheels out of the context so the two paths never mix.
    rm -rf "$wheels/deps" "$wheels/rtm"; mkdir -p "$wheels/deps" "$wheels/rtm"
    cp "$reqs_new" "$reqs"
    build_args=(--build-arg "BASE_IMAGE=$slim_image" --build-arg OFFLINE=0)
fi

# ------------------------------------------------------------- the RTM image
t=$(now)
# Stream a minimal context (no .venv, .git, caches) instead of the repo root.
tar -C "$repo" -cf - \
    --exclude='__pycache__' --exclude='*.pyc' --exclude='*.egg-info' \
    --exclude='deploy/images/postgres' --exclude='deploy/images/redis' \
    --exclude='deploy/images/prometheus' \
    libs services migrations alembic.ini deploy/images \
| run docker-build-rtm docker build -f deploy/images/Dockerfile "${build_args[@]}" \
    --build-arg "RTM_VERSION=$version" -t "$rtm_image" -
log "$rtm_image built in $(( $(now) - t ))s ($(docker image inspect -f '{{.Size}}' "$rtm_image" | awk '{printf "%d MB", $1/1000/1000}'))"

# ------------------------------------------------------------- compose deps
if [[ "$path" == offline ]]; then
    t=$(now)
    run docker-build-postgres docker build --build-arg "BASE_IMAGE=$base_image" -t rtm-postgres:15 "$here/postgres"
    run docker-build-redis docker build --build-arg "BASE_IMAGE=$base_image" -t rtm-redis:7 "$here/redis"
    log "rtm-postgres:15 and rtm-redis:7 ready in $(( $(now) - t ))s"
    pg_image=rtm-postgres:15; redis_image=rtm-redis:7
    prometheus_image=rtm-prometheus:2
    if [[ "${RTM_BUILD_MONITORING:-0}" == 1 ]]; then
        t=$(now)
        run docker-build-prometheus docker build --build-arg "BASE_IMAGE=$base_image" -t "$prometheus_image" "$here/prometheus"
        log "$prometheus_image ready in $(( $(now) - t ))s"
    fi
else
    pg_image=postgres:15; redis_image=redis:7
    prometheus_image=prom/prometheus:v2.42.0
fi

cat >"$dev_dir/images.env" <<ENV
# written by deploy/images/build.sh ($path path); read by deploy/scripts/compose.sh
RTM_BUILD_PATH=$path
RTM_IMAGE=$rtm_image
RTM_POSTGRES_IMAGE=$pg_image
RTM_REDIS_IMAGE=$redis_image
RTM_PROMETHEUS_IMAGE=$prometheus_image
ENV
log "done in $(( $(now) - t_all ))s -> $dev_dir/images.env"
