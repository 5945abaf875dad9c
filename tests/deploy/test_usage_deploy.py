"""Issue 13's engine usage settings in the deployments: off (and absent from
Helm's ConfigMap) by default, passed through when switched on."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import yaml
from deploy.test_selfheal_deploy import CHART, COMPOSE_FILE, _configmap, _helm

from rtm_core.settings import Settings, Switch, load_settings


@pytest.fixture(scope="module")
def helm() -> str:
    return _helm()


def test_compose_exposes_every_usage_setting_off_by_default() -> None:
    env = yaml.safe_load(COMPOSE_FILE.read_text())["x-rtm-env"]
    assert env["RTMANAGER_ENGINE_USAGE"] == "${RTMANAGER_ENGINE_USAGE:-off}"
    fields = [
        f"RTMANAGER_{n.upper()}" for n in Settings.model_fields if n.startswith("engine_usage")
    ]
    assert len(fields) == 3 and sorted(set(fields) - set(env)) == []
    assert env["RTMANAGER_ENGINE_USAGE_PER_GAME_LABEL"] is None  # bare: RTM's default


def test_helm_default_configmap_carries_none_of_it(helm: str) -> None:
    assert not [k for k in _configmap(helm) if k.startswith("RTMANAGER_ENGINE_USAGE")]


def test_helm_switched_on_writes_settings_rtm_accepts(helm: str) -> None:
    data = _configmap(
        helm,
        "engineUsage.enabled=true",
        "engineUsage.concurrency=4",
        "engineUsage.perGameLabel=false",
    )
    rtm = {k: v for k, v in data.items() if k.startswith("RTMANAGER_ENGINE_USAGE")}
    assert rtm == {
        "RTMANAGER_ENGINE_USAGE": "on",
        "RTMANAGER_ENGINE_USAGE_CONCURRENCY": "4",
        "RTMANAGER_ENGINE_USAGE_PER_GAME_LABEL": "off",
    }
    env: dict[str, Any] = {
        **{k: v for k, v in data.items() if k.startswith("RTMANAGER_")},
        "RTMANAGER_POSTGRES_PRIMARY_DSN": "postgres://x/y",
    }
    old = dict(os.environ)
    try:
        os.environ.update(env)
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert settings.engine_usage is Switch.ON and settings.engine_usage_concurrency == 4
    assert settings.engine_usage_per_game_label is Switch.OFF


def test_helm_refuses_a_bad_value(helm: str) -> None:
    proc = subprocess.run(
        [helm, "template", "rtm", str(CHART), "--set", "engineUsage.concurrency=0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0 and "engineUsage" in proc.stderr
