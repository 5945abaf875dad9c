"""Structural rules of deploy/compose/docker-compose.yml (no Docker needed).

What the stack promises operators: the Docker socket only where RTM needs
it, nothing but rtm-api published (and only on loopback), the engines'
network external, start order through health and migration, and nothing
that breaks `--scale`. A final check asks the real compose CLI to parse it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
SOCKET = "/var/run/docker.sock"
RTM_LONG_RUNNING = {"rtm-api", "rtm-jobs", "rtm-watcher", "rtm-reconciler"}
ALL_SERVICES = RTM_LONG_RUNNING | {"postgres", "redis", "rtm-migrate"}
#: Services of the `monitoring` profile (not started by a plain `up`).
MONITORING = {"prometheus"}

_VAR = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def defaults(value: Any) -> Any:
    """Interpolate `${VAR:-default}` with an empty environment, as compose would."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m["default"] or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: defaults(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: defaults(svc) for name, svc in raw["services"].items()}


def _volume_targets(svc: dict[str, Any]) -> dict[str, str]:
    """target -> source for short-syntax volumes."""
    out = {}
    for vol in svc.get("volumes", []):
        source, target = vol.split(":")[:2]
        out[target] = source
    return out


def test_services_are_the_seven_of_the_stack(services: dict[str, Any]) -> None:
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == ALL_SERVICES
    assert set(services) - default == MONITORING
    for name in MONITORING:
        assert services[name]["profiles"] == ["monitoring"]


def test_docker_socket_only_in_the_four_rtm_processes(services: dict[str, Any]) -> None:
    with_socket = {n for n, s in services.items() if SOCKET in _volume_targets(s)}
    assert with_socket == RTM_LONG_RUNNING
    for name in RTM_LONG_RUNNING:
        assert _volume_targets(services[name])[SOCKET] == SOCKET


def test_only_rtm_api_publishes_and_only_on_loopback(services: dict[str, Any]) -> None:
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert set(published) == {"rtm-api", "prometheus"}
    assert published["rtm-api"] == ["127.0.0.1:8096:8096"]
    assert published["prometheus"] == ["127.0.0.1:9090:9090"]
    for name in ("postgres", "redis"):
        assert "ports" not in services[name]
        assert services[name].get("network_mode") is None


def test_no_container_name_so_scale_works(raw: dict[str, Any]) -> None:
    assert "container_name" not in COMPOSE_FILE.read_text()
    for svc in raw["services"].values():
        assert "container_name" not in svc


def test_networks(raw: dict[str, Any], services: dict[str, Any]) -> None:
    nets = defaults(raw["networks"])
    assert nets["galaxy-net"]["external"] is True
    assert nets["galaxy-net"]["name"] == "galaxy-net"
    assert not nets["rtm-internal"].get("external", False)
    for name in RTM_LONG_RUNNING:
        assert set(services[name]["networks"]) == {"rtm-internal", "galaxy-net"}, name
    for name in ("postgres", "redis", "rtm-migrate"):
        assert services[name]["networks"] == ["rtm-internal"], name


