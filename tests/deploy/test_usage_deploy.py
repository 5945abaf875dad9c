"""Issue 13's engine usage settings in the deployments: off (and absent from
Helm's ConfigMap) by default, passed through when switched on."""

from __future__ import annotations

import pytest
from deploy.chart import compose_env, configmap, find_helm, settings_from, template

from rtm_core.settings import Settings, Switch


@pytest.fixture(scope="module")
def helm() -> str:
    return find_helm()


def test_compose_exposes_every_usage_setting_off_by_default() -> None:
    env = compose_env()
    assert env["RTMANAGER_ENGINE_USAGE"] == "${RTMANAGER_ENGINE_USAGE:-off}"
    fields = [
        f"RTMANAGER_{n.upper()}" for n in Settings.model_fields if n.startswith("engine_usage")
    ]
    assert len(fields) == 3 and sorted(set(fields) - set(env)) == []
    assert env["RTMANAGER_ENGINE_USAGE_PER_GAME_LABEL"] is None  # bare: RTM's default


def test_helm_default_configmap_carries_none_of_it(helm: str) -> None:
    assert not [k for k in configmap(helm) if k.startswith("RTMANAGER_ENGINE_USAGE")]


def test_helm_switched_on_writes_settings_rtm_accepts(helm: str) -> None:
    data = configmap(
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
    settings = settings_from(data)
    assert settings.engine_usage is Switch.ON and settings.engine_usage_concurrency == 4
    assert settings.engine_usage_per_game_label is Switch.OFF


def test_helm_refuses_a_bad_value(helm: str) -> None:
    proc = template(helm, "engineUsage.concurrency=0")
    assert proc.returncode != 0 and "engineUsage" in proc.stderr
