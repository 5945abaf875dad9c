"""Issue 12's settings in the deployments: off (and absent from Helm's
ConfigMap) by default, passed through when switched on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rtm_core.settings import Switch, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
CHART = REPO / "deploy" / "helm" / "rtm"
SWITCHES = ("RTMANAGER_AUTO_RESTART", "RTMANAGER_PATCH_HEALTH_GATE", "RTMANAGER_START_WAIT_READY")


def test_compose_switches_default_off_and_knobs_pass_through_only_when_set() -> None:
    env = yaml.safe_load(COMPOSE_FILE.read_text())["x-rtm-env"]
    for switch in SWITCHES:
        assert env[switch] == f"${{{switch}:-off}}"
    knobs = [k for k in env if k.startswith(("RTMANAGER_AUTO_RESTART_", "RTMANAGER_PATCH_"))]
    knobs = [k for k in knobs if k not in SWITCHES]
    assert {k: env[k] for k in knobs} == dict.fromkeys(knobs)  # bare keys
    assert "RTMANAGER_AUTO_RESTART_BUDGET" in knobs
    assert "RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE" in knobs


def test_every_settings_field_of_issue_12_is_exposed_by_compose() -> None:
    env = yaml.safe_load(COMPOSE_FILE.read_text())["x-rtm-env"]
    from rtm_core.settings import Settings

    fields = [
        f"RTMANAGER_{name.upper()}"
        for name in Settings.model_fields
        if name.startswith(("auto_restart", "patch_", "start_wait", "start_ready"))
        and name != "auto_restart_consumer_group"
        and name != "auto_restart_interval"
    ]
    assert sorted(set(fields) - set(env)) == []


def _helm() -> str:
    proc = subprocess.run(
        [str(REPO / "deploy" / "helm" / "get-helm.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"no helm: {proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def _configmap(helm: str, *values: str) -> dict[str, str]:
    args = [helm, "template", "rtm", str(CHART)]
    for v in values:
        args += ["--set", v]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    (cm,) = [
        d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rtm"
    ]
    data: dict[str, str] = cm["data"]
    return data


@pytest.fixture(scope="module")
def helm() -> str:
    return _helm()


def test_helm_default_configmap_carries_none_of_it(helm: str) -> None:
    data = _configmap(helm)
    assert not [k for k in data if k.startswith(("RTMANAGER_AUTO", "RTMANAGER_PATCH"))]
    assert not [k for k in data if k.startswith("RTMANAGER_START_")]


def test_helm_switched_on_writes_settings_rtm_accepts(helm: str) -> None:
    data = _configmap(
        helm,
        "selfHealing.autoRestart.enabled=true",
        "selfHealing.autoRestart.budget=4",
        "selfHealing.patchHealthGate.enabled=true",
        "selfHealing.patchHealthGate.snapshots.enabled=false",
        "selfHealing.startWaitReady.enabled=true",
    )
    assert data["RTMANAGER_AUTO_RESTART"] == "on"
    assert data["RTMANAGER_AUTO_RESTART_BUDGET"] == "4"
    assert data["RTMANAGER_PATCH_HEALTH_GATE"] == "on"
    assert data["RTMANAGER_PATCH_SNAPSHOTS"] == "off"
    assert data["RTMANAGER_START_WAIT_READY"] == "on"
    rtm = {k: v for k, v in data.items() if k.startswith("RTMANAGER_")}
    env: dict[str, Any] = {**rtm, "RTMANAGER_POSTGRES_PRIMARY_DSN": "postgres://x/y"}
    old = dict(os.environ)
    try:
        os.environ.update(env)
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert settings.auto_restart is Switch.ON and settings.auto_restart_budget == 4
    assert settings.patch_health_gate is Switch.ON and settings.patch_snapshots is Switch.OFF
    assert settings.auto_restart_window == 1800 and settings.patch_snapshot_max_size == 1024**3


def test_helm_refuses_a_bad_value(helm: str) -> None:
    proc = subprocess.run(
        [helm, "template", "rtm", str(CHART), "--set", "selfHealing.autoRestart.budget=0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0 and "budget" in proc.stderr
