#!/usr/bin/env bash
# Prints the path of a uv binary of the version the workspace pins, installing
# it first when missing: `pip install uv==<pin>` into a small bootstrap venv
# ($RTM_DEV_DIR/uv, default <repo>/.rtm-dev/uv). A venv, not the system
# python: Debian's python3.11 has no pip (and refuses a system-wide pip
# install, PEP 668), but `python3.11 -m venv` brings its own.
#
# The pin is the one of the `uv==X` line in the root pyproject.toml's
# [dependency-groups] (the dev venv and tox-uv use that same uv), so changing
# it there is all it takes. Safe to run any number of times; quiet when
# nothing is to be done (stdout: the path only).
#
# Env: RTM_DEV_DIR, PYTHON (default python3.11).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV_DIR=${RTM_DEV_DIR:-$REPO/.rtm-dev}
PYTHON=${PYTHON:-python3.11}
VENV=$DEV_DIR/uv

die() { echo "ensure-uv: $*" >&2; exit 1; }

version=$(sed -n 's/^ *"uv==\([^"]*\)".*/\1/p' "$REPO/pyproject.toml" | head -n1)
[ -n "$version" ] || die "no \"uv==X\" pin in $REPO/pyproject.toml [dependency-groups]"

uv=$VENV/bin/uv
if [ -x "$uv" ] && [ "$("$uv" --version 2>/dev/null | cut -d' ' -f2)" = "$version" ]; then
    echo "$uv"
    exit 0
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON missing (scripts/ensure-deps.sh installs it)"
echo "ensure-uv: installing uv==$version into $VENV" >&2
rm -rf "$VENV"
if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian ships ensurepip separately (python3.11-venv).
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
        die "$PYTHON -m venv failed: install python3.11-venv"
    echo "ensure-uv: installing python3.11-venv" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3.11-venv >/dev/null
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "uv==$version" >&2 ||
    die "pip install uv==$version failed"
"$uv" --version >/dev/null || die "$uv does not run"
echo "$uv"
