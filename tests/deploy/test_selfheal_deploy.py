"""Issue 12's settings in the deployments: off (and absent from Helm's
ConfigMap) by default, passed through when switched on."""

from __future__ import annotations

import pytest
from deploy.chart import compose_env, configmap, find_helm, settings_from, template

from rtm_core.settings import Switch

SWITCHES = ("RTMANAGER_AUTO_RESTART", "RTMANAGER_PATCH_HEALTH_GATE", "RTMANAGER_START_WAIT_READY")


def test_compose_switches_default_off_and_knobs_pass_through_only_when_set() -> None:
    env = compose_env()
    for switch in SWITCHES:
        assert env[switch] == f"${{{switch}:-off}}"
    knobs = [k for k in env if k.startswith(("RTMANAGER_AUTO_RESTART_", "RTMANAGER_PATCH_"))]
    knobs = [k for k in knobs if k not in SWITCHES]
    assert {k: env[k] for k in knobs} == dict.fromkeys(knobs)  # bare keys
    assert "RTMANAGER_AUTO_RESTART_BUDGET" in knobs
    assert "RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE" in knobs


def test_every_settings_field_of_issue_12_is_exposed_by_compose() -> None:
    env = compose_env()
    from rtm_core.settings import Settings

    fields = [
        f"RTMANAGER_{name.upper()}"
        for name in Settings.model_fields
        if name.startswith(("auto_restart", "patch_", "start_wait", "start_ready"))
        and name != "auto_restart_consumer_group"
        and name != "auto_restart_interval"
    ]
    assert sorted(set(fields) - set(env)) == []


@pytest.fixture(scope="module")
def helm() -> str:
    return find_helm()


def test_helm_default_configmap_carries_none_of_it(helm: str) -> None:
    data = configmap(helm)
    assert not [k for k in data if k.startswith(("RTMANAGER_AUTO", "RTMANAGER_PATCH"))]
    assert not [k for k in data if k.startswith("RTMANAGER_START_")]


def test_helm_switched_on_writes_settings_rtm_accepts(helm: str) -> None:
    data = configmap(
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
    settings = settings_from(data)
    assert settings.auto_restart is Switch.ON and settings.auto_restart_budget == 4
    assert settings.patch_health_gate is Switch.ON and settings.patch_snapshots is Switch.OFF
    assert settings.auto_restart_window == 1800 and settings.patch_snapshot_max_size == 1024**3


def test_helm_refuses_a_bad_value(helm: str) -> None:
    proc = template(helm, "selfHealing.autoRestart.budget=0")
    assert proc.returncode != 0 and "budget" in proc.stderr
