#!/usr/bin/env bash
# `make helm-check`: lint the chart, render it with the default values and
# with every ci/*-values.yaml, and validate the rendered manifests offline
# with kubernetes-validate --strict against the oldest supported (1.25) and
# the newest bundled Kubernetes schema, after checking that the chart's copies
# of deploy/monitoring (files/) are current. Rendered files stay in $RTM_HELM_OUT
# (default .rtm-dev/helm) for tests/deploy/test_helm_chart.py to inspect.
#
# Tools: helm from deploy/helm/get-helm.sh (PyPI wheel); kubernetes-validate
# from $KUBERNETES_VALIDATE, .venv/bin (the `deploy` dependency group), PATH,
# or a private venv in .rtm-dev/tools (pip install
# kubernetes-validate==$KV_VERSION, default: the root pyproject.toml's pin).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
chart="$repo/deploy/helm/rtm"
dev_dir="${RTM_DEV_DIR:-$repo/.rtm-dev}"
out="${RTM_HELM_OUT:-$dev_dir/helm}"
KV_VERSION="${KV_VERSION:-$(sed -n 's/^ *"kubernetes-validate==\([^"]*\)".*/\1/p' "$repo/pyproject.toml" | head -n1)}"
KUBE_VERSIONS=(${RTM_HELM_KUBE_VERSIONS:-1.25 latest})
PYTHON="${PYTHON:-python3}"

say() { printf '[helm-check] %s\n' "$*" >&2; }

helm="$("$repo/deploy/helm/get-helm.sh")"

kv="${KUBERNETES_VALIDATE:-}"
if [[ -z "$kv" ]]; then
    if [[ -x "$repo/.venv/bin/kubernetes-validate" ]]; then
        kv="$repo/.venv/bin/kubernetes-validate"
    elif command -v kubernetes-validate >/dev/null; then
        kv="$(command -v kubernetes-validate)"
    else
        tools="$dev_dir/tools"
        if [[ ! -x "$tools/bin/kubernetes-validate" ]]; then
            say "installing kubernetes-validate==$KV_VERSION into $tools"
            "$PYTHON" -m venv "$tools"
            "$tools/bin/pip" install --quiet --disable-pip-version-check \
                "kubernetes-validate==$KV_VERSION" >/dev/null 2>&1
        fi
        kv="$tools/bin/kubernetes-validate"
    fi
fi

# The chart's copies of deploy/monitoring's rules and dashboard must be current.
"$repo/deploy/helm/sync-monitoring.sh" --check

rm -rf "$out"
mkdir -p "$out"

values_sets=(default)
for f in "$chart"/ci/*-values.yaml; do
    [[ -e "$f" ]] && values_sets+=("$f")
done

for v in "${values_sets[@]}"; do
    if [[ "$v" == default ]]; then
        name=default; args=()
    else
        name="$(basename "$v" -values.yaml)"; args=(-f "$v")
    fi
    "$helm" lint --strict "$chart" "${args[@]}" >"$out/$name.lint" 2>&1 || {
        cat "$out/$name.lint" >&2; say "lint failed ($name)"; exit 1; }
    "$helm" template rtm "$chart" --namespace galaxy "${args[@]}" >"$out/$name.yaml" 2>"$out/$name.err" || {
        cat "$out/$name.err" >&2; say "template failed ($name)"; exit 1; }
    # `helm test` hooks included: they are rendered by template as well.
    for k in "${KUBE_VERSIONS[@]}"; do
        kargs=()
        [[ "$k" == latest ]] || kargs=(-k "$k")
        "$kv" --strict --quiet "${kargs[@]}" "$out/$name.yaml" >"$out/$name.validate-$k" 2>&1 || {
            cat "$out/$name.validate-$k" >&2; say "kubernetes-validate failed ($name, k8s $k)"; exit 1; }
        # Only CRD kinds (ServiceMonitor, PrometheusRule) may lack a schema;
        # tests/deploy/test_helm_chart.py checks their structure.
        if grep -Ev "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1 " "$out/$name.validate-$k" | grep -q .; then
            cat "$out/$name.validate-$k" >&2; say "kubernetes-validate warned ($name, k8s $k)"; exit 1
        fi
    done
    say "ok: $name ($(grep -c '^kind:' "$out/$name.yaml") objects, validated for k8s ${KUBE_VERSIONS[*]})"
done
say "rendered manifests in $out"