def test_start_order(services: dict[str, Any]) -> None:
    for name in RTM_LONG_RUNNING:
        deps = services[name]["depends_on"]
        assert deps == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "rtm-migrate": {"condition": "service_completed_successfully"},
        }, name
    assert services["rtm-migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["rtm-migrate"]["command"] == ["rtm-migrate"]
    assert services["rtm-migrate"]["restart"] == "no"


def test_healthchecks(services: dict[str, Any]) -> None:
    for name in ALL_SERVICES - {"rtm-migrate"}:
        test = services[name]["healthcheck"]["test"]
        assert test and test[0] in {"CMD", "CMD-SHELL"}, name
    assert services["rtm-migrate"]["healthcheck"] == {"disable": True}
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert "ping" in services["redis"]["healthcheck"]["test"][1]
    ports = {"rtm-api": "8096", "rtm-jobs": "8097", "rtm-watcher": "8097", "rtm-reconciler": "8097"}
    for name, port in ports.items():
        env = services[name]["environment"]
        assert services[name]["healthcheck"]["test"] == ["CMD", "rtm-healthcheck"]
        assert env["RTM_HEALTH_PORT"] == port, name
        addr = env.get(
            "RTMANAGER_INTERNAL_HTTP_ADDR" if name == "rtm-api" else "RTMANAGER_OPS_HTTP_ADDR"
        )
        assert addr == f":{port}", name


def test_rtm_environment(services: dict[str, Any]) -> None:
    for name in RTM_LONG_RUNNING | {"rtm-migrate"}:
        env = services[name]["environment"]
        assert services[name]["command"] == [name]
        assert env["RTMANAGER_STACK"] == "compose"
        assert env["RTMANAGER_DOCKER_NETWORK"] == "galaxy-net"
        assert env["RTMANAGER_REDIS_MASTER_ADDR"] == "redis:6379"
        dsn = env["RTMANAGER_POSTGRES_PRIMARY_DSN"]
        assert dsn.startswith("postgres://") and "@postgres:5432/" in dsn
        assert "search_path=rtmanager" in dsn and "sslmode=disable" in dsn
        # An empty token is refused by RTM: it must be a pass-through key.
        assert env["RTMANAGER_INTERNAL_API_TOKEN"] is None


def test_metrics_exporter_on_by_default(services: dict[str, Any]) -> None:
    """/metrics on :9464 of every RTM process, on all interfaces (Prometheus on
    rtm-internal scrapes it), never published on the host."""
    for name in RTM_LONG_RUNNING:
        env = services[name]["environment"]
        assert env["OTEL_METRICS_EXPORTER"] == "prometheus", name
        assert env["OTEL_EXPORTER_PROMETHEUS_HOST"] == "0.0.0.0", name
        assert env["OTEL_EXPORTER_PROMETHEUS_PORT"] == "9464", name
        assert services[name]["restart"] == "unless-stopped", name


def test_prometheus_scrapes_with_the_repo_config(services: dict[str, Any]) -> None:
    prom = services["prometheus"]
    assert prom["networks"] == ["rtm-internal"]
    assert "../monitoring/prometheus:/etc/prometheus:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert (COMPOSE_FILE.parent / "../monitoring/prometheus/prometheus.yml").resolve().is_file()
    assert SOCKET not in _volume_targets(prom)


def test_state_root_same_path_on_both_sides(services: dict[str, Any]) -> None:
    for name in RTM_LONG_RUNNING:
        root = services[name]["environment"]["RTMANAGER_GAME_STATE_ROOT"]
        assert root == "/var/lib/galaxy/games"
        assert _volume_targets(services[name])[root] == root


def test_non_root_with_socket_group(raw: dict[str, Any], services: dict[str, Any]) -> None:
    for name in RTM_LONG_RUNNING | {"rtm-migrate"}:
        user = services[name]["user"]
        assert not user.startswith("0:") and user != "root", name
        assert services[name]["image"] == "galaxy/rtm:latest"
    for name in RTM_LONG_RUNNING:
        assert "${DOCKER_GID:-0}" in raw["services"][name]["group_add"], name
    for name in ("postgres", "redis", "rtm-migrate"):
        assert "group_add" not in services[name]


def test_images_selectable(raw: dict[str, Any]) -> None:
    svcs = raw["services"]
    assert svcs["postgres"]["image"] == "${RTM_POSTGRES_IMAGE:-postgres:15}"
    assert svcs["redis"]["image"] == "${RTM_REDIS_IMAGE:-redis:7}"
    for name in RTM_LONG_RUNNING | {"rtm-migrate"}:
        assert svcs[name]["image"].startswith("${RTM_IMAGE:-")


def test_env_example_covers_every_interpolated_variable() -> None:
    text = COMPOSE_FILE.read_text()
    used = {m["name"] for m in _VAR.finditer(text)}
    example = (COMPOSE_FILE.parent / ".env.example").read_text()
    documented = set(re.findall(r"^#?([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert used - documented == set(), "document these in .env.example"


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_cli_accepts_the_file() -> None:
    cli = _compose_cli()
    assert cli is not None, "no compose CLI: scripts/ensure-deps.sh (make test) installs one"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTM_", "RTMANAGER_"))}
    proc = subprocess.run(
        [*cli, "-p", "rtm-test-config", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
