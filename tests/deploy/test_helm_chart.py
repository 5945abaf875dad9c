"""The Helm chart deploy/helm/rtm, rendered for real.

`deploy/helm/check.sh` (what `make helm-check` runs) lints the chart, renders
it with the default values and with ci/full-values.yaml, and validates the
manifests with kubernetes-validate --strict. These tests run it once and then
check what an operator relies on in the rendered objects. The PrometheusRule
(a CRD kubernetes-validate has no schema for) is checked for its structure,
against deploy/monitoring's rules, and by promtool with the rule unit tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "rtm"
SOCKET = "/var/run/docker.sock"
COMPONENTS = ("api", "jobs", "watcher", "reconciler")
PORTS = {"api": 8096, "jobs": 8097, "watcher": 8097, "reconciler": 8097}

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    out = tmp_path_factory.mktemp("helm")
    proc = subprocess.run(
        [str(REPO / "deploy" / "helm" / "check.sh")],
        env={**os.environ, "RTM_HELM_OUT": str(out)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, f"helm-check failed:\n{proc.stdout}\n{proc.stderr}"
    return {
        name: [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d]
        for name in ("default", "full")
    }


@pytest.fixture(scope="module")
def default(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered["default"]


@pytest.fixture(scope="module")
def full(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered["full"]


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def pod_spec(doc: Manifest) -> Manifest:
    return doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]


def all_pods(docs: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for d in docs:
        if d["kind"] in {"Deployment", "Job", "Pod"}:
            yield f"{d['kind']}/{d['metadata']['name']}", pod_spec(d)


def mounts_socket(spec: Manifest) -> bool:
    return any(v.get("hostPath", {}).get("path") == SOCKET for v in spec.get("volumes", []))


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in container.get("env", [])}


def test_default_renders_the_expected_objects(default: list[Manifest]) -> None:
    assert sorted(by_name(default, "Deployment")) == [f"rtm-{c}" for c in sorted(COMPONENTS)]
    assert sorted(by_name(default, "PodDisruptionBudget")) == sorted(f"rtm-{c}" for c in COMPONENTS)
    assert list(by_name(default, "Service")) == ["rtm-api"]
    assert list(by_name(default, "ConfigMap")) == ["rtm"]
    assert sorted(by_name(default, "Secret")) == ["rtm", "rtm-migrate"]
    assert list(by_name(default, "Job")) == ["rtm-migrate"]
    assert list(by_name(default, "Pod")) == ["rtm-test-readyz"]
    assert of_kind(default, "ServiceMonitor") == []
    assert of_kind(default, "PrometheusRule") == []


def test_only_the_four_rtm_pods_mount_the_socket(default: list[Manifest]) -> None:
    with_socket = {name for name, spec in all_pods(default) if mounts_socket(spec)}
    assert with_socket == {f"Deployment/rtm-{c}" for c in COMPONENTS}
    for name, spec in all_pods(default):
        if not mounts_socket(spec):
            continue
        vol = next(v for v in spec["volumes"] if v.get("hostPath", {}).get("path") == SOCKET)
        assert vol["hostPath"]["type"] == "Socket"
        (container,) = spec["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == vol["name"])
        assert mount["mountPath"] == SOCKET
        # The non-root user reaches the socket through its group.
        assert 0 in spec["securityContext"]["supplementalGroups"], name


def test_tcp_mode_mounts_no_socket_and_wires_tls(full: list[Manifest]) -> None:
    assert not any(mounts_socket(spec) for _, spec in all_pods(full))
    cm = by_name(full, "ConfigMap")["rtm"]["data"]
    assert cm["RTMANAGER_DOCKER_HOST"] == "tcp://docker-engines.galaxy.svc:2376"
    for dep in of_kind(full, "Deployment"):
        spec = pod_spec(dep)
        tls = next(v for v in spec["volumes"] if v["name"] == "docker-tls")
        assert tls["secret"]["secretName"] == "rtm-docker-tls"
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "docker-tls")
        for key in ("CA", "CERT", "KEY"):
            assert cm[f"RTMANAGER_DOCKER_TLS_{key}"].startswith(mount["mountPath"] + "/")


def test_every_deployment_probes_its_own_listener(
    default: list[Manifest], full: list[Manifest]
) -> None:
    for docs in (default, full):
        for component in COMPONENTS:
            dep = by_name(docs, "Deployment")[f"rtm-{component}"]
            (c,) = pod_spec(dep)["containers"]
            assert c["command"] == [f"rtm-{component}"]
            (port,) = [p for p in c["ports"] if p["name"] == "http"]
            assert port["containerPort"] == PORTS[component]
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
            env = env_of(c)
            addr = (
                "RTMANAGER_INTERNAL_HTTP_ADDR" if component == "api" else "RTMANAGER_OPS_HTTP_ADDR"
            )
            assert env[addr]["value"] == f":{PORTS[component]}"
            assert env["RTM_HEALTH_PORT"]["value"] == str(PORTS[component])


def test_pods_run_hardened_and_non_root(default: list[Manifest]) -> None:
    for name, spec in all_pods(default):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(default: list[Manifest]) -> None:
    job = by_name(default, "Job")["rtm-migrate"]
    ann = job["metadata"]["annotations"]
    assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    assert c["command"] == ["rtm-migrate"]
    assert not mounts_socket(spec)
    # Pre-install: the release's ConfigMap does not exist yet -> env inline.
    assert "envFrom" not in c
    env = env_of(c)
    assert env["RTMANAGER_REDIS_MASTER_ADDR"]["value"] == "redis:6379"
    # ...nor its Secret: the Job reads a hook Secret created before it.
    hook_secret = by_name(default, "Secret")["rtm-migrate"]
    s_ann = hook_secret["metadata"]["annotations"]
    assert s_ann["helm.sh/hook"] == ann["helm.sh/hook"]
    assert int(s_ann["helm.sh/hook-weight"]) < int(ann.get("helm.sh/hook-weight", "0"))
    assert (
        env["RTMANAGER_POSTGRES_PRIMARY_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "rtm-migrate"
    )


def test_every_referenced_secret_key_and_configmap_exists(default: list[Manifest]) -> None:
    secrets = by_name(default, "Secret")
    configmaps = by_name(default, "ConfigMap")
    checked = 0
    for name, spec in all_pods(default):
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                assert ref["name"] in secrets, (name, ref)
                if not ref.get("optional", False):
                    assert ref["key"] in secrets[ref["name"]]["data"], (name, ref)
                    checked += 1
            for src in c.get("envFrom", []):
                assert src["configMapRef"]["name"] in configmaps, name
    assert checked >= 5  # the DSN in four Deployments and the Job
    dsn = secrets["rtm"]["data"]["RTMANAGER_POSTGRES_PRIMARY_DSN"]
    assert secrets["rtm-migrate"]["data"]["RTMANAGER_POSTGRES_PRIMARY_DSN"] == dsn


def test_existing_secret_is_used_with_its_key_names(full: list[Manifest]) -> None:
    assert of_kind(full, "Secret") == []
    for name, spec in all_pods(full):
        for c in spec["containers"]:
            env = env_of(c)
            if "RTMANAGER_POSTGRES_PRIMARY_DSN" in env:
                ref = env["RTMANAGER_POSTGRES_PRIMARY_DSN"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "rtm-credentials", "key": "dsn"}, name
                token = env["RTMANAGER_INTERNAL_API_TOKEN"]["valueFrom"]["secretKeyRef"]
                assert token["key"] == "api-token" and token["optional"] is True


def test_config_carries_stack_and_no_secrets(default: list[Manifest], full: list[Manifest]) -> None:
    cm = by_name(default, "ConfigMap")["rtm"]["data"]
    assert cm["RTMANAGER_STACK"] == "rtm"  # release name by default
    assert cm["RTMANAGER_DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert by_name(full, "ConfigMap")["rtm"]["data"]["RTMANAGER_STACK"] == "prod-eu1"
    for docs in (default, full):
        data = by_name(docs, "ConfigMap")["rtm"]["data"]
        assert not {
            "RTMANAGER_POSTGRES_PRIMARY_DSN",
            "RTMANAGER_REDIS_PASSWORD",
            "RTMANAGER_INTERNAL_API_TOKEN",
        } & set(data)


def test_engine_backend_is_docker_by_default_and_swarm_when_set(
    default: list[Manifest], full: list[Manifest]
) -> None:
    data = by_name(default, "ConfigMap")["rtm"]["data"]
    assert data["RTMANAGER_ENGINE_BACKEND"] == "docker"
    assert "RTMANAGER_SWARM_PLACEMENT_SPREAD" not in data
    data = by_name(full, "ConfigMap")["rtm"]["data"]
    assert data["RTMANAGER_ENGINE_BACKEND"] == "swarm"
    assert data["RTMANAGER_SWARM_PLACEMENT_SPREAD"] == "node.labels.zone"
    assert data["RTMANAGER_DOCKER_HOST"].startswith("tcp://")  # a Swarm manager


def test_state_root_only_where_lifecycle_runs(default: list[Manifest]) -> None:
    root = by_name(default, "ConfigMap")["rtm"]["data"]["RTMANAGER_GAME_STATE_ROOT"]
    for component in COMPONENTS:
        spec = pod_spec(by_name(default, "Deployment")[f"rtm-{component}"])
        vols = {v["name"]: v for v in spec["volumes"]}
        if component == "watcher":
            assert "game-state" not in vols
            continue
        assert vols["game-state"]["hostPath"]["path"] == root
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "game-state")
        assert mount["mountPath"] == root  # same path: RTM hands it to the daemon


def test_per_service_replicas_and_resources(full: list[Manifest]) -> None:
    deps = by_name(full, "Deployment")
    assert {c: deps[f"rtm-{c}"]["spec"]["replicas"] for c in COMPONENTS} == {
        "api": 3,
        "jobs": 4,
        "watcher": 2,
        "reconciler": 1,
    }
    api = pod_spec(deps["rtm-api"])["containers"][0]
    assert api["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert api["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert pod_spec(deps["rtm-jobs"])["nodeSelector"] == {"galaxy.example.com/docker-host": "true"}
    pdbs = by_name(full, "PodDisruptionBudget")
    assert "rtm-watcher" not in pdbs
    assert pdbs["rtm-api"]["spec"] == {
        "minAvailable": 2,
        "selector": deps["rtm-api"]["spec"]["selector"],
    }


def test_pdbs_select_their_deployment(default: list[Manifest]) -> None:
    deps = by_name(default, "Deployment")
    for name, pdb in by_name(default, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector == deps[name]["spec"]["selector"]["matchLabels"]
        labels = deps[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_service_monitor_targets_the_metrics_service(full: list[Manifest]) -> None:
    (sm,) = of_kind(full, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = by_name(full, "Service")["rtm-metrics"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    # The alert rules select job="rtm-<component>".
    (job,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert job["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    assert job["replacement"] == "rtm-${1}"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    cm = by_name(full, "ConfigMap")["rtm"]["data"]
    assert cm["OTEL_METRICS_EXPORTER"] == "prometheus"
    for dep in of_kind(full, "Deployment"):
        ports = {p["name"]: p["containerPort"] for p in pod_spec(dep)["containers"][0]["ports"]}
        assert ports["metrics"] == int(cm["OTEL_EXPORTER_PROMETHEUS_PORT"])
        # the metrics Service selects every RTM pod
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()


def test_helm_test_pod_calls_readyz_of_the_api_service(default: list[Manifest]) -> None:
    pod = by_name(default, "Pod")["rtm-test-readyz"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    svc = by_name(default, "Service")["rtm-api"]
    assert f"http://{svc['metadata']['name']}:{svc['spec']['ports'][0]['port']}/readyz" in script
    api_labels = by_name(default, "Deployment")["rtm-api"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= api_labels.items()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("docker.mode=bogus", "docker/mode"),
        ("secrets.postgresDsn=mysql://x", "postgresDsn"),
        ("config.RTMANAGER_POSTGRES_PRIMARY_DSN=leak", "config"),
        ("docker.mode=tcp,docker.tcp.tls.enabled=true", "docker.tcp.tls.secretName"),
        ("metrics.prometheusRule.runbookBaseUrl=docs", "prometheusRule/runbookBaseUrl"),
        ("metrics.grafanaDashboard.label=bad label", "grafanaDashboard/label"),
    ],
)
def test_bad_values_are_refused(rendered: dict[str, Any], flag: str, message: str) -> None:
    proc = helm_template("--set", flag)
    assert proc.returncode != 0
    assert message in proc.stderr


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    helm = subprocess.run(
        [str(REPO / "deploy" / "helm" / "get-helm.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    return subprocess.run(
        [helm, "template", "rtm", str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# ------------------------------------------------- alert rules and dashboard --
# The chart ships deploy/monitoring's files (copied into files/ by
# `make helm-sync`): one source of truth, checked byte for byte.
MONITORING = REPO / "deploy" / "monitoring"
COPIES = {
    MONITORING / "prometheus" / "rules": (CHART / "files" / "prometheus" / "rules", "*.yml"),
    MONITORING / "grafana": (CHART / "files" / "grafana", "*.json"),
}
RULE_TESTS = MONITORING / "prometheus" / "tests"
# PrometheusRule (monitoring.coreos.com/v1) fields, after the CRD's openAPIV3Schema.
GROUP_KEYS = {"name", "interval", "labels", "limit", "partial_response_strategy", "query_offset"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
RUNBOOK_BASE = "https://git.example.com/galaxy/rtm/blob/main/"  # ci/full-values.yaml


def source_rule_groups() -> list[Manifest]:
    groups: list[Manifest] = []
    for path in sorted((MONITORING / "prometheus" / "rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def test_chart_copies_of_the_monitoring_files_are_current() -> None:
    for source_dir, (copy_dir, pattern) in COPIES.items():
        sources = {p.name: p.read_bytes() for p in source_dir.glob(pattern)}
        copies = {p.name: p.read_bytes() for p in copy_dir.glob(pattern)}
        assert sources, source_dir
        assert copies == sources, f"{copy_dir} is stale: run `make helm-sync`"
    proc = subprocess.run(
        [str(REPO / "deploy" / "helm" / "sync-monitoring.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_sync_check_fails_on_a_stale_copy(tmp_path: Path) -> None:
    """The script `make helm-check` relies on must not pass a drifted copy."""
    work = tmp_path / "repo"
    for rel in ("deploy/monitoring", "deploy/helm/rtm/files"):
        shutil.copytree(REPO / rel, work / rel)
    (work / "deploy" / "helm").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "deploy" / "helm" / "sync-monitoring.sh", work / "deploy" / "helm")
    script = str(work / "deploy" / "helm" / "sync-monitoring.sh")
    copy = work / "deploy" / "helm" / "rtm" / "files" / "grafana" / "rtm-dashboard.json"
    copy.write_text(copy.read_text(encoding="utf-8") + " ", encoding="utf-8")
    stale = subprocess.run([script, "--check"], capture_output=True, text=True, check=False)
    assert stale.returncode != 0 and "make helm-sync" in stale.stderr
    subprocess.run([script], capture_output=True, text=True, check=True)
    assert subprocess.run([script, "--check"], capture_output=True, check=False).returncode == 0
    assert copy.read_bytes() == (MONITORING / "grafana" / "rtm-dashboard.json").read_bytes()


def test_prometheus_rule_is_well_formed(full: list[Manifest]) -> None:
    """kubernetes-validate has no schema for the CRD: its structure, checked here."""
    (rule,) = of_kind(full, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", rule["metadata"]["name"])
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(rule["spec"]) == {"groups"}
    groups = rule["spec"]["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)) and all(names)
    for group in groups:
        assert set(group) - {"rules"} <= GROUP_KEYS, group["name"]
        assert group["rules"], group["name"]
        for r in group["rules"]:
            assert set(r) <= RULE_KEYS, r
            assert ("alert" in r) != ("record" in r), r
            assert isinstance(r["expr"], str) and r["expr"].strip(), r
            for key in ("for", "keep_firing_for"):
                assert key not in r or DURATION.match(r[key]), r
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(key, {}).values()), r
            if "record" in r:
                assert not {"for", "annotations", "keep_firing_for"} & set(r), r


def test_prometheus_rule_carries_the_monitoring_rules(full: list[Manifest]) -> None:
    (rule,) = of_kind(full, "PrometheusRule")
    expected = source_rule_groups()
    for group in expected:
        for r in group["rules"]:
            if "runbook_url" in r.get("annotations", {}):
                r["annotations"]["runbook_url"] = RUNBOOK_BASE + r["annotations"]["runbook_url"]
    assert rule["spec"]["groups"] == expected
    # Templates in annotations reach Prometheus as written, not expanded by Helm.
    descriptions = [
        r["annotations"]["description"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert any("{{ $labels.role }}" in d for d in descriptions)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # deploy/monitoring/check.sh installs Debian's prometheus package
        subprocess.run(
            [str(MONITORING / "check.sh")], capture_output=True, check=False, timeout=900
        )
        found = shutil.which("promtool")
    assert found, "promtool not found and deploy/monitoring/check.sh could not install it"
    return found


def test_prometheus_rule_passes_promtool_and_the_rule_tests(promtool: str, tmp_path: Path) -> None:
    """The rendered rules, as the operator hands them to Prometheus, pass promtool
    and every promtool unit test of deploy/monitoring."""
    proc = helm_template("--set", "metrics.prometheusRule.enabled=true")
    assert proc.returncode == 0, proc.stderr
    (rule,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "PrometheusRule"]
    rules = tmp_path / "rules" / "rtm-alerts.yml"
    rules.parent.mkdir()
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    check = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = tmp_path / "tests"
    tests.mkdir()
    for test_file in sorted(RULE_TESTS.glob("*.yml")):
        shutil.copy2(test_file, tests / test_file.name)
    run = subprocess.run(
        [promtool, "test", "rules", *sorted(str(p) for p in tests.glob("*.yml"))],
        capture_output=True,
        text=True,
        check=False,
        cwd=tests,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_grafana_dashboard_configmap(full: list[Manifest]) -> None:
    cm = by_name(full, "ConfigMap")["rtm-dashboard"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Galaxy"}
    source = (MONITORING / "grafana" / "rtm-dashboard.json").read_text(encoding="utf-8")
    assert cm["data"] == {"rtm-dashboard.json": source}
    assert json.loads(cm["data"]["rtm-dashboard.json"])["uid"]


def test_grafana_dashboard_label_is_configurable() -> None:
    proc = helm_template(
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "metrics.grafanaDashboard.label=grafana.example.com/dashboard",
        "--set-string",
        "metrics.grafanaDashboard.labelValue=rtm",
    )
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    cm = by_name(docs, "ConfigMap")["rtm-dashboard"]
    assert "namespace" not in cm["metadata"]  # the release's
    assert cm["metadata"]["labels"]["grafana.example.com/dashboard"] == "rtm"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert of_kind(docs, "PrometheusRule") == []
