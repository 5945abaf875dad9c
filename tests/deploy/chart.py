"""The deployments as tests read them: the compose file's shared environment,
the Helm chart rendered with `--set` values, and what RTM makes of a ConfigMap."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rtm_core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
CHART = REPO / "deploy" / "helm" / "rtm"


def compose_env() -> dict[str, Any]:
    """`x-rtm-env`: the environment every RTM service of the compose file gets."""
    env: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["x-rtm-env"]
    return env


def find_helm() -> str:
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


def template(helm: str, *values: str) -> subprocess.CompletedProcess[str]:
    args = [helm, "template", "rtm", str(CHART)]
    for v in values:
        args += ["--set", v]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def configmap(helm: str, *values: str) -> dict[str, str]:
    """The `rtm` ConfigMap's data, rendered with `values`."""
    proc = template(helm, *values)
    assert proc.returncode == 0, proc.stderr
    (cm,) = [
        d
        for d in yaml.safe_load_all(proc.stdout)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rtm"
    ]
    data: dict[str, str] = cm["data"]
    return data


def settings_from(data: dict[str, str]) -> Settings:
    """What RTM loads from a ConfigMap's RTMANAGER_* (plus a DSN, a Secret's part)."""
    env = {k: v for k, v in data.items() if k.startswith("RTMANAGER_")}
    env["RTMANAGER_POSTGRES_PRIMARY_DSN"] = "postgres://x/y"
    old = dict(os.environ)
    try:
        os.environ.update(env)
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(old)
